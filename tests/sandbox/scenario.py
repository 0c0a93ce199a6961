"""Scenarios: YAML files under `scenarios/` -> a `Scenario` the whole sandbox reads.

A scenario file has two halves that are kept strictly apart:

* the **cluster**: what a real API server would know and show (`version`, `features`, `nodes`,
  `users` with RBAC-like rules, `namespaces` with labels, and `objects` = ordinary Kubernetes
  manifests: Deployments, StatefulSets, DaemonSets, ReplicaSets, Pods, Secrets);
* the **`sandbox:` section**: facts a real cluster keeps out of the API and that the simulation
  needs (which processes an image runs and under which uid, which images cannot be pulled, kubelet
  delays, dotnet-monitor artifact sizes, pace and faults).

Workloads are materialised as a real control plane would: a Deployment gets a ReplicaSet
(`<name>-<pod-template-hash>`) and its pods (`<rs>-<5 chars>`), a StatefulSet gets `<name>-0..N-1`, a
DaemonSet one pod per node, each with `ownerReferences` by uid. Pods are defaulted as the API server
defaults them (restartPolicy, dnsPolicy, the `kube-api-access-xxxxx` projected volume, ...), scheduled
onto the scenario's nodes (a pod whose `nodeSelector` matches no node stays Pending/Unschedulable),
and given a Running status with one running container status per container.

Fields other sandbox modules read (names are the contract):

``Scenario``
    ``name``, ``description``, ``version`` (the `/version` body), ``minor`` (int),
    ``features`` (``EphemeralContainers``, ``PortForwardWebsockets``,
    ``AuthorizePodWebsocketUpgradeCreatePermission``, ``ContainerStatusUser``,
    ``AggregatedDiscovery``: bool), ``nodes`` (Node specs), ``users`` (list of ``UserSpec``),
    ``namespaces`` (specs), ``knobs`` (``SandboxKnobs``: typed kubelet/image knobs),
    ``sandbox`` (``SandboxSection``: the raw `sandbox:` mapping as a dict, what
    `monitor/knobs.py` parses, with ``kubelet``/``images``/``unpullable_images`` attributes; its
    ``pods`` mapping is completed from ``images`` so every workload's containers have
    ``{"image_user", "processes"}``), ``faults`` (the shared runtime fault plan, a
    ``monitor.faults.FaultPlan`` set up by the sandbox at start; the control endpoint edits it).
    ``image(image_ref) -> ImageInfo``: what the sandbox knows about an image (never None).
    ``image_pullable(image_ref) -> bool``.

``SandboxKnobs``
    ``kubelet`` (``KubeletKnobs``), ``images`` (dict image ref or fnmatch pattern -> ``ImageInfo``),
    ``unpullable_images`` (list of fnmatch patterns), ``raw``.

``KubeletKnobs``
    ``container_start_delay`` (s, Waiting/ContainerCreating -> Running),
    ``image_pull_error_delay`` (s until ErrImagePull), ``image_pull_backoff_delay`` (s from
    ErrImagePull to ImagePullBackOff), ``pod_termination_grace`` (s a deleted pod stays Terminating).

``ImageInfo``
    ``ref``, ``user`` (uid the image's USER resolves to; None = root), ``group``,
    ``processes`` (list of dicts ``{"name", "commandLine", "managedEntryPointAssemblyName"?,
    "runtime_version"?, ...}`` that the image's entrypoint starts; empty = no .NET),
    ``monitor`` (bool: a dotnet-monitor image), ``raw``.

YAML shape of ``sandbox:``::

    kubelet: {container_start_delay: 0.3, image_pull_error_delay: 0.5, ...}
    images:
      "registry.example/shop/web:1.4": {user: 1654, processes: [{name: Web, commandLine: ...}]}
      "mcr.microsoft.com/dotnet/monitor*": {user: 1654, monitor: true}
    unpullable_images: ["*:does-not-exist"]
    monitor: {...}        # read by monitor/knobs.py (artifacts, faults, version, ...)
    pods: {...}           # optional per-pod overrides, read by monitor/knobs.py
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCENARIO_DIR = Path(__file__).with_name("scenarios")

#: The alphabet Kubernetes uses for generated name suffixes and pod-template hashes.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class KubeletKnobs:
    """Delays of the simulated kubelet."""

    container_start_delay: float = 0.3
    image_pull_error_delay: float = 0.5
    image_pull_backoff_delay: float = 1.0
    pod_termination_grace: float = 0.3


@dataclass(frozen=True)
class ImageInfo:
    """What a real node learns from an image and the API never shows."""

    ref: str
    user: int | None = None
    group: int | None = None
    processes: list[dict] = field(default_factory=list)
    monitor: bool = False
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxKnobs:
    """The `sandbox:` section of a scenario."""

    kubelet: KubeletKnobs = field(default_factory=KubeletKnobs)
    images: dict[str, ImageInfo] = field(default_factory=dict)
    unpullable_images: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)


class SandboxSection(dict):
    """The raw `sandbox:` mapping (a dict, as `monitor/knobs.py` reads it) that also carries the
    typed knobs as attributes: ``kubelet``, ``images``, ``unpullable_images`` (see SandboxKnobs)."""

    def __init__(self, raw: dict, knobs: "SandboxKnobs") -> None:
        super().__init__(raw)
        self.knobs = knobs
        self.kubelet = knobs.kubelet
        self.images = knobs.images
        self.unpullable_images = knobs.unpullable_images


@dataclass(frozen=True)
class UserSpec:
    """A user: bearer token (generated per start unless fixed), groups and RBAC-like rules.

    A rule is ``{"verbs": [...], "apiGroups": [...], "resources": [...], "resourceNames"?: [...],
    "namespaces"?: [...]}``; ``"*"`` matches everything; ``resources`` may name subresources as
    ``pods/ephemeralcontainers`` (``*/x`` and ``x/*`` work as in RBAC). ``namespaces`` absent = a
    ClusterRoleBinding, present = RoleBindings in those namespaces.
    """

    name: str
    groups: tuple[str, ...] = ()
    rules: tuple[dict, ...] = ()
    token: str | None = None
    client_cert: bool = False


@dataclass
class Scenario:
    """A loaded scenario. `objects` are the manifests as written; see `materialize`."""

    name: str
    description: str
    version: dict
    features: dict[str, bool]
    nodes: list[dict]
    users: list[UserSpec]
    namespaces: list[dict]
    objects: list[dict]
    knobs: SandboxKnobs
    sandbox: dict
    faults: Any = None

    @property
    def minor(self) -> int:
        """The server's minor version as an int (``33`` for v1.33.1)."""
        return int(str(self.version["minor"]).rstrip("+"))

    def user(self, name: str) -> UserSpec:
        """The user called `name` (KeyError if absent)."""
        for user in self.users:
            if user.name == name:
                return user
        raise KeyError(name)

    def image(self, ref: str) -> ImageInfo:
        """What the sandbox knows about `ref`; unknown images are plain root images with no .NET."""
        info = self.knobs.images.get(ref)
        if info is not None:
            return info
        for pattern, candidate in self.knobs.images.items():
            if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(ref, pattern):
                return candidate
        return ImageInfo(ref=ref)

    def image_pullable(self, ref: str) -> bool:
        """False when the image matches one of `sandbox.unpullable_images`."""
        return not any(fnmatch.fnmatchcase(ref, p) for p in self.knobs.unpullable_images)

    def materialize(self, now: float) -> list[dict]:
        """All API objects at start: namespaces, nodes, workloads, their pods, the other objects.

        Metadata (uid, creationTimestamp, generation) and pod statuses are filled in; the store
        assigns resourceVersions.
        """
        objects = _Materializer(self, now).run()
        self._complete_pod_knobs(objects)
        return objects

    def _complete_pod_knobs(self, objects: list[dict]) -> None:
        """Fill `sandbox.pods[<pod>].containers[<c>]` from the images each pod runs."""
        pods = self.sandbox.setdefault("pods", {})
        for obj in objects:
            if obj["kind"] != "Pod":
                continue
            entry = pods.setdefault(obj["metadata"]["name"], {})
            containers = entry.setdefault("containers", {})
            for c in obj["spec"].get("containers", []):
                info = self.image(c["image"])
                cont = containers.setdefault(c["name"], {})
                cont.setdefault("image_user", info.user if info.user is not None else 0)
                cont.setdefault("processes", copy.deepcopy(info.processes))


def available() -> list[str]:
    """Names of the scenarios shipped under `scenarios/`."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load(name_or_path: str | Path) -> Scenario:
    """Load a scenario by name (`basic`) or by path to a YAML file."""
    import yaml

    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no scenario {str(name_or_path)!r} (available: {', '.join(available())})"
        )
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    return parse(data, default_name=path.stem)


def parse(data: dict, default_name: str = "scenario") -> Scenario:
    """Build a `Scenario` from an already-parsed YAML mapping."""
    git_version = str(data.get("version", {}).get("gitVersion", "v1.33.1"))
    major, minor = git_version.lstrip("v").split(".")[:2]
    version = {
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "minCompatibilityMajor": major,
        "minCompatibilityMinor": str(max(int(minor) - 1, 0)),
        "gitVersion": git_version,
        "gitCommit": hashlib.sha1(git_version.encode()).hexdigest(),
        "gitTreeState": "clean",
        "buildDate": data.get("version", {}).get("buildDate", "2025-05-15T08:27:33Z"),
        "goVersion": data.get("version", {}).get("goVersion", "go1.24.2"),
        "compiler": "gc",
        "platform": "linux/amd64",
    }
    if int(minor) < 34:
        for key in ("emulationMajor", "emulationMinor", "minCompatibilityMajor",
                    "minCompatibilityMinor"):
            version.pop(key)
    minor_i = int(minor)
    features = {
        "EphemeralContainers": True,
        "PortForwardWebsockets": minor_i >= 31,
        "AuthorizePodWebsocketUpgradeCreatePermission": minor_i >= 35,
        "ContainerStatusUser": minor_i >= 33,
        "AggregatedDiscovery": minor_i >= 27,
    }
    features.update({k: bool(v) for k, v in (data.get("features") or {}).items()})

    nodes = data.get("nodes") or [{"name": "sandbox-node-1"}]
    knobs = _parse_sandbox(data.get("sandbox") or {})
    users = [
        UserSpec(
            name=u["name"],
            groups=tuple(u.get("groups", ())),
            rules=tuple(u.get("rules", ())),
            token=u.get("token"),
            client_cert=bool(u.get("client_cert", False)),
        )
        for u in data.get("users") or []
    ]
    namespaces = data.get("namespaces") or [{"name": "default"}]
    return Scenario(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        version=version,
        features=features,
        nodes=[dict(n) for n in nodes],
        users=users,
        namespaces=[dict(n) for n in namespaces],
        objects=list(data.get("objects") or []),
        knobs=knobs,
        sandbox=SandboxSection(copy.deepcopy(data.get("sandbox") or {}), knobs),
    )


def _parse_sandbox(raw: dict) -> SandboxKnobs:
    kubelet_raw = raw.get("kubelet") or {}
    kubelet = KubeletKnobs(**{k: float(v) for k, v in kubelet_raw.items()})
    images = {}
    for ref, info in (raw.get("images") or {}).items():
        info = info or {}
        images[ref] = ImageInfo(
            ref=ref,
            user=info.get("user"),
            group=info.get("group", info.get("user")),
            processes=list(info.get("processes") or []),
            monitor=bool(info.get("monitor", False)),
            raw=info,
        )
    return SandboxKnobs(
        kubelet=kubelet,
        images=images,
        unpullable_images=list(raw.get("unpullable_images") or []),
        raw=raw,
    )


# --------------------------------------------------------------------------------------------
# Materialising: what the controllers, scheduler and kubelet of a real cluster would have done.


def rfc3339(ts: float) -> str:
    """Kubernetes timestamp format (seconds precision, UTC, `Z`)."""
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def stable_suffix(seed: str, length: int = 5) -> str:
    """A name suffix from Kubernetes' safe alphabet, deterministic for a seed."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:length])


def stable_uid(seed: str) -> str:
    """A UUID-shaped uid, deterministic for a seed (so scenario runs are reproducible)."""
    h = hashlib.sha256(("uid:" + seed).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def default_pod(pod: dict, seed: str) -> dict:
    """Apply the API server's defaulting to a pod (in place) and return it."""
    spec = pod.setdefault("spec", {})
    meta = pod.setdefault("metadata", {})
    meta.setdefault("namespace", "default")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount", "default"))
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault(
        "tolerations",
        [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300},
        ],
    )
    volumes = spec.setdefault("volumes", [])
    token_volume = None
    if spec.get("automountServiceAccountToken", True):
        token_volume = "kube-api-access-" + stable_suffix(seed + "/token", 5)
        if not any(v.get("name", "").startswith("kube-api-access-") for v in volumes):
            volumes.append(_token_volume(token_volume))
    for vol in volumes:
        if "emptyDir" in vol and vol["emptyDir"] is None:
            vol["emptyDir"] = {}
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            _default_container(container, token_volume)
    return pod


def _token_volume(name: str) -> dict:
    return {
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt",
                               "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [
                    {"path": "namespace",
                     "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    }


def _default_container(container: dict, token_volume: str | None) -> None:
    image = container.get("image", "")
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("resources", {})
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    if token_volume:
        mounts = container.setdefault("volumeMounts", [])
        if not any(m.get("mountPath") == "/var/run/secrets/kubernetes.io/serviceaccount"
                   for m in mounts):
            mounts.append({"name": token_volume, "readOnly": True,
                           "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})


def image_id(ref: str) -> str:
    """A plausible `imageID` for a container status."""
    name = ref.split("@")[0].rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    if "/" not in name.split("@")[0]:
        name = "docker.io/library/" + name
    elif "." not in name.split("/")[0]:
        name = "docker.io/" + name
    return f"{name}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


def full_image(ref: str) -> str:
    """The image as the runtime reports it in `containerStatuses[].image`."""
    first = ref.split("/")[0]
    out = ref
    if "/" not in ref:
        out = "docker.io/library/" + ref
    elif "." not in first and ":" not in first and first != "localhost":
        out = "docker.io/" + ref
    if "@" not in out and ":" not in out.rsplit("/", 1)[-1]:
        out += ":latest"
    return out


class _Materializer:
    def __init__(self, scenario: Scenario, now: float) -> None:
        self.s = scenario
        self.now = now
        self.out: list[dict] = []
        self.pod_index = 0

    def meta(self, obj: dict, age: float, seed: str) -> dict:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", stable_uid(self.s.name + "/" + seed))
        created = meta.pop("age", None)
        meta.setdefault("creationTimestamp", rfc3339(self.now - (age if created is None else float(created))))
        return meta

    def run(self) -> list[dict]:
        for ns in self.s.namespaces:
            labels = dict(ns.get("labels") or {})
            labels.setdefault("kubernetes.io/metadata.name", ns["name"])
            obj = {"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": ns["name"], "labels": labels},
                   "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
            if ns.get("annotations"):
                obj["metadata"]["annotations"] = dict(ns["annotations"])
            self.meta(obj, 86400 * 3, "ns/" + ns["name"])
            self.out.append(obj)
        for node in self.s.nodes:
            self.out.append(self.node(node))
        for raw in self.s.objects:
            obj = copy.deepcopy(raw)
            kind = obj.get("kind")
            obj["metadata"].setdefault("namespace", "default")
            if kind == "Deployment":
                self.deployment(obj)
            elif kind == "StatefulSet":
                self.statefulset(obj)
            elif kind == "DaemonSet":
                self.daemonset(obj)
            elif kind == "ReplicaSet":
                self.replicaset(obj, owner=None)
            elif kind == "Pod":
                self.pod(obj, owner=None, seed="pod/" + obj["metadata"]["name"])
            else:
                self.meta(obj, 3600, f"{kind}/{obj['metadata']['name']}")
                if kind == "Secret":
                    obj.setdefault("type", "Opaque")
                self.out.append(obj)
        return self.out

    def node(self, spec: dict) -> dict:
        name = spec["name"]
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                  "beta.kubernetes.io/arch": "amd64", **(spec.get("labels") or {})}
        index = self.s.nodes.index(spec) + 1
        obj = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]},
            "status": {
                "addresses": [{"type": "InternalIP", "address": f"172.18.0.{index + 1}"},
                              {"type": "Hostname", "address": name}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status",
                                "lastHeartbeatTime": rfc3339(self.now),
                                "lastTransitionTime": rfc3339(self.now - 86400)}],
                "nodeInfo": {"kubeletVersion": self.s.version["gitVersion"],
                             "containerRuntimeVersion": "containerd://1.7.27",
                             "operatingSystem": "linux", "architecture": "amd64",
                             "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-31-amd64"},
                "capacity": {"cpu": "4", "memory": "16318180Ki", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "16215780Ki", "pods": "110"},
            },
        }
        self.meta(obj, 86400 * 3, "node/" + name)
        return obj

    def owner_ref(self, owner: dict) -> dict:
        return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                "controller": True, "blockOwnerDeletion": True}

    def deployment(self, dep: dict) -> None:
        name = dep["metadata"]["name"]
        self.meta(dep, 7200, "deploy/" + dep["metadata"]["namespace"] + "/" + name)
        dep["metadata"]["generation"] = 1
        spec = dep["spec"]
        replicas = int(spec.setdefault("replicas", 1))
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        template_hash = self.template_hash(spec["template"])
        # The API server stores templates defaulted; the hash keeps the historic names.
        _default_template(spec["template"])
        rs = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": f"{name}-{template_hash}",
                "namespace": dep["metadata"]["namespace"],
                "labels": {**(spec["template"].get("metadata", {}).get("labels") or {}),
                           "pod-template-hash": template_hash},
                "annotations": {"deployment.kubernetes.io/desired-replicas": str(replicas),
                                "deployment.kubernetes.io/max-replicas": str(replicas + max(1, replicas // 4)),
                                "deployment.kubernetes.io/revision": "1"},
                "ownerReferences": [self.owner_ref(dep)],
            },
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {**spec["selector"]["matchLabels"],
                                                  "pod-template-hash": template_hash}},
                     "template": copy.deepcopy(spec["template"])},
        }
        rs["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {})[
            "pod-template-hash"] = template_hash
        self.out.append(dep)
        ready = self.replicaset(rs, owner=dep)
        dep["status"] = {
            "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": ready, "availableReplicas": ready,
            "conditions": [
                {"type": "Available", "status": "True" if ready == replicas else "False",
                 "reason": "MinimumReplicasAvailable" if ready == replicas else "MinimumReplicasUnavailable",
                 "message": "Deployment has minimum availability." if ready == replicas
                 else "Deployment does not have minimum availability.",
                 "lastUpdateTime": dep["metadata"]["creationTimestamp"],
                 "lastTransitionTime": dep["metadata"]["creationTimestamp"]},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": f'ReplicaSet "{rs["metadata"]["name"]}" has successfully progressed.',
                 "lastUpdateTime": dep["metadata"]["creationTimestamp"],
                 "lastTransitionTime": dep["metadata"]["creationTimestamp"]},
            ],
        }
        if ready != replicas:
            dep["status"]["unavailableReplicas"] = replicas - ready

    def template_hash(self, template: dict) -> str:
        import json

        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
        return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:10])

    def replicaset(self, rs: dict, owner: dict | None) -> int:
        ns, name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        self.meta(rs, 7200, f"rs/{ns}/{name}")
        rs["metadata"]["generation"] = 1
        self.out.append(rs)
        replicas = int(rs["spec"].get("replicas", 1))
        ready = 0
        for i in range(replicas):
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": copy.deepcopy(rs["spec"]["template"].get("metadata") or {}),
                   "spec": copy.deepcopy(rs["spec"]["template"]["spec"])}
            pod["metadata"]["name"] = f"{name}-{stable_suffix(f'{self.s.name}/{ns}/{name}/{i}')}"
            pod["metadata"]["generateName"] = f"{name}-"
            pod["metadata"]["namespace"] = ns
            pod["metadata"]["ownerReferences"] = [self.owner_ref(rs)]
            if self.pod(pod, owner=rs, seed=f"pod/{ns}/{pod['metadata']['name']}"):
                ready += 1
        rs["status"] = {"replicas": replicas, "fullyLabeledReplicas": replicas,
                        "readyReplicas": ready, "availableReplicas": ready, "observedGeneration": 1}
        return ready

    def statefulset(self, sts: dict) -> None:
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        self.meta(sts, 7200, f"sts/{ns}/{name}")
        sts["metadata"]["generation"] = 1
        replicas = int(sts["spec"].setdefault("replicas", 1))
        sts["spec"].setdefault("podManagementPolicy", "OrderedReady")
        sts["spec"].setdefault("serviceName", name)
        from .workloads import default_workload, template_hash

        default_workload("statefulsets", sts)
        revision = f"{name}-{template_hash(sts['spec']['template'])}"
        self.out.append(sts)
        ready = 0
        for i in range(replicas):
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": copy.deepcopy(sts["spec"]["template"].get("metadata") or {}),
                   "spec": copy.deepcopy(sts["spec"]["template"]["spec"])}
            pod["metadata"].update(name=f"{name}-{i}", namespace=ns, generateName=f"{name}-",
                                   ownerReferences=[self.owner_ref(sts)])
            pod["metadata"].setdefault("labels", {}).update({
                "apps.kubernetes.io/pod-index": str(i),
                "controller-revision-hash": revision,
                "statefulset.kubernetes.io/pod-name": f"{name}-{i}"})
            pod["spec"].setdefault("hostname", f"{name}-{i}")
            pod["spec"].setdefault("subdomain", sts["spec"]["serviceName"])
            if self.pod(pod, owner=sts, seed=f"pod/{ns}/{name}-{i}"):
                ready += 1
        sts["status"] = {"replicas": replicas, "readyReplicas": ready, "currentReplicas": replicas,
                         "updatedReplicas": replicas, "availableReplicas": ready,
                         "currentRevision": revision, "updateRevision": revision,
                         "observedGeneration": 1, "collisionCount": 0}

    def daemonset(self, ds: dict) -> None:
        ns, name = ds["metadata"]["namespace"], ds["metadata"]["name"]
        self.meta(ds, 7200, f"ds/{ns}/{name}")
        ds["metadata"]["generation"] = 1
        from .workloads import default_workload, template_hash

        default_workload("daemonsets", ds)
        revision = template_hash(ds["spec"]["template"])
        self.out.append(ds)
        ready = 0
        for node in self.s.nodes:
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": copy.deepcopy(ds["spec"]["template"].get("metadata") or {}),
                   "spec": copy.deepcopy(ds["spec"]["template"]["spec"])}
            pod["metadata"].update(
                name=f"{name}-{stable_suffix(self.s.name + f'/{ns}/{name}/' + node['name'])}",
                namespace=ns, generateName=f"{name}-", ownerReferences=[self.owner_ref(ds)])
            pod["spec"]["nodeName"] = node["name"]
            pod["metadata"].setdefault("labels", {}).update({
                "controller-revision-hash": revision, "pod-template-generation": "1"})
            if self.pod(pod, owner=ds, seed=f"pod/{ns}/{pod['metadata']['name']}"):
                ready += 1
        n = len(self.s.nodes)
        ds["status"] = {"currentNumberScheduled": n, "desiredNumberScheduled": n,
                        "numberAvailable": ready, "numberMisscheduled": 0, "numberReady": ready,
                        "observedGeneration": 1, "updatedNumberScheduled": n}

    def pod(self, pod: dict, owner: dict | None, seed: str) -> bool:
        """Default, schedule and give a status to one pod; True when it is Ready."""
        self.meta(pod, 3600 if owner is None else 7000, seed)
        default_pod(pod, seed)
        self.pod_index += 1
        node = self.schedule(pod)
        pod["status"] = initial_pod_status(self.s, pod, node, self.now - 6990, self.pod_index)
        self.out.append(pod)
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in pod["status"].get("conditions", []))

    def schedule(self, pod: dict) -> dict | None:
        if pod["spec"].get("nodeName"):
            return next((n for n in self.s.nodes if n["name"] == pod["spec"]["nodeName"]), None)
        selector = pod["spec"].get("nodeSelector") or {}
        candidates = []
        for node in self.s.nodes:
            labels = {"kubernetes.io/hostname": node["name"], "kubernetes.io/os": "linux",
                      **(node.get("labels") or {})}
            if all(labels.get(k) == v for k, v in selector.items()):
                candidates.append(node)
        if not candidates:
            return None
        node = candidates[self.pod_index % len(candidates)]
        pod["spec"]["nodeName"] = node["name"]
        return node


def _default_template(template: dict) -> None:
    from .workloads import default_template

    default_template(template)


def initial_pending_status(scenario: Scenario, pod: dict) -> dict:
    """The status of a pod a controller just created: scheduled (or not), no container started;
    the kubelet writes the rest."""
    qos = "BestEffort"
    for c in pod["spec"].get("containers", []):
        res = c.get("resources") or {}
        if res.get("requests") or res.get("limits"):
            qos = "Burstable"
    ts = rfc3339(__import__("time").time())
    if not pod["spec"].get("nodeName"):
        n = len(scenario.nodes)
        return {"phase": "Pending", "qosClass": qos, "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "lastProbeTime": None, "lastTransitionTime": ts,
            "message": f"0/{n} nodes are available: {n} node(s) didn't match Pod's node "
                       f"affinity/selector. preemption: 0/{n} nodes are available: {n} "
                       "Preemption is not helpful for scheduling."}]}
    return {"phase": "Pending", "qosClass": qos, "conditions": [{
        "type": "PodScheduled", "status": "True", "lastProbeTime": None,
        "lastTransitionTime": ts}]}


def register_pod_knobs(scenario: Scenario, pod: dict) -> None:
    """Sandbox knobs (processes, image user) for a pod created after start: from its images,
    or a sibling's entry when the scenario overrides its workload's pods."""
    pods = scenario.sandbox.setdefault("pods", {})
    name = pod["metadata"]["name"]
    entry = pods.setdefault(name, {})
    containers = entry.setdefault("containers", {})
    for c in pod["spec"].get("containers", []):
        info = scenario.image(c["image"])
        cont = containers.setdefault(c["name"], {})
        cont.setdefault("image_user", info.user if info.user is not None else 0)
        cont.setdefault("processes", copy.deepcopy(info.processes))


def initial_pod_status(scenario: Scenario, pod: dict, node: dict | None, started: float,
                       index: int) -> dict:
    """The status a pod has when the scenario starts: Running, or Pending when unschedulable."""
    spec = pod["spec"]
    qos = "BestEffort"
    for c in spec.get("containers", []):
        res = c.get("resources") or {}
        if res.get("requests") or res.get("limits"):
            qos = "Burstable"
    if node is None:
        n = len(scenario.nodes)
        return {
            "phase": "Pending",
            "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "lastProbeTime": None, "lastTransitionTime": rfc3339(started),
                "message": f"0/{n} nodes are available: {n} node(s) didn't match Pod's node "
                           f"affinity/selector. preemption: 0/{n} nodes are available: {n} "
                           "Preemption is not helpful for scheduling.",
            }],
            "qosClass": qos,
        }
    node_index = scenario.nodes.index(node) + 1
    host_ip = f"172.18.0.{node_index + 1}"
    pod_ip = f"10.244.{node_index}.{(index % 250) + 2}"
    ts = rfc3339(started)
    statuses = []
    for c in spec.get("containers", []):
        status = {
            "name": c["name"],
            "state": {"running": {"startedAt": ts}},
            "lastState": {},
            "ready": True,
            "restartCount": 0,
            "image": full_image(c["image"]),
            "imageID": image_id(full_image(c["image"])),
            "containerID": "containerd://" + hashlib.sha256(
                f"{pod['metadata']['uid']}/{c['name']}".encode()).hexdigest(),
            "started": True,
        }
        if scenario.features.get("ContainerStatusUser"):
            info = scenario.image(c["image"])
            sc = {**(spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
            uid = sc.get("runAsUser", info.user if info.user is not None else 0)
            gid = sc.get("runAsGroup", info.group if info.group is not None else uid)
            status["user"] = {"linux": {"uid": uid, "gid": gid,
                                        "supplementalGroups": sorted({gid, *(spec.get("securityContext") or {}).get("supplementalGroups", [])})}}
        if c.get("volumeMounts") and scenario.minor >= 33:
            status["volumeMounts"] = [
                {"name": m["name"], "mountPath": m["mountPath"],
                 **({"readOnly": True} if m.get("readOnly") else {}),
                 **({"recursiveReadOnly": "Disabled"} if m.get("readOnly") else {})}
                for m in c["volumeMounts"]]
        statuses.append(status)
    conditions = [
        {"type": "PodReadyToStartContainers", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": "True"},
        {"type": "ContainersReady", "status": "True"},
        {"type": "PodScheduled", "status": "True"},
    ]
    if scenario.minor < 29:
        conditions = conditions[1:]
    for cond in conditions:
        cond["lastProbeTime"] = None
        cond["lastTransitionTime"] = ts
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": ts,
        "containerStatuses": statuses,
        "qosClass": qos,
    }
