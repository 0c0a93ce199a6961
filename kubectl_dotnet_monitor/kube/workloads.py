"""Workload targets the way kubectl names them (``deploy/web``, ``sts/db``, ``pod/web-1``), and
the controller a pod belongs to (pod → ReplicaSet → Deployment, StatefulSet, DaemonSet).

``parse_target`` and ``controller_of`` are pure; ``get_workload`` and ``resolve_workload`` read
from the API. Plain dicts throughout, as the API returns them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from kubectl_dotnet_monitor.errors import NotFoundError, NotReadyError, UsageError

if TYPE_CHECKING:
    from kubectl_dotnet_monitor.kube.api import KubeClient


@dataclass(frozen=True)
class WorkloadKind:
    """One kind of object a target can name."""

    kind: str  # "Deployment"
    resource: str  # "deployments"
    group: str  # "apps" ("" for the core group)
    short: str  # "deploy": how kubectl users write it

    @property
    def api_prefix(self) -> str:
        """``/apis/apps/v1`` or ``/api/v1``."""
        return f"/apis/{self.group}/v1" if self.group else "/api/v1"


POD = WorkloadKind("Pod", "pods", "", "pod")
DEPLOYMENT = WorkloadKind("Deployment", "deployments", "apps", "deploy")
STATEFULSET = WorkloadKind("StatefulSet", "statefulsets", "apps", "sts")
DAEMONSET = WorkloadKind("DaemonSet", "daemonsets", "apps", "ds")
REPLICASET = WorkloadKind("ReplicaSet", "replicasets", "apps", "rs")

#: Every spelling kubectl accepts for these kinds (singular, plural, short, fully qualified).
_ALIASES: dict[str, WorkloadKind] = {}
for _kind in (POD, DEPLOYMENT, STATEFULSET, DAEMONSET, REPLICASET):
    _names = {_kind.kind.lower(), _kind.resource, _kind.short}
    if _kind is POD:
        _names.add("po")
    for _name in _names:
        _ALIASES[_name] = _kind
        if _kind.group:
            _ALIASES[f"{_name}.{_kind.group}"] = _kind
            _ALIASES[f"{_name}.v1.{_kind.group}"] = _kind
del _kind, _names, _name

#: The kinds whose pod template can be changed (``prepare`` targets).
TEMPLATE_KINDS = (DEPLOYMENT, STATEFULSET, DAEMONSET)


@dataclass(frozen=True)
class WorkloadRef:
    """A named object of a known kind, e.g. ``deploy/web``."""

    kind: WorkloadKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.short}/{self.name}"

    def path(self, namespace: str) -> str:
        """The object's REST path in ``namespace``."""
        return (f"{self.kind.api_prefix}/namespaces/{quote(namespace, safe='')}/"
                f"{self.kind.resource}/{quote(self.name, safe='')}")


def parse_target(text: str, default: WorkloadKind | None = POD) -> WorkloadRef:
    """``deploy/web``, ``deployment.apps/web``, ``sts/db``, ``ds/agent``, ``rs/web-1a2b``,
    ``pod/web-0`` or (with ``default``) a bare name. Raises ``UsageError`` for anything else."""
    value = (text or "").strip()
    if not value:
        raise UsageError("the target is empty; give a pod name or KIND/NAME, e.g. deploy/web")
    if "/" not in value:
        if default is None:
            raise UsageError(
                f"{value!r} does not say what kind of object it is",
                hint=f"write KIND/NAME, e.g. deploy/{value}, sts/{value}, ds/{value} or pod/{value}",
            )
        return WorkloadRef(default, _checked_name(value, text))
    kind_text, _, name = value.partition("/")
    kind = _ALIASES.get(kind_text.lower())
    if kind is None:
        known = "deploy, sts, ds, rs, pod (or their long names)"
        raise UsageError(f"unsupported kind {kind_text!r} in {text!r}; use one of: {known}")
    return WorkloadRef(kind, _checked_name(name, text))


def _checked_name(name: str, text: str) -> str:
    if not name or "/" in name:
        raise UsageError(f"{text!r} is not KIND/NAME or a plain name")
    return name


def controller_of(obj: dict[str, Any]) -> tuple[str, str] | None:
    """``(kind, name)`` of the object's controlling owner (``ownerReferences[].controller``)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return str(ref.get("kind")), str(ref.get("name"))
    return None


def kind_by_name(kind: str) -> WorkloadKind | None:
    """The ``WorkloadKind`` for an API kind name (``"ReplicaSet"``), if this module knows it."""
    return _ALIASES.get(kind.lower())


def get_workload(client: KubeClient, namespace: str, ref: WorkloadRef) -> dict[str, Any]:
    """GET the object; a 404 names the object and the namespace."""
    from kubectl_dotnet_monitor.kube.api import ApiNotFound

    try:
        return client.get(ref.path(namespace))
    except ApiNotFound as exc:
        raise NotFoundError(
            f'{ref.kind.kind.lower()} "{ref.name}" not found in namespace "{namespace}"',
            hint=f"list them with `kubectl get {ref.kind.resource} -n {namespace}`; pick another namespace with -n",
        ) from exc


def resolve_workload(client: KubeClient, namespace: str, ref: WorkloadRef,
                     wanted: tuple[WorkloadKind, ...] = TEMPLATE_KINDS) -> tuple[WorkloadRef, dict[str, Any]]:
    """Follow controlling owners from ``ref`` until an object of a ``wanted`` kind.

    A pod leads to its ReplicaSet and then its Deployment (or straight to a StatefulSet or a
    DaemonSet). Returns that object's ref and body. Raises ``NotReadyError`` when the chain ends
    elsewhere (a bare pod, a Job, an operator's custom resource), naming what owns it.
    """
    current, obj = ref, get_workload(client, namespace, ref)
    trail = [str(ref)]
    for _ in range(4):  # pod -> rs -> deploy is the longest chain we follow
        if current.kind in wanted:
            return current, obj
        owner = controller_of(obj)
        if owner is None:
            raise NotReadyError(
                f"{' → '.join(trail)} is not managed by a Deployment, StatefulSet or DaemonSet, "
                "so there is no pod template to change",
                hint="add the diagnostic port to the manifest that creates it, then recreate it "
                "(a running pod's containers cannot get new environment variables or volumes)",
            )
        kind_name, name = owner
        kind = kind_by_name(kind_name)
        if kind is None:
            trail.append(f"{kind_name}/{name}")
            raise NotReadyError(
                f"{' → '.join(trail)}: the pod template belongs to a {kind_name}, which this plugin "
                "does not change",
                hint=f"add the diagnostic port to the {kind_name}'s pod template yourself "
                "(`kubectl dotnet-monitor prepare` prints the change for a Deployment; the same "
                "lines apply)",
            )
        current = WorkloadRef(kind, name)
        trail.append(str(current))
        obj = get_workload(client, namespace, current)
    raise NotReadyError(f"{' → '.join(trail)}: the owner chain is too long to follow")
