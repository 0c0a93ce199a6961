"""``kubectl dotnet-monitor env POD --show-secrets``."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import pod_options


@click.command()
@click.argument("pod")
@click.option("--show-secrets", is_flag=True, default=False,
              help="Required: confirm that you want to print the environment, secrets included.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json", "yaml"]), default="text",
              show_default=True, help="text: KEY=value lines, sorted.")
@pod_options
@click.pass_context
def env(ctx: click.Context, pod: str, show_secrets: bool, fmt: str, **kw: object) -> None:
    """Print the environment variables of the .NET process in POD.

    A process's environment usually holds secrets (connection strings, API
    keys, tokens injected from Kubernetes Secrets), and they are printed in
    clear: the command refuses unless --show-secrets says you mean it.

    POD is one pod (POD or pod/NAME); a workload (deploy/NAME...) is refused as
    a usage error: this command reads one monitor.

    \b
    Examples:
      kubectl dotnet-monitor env web-7d4b9-x2x9z --show-secrets
      kubectl dotnet-monitor env web-7d4b9-x2x9z --show-secrets -o json | jq -r .ASPNETCORE_ENVIRONMENT
    """
    from kubectl_dotnet_monitor.errors import UsageError

    if not show_secrets:
        raise UsageError(
            "the environment of a process usually contains secrets (connection strings, keys, tokens) "
            "and would be printed in clear",
            "pass --show-secrets to print it anyway")
    from kubectl_dotnet_monitor.artifacts.render import env_lines
    from kubectl_dotnet_monitor.cli.artifact_common import Target, emit_structured
    from kubectl_dotnet_monitor.collect import process_target

    target = Target.take(ctx, pod, kw)
    session = target.open()
    try:
        _, query = process_target(session.monitor, target.selector())
        doc = session.monitor.request_json("GET", "/env", query) or {}
    finally:
        session.close()
    if fmt != "text":
        emit_structured(doc, fmt)
        return
    if doc:
        click.echo("\n".join(env_lines(doc)))
