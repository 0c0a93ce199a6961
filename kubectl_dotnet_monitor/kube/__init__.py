"""Talking to the Kubernetes API the way kubectl does: kubeconfig, credentials, REST."""
