"""``kubectl dotnet-monitor operations list|get|cancel|stop POD``."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import existing_monitor_options


@click.group()
def operations() -> None:
    """Inspect and end the monitor's operations (every artifact request is one).

    Operations of egressed artifacts tell where the artifact went; running
    traces, logs, live metrics and parameter captures can be stopped (the
    artifact stays valid) and any running operation cancelled. These commands
    never inject a monitor. They work on one pod (POD or pod/NAME); a workload
    (deploy/NAME...) is refused as a usage error.

    \b
    Examples:
      kubectl dotnet-monitor operations list web-7d4b9-x2x9z
      kubectl dotnet-monitor operations stop web-7d4b9-x2x9z 1f0c2a4e-...
    """


def _session(ctx: click.Context, pod: str, kw: dict) -> object:
    from kubectl_dotnet_monitor.cli.artifact_common import Target

    return Target.take(ctx, pod, kw).open(allow_inject=False)


@operations.command("list")
@click.argument("pod")
@click.option("--pid", type=int, default=None, help="Only operations of this process id.")
@click.option("--uid", default=None, metavar="UID", help="Only operations of this runtime instance.")
@click.option("--process-name", default=None, metavar="NAME", help="Only operations of processes of this name.")
@click.option("--tags", default=None, metavar="LIST", help="Only operations carrying all these tags (comma list).")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table",
              show_default=True, help="Output format.")
@existing_monitor_options
@click.pass_context
def list_operations(ctx: click.Context, pod: str, pid: int | None, uid: str | None, process_name: str | None,
                    tags: str | None, fmt: str, **kw: object) -> None:
    """List the operations of the monitor in POD (oldest first).

    \b
    Example:
      kubectl dotnet-monitor operations list web-7d4b9-x2x9z --pid 1
    """
    from kubectl_dotnet_monitor.artifacts.render import operation_rows, table
    from kubectl_dotnet_monitor.cli.artifact_common import emit_structured

    session = _session(ctx, pod, kw)
    try:
        doc = session.monitor.request_json(
            "GET", "/operations", {"pid": pid, "uid": uid, "name": process_name, "tags": tags}) or []
        # The list omits where egressed artifacts went; each finished egress operation says it.
        for op in doc:
            if op.get("egressProviderName") and op.get("status") in ("Succeeded", "Failed"):
                detail = session.monitor.operation(op["operationId"])
                op["resourceLocation"] = detail.get("resourceLocation")
                if detail.get("error"):
                    op["error"] = detail["error"]
    finally:
        session.close()
    if fmt != "table":
        emit_structured(doc, fmt)
    elif not doc:
        click.echo("no operations", err=True)
    else:
        click.echo(table(["ID", "STATUS", "PID", "CREATED", "EGRESS", "STOPPABLE", "TAGS", "LOCATION"],
                         operation_rows(doc)))


@operations.command("get")
@click.argument("pod")
@click.argument("operation_id", metavar="ID")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json", "yaml"]), default="text",
              show_default=True, help="Output format.")
@existing_monitor_options
@click.pass_context
def get_operation(ctx: click.Context, pod: str, operation_id: str, fmt: str, **kw: object) -> None:
    """Show one operation: status, process, egress location or error.

    \b
    Example:
      kubectl dotnet-monitor operations get web-7d4b9-x2x9z 1f0c2a4e-5b7d-4c1e-9a3f-0b2c4d6e8f10
    """
    from kubectl_dotnet_monitor.artifacts.render import operation_lines
    from kubectl_dotnet_monitor.cli.artifact_common import emit_structured

    session = _session(ctx, pod, kw)
    try:
        doc = session.monitor.operation(operation_id)
    finally:
        session.close()
    if fmt != "text":
        emit_structured(doc, fmt)
    else:
        click.echo("\n".join(operation_lines(doc)))


def _end(ctx: click.Context, pod: str, operation_id: str, stop: bool, kw: dict) -> None:
    from kubectl_dotnet_monitor.cli.options import say

    session = _session(ctx, pod, kw)
    try:
        session.monitor.delete_operation(operation_id, stop=stop)
    finally:
        session.close()
    say(f"operation {operation_id}: " + ("stop requested; it ends once the artifact is complete"
                                        if stop else "cancelled"))


@operations.command("cancel")
@click.argument("pod")
@click.argument("operation_id", metavar="ID")
@existing_monitor_options
@click.pass_context
def cancel_operation(ctx: click.Context, pod: str, operation_id: str, **kw: object) -> None:
    """Cancel a running operation (a streamed artifact is cut short).

    \b
    Example:
      kubectl dotnet-monitor operations cancel web-7d4b9-x2x9z 1f0c2a4e-5b7d-4c1e-9a3f-0b2c4d6e8f10
    """
    _end(ctx, pod, operation_id, False, kw)


@operations.command("stop")
@click.argument("pod")
@click.argument("operation_id", metavar="ID")
@existing_monitor_options
@click.pass_context
def stop_operation(ctx: click.Context, pod: str, operation_id: str, **kw: object) -> None:
    """Stop a trace, logs, livemetrics or parameters operation gracefully (its artifact stays valid).

    \b
    Example:
      kubectl dotnet-monitor operations stop web-7d4b9-x2x9z 1f0c2a4e-5b7d-4c1e-9a3f-0b2c4d6e8f10
    """
    _end(ctx, pod, operation_id, True, kw)
