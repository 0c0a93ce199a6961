"""``kubectl dotnet-monitor inject TARGET``: one pod, one pod of a workload, or many pods."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import click

from kubectl_dotnet_monitor.cli.options import (
    build_inject_request,
    inject_options,
    kube_flags,
    kube_options,
    pods_options,
    say,
)


@click.command()
@pods_options("min(8, pods)")
@inject_options
@click.option("--dry-run", is_flag=True, default=False,
              help="Print the ephemeral container that would be sent, as YAML, and change nothing.")
@kube_options
@click.pass_context
def inject(ctx: click.Context, target: str | None, label_selector: str | None, all_pods: bool,
           parallel: int | None, app_container: str | None, image: str | None, config_file: str | None,
           rules_file: str | None, no_auth: bool, wait_timeout: float, dry_run: bool, **flags: object) -> None:
    """Inject dotnet-monitor into a pod as an ephemeral container (once per pod lifetime).

    TARGET is a pod (POD or pod/NAME) or a workload (deploy/NAME, sts/NAME,
    ds/NAME, rs/NAME): a workload means one of its pods, picked as `kubectl logs`
    picks it; with --all, every running pod of it. -l SELECTOR means every running
    pod matching. Several pods are injected in parallel (--parallel N) with a
    summary table at the end; the exit code is 11 when some pods failed.

    The monitor shares the app container's diagnostic socket and volume, binds
    localhost only, runs as the app's user under a restricted security context,
    and accepts only a fresh API key whose private half is kept in a Secret owned
    by the pod. A monitor already running in the pod is reused. Prints the
    monitor's container name on stdout (with several pods: `pod/NAME CONTAINER`).

    --rules FILE gives the monitor collection rules and egress (see
    `kubectl dotnet-monitor rules`); they need a pod prepared for Listen mode
    (`kubectl dotnet-monitor prepare`).

    \b
    Examples:
      kubectl dotnet-monitor inject web-7d4b9-x2x9z
      kubectl dotnet-monitor inject web-7d4b9-x2x9z -n shop -c api
      kubectl dotnet-monitor inject web-7d4b9-x2x9z --dry-run
      kubectl dotnet-monitor inject deploy/web --all --rules high-cpu.yaml
      kubectl dotnet-monitor inject -l app=web --rules high-cpu.yaml --parallel 4
    """
    from kubectl_dotnet_monitor.kube.targets import check_target_args, resolve_targets
    from kubectl_dotnet_monitor.session import connect

    check_target_args(target, label_selector)
    request = build_inject_request(app_container, image, config_file, no_auth, wait_timeout, rules_file)
    conn, client = connect(kube_flags(ctx, **flags))
    targets = resolve_targets(client, conn.namespace, target, label_selector, all_pods)
    for note in targets.notes:
        say(note)
    if dry_run:
        if targets.many:
            from kubectl_dotnet_monitor.errors import UsageError

            raise UsageError(f"--dry-run shows the container for one pod, but {targets.described} selected "
                             f"{len(targets.pods)}", hint="give one pod (or the workload without --all)")
        click.echo(_dry_run(client, conn.namespace, targets.pods[0], request), nl=False)
        return
    if not targets.many:
        result = inject_into_pod(conn, client, conn.namespace, targets.pods[0], request, say)
        click.echo(result.container)
        return

    import sys

    from kubectl_dotnet_monitor.fanout import run_many

    client.close()

    def one_pod(job: object) -> InjectResult:
        job.cancel.check()
        job_conn, job_client = job.conn_and_client()
        return inject_into_pod(job_conn, job_client, job.namespace, job.pod, request, job.say, fetch_process=True)

    run_many(targets, one_pod, conn=conn, parallel=parallel, stream=sys.stderr, kind="injection",
             print_result=lambda outcome: click.echo(f"pod/{outcome.pod} {outcome.value.container}"))


@dataclass(frozen=True)
class InjectResult:
    """A monitor that runs and answers in one pod (the fan-out table reads ``process``; no file: FILE is "-")."""

    pod: str
    container: str
    process: dict | None = None  # the default process it sees, when asked for


def inject_into_pod(conn: object, client: object, namespace: str, pod: str, request: object,
                    say: Callable[[str], None], fetch_process: bool = False) -> InjectResult:
    """Ensure a monitor in ``pod`` (with ``request``'s rules), and check that it answers.

    With rules, the pod must offer Listen mode: checked first, with an error naming ``prepare``.
    """
    from kubectl_dotnet_monitor.inject.injector import ensure_monitor
    from kubectl_dotnet_monitor.session import monitor_client

    if request.options.needs_listen_mode:
        _check_rules_can_run(client, namespace, pod, request)
    endpoint = ensure_monitor(client, namespace, pod, request, say=say)
    # Running is not enough: the monitor must answer, with our key (a bad config makes it exit).
    monitor = monitor_client(conn, client, endpoint)
    info = monitor.info()
    say(f"dotnet-monitor {info.get('version', '?')} is running and answering in pod {endpoint.namespace}/{endpoint.pod} "
        f"(container {endpoint.container}, port {endpoint.port}, {str(info.get('diagnosticPortMode', '?')).lower()} mode)")
    process = None
    if fetch_process:
        process = _default_process(monitor)
    return InjectResult(pod=pod, container=endpoint.container, process=process)


def _check_rules_can_run(client: object, namespace: str, pod: str, request: object) -> None:
    """Rules need Listen mode: a pod that cannot give it is refused before anything is sent."""
    from kubectl_dotnet_monitor.inject.injector import check_pod_running
    from kubectl_dotnet_monitor.kube.pods import get_pod
    from kubectl_dotnet_monitor.rules.listen import check_listen_mode

    pod_obj = get_pod(client, namespace, pod)
    check_pod_running(pod_obj)
    check_listen_mode(pod_obj, request.options.app_container)


def _default_process(monitor: object) -> dict | None:
    """The process the monitor would pick (for the summary table); ``None`` when none is connected yet.

    In Listen mode the app connects to a fresh monitor a moment after it starts, so an empty list
    right after injection is normal and not an error.
    """
    from kubectl_dotnet_monitor.errors import PluginError

    try:
        processes = monitor.processes()
    except PluginError:
        return None
    chosen = [p for p in processes if p.get("isDefault")] or processes
    return chosen[0] if len(chosen) == 1 else None


def _dry_run(client: object, namespace: str, pod: str, request: object) -> str:
    """The container ``inject`` would send, with a placeholder key Secret name (nothing is created)."""
    import yaml

    from kubectl_dotnet_monitor.inject.apikey import generate_api_key
    from kubectl_dotnet_monitor.inject.injector import (
        check_pod_running,
        render_container,
    )
    from kubectl_dotnet_monitor.inject.spec import plan_injection
    from kubectl_dotnet_monitor.kube.pods import get_pod

    pod_obj = get_pod(client, namespace, pod)
    check_pod_running(pod_obj)
    if request.options.needs_listen_mode:
        from kubectl_dotnet_monitor.rules.listen import check_listen_mode

        check_listen_mode(pod_obj, request.options.app_container)
    plan = plan_injection(pod_obj, request.options)
    for warning in plan.warnings:
        say(f"warning: {warning}")
    if plan.action != "create":
        from dataclasses import replace

        from kubectl_dotnet_monitor.inject.spec import next_monitor_name

        say(f"a monitor ({plan.container_name}, {plan.existing.describe_state()}) is already in the pod: "
            "inject would reuse it and send nothing; showing what a new one would look like")
        plan = replace(plan, container_name=next_monitor_name(pod_obj))
    key = None if request.options.no_auth else generate_api_key()
    container = render_container(
        pod_obj, plan, request,
        key_secret_name=None if key is None else f"{pod}-dotnet-monitor-<generated>",
        subject=key.subject if key else None,
        public_key=key.public_key_config() if key else None,
    )
    return yaml.safe_dump(container, sort_keys=False)

