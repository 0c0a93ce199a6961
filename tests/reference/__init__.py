"""Paths of the vendored upstream reference files (see README.md here)."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
OPENAPI = HERE / "dotnet-monitor-openapi.json"
SAMPLE_CUSTOM = HERE / "ephemeral-sample-config.yaml"
