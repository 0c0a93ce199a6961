"""Tests of the sandbox cluster itself, run with real kubectl and the Python client."""
