"""``kubectl dotnet-monitor metrics TARGET`` (a pod, one pod of a workload, or many pods)."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import monitor_options
from kubectl_dotnet_monitor.cli.options import pods_options


@click.command()
@pods_options("every pod at once")
@monitor_options
@click.pass_context
def metrics(ctx: click.Context, **kw: object) -> None:
    """Print dotnet-monitor's Prometheus metrics snapshot for a pod (or many) on stdout.

    dotnet-monitor's /metrics always describes its *default* process (the
    image's rule: pid 1); --pid/--uid cannot choose another one. It is the same
    document Prometheus would scrape from the metrics port (52325, bound to the
    pod's localhost by the plugin); here it is read through the artifact port.
    With a workload and --all, or -l SELECTOR, each line is prefixed [pod/NAME].

    \b
    Examples:
      kubectl dotnet-monitor metrics web-7d4b9-x2x9z
      kubectl dotnet-monitor metrics web-7d4b9-x2x9z | grep gc_heap
      kubectl dotnet-monitor metrics -l app=web | grep gc_heap
    """
    from kubectl_dotnet_monitor.artifacts.requests import metrics_spec
    from kubectl_dotnet_monitor.cli.artifact_common import Target, run_fetch

    def emit(turn: object, process: object, body: bytes, out: object) -> None:
        if not body.strip():
            turn.say("dotnet-monitor returned no metrics: it has no default process (its rule is \"pid 1\"), "
                     "or no counter interval has passed yet; try again in a few seconds, or use livemetrics "
                     "--pid/--uid")
            return
        out(body if body.endswith(b"\n") else body + b"\n")

    run_fetch(Target.take(ctx, None, kw), metrics_spec(), emit, with_process=False)
