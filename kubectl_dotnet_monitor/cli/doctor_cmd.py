"""``kubectl dotnet-monitor doctor POD``: every prerequisite, passed or failed, with the fix."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.options import kube_flags, kube_options


@click.command()
@click.argument("pod")
@click.option("-c", "--container", metavar="NAME", default=None, help="The app container (else the pod's default).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Report format; json for scripts.")
@click.option("--no-probe", is_flag=True, help="Do not open a tunnel to a running monitor.")
@kube_options
@click.pass_context
def doctor(ctx: click.Context, pod: str, container: str | None, output: str, no_probe: bool, **flags: object) -> None:
    """Check everything the plugin needs for POD, and say how to fix what is missing.

    Cluster version and ephemeral-containers API, your permissions (access reviews), Pod Security
    and admission webhooks (a server-side dry run of the monitor container), the pod's phase, the
    app container's diagnostic port, volume and user, monitors already in the pod, and — when one
    runs — whether it answers and sees .NET processes. Changes nothing. Exits 0 when every check
    passes, else with the exit code of the first failure.

    \b
    Examples:
      kubectl dotnet-monitor doctor web-7d9f8c6b5-x2x4q -n shop
      kubectl dotnet-monitor doctor web-7d9f8c6b5-x2x4q -o json | jq '.checks[] | select(.status=="failed")'
    """
    import json
    import sys

    from kubectl_dotnet_monitor.cli.artifact_common import one_pod_name
    from kubectl_dotnet_monitor.kube.api import KubeClient
    from kubectl_dotnet_monitor.kube.config import resolve_connection
    from kubectl_dotnet_monitor.preflight.checks import render_human
    from kubectl_dotnet_monitor.preflight.doctor import run_doctor

    name = one_pod_name(pod, f"`{ctx.command_path}`")
    conn = resolve_connection(kube_flags(ctx, **flags))
    with KubeClient(conn) as client:
        report = run_doctor(conn, client, conn.namespace, name, app_container=container,
                            probe_monitor=not no_probe)
    if output == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        encoding = getattr(sys.stdout, "encoding", None) or "ascii"
        try:
            "✔✘".encode(encoding)
            unicode = True
        except (LookupError, UnicodeEncodeError):
            unicode = False
        click.echo(render_human(report, unicode=unicode), nl=False)
    if report.exit_code:
        from kubectl_dotnet_monitor.errors import PluginError

        failures = sum(1 for r in report.results if not r.ok)
        error = PluginError(f"{failures} check{'s' if failures > 1 else ''} failed for pod "
                            f"{report.namespace}/{report.pod}; the fixes are listed above")
        error.exit_code = report.exit_code  # the first failure's code: usually the root cause
        raise error
