"""kubectl dotnet-monitor: diagnostics from live .NET pods through an injected dotnet-monitor."""

__version__ = "0.1.0"


def user_agent() -> str:
    """``kubectl-dotnet_monitor/<version> (python X.Y; <platform>)``: the same on every request the
    plugin makes (API server, port-forward, dotnet-monitor)."""
    import sys

    return f"kubectl-dotnet_monitor/{__version__} (python {sys.version_info[0]}.{sys.version_info[1]}; {sys.platform})"
