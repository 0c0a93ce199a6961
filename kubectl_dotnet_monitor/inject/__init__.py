"""Putting a secured dotnet-monitor into a running pod as an ephemeral container."""
