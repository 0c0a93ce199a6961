"""``kubectl dotnet-monitor dump TARGET`` (a pod, one pod of a workload, or many pods)."""

from __future__ import annotations

from collections.abc import Callable

import click

from kubectl_dotnet_monitor.cli.artifact_common import file_artifact_options


@click.command()
@click.option("--type", "dump_type", default="WithHeap", show_default=True, metavar="TYPE",
              help="Mini, Triage, WithHeap or Full (any case).")
@click.option("-y", "--yes", is_flag=True, default=False,
              help="Do not ask before a WithHeap/Full dump of a pod with a liveness probe.")
@file_artifact_options
@click.pass_context
def dump(ctx: click.Context, dump_type: str, yes: bool, **kw: object) -> None:
    """Save a memory dump of the .NET process in a pod, or in many pods at once.

    TARGET is a pod (POD or pod/NAME) or a workload (deploy/NAME, sts/NAME,
    ds/NAME, rs/NAME; with --all every running pod of it), or -l SELECTOR: each
    pod's dump goes to its own file, at most --parallel (8) at a time, with a
    summary table at the end. The runtime writes the dump while the process is frozen; bytes flow only
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
      kubectl dotnet-monitor dump deploy/web --all --type mini -o dumps/
    """
    from kubectl_dotnet_monitor.artifacts.requests import HEAVY_DUMPS, dump_spec
    from kubectl_dotnet_monitor.cli.artifact_common import Target, run_file_artifact

    target = Target.take(ctx, None, kw)
    spec = dump_spec(dump_type)
    kind = spec.query["type"]
    before = None
    if kind in HEAVY_DUMPS and not yes:
        def before(conn: object, client: object, targets: object) -> None:
            _check_liveness(kind, client, targets, target.app_container)
    run_file_artifact(target, spec, before=before, **kw)


def _check_liveness(kind: str, client: object, targets: object, app_container: str | None) -> None:
    """Before a heavy dump: ask once when any selected pod's app container has a livenessProbe."""
    from kubectl_dotnet_monitor.artifacts.requests import liveness_risk
    from kubectl_dotnet_monitor.cli.options import say
    from kubectl_dotnet_monitor.kube.pods import get_pod

    risky = []
    for pod in targets.pods:
        container = liveness_risk(get_pod(client, targets.namespace, pod), app_container)
        if container:
            risky.append((pod, container))
    if not risky:
        return
    pod, container = risky[0]
    more = f" (and {len(risky) - 1} more of the {len(targets.pods)} pods)" if len(risky) > 1 else ""
    _confirm_freeze(kind, targets.namespace, pod + more, container, say)


def _confirm_freeze(kind: str, namespace: str, pod: str, container: str, say: Callable[[str], None]) -> None:
    """Ask on a terminal; without one, refuse (the user must say --yes)."""
    import sys

    message = (f"a {kind} dump freezes the process while it is written (seconds to minutes); container "
               f"{container!r} of pod {namespace}/{pod} has a livenessProbe that may fail meanwhile and "
               "restart the container, losing the dump (dotnet-monitor #673)")
    hint = "pass --yes to dump anyway, or use --type Mini or Triage"
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        from kubectl_dotnet_monitor.errors import UsageError

        raise UsageError(message, hint=hint)
    say(f"warning: {message}")
    if not click.confirm("Dump anyway?", default=False, err=True):
        from kubectl_dotnet_monitor.errors import PluginError

        raise PluginError("no dump taken (declined)", hint=hint)
