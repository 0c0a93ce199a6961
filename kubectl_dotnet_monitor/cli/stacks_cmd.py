"""``kubectl dotnet-monitor stacks TARGET`` (a pod, one pod of a workload, or many pods)."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import (
    file_artifact_options,
    in_process_option,
)


@click.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json", "speedscope"]), default="text",
              show_default=True, help="text (readable), json, or speedscope (open in speedscope.app).")
@in_process_option
@file_artifact_options
@click.pass_context
def stacks(ctx: click.Context, fmt: str, **kw: object) -> None:
    """Capture the managed call stacks of every thread of the .NET process in a pod (or many).

    Printed on stdout unless -o names a file or directory. TARGET is a pod, a
    workload (deploy/NAME... with --all: every running pod) or -l SELECTOR; with
    several pods each line on stdout is prefixed [pod/NAME], or -o DIR/ saves one
    file per pod. Needs dotnet-monitor's
    in-process features (Listen mode; see --enable-in-process-features): when
    they are off the command says so and how to turn them on.

    \b
    Examples:
      kubectl dotnet-monitor stacks web-7d4b9-x2x9z --enable-in-process-features
      kubectl dotnet-monitor stacks web-7d4b9-x2x9z --format speedscope -o stacks/
      kubectl dotnet-monitor stacks -l app=web --format speedscope -o stacks/
    """
    from kubectl_dotnet_monitor.artifacts.requests import stacks_spec
    from kubectl_dotnet_monitor.cli.artifact_common import Target, run_file_artifact

    spec = stacks_spec(fmt)
    target = Target.take(ctx, None, kw)
    if kw.get("output") is None and not kw.get("egress"):
        _print_stacks(target, spec, kw)
        return
    run_file_artifact(target, spec, **kw)


def _print_stacks(target: object, spec: object, kw: dict) -> None:
    from kubectl_dotnet_monitor.cli.artifact_common import run_fetch, transfer_options

    def emit(turn: object, process: object, body: bytes, out: object) -> None:
        out(body if body.endswith(b"\n") or not body else body + b"\n")

    run_fetch(target, spec, emit, transfer=transfer_options(kw["idle_timeout"], kw["wait_when_busy"], kw["quiet"]))
