"""``kubectl dotnet-monitor exceptions TARGET`` (a pod, one pod of a workload, or many pods)."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import in_process_option, stream_options


@click.command()
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: readable; json: one JSON record per exception.")
@in_process_option
@stream_options
@click.pass_context
def exceptions(ctx: click.Context, fmt: str, **kw: object) -> None:
    """List the exceptions the .NET process in a pod has thrown (dotnet-monitor's recorded history).

    A snapshot: what the monitor recorded since it started, then the command
    ends. Needs dotnet-monitor's in-process features (Listen mode; see
    --enable-in-process-features): when they are off the command says so.

    TARGET is a pod (POD or pod/NAME), a workload (deploy/NAME... with --all:
    every running pod of it) or -l SELECTOR; with several pods every pod runs at
    once and each line is prefixed [pod/NAME].

    \b
    Examples:
      kubectl dotnet-monitor exceptions web-7d4b9-x2x9z --enable-in-process-features
      kubectl dotnet-monitor exceptions web-7d4b9-x2x9z -o json | jq .typeName
    """
    from kubectl_dotnet_monitor.artifacts.requests import exceptions_spec
    from kubectl_dotnet_monitor.cli.artifact_common import (
        Target,
        passthrough,
        run_stream,
    )

    spec = exceptions_spec(fmt == "json")
    target = Target.take(ctx, None, kw)
    run_stream(target, spec, passthrough, **kw)
