"""``kubectl dotnet-monitor dump POD``."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import file_artifact_options


@click.command()
@click.argument("pod")
@click.option("--type", "dump_type", default="WithHeap", show_default=True, metavar="TYPE",
              help="Mini, Triage, WithHeap or Full (any case).")
@click.option("-y", "--yes", is_flag=True, default=False,
              help="Do not ask before a WithHeap/Full dump of a pod with a liveness probe.")
@file_artifact_options
@click.pass_context
def dump(ctx: click.Context, pod: str, dump_type: str, yes: bool, **kw: object) -> None:
    """Save a memory dump of the .NET process in POD.

    The runtime writes the dump while the process is frozen; bytes flow only
    once it is complete (seconds to minutes for a big heap). Saved to
    <pod>_<pid>_<UTC time>.dmp in the current directory (0600). Before a
    WithHeap or Full dump of a pod whose app container has a livenessProbe you
    are asked to confirm: the frozen process may miss probes and be restarted
    (dotnet-monitor #673). --yes skips the question; without a terminal it is
    required.

    \b
    Examples:
      kubectl dotnet-monitor dump web-7d4b9-x2x9z
      kubectl dotnet-monitor dump web-7d4b9-x2x9z --type mini -o dumps/
      kubectl dotnet-monitor dump web-7d4b9-x2x9z --type full --yes --egress blobs
    """
    from kubectl_dotnet_monitor.artifacts.requests import (
        HEAVY_DUMPS,
        dump_spec,
        liveness_risk,
    )
    from kubectl_dotnet_monitor.cli.artifact_common import Target, run_file_artifact
    from kubectl_dotnet_monitor.cli.options import say
    from kubectl_dotnet_monitor.kube.pods import get_pod
    from kubectl_dotnet_monitor.session import connect

    target = Target.take(ctx, pod, kw)
    spec = dump_spec(dump_type)
    kind = spec.query["type"]
    conn_and_client = None
    if kind in HEAVY_DUMPS and not yes:
        if kw.get("output") is not None and not kw.get("egress"):
            from kubectl_dotnet_monitor.artifacts.files import resolve_output

            resolve_output(kw["output"], "placeholder.dmp", overwrite=bool(kw.get("overwrite")))
        conn_and_client = connect(target.flags())
        conn, client = conn_and_client
        pod_obj = get_pod(client, conn.namespace, target.pod)
        container = liveness_risk(pod_obj, target.app_container)
        if container:
            _confirm_freeze(kind, conn.namespace, target.pod, container, say)
    session = target.open(conn_and_client) if conn_and_client else None
    run_file_artifact(target, spec, session=session, **kw)


def _confirm_freeze(kind: str, namespace: str, pod: str, container: str, say: object) -> None:
    import sys

    message = (f"a {kind} dump freezes the process while it is written (seconds to minutes); container "
               f"{container!r} of pod {namespace}/{pod} has a livenessProbe that may fail meanwhile and "
               "restart the container, losing the dump (dotnet-monitor #673)")
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise click.UsageError(f"{message}. Pass --yes to dump anyway, or --type Mini/Triage.")
    say(f"warning: {message}")
    if not click.confirm("Dump anyway?", default=False, err=True):
        from kubectl_dotnet_monitor.errors import PluginError

        raise PluginError("no dump taken (declined)")
