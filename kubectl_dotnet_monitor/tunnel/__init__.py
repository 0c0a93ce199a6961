"""Port-forwarding to a pod inline, over the API server's websocket protocol."""
