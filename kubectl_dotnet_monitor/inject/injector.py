"""Make sure a usable dotnet-monitor runs in the pod: reuse, wait for, or inject one.

The side-effecting half of injection. What is sent is decided by the pure ``spec``/``custom``
modules; this module reads the pod, checks the cluster can take an ephemeral container, keeps
the private key (``keystore``), sends the strategic-merge patch to the ``ephemeralcontainers``
subresource (as ``kubectl debug`` does), and waits with a watch until the container runs.
Every API refusal becomes an error that says which permission, policy or field is at fault.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

from kubectl_dotnet_monitor.errors import (
    ForbiddenError,
    NotFoundError,
    NotReadyError,
    UsageError,
)
from kubectl_dotnet_monitor.inject.spec import (
    InjectionPlan,
    MonitorOptions,
    find_monitors,
    plan_injection,
)
from kubectl_dotnet_monitor.kube.pods import (
    container_state,
    container_status,
    get_pod,
    pod_path,
    pod_phase,
)

if TYPE_CHECKING:
    from kubectl_dotnet_monitor.kube.api import KubeClient

#: Waiting reasons after which an ephemeral container will never run (kubernetes-notes §3.4).
_FATAL_WAITING = frozenset(
    {"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
MIN_MINOR = 25  # ephemeral containers are GA (and on by default) from Kubernetes 1.25

Say = Callable[[str], None]


@dataclass(frozen=True)
class InjectRequest:
    """Everything ``inject`` (and any command that injects) was asked for."""

    options: MonitorOptions = field(default_factory=MonitorOptions)
    custom: dict | None = None  # --config, already loaded and checked
    custom_source: str = "--config"
    wait_timeout: float = 120.0
    secret_refs: tuple[tuple[str, str], ...] = ()  # (Secret, key) the rules' env reads via secretKeyRef
    # What needs Listen mode when options.needs_listen_mode is set (named in the error when absent).
    listen_reason: str = "collection rules and in-process features"


@dataclass(frozen=True)
class MonitorEndpoint:
    """A running monitor in a pod, and how to talk to it."""

    namespace: str
    pod: str
    container: str
    port: int
    no_auth: bool
    created: bool  # injected by this command (it may need a moment to bind its port)
    pod_object: dict


def check_pod_running(pod: dict) -> None:
    """A monitor can only be added to (and reached in) a running pod."""
    meta = pod.get("metadata") or {}
    ref = f"{meta.get('namespace')}/{meta.get('name')}"
    phase = pod_phase(pod)
    if meta.get("deletionTimestamp"):
        raise NotReadyError(f"pod {ref} is being deleted", "pick another pod of the workload")
    if phase == "Running":
        return
    if phase == "Pending":
        reasons = _waiting_reasons(pod)
        detail = f" ({', '.join(reasons)})" if reasons else ""
        raise NotReadyError(
            f"pod {ref} is Pending{detail}: its containers are not running yet",
            f"wait until it runs (kubectl get pod {meta.get('name')} -n {meta.get('namespace')} -w), then try again",
        )
    if phase in ("Succeeded", "Failed"):
        raise NotReadyError(
            f"pod {ref} has finished ({phase}); there is no process left to diagnose",
            "pick a running pod",
        )
    raise NotReadyError(f"pod {ref} is in phase {phase}", "check the node it runs on (kubectl describe pod)")


def check_cluster_version(version: dict) -> None:
    """Refuse clusters older than 1.25, where the ephemeralcontainers API is missing or beta."""
    major = _leading_int(version.get("major"))
    minor = _leading_int(version.get("minor"))
    if major is None or minor is None:
        return  # unknown: let the API itself answer
    if (major, minor) < (1, MIN_MINOR):
        raise NotReadyError(
            f"the cluster runs Kubernetes {version.get('gitVersion') or f'{major}.{minor}'}; "
            f"ephemeral containers need 1.{MIN_MINOR} or newer",
            "upgrade the cluster, or run dotnet-monitor as a sidecar in the pod template",
        )


def ensure_monitor(
    client: KubeClient,
    namespace: str,
    pod_name: str,
    request: InjectRequest,
    *,
    allow_inject: bool = True,
    say: Say = lambda _: None,
) -> MonitorEndpoint:
    """Return a running monitor in the pod, injecting one if needed (and allowed).

    ``say`` receives one-line progress messages for stderr. Raises typed errors for every
    refusal: pod state, cluster version, RBAC, Pod Security, validation, image pull, start-up.
    """
    pod = get_pod(client, namespace, pod_name)
    check_pod_running(pod)
    if request.options.needs_listen_mode:
        from kubectl_dotnet_monitor.rules.listen import check_listen_mode

        check_listen_mode(pod, request.options.app_container, what=request.listen_reason)
    plan = plan_injection(pod, request.options)
    if plan.action != "create" or allow_inject:  # warnings about a monitor we will not inject are noise
        for warning in plan.warnings:
            say(f"warning: {warning}")

    if plan.action == "reuse":
        assert plan.existing is not None
        say(f"using dotnet-monitor container {plan.container_name!r} already running in pod {namespace}/{pod_name}")
        return _endpoint(pod, plan, created=False)
    if plan.action == "wait":
        say(f"waiting for dotnet-monitor container {plan.container_name!r} to start in pod {namespace}/{pod_name}")
        pod = wait_until_running(client, pod, plan.container_name, request.wait_timeout, say)
        return _endpoint(pod, plan, created=False)

    if not allow_inject:
        raise NotReadyError(
            f"no dotnet-monitor runs in pod {namespace}/{pod_name}",
            f"inject one first: kubectl dotnet-monitor inject {pod_name} -n {namespace} (the collecting commands "
            "inject one themselves unless given --no-inject)",
        )
    check_cluster_version(client.version())
    check_secret_refs(client, namespace, request.secret_refs, say)
    pod = inject(client, pod, plan, request, say)
    return _endpoint(pod, plan, created=True)


def check_secret_refs(client: KubeClient, namespace: str, refs: tuple[tuple[str, str], ...], say: Say) -> None:
    """Every Secret key the rules reference must exist: a missing one would leave the monitor stuck
    in CreateContainerConfigError, and an ephemeral container can never be fixed."""
    from kubectl_dotnet_monitor.kube.api import ApiForbidden, ApiNotFound

    for name, key in refs:
        try:
            secret = client.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except ApiNotFound:
            raise NotReadyError(
                f"the rules reference Secret {namespace}/{name}, which does not exist",
                f"create it first: kubectl create secret generic {name} -n {namespace} --from-literal={key}=...",
            ) from None
        except ApiForbidden:
            say(f"warning: cannot check that Secret {namespace}/{name} exists (not allowed to read Secrets)")
            continue
        if key not in (secret.get("data") or {}):
            raise NotReadyError(
                f"Secret {namespace}/{name} has no key {key!r}, which the rules reference",
                f"add it: kubectl patch secret {name} -n {namespace} --type merge -p '{{\"stringData\":{{\"{key}\":\"...\"}}}}'",
            )


def render_container(pod: dict, plan: InjectionPlan, request: InjectRequest, *, key_secret_name: str | None,
                     subject: str | None, public_key: str | None) -> dict:
    """The exact container ``inject`` sends (also what ``--dry-run`` prints)."""
    from kubectl_dotnet_monitor.inject.custom import apply_custom
    from kubectl_dotnet_monitor.inject.spec import build_monitor_container

    options = replace(
        request.options,
        container_name=plan.container_name,
        api_key_subject=subject,
        api_key_public=public_key,
        key_secret_name=key_secret_name,
    )
    container = build_monitor_container(pod, options)
    if request.custom:
        container = apply_custom(container, request.custom, request.custom_source)
    return container


def inject(client: KubeClient, pod: dict, plan: InjectionPlan, request: InjectRequest, say: Say) -> dict:
    """Store a fresh key, add the container, wait until it runs; returns the updated pod."""
    from kubectl_dotnet_monitor.inject.apikey import generate_api_key
    from kubectl_dotnet_monitor.inject.keystore import (
        delete_private_key,
        store_private_key,
    )

    meta = pod["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    key = location = None
    if not request.options.no_auth:
        key = generate_api_key()
        location = store_private_key(client, pod, plan.container_name, key)
        if not location.in_cluster:
            say(f"warning: {location.describe()}")
    try:
        container = render_container(
            pod,
            plan,
            request,
            key_secret_name=location.secret_name if location else None,
            subject=key.subject if key else None,
            public_key=key.public_key_config() if key else None,
        )
        say(f"injecting dotnet-monitor ({container['image']}) into pod {namespace}/{name} as container {plan.container_name!r}")
        send_patch(client, pod, container)
    except BaseException:
        if location is not None:
            delete_private_key(client, location)
        raise
    return wait_until_running(client, pod, plan.container_name, request.wait_timeout, say)


def send_patch(client: KubeClient, pod: dict, container: dict, *, dry_run: bool = False) -> dict:
    """PATCH the ``ephemeralcontainers`` subresource the way kubectl debug does; explain refusals."""
    from kubectl_dotnet_monitor.kube.api import ApiForbidden, ApiInvalid, ApiNotFound

    meta = pod["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    body = {"spec": {"ephemeralContainers": [container]}}
    try:
        return client.patch(pod_path(namespace, name, "ephemeralcontainers"), body, "strategic", dry_run=dry_run)
    except ApiForbidden as exc:
        text = exc.api_message or exc.message
        if "violates PodSecurity" in text:
            raise ForbiddenError(
                f"the namespace's Pod Security policy refused the monitor: {text}",
                "the monitor already runs with the most restrictive settings that still share the app's "
                "user; if the app itself runs as root, the namespace must allow root containers "
                "(run kubectl dotnet-monitor inject --dry-run to see the container)",
            ) from exc
        if "denied the request" in text or "admission webhook" in text:
            raise ForbiddenError(f"an admission webhook refused the monitor: {text}",
                                 "ask the cluster's policy owners to allow it") from exc
        raise ForbiddenError(
            f"not allowed to add containers to pod {namespace}/{name}: {text}",
            "you need the 'patch' verb on 'pods/ephemeralcontainers' in that namespace "
            "(the built-in edit/admin roles do not include it); `kubectl dotnet-monitor rbac` prints a Role",
        ) from exc
    except ApiNotFound as exc:
        if not (exc.details or {}).get("name"):
            raise NotReadyError(
                "ephemeral containers are disabled for this cluster (the pods/ephemeralcontainers API is missing)",
                f"Kubernetes 1.{MIN_MINOR}+ has them on by default; ask the cluster admin",
            ) from exc
        raise NotFoundError(f"pod {namespace}/{name} disappeared", "pick another pod") from exc
    except ApiInvalid as exc:
        causes = exc.causes_text()
        raise UsageError(
            f"the API server rejected the monitor container: {causes or exc.api_message or exc.message}",
            "check --config and --image; kubectl dotnet-monitor inject --dry-run prints what is sent",
        ) from exc


def wait_until_running(client: KubeClient, pod: dict, container: str, timeout: float, say: Say) -> dict:
    """Watch the pod until ``container`` runs; fail fast on pull errors, termination or deletion."""
    from kubectl_dotnet_monitor.kube.api import ApiForbidden, ApiGone

    meta = pod["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    deadline = time.monotonic() + timeout
    seen_messages: set[str] = set()
    current = pod
    use_watch = True
    while True:
        if _judge(current, container, say, seen_messages):
            return current
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            state, detail = container_state(container_status(current, container))
            why = f"{state} ({detail.get('reason')})" if detail.get("reason") else state
            raise NotReadyError(
                f"dotnet-monitor container {container!r} in pod {namespace}/{name} did not start within "
                f"{timeout:.0f}s (it is {why})",
                f"look at `kubectl describe pod {name} -n {namespace}`; pass a longer --timeout if the image is slow to pull",
            )
        if use_watch:
            try:
                query = {"fieldSelector": f"metadata.name={name}"}
                rv = (current.get("metadata") or {}).get("resourceVersion")
                if rv:
                    query["resourceVersion"] = rv
                for kind, obj in client.watch(f"/api/v1/namespaces/{namespace}/pods", query, timeout=min(remaining, 30.0)):
                    if kind == "DELETED":
                        raise NotFoundError(f"pod {namespace}/{name} was deleted while the monitor was starting",
                                            "pick another pod of the workload and try again")
                    if kind in ("ADDED", "MODIFIED"):
                        current = obj
                        if _judge(current, container, say, seen_messages):
                            return current
                continue
            except ApiGone:
                pass  # resourceVersion too old: read the pod again below
            except ApiForbidden:
                use_watch = False  # no 'watch' permission: poll with 'get' instead
        else:
            time.sleep(min(0.5, max(remaining, 0)))
        current = get_pod(client, namespace, name)


def _judge(pod: dict, container: str, say: Say, seen: set[str]) -> bool:
    """True when running; raises for states that will not get better; reports the rest once."""
    meta = pod.get("metadata") or {}
    ref = f"{meta.get('namespace')}/{meta.get('name')}"
    state, detail = container_state(container_status(pod, container))
    reason, message = detail.get("reason"), detail.get("message")
    if state == "running":
        return True
    if state == "terminated":
        code = detail.get("exitCode")
        raise NotReadyError(
            f"dotnet-monitor container {container!r} in pod {ref} terminated ({reason or 'no reason'}, "
            f"exit code {code}){': ' + message.strip() if message else ''}",
            f"see its log: kubectl logs {meta.get('name')} -n {meta.get('namespace')} -c {container}; "
            "ephemeral containers are never restarted, the next command injects a fresh one",
        )
    if state == "waiting" and reason in _FATAL_WAITING:
        image_hint = "check --image and that the node can pull it (registry access, imagePullSecrets)"
        raise NotReadyError(
            f"dotnet-monitor container {container!r} in pod {ref} cannot start: {reason}"
            f"{': ' + message if message else ''}",
            image_hint if "Image" in (reason or "") else f"kubectl describe pod {meta.get('name')} -n {meta.get('namespace')}",
        )
    if reason and reason not in seen and reason != "ContainerCreating":
        seen.add(reason)
        say(f"container {container}: {reason}{': ' + message if message else ''}")
    return False


def judge_container(pod: dict, container: str) -> bool:
    """True when ``container`` runs; raises the same errors as the wait when it never will."""
    return _judge(pod, container, lambda _: None, set())


def _endpoint(pod: dict, plan: InjectionPlan, *, created: bool) -> MonitorEndpoint:
    meta = pod["metadata"]
    monitor = next((m for m in find_monitors(pod) if m.name == plan.container_name), None)
    no_auth = monitor.no_auth if monitor is not None else False
    return MonitorEndpoint(
        namespace=meta["namespace"],
        pod=meta["name"],
        container=plan.container_name,
        port=(monitor.port if monitor and monitor.port else plan.port),
        no_auth=no_auth,
        created=created,
        pod_object=pod,
    )


def _waiting_reasons(pod: dict) -> list[str]:
    reasons = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            reasons.append(f"{status.get('name')}: {waiting['reason']}")
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("message"):
            reasons.append(cond["message"])
    return reasons


def _leading_int(value: object) -> int | None:
    match = re.match(r"\d+", str(value or ""))
    return int(match.group()) if match else None


__all__ = [
    "InjectRequest",
    "MonitorEndpoint",
    "check_cluster_version",
    "check_pod_running",
    "ensure_monitor",
    "inject",
    "render_container",
    "send_patch",
    "wait_until_running",
]
