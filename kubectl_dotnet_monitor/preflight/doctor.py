"""``doctor POD``: gather the facts (reads, access reviews and server-side dry runs only) and run
the checks in ``checks`` in the order a user would fix them: cluster, permissions, pod, app
container, admission, monitors, the monitor's API. Never changes anything in the cluster.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from kubectl_dotnet_monitor.errors import ForbiddenError, NotFoundError, PluginError
from kubectl_dotnet_monitor.preflight.checks import (
    PERMISSIONS,
    CheckResult,
    DoctorReport,
    check_app_container,
    check_cluster_version,
    check_ephemeral_api,
    check_monitor_api,
    check_monitors,
    check_permission,
    check_pod_phase,
    check_pod_security,
    check_processes,
    check_user_ids,
    cluster_minor,
    from_error,
    skipped,
)

if TYPE_CHECKING:
    from kubectl_dotnet_monitor.inject.spec import InjectionPlan, MonitorOptions
    from kubectl_dotnet_monitor.kube.api import KubeClient
    from kubectl_dotnet_monitor.kube.config import ClusterConnection

SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def run_doctor(conn: ClusterConnection, client: KubeClient, namespace: str, pod_name: str, *, app_container: str | None = None,
               probe_monitor: bool = True) -> DoctorReport:
    """Every check for ``namespace/pod_name``. Later checks are skipped (and say why) when an
    earlier failure makes them meaningless; nothing raises for a failed check."""
    report = DoctorReport(namespace, pod_name)
    add = report.results.append

    # -- the cluster ---------------------------------------------------------------------------
    try:
        version = client.version()
    except PluginError as exc:
        add(from_error("API server", exc))
        return report  # nothing else can be asked
    add(check_cluster_version(version))
    minor = cluster_minor(version)
    try:
        api = check_ephemeral_api(client.get("/api/v1"))
    except PluginError as exc:
        api = from_error("ephemeral containers API", exc)
    add(api)

    # -- permissions -------------------------------------------------------------------------
    allowed: dict[str, bool] = {}
    for permission in PERMISSIONS:
        try:
            review = client.post(SSAR_PATH, permission.review(namespace, pod_name))
            status = review.get("status") or {}
            result = check_permission(permission, status, namespace, minor)
            allowed[permission.label] = bool(status.get("allowed"))
        except PluginError as exc:
            result = check_permission(permission, None, namespace, minor, error=exc)
            allowed[permission.label] = False
        add(result)

    # -- the pod -----------------------------------------------------------------------------
    from kubectl_dotnet_monitor.kube.pods import get_pod

    try:
        pod = get_pod(client, namespace, pod_name)
    except (NotFoundError, ForbiddenError) as exc:
        add(from_error("pod", exc))
        return report
    phase = check_pod_phase(pod)
    add(phase)

    from kubectl_dotnet_monitor.inject.spec import MonitorOptions, plan_injection

    options = MonitorOptions(app_container=app_container, no_auth=True)
    plan = plan_error = None
    try:
        plan = plan_injection(pod, options)
    except PluginError as exc:
        plan_error = exc
    add(check_app_container(pod, plan, plan_error))
    if plan is not None and plan.action == "create":
        add(check_user_ids(pod, plan))

    # -- admission: a dry run of the container the plugin would send ---------------------------
    reason = None
    if plan is None:
        reason = "needs an app container the monitor can reach (see above)"
    elif plan.action != "create":
        reason = f"monitor {plan.container_name!r} is already in the pod; nothing new to admit"
    elif not phase.ok:
        reason = "the pod is not running"
    elif not api.ok:
        reason = "the ephemeral containers API is missing"
    elif not allowed.get("patch pods/ephemeralcontainers"):
        reason = "a dry run needs the same permission (patch pods/ephemeralcontainers) as the real change"
    outcome = None
    if reason is None:
        outcome = _dry_run_monitor(client, pod, plan, options)
    add(check_pod_security(outcome, reason_skipped=reason))

    # -- monitors and their API ----------------------------------------------------------------
    add(check_monitors(pod))
    if probe_monitor:
        for result in _probe_monitor(conn, client, pod, allowed):
            add(result)
    return report


def _dry_run_monitor(client: KubeClient, pod: dict, plan: InjectionPlan,
                     options: MonitorOptions) -> PluginError | None:
    """Send the monitor container with ``dryRun=All``: validation, Pod Security and webhooks run,
    nothing is stored. A throwaway key stands in for the real one."""
    from kubectl_dotnet_monitor.inject.apikey import generate_api_key
    from kubectl_dotnet_monitor.inject.injector import send_patch
    from kubectl_dotnet_monitor.inject.spec import build_monitor_container

    key = generate_api_key()
    try:
        container = build_monitor_container(pod, replace(
            options, no_auth=False, api_key_subject=key.subject, api_key_public=key.public_key_config(),
            container_name=plan.container_name, key_secret_name=f"{plan.container_name}-dry-run"))
        send_patch(client, pod, container, dry_run=True)
    except PluginError as exc:
        return exc
    return None


def _probe_monitor(conn: ClusterConnection, client: KubeClient, pod: dict, allowed: dict[str, bool]) -> list[CheckResult]:
    """``/info`` and ``/processes`` of the running monitor, through the plugin's own tunnel and token."""
    from kubectl_dotnet_monitor.inject.spec import DEFAULT_PORT, find_monitors

    running = [m for m in find_monitors(pod) if m.state == "running"]
    running.sort(key=lambda m: not m.managed)  # ours first
    if not running:
        why = "no monitor is running in the pod"
        return [skipped("monitor reachable", why), skipped(".NET processes", why)]
    if not allowed.get("get pods/portforward"):
        why = "needs get pods/portforward"
        return [skipped("monitor reachable", why), skipped(".NET processes", why)]
    monitor = running[0]
    meta = pod.get("metadata") or {}
    api = None
    try:
        from kubectl_dotnet_monitor.inject.injector import MonitorEndpoint
        from kubectl_dotnet_monitor.session import monitor_client

        endpoint = MonitorEndpoint(
            namespace=meta.get("namespace"), pod=meta.get("name"), container=monitor.name,
            port=monitor.port or DEFAULT_PORT, no_auth=monitor.no_auth, created=False, pod_object=pod)
        api = monitor_client(conn, client, endpoint)
        info = api.info()
        results = [check_monitor_api(info, None, monitor.name)]
        try:
            processes = api.processes()
        except PluginError as exc:
            results.append(check_processes(None, exc, monitor.name))
        else:
            results.append(check_processes(processes, None, monitor.name))
        return results
    except PluginError as exc:
        return [check_monitor_api(None, exc, monitor.name),
                skipped(".NET processes", "the monitor is not reachable")]
    finally:
        if api is not None:
            api.close()  # the JSON exchanges keep a tunnel open for a next request that never comes
