"""Which pods a command runs on, named the way kubectl names them.

``POD``, ``pod/NAME``, ``deploy/NAME``, ``sts/NAME``, ``ds/NAME``, ``rs/NAME`` or ``-l SELECTOR``:

* a pod is that pod;
* a workload alone is **one** pod, chosen as ``kubectl logs deploy/NAME`` chooses it (kubectl's
  ``podutils.ByLogging`` order: scheduled before unscheduled, Running before Unknown before Pending,
  ready before not ready, ready for longer first, more restarts first, older first) — kubectl says
  "Found N pods, using pod/NAME", and so do we;
* a workload with ``--all``, and ``-l SELECTOR``, are every *running* pod; the others are skipped
  with a note saying why.

The choosing is pure (:func:`logging_order`, :func:`pick_one`, :func:`split_running`,
:func:`selector_string`); :func:`resolve_targets` reads the workload and lists the pods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from kubectl_dotnet_monitor.errors import NotFoundError, NotReadyError, UsageError
from kubectl_dotnet_monitor.kube.workloads import POD, WorkloadRef, parse_target

if TYPE_CHECKING:
    from kubectl_dotnet_monitor.kube.api import KubeClient


@dataclass(frozen=True)
class PodTargets:
    """The pods a command runs on, and what the user should be told about the choice."""

    namespace: str
    pods: tuple[str, ...]
    many: bool  # --all or -l: the fan-out path (table, per-pod files) even for a single match
    described: str  # "pod/web-0", "deploy/web", "-l app=web"
    skipped: tuple[tuple[str, str], ...] = ()  # (pod, why) — not running
    notes: tuple[str, ...] = field(default=())  # "Found 3 pods, using pod/web-1"


# --------------------------------------------------------------------------------------------
# Pure pieces


def check_target_args(target: str | None, selector: str | None) -> None:
    """A TARGET or ``-l``, not both, not neither (kubectl logs says the same)."""
    if target and selector:
        raise UsageError(f"give either a target ({target!r}) or -l {selector!r}, not both",
                         hint="use -l alone to run on every running pod it matches")
    if not target and not selector:
        raise UsageError("a target is required: POD, pod/NAME, deploy/NAME, sts/NAME, ds/NAME, rs/NAME "
                         "or -l SELECTOR")


def selector_string(label_selector: dict[str, Any] | None) -> str:
    """A workload's ``spec.selector`` (matchLabels, matchExpressions) as a ``labelSelector`` query."""
    sel = label_selector or {}
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or []:
        key, op = expr.get("key"), expr.get("operator")
        values = ",".join(sorted(str(v) for v in expr.get("values") or []))
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise UsageError(f"unsupported label selector operator {op!r} for key {key!r}")
    return ",".join(parts)


def _time(text: str | None) -> float | None:
    """RFC 3339 timestamp → epoch seconds (``None`` when absent or unreadable)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _ready_since(pod: dict[str, Any]) -> float | None | bool:
    """``False`` when not ready; else the Ready condition's transition time (``None`` if unknown)."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            if cond.get("status") != "True":
                return False
            return _time(cond.get("lastTransitionTime"))
    return False


