"""``kubectl dotnet-monitor processes POD``."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import monitor_options


@click.command()
@click.argument("pod")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table",
              show_default=True, help="Output format.")
@monitor_options
@click.pass_context
def processes(ctx: click.Context, pod: str, fmt: str, **kw: object) -> None:
    """List the .NET processes dotnet-monitor sees in POD.

    PID and UID are what --pid/--uid of the other commands take (UID is unique;
    PIDs repeat across containers). DEFAULT marks the process dotnet-monitor's
    own default rule picks (used by `metrics`).

    \b
    Examples:
      kubectl dotnet-monitor processes web-7d4b9-x2x9z
      kubectl dotnet-monitor processes web-7d4b9-x2x9z -o json
    """
    from kubectl_dotnet_monitor.artifacts.render import process_rows, table
    from kubectl_dotnet_monitor.cli.artifact_common import Target, emit_structured
    from kubectl_dotnet_monitor.monitor.processes import process_query

    target = Target.take(ctx, pod, kw)
    session = target.open()
    try:
        found = session.monitor.processes()
        detailed = []
        for proc in found:
            info = session.monitor.request_json("GET", "/process", process_query(proc)) or {}
            detailed.append({**info, **proc})
    finally:
        session.close()
    if fmt != "table":
        emit_structured(detailed, fmt)
        return
    if not detailed:
        click.echo("dotnet-monitor sees no .NET process in this pod", err=True)
        return
    click.echo(table(["PID", "UID", "NAME", "DEFAULT", "COMMAND"], process_rows(detailed)))
