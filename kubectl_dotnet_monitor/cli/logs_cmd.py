"""``kubectl dotnet-monitor logs TARGET`` (a pod, one pod of a workload, or many pods)."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import duration_option, stream_options


@click.command()
@click.option("--level", default=None, metavar="LEVEL",
              help="Lowest level: Trace, Debug, Information, Warning, Error, Critical (any case; "
                   "default: the app's own log filters).")
@duration_option("30s", "How long to collect.")
@click.option("-f", "--follow", is_flag=True, default=False, help="Collect until Ctrl-C (no duration).")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: readable lines as the app's console logger writes them; json: one JSON record a line.")
@stream_options
@click.pass_context
def logs(ctx: click.Context, level: str | None, duration: float, follow: bool, fmt: str,
         **kw: object) -> None:
    """Stream the logs of the .NET process in a pod (or many) to stdout, as they are written.

    Logs come from the app's ILogger through dotnet-monitor, not from the
    container's stdout. Ctrl-C stops the session gracefully: everything
    received so far is printed, then the command exits with 130.

    TARGET is a pod (POD or pod/NAME) or a workload (deploy/NAME, sts/NAME,
    ds/NAME, rs/NAME; with --all every running pod of it), or -l SELECTOR:
    every pod is streamed at once and each line is prefixed [pod/NAME], like
    `kubectl logs --prefix`.

    \b
    Examples:
      kubectl dotnet-monitor logs web-7d4b9-x2x9z
      kubectl dotnet-monitor logs web-7d4b9-x2x9z --level warning -f
      kubectl dotnet-monitor logs web-7d4b9-x2x9z -o json --duration 2m | jq .Message
      kubectl dotnet-monitor logs -l app=web --level warning -f
    """
    from kubectl_dotnet_monitor.artifacts.requests import logs_spec
    from kubectl_dotnet_monitor.cli.artifact_common import (
        Target,
        passthrough,
        run_stream,
    )

    spec = logs_spec(level, duration, follow, fmt == "json")
    target = Target.take(ctx, None, kw)
    run_stream(target, spec, passthrough, **kw)
