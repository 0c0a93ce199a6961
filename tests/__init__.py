"""Tests and the sandbox (a simulated cluster) for kubectl dotnet-monitor."""
