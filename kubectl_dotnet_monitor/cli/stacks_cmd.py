"""``kubectl dotnet-monitor stacks POD``."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import (
    file_artifact_options,
    in_process_option,
)


@click.command()
@click.argument("pod")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "speedscope"]), default="text",
              show_default=True, help="text (readable), json, or speedscope (open in speedscope.app).")
@in_process_option
@file_artifact_options
@click.pass_context
def stacks(ctx: click.Context, pod: str, fmt: str, **kw: object) -> None:
    """Capture the managed call stacks of every thread of the .NET process in POD.

    Printed on stdout unless -o names a file or directory. Needs dotnet-monitor's
    in-process features (Listen mode; see --enable-in-process-features): when
    they are off the command says so and how to turn them on.

    \b
    Examples:
      kubectl dotnet-monitor stacks web-7d4b9-x2x9z --enable-in-process-features
      kubectl dotnet-monitor stacks web-7d4b9-x2x9z --format speedscope -o stacks/
    """
    from kubectl_dotnet_monitor.artifacts.requests import stacks_spec
    from kubectl_dotnet_monitor.cli.artifact_common import Target, run_file_artifact

    spec = stacks_spec(fmt)
    target = Target.take(ctx, pod, kw)
    if kw.get("output") is None and not kw.get("egress"):
        _print_stacks(target, spec, kw)
        return
    run_file_artifact(target, spec, **kw)


def _print_stacks(target: object, spec: object, kw: dict) -> None:
    from kubectl_dotnet_monitor.cli.artifact_common import transfer_options
    from kubectl_dotnet_monitor.cli.options import say
    from kubectl_dotnet_monitor.collect import fetch_artifact

    transfer = transfer_options(kw["idle_timeout"], kw["wait_when_busy"], kw["quiet"])
    session = target.open()
    try:
        _, body = fetch_artifact(session, spec, target.selector(), transfer, say=say)
    finally:
        session.close()
    click.echo(body.decode("utf-8", "replace"), nl=not body.endswith(b"\n"))
