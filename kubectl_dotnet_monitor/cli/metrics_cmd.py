"""``kubectl dotnet-monitor metrics POD``."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import monitor_options


@click.command()
@click.argument("pod")
@monitor_options
@click.pass_context
def metrics(ctx: click.Context, pod: str, **kw: object) -> None:
    """Print dotnet-monitor's Prometheus metrics snapshot for POD on stdout.

    dotnet-monitor's /metrics always describes its *default* process (the
    image's rule: pid 1); --pid/--uid cannot choose another one. It is the same
    document Prometheus would scrape from the metrics port (52325, bound to the
    pod's localhost by the plugin); here it is read through the artifact port.

    \b
    Examples:
      kubectl dotnet-monitor metrics web-7d4b9-x2x9z
      kubectl dotnet-monitor metrics web-7d4b9-x2x9z | grep gc_heap
    """
    from kubectl_dotnet_monitor.artifacts.requests import metrics_spec
    from kubectl_dotnet_monitor.cli.artifact_common import Target
    from kubectl_dotnet_monitor.cli.options import say
    from kubectl_dotnet_monitor.collect import fetch_artifact

    target = Target.take(ctx, pod, kw)
    session = target.open()
    try:
        _, body = fetch_artifact(session, metrics_spec(), None, say=say)
    finally:
        session.close()
    if not body.strip():
        say("dotnet-monitor returned no metrics: it has no default process (its rule is \"pid 1\"), or no "
            "counter interval has passed yet; try again in a few seconds, or use livemetrics --pid/--uid")
        return
    click.echo(body.decode("utf-8", "replace"), nl=not body.endswith(b"\n"))
