"""PURE: the Role (or ClusterRole) granting exactly what the plugin needs, and its binding.

| rule | why |
|---|---|
| pods: get, list, watch | read the pod (containers, volumes, phase); watch the monitor start |
| pods/ephemeralcontainers: patch | add the monitor (not in the built-in edit/admin roles) |
| pods/portforward: get, create | the websocket tunnel (GET upgrade; create as well on 1.35+) |
| secrets: create, get, delete | the monitor's private key, in a Secret owned by the pod |
| pods/log: get (optional) | show the monitor's log when it fails to start |

Nothing else: ``prepare --apply`` changes Deployments and needs ``patch`` on them, which the
built-in ``edit`` role already grants to the people who own the workload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kubectl_dotnet_monitor.errors import UsageError

DEFAULT_NAME = "kubectl-dotnet-monitor"
RBAC_GROUP = "rbac.authorization.k8s.io"
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_LABELS = {"app.kubernetes.io/managed-by": "kubectl-dotnet-monitor"}

#: (resources, verbs, why) in the order they are printed.
RULES: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("pods",), ("get", "list", "watch"), "read the pod; watch the monitor start"),
    (("pods/ephemeralcontainers",), ("patch",), "add the dotnet-monitor container (not in edit/admin)"),
    (("pods/portforward",), ("get", "create"), "tunnel to the monitor (websocket: get; 1.35+: create too)"),
    (("secrets",), ("create", "get", "delete"), "the monitor's private key, in a Secret owned by the pod"),
)
LOG_RULE = (("pods/log",), ("get",), "optional: show the monitor's log when it fails to start")


@dataclass(frozen=True)
class RbacRequest:
    """What ``kubectl dotnet-monitor rbac`` was asked for."""

    namespace: str = "default"
    cluster_wide: bool = False
    name: str = DEFAULT_NAME
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()  # "ns:name" (or "name": in ``namespace``)
    logs: bool = True  # include the optional pods/log rule
    extra_labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 253 or not _NAME_RE.match(self.name):
            raise UsageError(f"--name {self.name!r} is not a valid object name (lowercase letters, digits, '-', '.')")
        if not self.cluster_wide and not self.namespace:
            raise UsageError("a namespace is needed for a Role (or use --cluster-wide)")
        for value in self.users + self.groups:
            if not value.strip():
                raise UsageError("--user and --group must not be empty")
        for value in self.service_accounts:
            service_account_subject(value, self.namespace)  # validates


def service_account_subject(value: str, default_namespace: str) -> dict:
    """``ns:name`` (as ``kubectl create rolebinding --serviceaccount``) or ``name`` in the default namespace."""
    namespace, sep, name = value.partition(":")
    if not sep:
        namespace, name = default_namespace, value
    if not namespace or not name or ":" in name or not _NAME_RE.match(name) or not _NAME_RE.match(namespace):
        raise UsageError(f"--serviceaccount {value!r} must be NAMESPACE:NAME, e.g. shop:deployer")
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def rules(request: RbacRequest) -> list[dict]:
    """The policy rules, core API group only."""
    chosen = RULES + ((LOG_RULE,) if request.logs else ())
    return [{"apiGroups": [""], "resources": list(res), "verbs": list(verbs)} for res, verbs, _ in chosen]


def subjects(request: RbacRequest) -> list[dict]:
    out = [{"kind": "User", "apiGroup": RBAC_GROUP, "name": u} for u in request.users]
    out += [{"kind": "Group", "apiGroup": RBAC_GROUP, "name": g} for g in request.groups]
    out += [service_account_subject(sa, request.namespace) for sa in request.service_accounts]
    return out


def rbac_objects(request: RbacRequest) -> list[dict]:
    """The Role/ClusterRole, then (if any subject was given) the RoleBinding/ClusterRoleBinding."""
    labels = {**_LABELS, **request.extra_labels}
    role_kind = "ClusterRole" if request.cluster_wide else "Role"
    meta: dict = {"name": request.name}
    if not request.cluster_wide:
        meta["namespace"] = request.namespace
    meta["labels"] = dict(labels)
    role = {"apiVersion": f"{RBAC_GROUP}/v1", "kind": role_kind, "metadata": meta, "rules": rules(request)}
    objects = [role]
    subs = subjects(request)
    if subs:
        binding_meta = dict(meta, labels=dict(labels))
        objects.append({
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "ClusterRoleBinding" if request.cluster_wide else "RoleBinding",
            "metadata": binding_meta,
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": role_kind, "name": request.name},
            "subjects": subs,
        })
    return objects


def render_yaml(request: RbacRequest) -> str:
    """A multi-document YAML stream with a comment saying what each rule is for."""
    import yaml

    scope = "every namespace" if request.cluster_wide else f"namespace {request.namespace}"
    chosen = RULES + ((LOG_RULE,) if request.logs else ())
    width = max(len(", ".join(res)) + len(", ".join(verbs)) + 3 for res, verbs, _ in chosen)
    lines = [f"# What kubectl dotnet-monitor needs in {scope}:"]
    for res, verbs, why in chosen:
        grant = f"{', '.join(res)}: {', '.join(verbs)}"
        lines.append(f"#   {grant.ljust(width)}  {why}")
    if not (request.users or request.groups or request.service_accounts):
        lines.append("# No binding: add --user, --group or --serviceaccount NS:NAME to get one.")
    docs = [yaml.safe_dump(obj, sort_keys=False, default_flow_style=False) for obj in rbac_objects(request)]
    return "\n".join(lines) + "\n" + "---\n".join(docs)


def render_json(request: RbacRequest) -> str:
    """A ``v1`` ``List`` of the objects (what ``kubectl ... -o json`` prints for several)."""
    import json

    return json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac_objects(request)}, indent=2) + "\n"
