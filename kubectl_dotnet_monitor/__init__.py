"""kubectl dotnet-monitor: diagnostics from live .NET pods through an injected dotnet-monitor."""

__version__ = "0.1.0"