def _max_restarts(pod: dict[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return max((int(s.get("restartCount") or 0) for s in statuses), default=0)


_PHASE_RANK = {"Running": 0, "Unknown": 1, "Pending": 2}
_NEVER = float("inf")  # an empty time sorts after every real one ("afterOrZero")


def logging_key(pod: dict[str, Any]) -> tuple:
    """Sort key of kubectl's ``ByLogging`` order: the best pod to talk to comes first."""
    spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod.get("metadata") or {}
    ready = _ready_since(pod)
    ready_rank = 0 if ready is not False else 1
    ready_time = (_NEVER if ready is None else ready) if ready is not False else _NEVER
    created = _time(meta.get("creationTimestamp"))
    return (
        0 if spec.get("nodeName") else 1,  # 1. scheduled first
        _PHASE_RANK.get(str(status.get("phase")), 3),  # 2. Running < Unknown < Pending < the rest
        ready_rank,  # 3. ready first
        ready_time,  # 4. ready for longer first
        -_max_restarts(pod),  # 5. more restarts first (kubectl's choice: the troubled one)
        _NEVER if created is None else created,  # 6. older first
        str(meta.get("name") or ""),  # stable tie-break
    )


def logging_order(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``pods`` sorted the way ``kubectl logs deploy/NAME`` ranks them (best first)."""
    return sorted(pods, key=logging_key)


def pick_one(pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod ``kubectl logs deploy/NAME`` would use. ``pods`` must not be empty."""
    return logging_order(pods)[0]


def not_running_reason(pod: dict[str, Any]) -> str | None:
    """Why a pod cannot be used now (``None``: it is running and not being deleted)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "terminating"
    phase = str(status.get("phase") or "Unknown")
    if phase != "Running":
        return f"phase {phase}"
    return None


def split_running(pods: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, str]]]:
    """``(running names, [(skipped name, why)])``, both sorted by name."""
    running, skipped = [], []
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name") or "")):
        name = str((pod.get("metadata") or {}).get("name"))
        reason = not_running_reason(pod)
        if reason is None:
            running.append(name)
        else:
            skipped.append((name, reason))
    return running, skipped


# --------------------------------------------------------------------------------------------
# Reading the cluster


def list_pods(client: KubeClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    """The pods of ``namespace`` matching ``selector`` (a ``labelSelector`` string)."""
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods"
    return list(client.get(path, {"labelSelector": selector}).get("items") or [])


def workload_selector(client: KubeClient, namespace: str, ref: WorkloadRef) -> str:
    """GET the workload and return its pod selector; a 404 reads like kubectl's."""
    from kubectl_dotnet_monitor.kube.api import ApiNotFound

    try:
        obj = client.get(ref.path(namespace))
    except ApiNotFound as exc:
        group = f".{ref.kind.group}" if ref.kind.group else ""
        raise NotFoundError(
            f'{ref.kind.resource}{group} "{ref.name}" not found in namespace "{namespace}"',
            hint=f"list them with `kubectl get {ref.kind.resource} -n {namespace}`; pick another namespace with -n",
        ) from exc
    selector = selector_string((obj.get("spec") or {}).get("selector"))
    if not selector:
        raise NotReadyError(f"{ref} has no pod selector, so its pods cannot be found")
    return selector


def resolve_targets(client: KubeClient, namespace: str, target: str | None, selector: str | None,
                    all_pods: bool = False) -> PodTargets:
    """Turn TARGET / ``-l`` / ``--all`` into the pods to run on (see the module docstring).

    A plain pod is not read here: the command's own checks (exists, running) apply to it as before.
    Raises ``NotFoundError`` when nothing matches and ``NotReadyError`` when nothing matching runs.
    """
    check_target_args(target, selector)
    if selector:
        described = f"-l {selector}"
        pods = list_pods(client, namespace, selector)
        if not pods:
            raise NotFoundError(f'no pods in namespace "{namespace}" match the selector {selector!r}',
                                hint=f"check it with `kubectl get pods -n {namespace} -l '{selector}'`")
        return _all_running(namespace, described, pods)
    ref = parse_target(str(target))
    if ref.kind is POD:
        return PodTargets(namespace, (ref.name,), many=False, described=str(ref))
    sel = workload_selector(client, namespace, ref)
    pods = list_pods(client, namespace, sel)
    if not pods:
        raise NotFoundError(f"{ref} has no pods in namespace \"{namespace}\" (selector {sel})",
                            hint=f"check its status with `kubectl describe {ref} -n {namespace}`")
    if all_pods:
        return _all_running(namespace, str(ref), pods)
    best = pick_one(pods)
    name = str((best.get("metadata") or {}).get("name"))
    notes = (f"Found {len(pods)} pods, using pod/{name}",) if len(pods) > 1 else ()
    return PodTargets(namespace, (name,), many=False, described=str(ref), notes=notes)


def _all_running(namespace: str, described: str, pods: list[dict[str, Any]]) -> PodTargets:
    running, skipped = split_running(pods)
    if not running:
        why = ", ".join(f"{name} ({reason})" for name, reason in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        raise NotReadyError(f"none of the {len(pods)} pods of {described} is running: {why}{more}",
                            hint=f"see `kubectl get pods -n {namespace}`")
    return PodTargets(namespace, tuple(running), many=True, described=described, skipped=tuple(skipped))
