"""``kubectl dotnet-monitor processes TARGET`` (a pod, one pod of a workload, or many pods)."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import monitor_options
from kubectl_dotnet_monitor.cli.options import pods_options


@click.command()
@pods_options("8")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table",
              show_default=True, help="Output format.")
@monitor_options
@click.pass_context
def processes(ctx: click.Context, fmt: str, **kw: object) -> None:
    """List the .NET processes dotnet-monitor sees in a pod, or in many pods.

    PID and UID are what --pid/--uid of the other commands take (UID is unique;
    PIDs repeat across containers). DEFAULT marks the process dotnet-monitor's
    own default rule picks (used by `metrics`). With a workload and --all, or
    -l SELECTOR, the table gets a POD column (-o json/yaml: a "pod" field).

    \b
    Examples:
      kubectl dotnet-monitor processes web-7d4b9-x2x9z
      kubectl dotnet-monitor processes web-7d4b9-x2x9z -o json
      kubectl dotnet-monitor processes deploy/web --all
    """
    from kubectl_dotnet_monitor.artifacts.render import process_rows, table
    from kubectl_dotnet_monitor.cli.artifact_common import (
        Target,
        emit_structured,
        for_each_pod,
    )
    from kubectl_dotnet_monitor.monitor.processes import process_query

    target = Target.take(ctx, None, kw)

    def one(turn: object) -> tuple[str, bool, list[dict]]:
        session = turn.open()
        try:
            found = session.monitor.processes()
            return turn.pod, turn.many, [
                {**(session.monitor.request_json("GET", "/process", process_query(p)) or {}), **p} for p in found]
        finally:
            session.close()

    values = for_each_pod(target, one, kind="processes", streaming=True)
    many = any(pod_many for _, pod_many, _ in values)  # --all/-l: a POD column even for one match
    detailed = [{"pod": pod, **proc} if many else proc for pod, _, procs in values for proc in procs]
    if fmt != "table":
        emit_structured(detailed, fmt)
        return
    if not detailed:
        click.echo("dotnet-monitor sees no .NET process in " + ("these pods" if many else "this pod"), err=True)
        return
    if not many:
        click.echo(table(["PID", "UID", "NAME", "DEFAULT", "COMMAND"], process_rows(detailed)))
        return
    rows = [[proc["pod"], *row] for proc, row in zip(detailed, process_rows(detailed))]
    click.echo(table(["POD", "PID", "UID", "NAME", "DEFAULT", "COMMAND"], rows))
