"""``kubectl dotnet-monitor logs POD``."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import duration_option, stream_options


@click.command()
@click.argument("pod")
@click.option("--level", default=None, metavar="LEVEL",
              help="Lowest level: Trace, Debug, Information, Warning, Error, Critical (any case; "
                   "default: the app's own log filters).")
@duration_option("30s", "How long to collect.")
@click.option("-f", "--follow", is_flag=True, default=False, help="Collect until Ctrl-C (no duration).")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: readable lines as the app's console logger writes them; json: one JSON record a line.")
@stream_options
@click.pass_context
def logs(ctx: click.Context, pod: str, level: str | None, duration: float, follow: bool, fmt: str,
         **kw: object) -> None:
    """Stream the logs of the .NET process in POD to stdout, as they are written.

    Logs come from the app's ILogger through dotnet-monitor, not from the
    container's stdout. Ctrl-C stops the session gracefully: everything
    received so far is printed, then the command exits with 130.

    \b
    Examples:
      kubectl dotnet-monitor logs web-7d4b9-x2x9z
      kubectl dotnet-monitor logs web-7d4b9-x2x9z --level warning -f
      kubectl dotnet-monitor logs web-7d4b9-x2x9z -o json --duration 2m | jq .Message
    """
    from kubectl_dotnet_monitor.artifacts.requests import logs_spec
    from kubectl_dotnet_monitor.cli.artifact_common import (
        Target,
        run_stream,
        stdout_bytes,
    )

    spec = logs_spec(level, duration, follow, fmt == "json")
    target = Target.take(ctx, pod, kw)
    run_stream(target, spec, stdout_bytes(), **kw)
