"""``kubectl dotnet-monitor info POD``."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import monitor_options


@click.command()
@click.argument("pod")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json", "yaml"]), default="text",
              show_default=True, help="Output format.")
@monitor_options
@click.pass_context
def info(ctx: click.Context, pod: str, fmt: str, **kw: object) -> None:
    """Show the dotnet-monitor in POD: version, runtime, diagnostic port mode, capabilities.

    Capabilities (dotnet-monitor 10+) tell which features are on: exceptions,
    parameters, call_stacks, metrics, http_egress. Listen mode is needed for
    stacks, exceptions, parameters and collection rules.

    POD is one pod (POD or pod/NAME); a workload (deploy/NAME...) is refused as
    a usage error: this command reads one monitor.

    \b
    Examples:
      kubectl dotnet-monitor info web-7d4b9-x2x9z
      kubectl dotnet-monitor info web-7d4b9-x2x9z -o json
    """
    from kubectl_dotnet_monitor.artifacts.render import info_lines
    from kubectl_dotnet_monitor.cli.artifact_common import Target, emit_structured

    target = Target.take(ctx, pod, kw)
    session = target.open()
    try:
        doc = session.monitor.info()
    finally:
        session.close()
    if fmt != "text":
        emit_structured(doc, fmt)
        return
    click.echo(f"Pod:              {session.namespace}/{target.pod} (container {session.endpoint.container})")
    click.echo("\n".join(info_lines(doc)))
