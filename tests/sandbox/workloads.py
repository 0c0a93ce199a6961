"""apps/v1 workloads: what the API server does on an update, and the controllers that follow.

Writes (``update_workload``): PATCH (strategic-merge, merge, json-patch) and PUT on deployments,
statefulsets, daemonsets and replicasets. As the real registry does: the body's ``status`` is
ignored (status is a subresource), ``uid``/``creationTimestamp``/``generation`` cannot be set,
the pod template is defaulted, ``metadata.generation`` goes up by one when ``spec`` changes,
``spec.selector`` is immutable, the template's labels must match the selector, and the template's
pod must validate (containers with names and images, volume mounts naming volumes). Pod Security
is *not* enforced on workloads (only warned about, in the ``Warning`` header); it is enforced when
the controller creates the pods, which then fail with a ``FailedCreate`` Event — as on a real
cluster, a patch that passes can leave a workload with no new pods.

Controllers (``Controllers``): level-triggered loops on the store's events, like
kube-controller-manager's:

* Deployment: finds the ReplicaSet whose template equals its own (ignoring ``pod-template-hash``),
  creates one (``<name>-<hash>``, next ``deployment.kubernetes.io/revision``) when none does,
  and rolls: RollingUpdate scales the new ReplicaSet up within ``maxSurge`` and the old ones down
  as new pods become Ready within ``maxUnavailable``; Recreate scales the old ones to 0 and waits
  for their pods to be gone. ``status`` (observedGeneration, replicas, updated/ready/available,
  conditions) is kept up to date; old ReplicaSets beyond ``revisionHistoryLimit`` are deleted.
* ReplicaSet: keeps ``spec.replicas`` pods (``<rs>-<5 random chars>``): replaces a deleted pod
  with a new one of another name, deletes surplus (not-ready and newest first).
* StatefulSet: pods ``<name>-<i>``, recreated with the same name when deleted; a template change
  (``controller-revision-hash``) replaces pods one at a time from the highest ordinal, each only
  once the others are Ready (RollingUpdate; OnDelete leaves them alone).
* DaemonSet: one pod per node; a template change replaces them one node at a time.

New pods are defaulted and scheduled as the materialiser does, admitted against the namespace's
Pod Security level, then created ``Pending`` and handed to the kubelet, which starts their
containers (``ContainerCreating`` -> ``Running``/``Ready``, or ``CreateContainerConfigError``...).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import threading
import time
from typing import Any

from . import store as st

WORKLOADS = ("deployments", "replicasets", "statefulsets", "daemonsets")
KINDS = {"deployments": "Deployment", "replicasets": "ReplicaSet",
         "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


class WorkloadError(Exception):
    """An error the API server turns into a Status: (code, reason, message, details)."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


# ------------------------------------------------------------------------------------------------
# defaults and hashes


def default_template(template: dict) -> dict:
    """`SetDefaults_PodSpec` + container defaults on a pod template (in place); returns it."""
    from .admission import default_container

    spec = template.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for vol in spec.get("volumes") or []:
        if isinstance(vol, dict) and "emptyDir" in vol and vol["emptyDir"] is None:
            vol["emptyDir"] = {}
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or []:
            if isinstance(c, dict):
                default_container(c)
                c.setdefault("resources", {})
    return template


def default_workload(resource: str, obj: dict) -> dict:
    """The apps/v1 defaults of a workload's spec (in place); returns it."""
    spec = obj.setdefault("spec", {})
    if resource in ("deployments", "replicasets", "statefulsets"):
        spec.setdefault("replicas", 1)
    if resource == "deployments":
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy["type"] = "RollingUpdate"
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxSurge", "25%")
            ru.setdefault("maxUnavailable", "25%")
    if resource == "statefulsets":
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("revisionHistoryLimit", 10)
        strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if strategy.get("type") == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {"partition": 0})
    if resource == "daemonsets":
        spec.setdefault("revisionHistoryLimit", 10)
        strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if strategy.get("type") == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {"maxUnavailable": 1, "maxSurge": 0})
    if isinstance(spec.get("template"), dict):
        default_template(spec["template"])
    return obj


def template_hash(template: dict, collisions: int = 0) -> str:
    """A pod-template-hash / revision suffix (Kubernetes' safe alphabet, 10 chars)."""
    text = json.dumps(template, sort_keys=True) + (f"/{collisions}" if collisions else "")
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:10])


def _strip_hash(template: dict) -> dict:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop("pod-template-hash", None)
    return t


def _random_suffix() -> str:
    return "".join(_SAFE[b % len(_SAFE)] for b in os.urandom(5))


# ------------------------------------------------------------------------------------------------
# validation of an update (apps/v1 ValidateDeploymentUpdate & co, the parts that matter here)


def _selector_matches(selector: dict, labels: dict) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _go_labels(labels: dict) -> str:
    return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"


def validate_workload(resource: str, old: dict, new: dict) -> list[dict]:
    """StatusCauses of an invalid update (empty when valid)."""
    from .admission import dns1123_label_errors

    causes: list[dict] = []

    def add(field: str, reason: str, message: str) -> None:
        causes.append({"reason": reason, "message": message, "field": field})

    spec = new.get("spec") or {}
    old_spec = old.get("spec") or {}
    if spec.get("selector") != old_spec.get("selector"):
        add("spec.selector", "FieldValueInvalid",
            f"Invalid value: {json.dumps(spec.get('selector'))}: field is immutable")
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        add("spec.replicas", "FieldValueInvalid",
            f"Invalid value: {replicas}: must be greater than or equal to 0")
    template = spec.get("template")
    if not isinstance(template, dict):
        add("spec.template", "FieldValueRequired", "Required value")
        return causes
    labels = (template.get("metadata") or {}).get("labels") or {}
    if isinstance(spec.get("selector"), dict) and not _selector_matches(spec["selector"], labels):
        add("spec.template.metadata.labels", "FieldValueInvalid",
            f"Invalid value: {_go_labels(labels)}: `selector` does not match template `labels`")
    pod_spec = template.get("spec") or {}
    if pod_spec.get("restartPolicy", "Always") != "Always":
        add("spec.template.spec.restartPolicy", "FieldValueNotSupported",
            f'Unsupported value: "{pod_spec.get("restartPolicy")}": supported values: "Always"')
    volumes = set()
    for i, vol in enumerate(pod_spec.get("volumes") or []):
        name = vol.get("name") if isinstance(vol, dict) else None
        if not name:
            add(f"spec.template.spec.volumes[{i}].name", "FieldValueRequired", "Required value")
        elif name in volumes:
            add(f"spec.template.spec.volumes[{i}].name", "FieldValueDuplicate",
                f'Duplicate value: "{name}"')
        volumes.add(name)
    containers = pod_spec.get("containers") or []
    if not containers:
        add("spec.template.spec.containers", "FieldValueRequired", "Required value")
    seen: set[str] = set()
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(pod_spec.get(kind) or []):
            path = f"spec.template.spec.{kind}[{i}]"
            name = c.get("name") or ""
            if not name:
                add(f"{path}.name", "FieldValueRequired", "Required value")
            else:
                for msg in dns1123_label_errors(name):
                    add(f"{path}.name", "FieldValueInvalid", f'Invalid value: "{name}": {msg}')
                if name in seen:
                    add(f"{path}.name", "FieldValueDuplicate", f'Duplicate value: "{name}"')
                seen.add(name)
            if not c.get("image"):
                add(f"{path}.image", "FieldValueRequired", "Required value")
            env_names = set()
            for j, e in enumerate(c.get("env") or []):
                if not e.get("name"):
                    add(f"{path}.env[{j}].name", "FieldValueRequired", "Required value")
                env_names.add(e.get("name"))
                vf = e.get("valueFrom")
                if vf is not None and e.get("value"):
                    add(f"{path}.env[{j}].valueFrom", "FieldValueInvalid",
                        "Invalid value: \"\": may not be specified when `value` is not empty")
                for ref in ("secretKeyRef", "configMapKeyRef"):
                    r = (vf or {}).get(ref)
                    if r is not None:
                        if not r.get("key"):
                            add(f"{path}.env[{j}].valueFrom.{ref}.key", "FieldValueRequired",
                                "Required value")
                        if not r.get("name"):
                            add(f"{path}.env[{j}].valueFrom.{ref}.name", "FieldValueRequired",
                                "Required value")
            mount_paths = set()
            for j, m in enumerate(c.get("volumeMounts") or []):
                if m.get("name") not in volumes:
                    add(f"{path}.volumeMounts[{j}].name", "FieldValueNotFound",
                        f'Not found: "{m.get("name")}"')
                if not m.get("mountPath"):
                    add(f"{path}.volumeMounts[{j}].mountPath", "FieldValueRequired",
                        "Required value")
                elif m["mountPath"] in mount_paths:
                    add(f"{path}.volumeMounts[{j}].mountPath", "FieldValueInvalid",
                        f'Invalid value: "{m["mountPath"]}": must be unique')
                mount_paths.add(m.get("mountPath"))
    return causes


def prepare_update(resource: str, old: dict, patched: dict) -> dict:
    """The object the registry would store for `patched` (an update of `old`): status and
    system metadata from `old`, template defaulted, generation bumped on a spec change."""
    new = copy.deepcopy(patched)
    meta = new.setdefault("metadata", {})
    old_meta = old["metadata"]
    for key in ("uid", "creationTimestamp", "generation", "namespace", "name",
                "deletionTimestamp", "deletionGracePeriodSeconds"):
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    meta["resourceVersion"] = old_meta["resourceVersion"]
    new["apiVersion"], new["kind"] = "apps/v1", KINDS[resource]
    if "status" in old:
        new["status"] = copy.deepcopy(old["status"])
    else:
        new.pop("status", None)
    default_workload(resource, new)
    if new.get("spec") != old.get("spec"):
        meta["generation"] = int(old_meta.get("generation", 1)) + 1
    return new


def pod_security_warnings(level: str, template: dict, name: str) -> list[str]:
    """`Warning` header texts (299) for a workload whose pods would violate `level`."""
    from .admission import parse_level, pod_security_violations

    if parse_level(level)[0] == "privileged":
        return []
    pod = {"metadata": copy.deepcopy(template.get("metadata") or {}),
           "spec": copy.deepcopy(template.get("spec") or {})}
    violations = pod_security_violations(level, pod)
    if not violations:
        return []
    return [f'would violate PodSecurity "{level}": ' + ", ".join(violations)]


# ------------------------------------------------------------------------------------------------
# controllers


def _is_ready(pod: dict) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _is_active(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _controller_uid(obj: dict) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def _owner_ref(owner: dict) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        frac = total * int(value[:-1]) / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(value or 0)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Controllers:
    """The workload controllers of the sandbox (see module doc). Thread-safe; one worker thread."""

    def __init__(self, store: st.Store, scenario: Any, kubelet: Any = None,
                 events: Any = None) -> None:
        self.store = store
        self.scenario = scenario
        self.kubelet = kubelet
        self.events = events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: st.Watcher | None = None
        self._node_rr = 0
        self._failed_create: dict[str, str] = {}

    def start(self) -> None:
        self._watcher, _ = self.store.watch(None, None, None)
        self._thread = threading.Thread(target=self._loop, name="sandbox-controllers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.close()
            self._watcher.events.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    # ---- loop

    def _loop(self) -> None:
        assert self._watcher is not None
        while not self._stop.is_set():
            event = self._watcher.get(timeout=0.5)
            if event is None:
                continue
            keys = set(self._keys_for(event))
            # Coalesce a burst of events (a rollout writes many objects at once).
            deadline = time.monotonic() + 0.02
            while time.monotonic() < deadline:
                more = self._watcher.get(timeout=0.005)
                if more is None:
                    continue
                keys.update(self._keys_for(more))
            for key in sorted(keys, key=lambda k: WORKLOADS.index(k[0]), reverse=True):
                if self._stop.is_set():
                    return
                try:
                    self.reconcile(*key)
                except Exception:  # noqa: BLE001 - a controller bug must not stop the loop
                    import traceback

                    traceback.print_exc()

    def _keys_for(self, event: st.Event) -> list[tuple[str, str, str]]:
        obj = event.obj
        ns = obj["metadata"].get("namespace", "")
        out: list[tuple[str, str, str]] = []
        if event.resource in WORKLOADS:
            out.append((event.resource, ns, obj["metadata"]["name"]))
        if event.resource in ("pods", "replicasets"):
            for ref in obj["metadata"].get("ownerReferences") or []:
                res = st.KIND_TO_RESOURCE.get(ref.get("kind", ""))
                if ref.get("controller") and res in WORKLOADS:
                    out.append((res, ns, ref["name"]))
                    if res == "replicasets":
                        rs = self.store.snapshot("replicasets", ns, ref["name"])
                        for r2 in (rs or {"metadata": {}})["metadata"].get("ownerReferences") or []:
                            if r2.get("kind") == "Deployment":
                                out.append(("deployments", ns, r2["name"]))
        return out

    def reconcile(self, resource: str, namespace: str, name: str) -> None:
        """One level-triggered pass for one workload."""
        obj = self.store.get(resource, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        getattr(self, "_" + resource)(obj)

    # ---- helpers

    def _owned(self, resource: str, owner: dict) -> list[dict]:
        items, _ = self.store.list(resource, owner["metadata"]["namespace"])
        uid = owner["metadata"]["uid"]
        return [copy.deepcopy(o) for o in items if _controller_uid(o) == uid]

    def _set_status(self, resource: str, obj: dict, status: dict) -> None:
        def write(cur: dict) -> dict | None:
            if cur["metadata"].get("uid") != obj["metadata"]["uid"]:
                raise st.Unchanged()
            merged = {**(cur.get("status") or {}), **status}
            for k in [k for k, v in merged.items() if v is None]:
                merged.pop(k)
            if merged == cur.get("status"):
                raise st.Unchanged()
            cur["status"] = merged
            return None

        self.store.mutate(resource, obj["metadata"]["namespace"], obj["metadata"]["name"], write)

    def _set_replicas(self, rs: dict, replicas: int, annotations: dict | None = None) -> None:
        def write(cur: dict) -> dict | None:
            ann = cur["metadata"].setdefault("annotations", {})
            changed = cur["spec"].get("replicas") != replicas
            for k, v in (annotations or {}).items():
                if ann.get(k) != v:
                    ann[k] = v
                    changed = True
            if not changed:
                raise st.Unchanged()
            if cur["spec"].get("replicas") != replicas:
                cur["spec"]["replicas"] = replicas
                cur["metadata"]["generation"] = int(cur["metadata"].get("generation", 1)) + 1
            return None

        self.store.mutate("replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"], write)

    def _event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        if self.events is not None:
            self.events.emit(obj, type_, reason, message, component="controllermanager")

    def _delete_pod(self, owner: dict, pod: dict) -> None:
        try:
            deleted, finished = self.store.delete("pods", pod["metadata"]["namespace"],
                                                  pod["metadata"]["name"])
        except st.NotFound:
            return
        if not finished and self.kubelet is not None:
            self.kubelet.on_pod_changed(deleted)
        self._event(owner, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}")

    def _create_pod(self, owner: dict, template: dict, name: str, extra_labels: dict,
                    node: str | None = None, hostname: str | None = None) -> dict | None:
        from . import admission
        from .scenario import default_pod, initial_pending_status, register_pod_knobs

        ns = owner["metadata"]["namespace"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": copy.deepcopy(template.get("metadata") or {}),
               "spec": copy.deepcopy(template.get("spec") or {})}
        meta = pod["metadata"]
        meta.pop("creationTimestamp", None)
        meta["name"] = name
        meta["generateName"] = owner["metadata"]["name"] + "-"
        meta["namespace"] = ns
        meta.setdefault("labels", {}).update(extra_labels)
        meta["ownerReferences"] = [_owner_ref(owner)]
        if hostname:
            pod["spec"].setdefault("hostname", hostname)
            pod["spec"].setdefault("subdomain", owner["spec"].get("serviceName", ""))
        default_pod(pod, f"{ns}/{name}/{time.time()}")
        ns_obj = self.store.snapshot("namespaces", None, ns) or {"metadata": {}}
        level = admission.policy_from_labels(ns_obj["metadata"].get("labels"))
        violations = admission.pod_security_violations(level, pod)
        if violations:
            message = admission.format_forbidden(name, level, violations)
            key = f"{owner['metadata']['uid']}/{message}"
            if self._failed_create.get(owner["metadata"]["uid"]) != key:
                self._failed_create[owner["metadata"]["uid"]] = key
                self._event(owner, "Warning", "FailedCreate", f"Error creating: {message}")
            return None
        self._failed_create.pop(owner["metadata"]["uid"], None)
        if node is not None:
            pod["spec"]["nodeName"] = node
        else:
            pod["spec"]["nodeName"] = self._schedule(pod)
        if not pod["spec"]["nodeName"]:
            pod["spec"].pop("nodeName")
        pod["status"] = initial_pending_status(self.scenario, pod)
        try:
            created = self.store.create("pods", pod)
        except st.AlreadyExists:
            return None
        register_pod_knobs(self.scenario, created)
        self._event(owner, "Normal", "SuccessfulCreate", f"Created pod: {name}")
        if created["spec"].get("nodeName"):
            self._event(created, "Normal", "Scheduled",
                        f"Successfully assigned {ns}/{name} to {created['spec']['nodeName']}")
        if self.kubelet is not None:
            self.kubelet.on_pod_changed(created)
        return created

    def _schedule(self, pod: dict) -> str | None:
        selector = pod["spec"].get("nodeSelector") or {}
        candidates = []
        for node in self.scenario.nodes:
            labels = {"kubernetes.io/hostname": node["name"], "kubernetes.io/os": "linux",
                      **(node.get("labels") or {})}
            if all(labels.get(k) == v for k, v in selector.items()):
                candidates.append(node["name"])
        if not candidates:
            return None
        self._node_rr += 1
        return candidates[self._node_rr % len(candidates)]

    # ---- ReplicaSet

    def _replicasets(self, rs: dict) -> None:
        pods = self._owned("pods", rs)
        active = [p for p in pods if _is_active(p)]
        want = int(rs["spec"].get("replicas", 1))
        diff = want - len(active)
        if diff > 0:
            base = rs["metadata"]["name"]
            for _ in range(diff):
                labels = (rs["spec"]["template"].get("metadata") or {}).get("labels") or {}
                self._create_pod(rs, rs["spec"]["template"], f"{base}-{_random_suffix()}",
                                 dict(labels))
        elif diff < 0:
            def rank(p: dict) -> tuple:
                return (bool(p["spec"].get("nodeName")),
                        (p.get("status") or {}).get("phase") == "Running", _is_ready(p),
                        # newer first: reverse of creation time
                        "".join(chr(255 - ord(ch)) for ch in p["metadata"].get("creationTimestamp", "")))
            for pod in sorted(active, key=rank)[: -diff]:
                self._delete_pod(rs, pod)
        pods = [p for p in self._owned("pods", rs) if _is_active(p)]
        ready = sum(1 for p in pods if _is_ready(p))
        self._set_status("replicasets", rs, {
            "replicas": len(pods), "fullyLabeledReplicas": len(pods),
            "readyReplicas": ready or None, "availableReplicas": ready or None,
            "observedGeneration": rs["metadata"].get("generation", 1)})

    # ---- Deployment

    def _deployments(self, dep: dict) -> None:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        spec = dep["spec"]
        replicas = int(spec.get("replicas", 1))
        rss = self._owned("replicasets", dep)
        template = spec["template"]
        new_rs = next((rs for rs in rss if _strip_hash(rs["spec"]["template"]) == template), None)
        revisions = [int((rs["metadata"].get("annotations") or {}).get(
            "deployment.kubernetes.io/revision", "0") or 0) for rs in rss]
        strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
        surge = _int_or_percent(((spec.get("strategy") or {}).get("rollingUpdate") or {})
                                .get("maxSurge", "25%"), replicas, True)
        unavailable = _int_or_percent(((spec.get("strategy") or {}).get("rollingUpdate") or {})
                                      .get("maxUnavailable", "25%"), replicas, False)
        if strategy == "Recreate":
            surge, unavailable = 0, replicas
        if surge == 0 and unavailable == 0:
            unavailable = 1
        if new_rs is None:
            collisions = int((dep.get("status") or {}).get("collisionCount", 0))
            h = template_hash(template, collisions)
            while self.store.snapshot("replicasets", ns, f"{name}-{h}") is not None:
                collisions += 1
                h = template_hash(template, collisions)
            rs_template = copy.deepcopy(template)
            rs_template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
            revision = str(max(revisions + [0]) + 1)
            body = {
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{name}-{h}", "namespace": ns,
                    "labels": {**((template.get("metadata") or {}).get("labels") or {}),
                               "pod-template-hash": h},
                    "annotations": {
                        "deployment.kubernetes.io/desired-replicas": str(replicas),
                        "deployment.kubernetes.io/max-replicas": str(replicas + surge),
                        "deployment.kubernetes.io/revision": revision},
                    "ownerReferences": [_owner_ref(dep)]},
                "spec": {"replicas": 0,
                         "selector": {"matchLabels": {**(spec["selector"].get("matchLabels") or {}),
                                                      "pod-template-hash": h}},
                         "template": rs_template},
            }
            new_rs = self.store.create("replicasets", body)
            self._event(dep, "Normal", "ScalingReplicaSet",
                        f"Scaled up replica set {name}-{h} from 0 to 0")
            rss.append(new_rs)
            self._set_dep_annotation(dep, revision)
        old = [rs for rs in rss if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]]
        pods_by_rs = {rs["metadata"]["uid"]: self._owned("pods", rs) for rs in rss}
        new_count = int(new_rs["spec"].get("replicas", 0))
        anno = {"deployment.kubernetes.io/desired-replicas": str(replicas),
                "deployment.kubernetes.io/max-replicas": str(replicas + surge)}
        if strategy == "Recreate":
            for rs in old:
                if rs["spec"].get("replicas", 0):
                    self._scale(dep, rs, 0)
            if all(not pods_by_rs[rs["metadata"]["uid"]] for rs in old) and new_count != replicas:
                self._scale(dep, new_rs, replicas, anno)
        else:
            total = sum(int(rs["spec"].get("replicas", 0)) for rs in rss)
            if new_count > replicas:
                self._scale(dep, new_rs, replicas, anno)
                new_count = replicas
            elif new_count < replicas:
                room = replicas + surge - total
                if room > 0:
                    new_count = min(replicas, new_count + room)
                    self._scale(dep, new_rs, new_count, anno)
            ready_all = sum(1 for pods in pods_by_rs.values() for p in pods if _is_ready(p))
            removable = ready_all - (replicas - unavailable)
            for rs in sorted(old, key=lambda r: r["metadata"].get("creationTimestamp", "")):
                count = int(rs["spec"].get("replicas", 0))
                if count == 0:
                    continue
                # Unready old pods may always go (cleanupUnhealthyReplicas).
                unhealthy = sum(1 for p in pods_by_rs[rs["metadata"]["uid"]]
                                if _is_active(p) and not _is_ready(p))
                drop = min(count, max(removable, 0) + unhealthy)
                if drop > 0:
                    self._scale(dep, rs, count - drop)
                    removable -= max(drop - unhealthy, 0)
        self._cleanup_history(dep, old)
        self._deployment_status(dep)

    def _set_dep_annotation(self, dep: dict, revision: str) -> None:
        def write(cur: dict) -> dict | None:
            ann = cur["metadata"].setdefault("annotations", {})
            if ann.get("deployment.kubernetes.io/revision") == revision:
                raise st.Unchanged()
            ann["deployment.kubernetes.io/revision"] = revision
            return None

        self.store.mutate("deployments", dep["metadata"]["namespace"], dep["metadata"]["name"],
                          write)

    def _scale(self, dep: dict, rs: dict, to: int, annotations: dict | None = None) -> None:
        frm = int(rs["spec"].get("replicas", 0))
        self._set_replicas(rs, to, annotations)
        if frm != to:
            verb = "up" if to > frm else "down"
            self._event(dep, "Normal", "ScalingReplicaSet",
                        f"Scaled {verb} replica set {rs['metadata']['name']} from {frm} to {to}")

    def _cleanup_history(self, dep: dict, old: list[dict]) -> None:
        limit = int(dep["spec"].get("revisionHistoryLimit", 10))
        idle = [rs for rs in old if not rs["spec"].get("replicas")
                and not self._owned("pods", rs)]
        idle.sort(key=lambda r: int((r["metadata"].get("annotations") or {}).get(
            "deployment.kubernetes.io/revision", "0") or 0))
        for rs in idle[: max(0, len(idle) - limit)]:
            try:
                self.store.delete("replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"])
            except st.NotFound:
                pass

    def _deployment_status(self, dep: dict) -> None:
        dep = self.store.get("deployments", dep["metadata"]["namespace"], dep["metadata"]["name"])
        if dep is None:
            return
        replicas = int(dep["spec"].get("replicas", 1))
        rss = self._owned("replicasets", dep)
        template = dep["spec"]["template"]
        total = updated = ready = 0
        new_name = ""
        for rs in rss:
            pods = [p for p in self._owned("pods", rs) if _is_active(p)]
            total += len(pods)
            r = sum(1 for p in pods if _is_ready(p))
            ready += r
            if _strip_hash(rs["spec"]["template"]) == template:
                updated += len(pods)
                new_name = rs["metadata"]["name"]
        status = dep.get("status") or {}
        now = _now()
        conds = {c["type"]: c for c in status.get("conditions") or []}

        def cond(type_: str, ok: bool, reason: str, message: str) -> dict:
            old = conds.get(type_)
            status_ = "True" if ok else "False"
            if old and old.get("status") == status_ and old.get("reason") == reason \
                    and old.get("message") == message:
                return old
            return {"type": type_, "status": status_, "lastUpdateTime": now,
                    "lastTransitionTime": old["lastTransitionTime"]
                    if old and old.get("status") == status_ else now,
                    "reason": reason, "message": message}

        unavailable_allowed = _int_or_percent(
            ((dep["spec"].get("strategy") or {}).get("rollingUpdate") or {})
            .get("maxUnavailable", "25%"), replicas, False)
        available_ok = ready >= replicas - unavailable_allowed
        done = updated == replicas == total == ready
        conditions = [
            cond("Available", available_ok,
                 "MinimumReplicasAvailable" if available_ok else "MinimumReplicasUnavailable",
                 "Deployment has minimum availability." if available_ok
                 else "Deployment does not have minimum availability."),
            cond("Progressing", True, "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
                 f'ReplicaSet "{new_name}" has successfully progressed.' if done
                 else f'ReplicaSet "{new_name}" is progressing.'),
        ]
        self._set_status("deployments", dep, {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": total or None, "updatedReplicas": updated or None,
            "readyReplicas": ready or None, "availableReplicas": ready or None,
            "unavailableReplicas": (replicas - ready) if replicas > ready else None,
            "conditions": conditions})

    # ---- StatefulSet

    def _statefulsets(self, sts: dict) -> None:
        name = sts["metadata"]["name"]
        replicas = int(sts["spec"].get("replicas", 1))
        revision = f"{name}-{template_hash(sts['spec']['template'])}"
        strategy = (sts["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate")
        pods = {p["metadata"]["name"]: p for p in self._owned("pods", sts)}
        current_rev = (sts.get("status") or {}).get("currentRevision") or revision
        for i in range(replicas):
            pname = f"{name}-{i}"
            pod = pods.get(pname)
            if pod is None:
                # A (re)created pod always gets the update revision (OnDelete too).
                if self._create_pod(sts, sts["spec"]["template"], pname, {
                        "apps.kubernetes.io/pod-index": str(i),
                        "controller-revision-hash": revision,
                        "statefulset.kubernetes.io/pod-name": pname}, hostname=pname) is None:
                    break
                if sts["spec"].get("podManagementPolicy", "OrderedReady") == "OrderedReady":
                    break  # the next ordinal waits for this one to be Ready
            elif not _is_ready(pod) and \
                    sts["spec"].get("podManagementPolicy", "OrderedReady") == "OrderedReady":
                break
        for pname, pod in pods.items():
            idx = pname.rsplit("-", 1)[-1]
            if idx.isdigit() and int(idx) >= replicas and _is_active(pod):
                self._delete_pod(sts, pod)
        pods = {p["metadata"]["name"]: p for p in self._owned("pods", sts)}
        if strategy == "RollingUpdate":
            active = [p for p in pods.values() if _is_active(p)]
            if len(active) == replicas and all(_is_ready(p) for p in active):
                stale = [p for p in active
                         if (p["metadata"].get("labels") or {}).get("controller-revision-hash")
                         != revision]
                if stale:
                    stale.sort(key=lambda p: int(p["metadata"]["name"].rsplit("-", 1)[-1]))
                    self._delete_pod(sts, stale[-1])
        active = [p for p in self._owned("pods", sts) if _is_active(p)]
        updated = sum(1 for p in active if (p["metadata"].get("labels") or {})
                      .get("controller-revision-hash") == revision)
        ready = sum(1 for p in active if _is_ready(p))
        self._set_status("statefulsets", sts, {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(active), "readyReplicas": ready or None,
            "availableReplicas": ready or None, "currentReplicas": updated if updated == len(active)
            else len(active) - updated,
            "updatedReplicas": updated or None, "updateRevision": revision,
            "currentRevision": revision if updated == len(active) == replicas else current_rev,
            "collisionCount": 0})

    # ---- DaemonSet

    def _daemonsets(self, ds: dict) -> None:
        name = ds["metadata"]["name"]
        revision = template_hash(ds["spec"]["template"])
        pods = [p for p in self._owned("pods", ds) if _is_active(p)]
        by_node: dict[str, list[dict]] = {}
        for p in pods:
            by_node.setdefault(p["spec"].get("nodeName", ""), []).append(p)
        selector = (ds["spec"]["template"].get("spec") or {}).get("nodeSelector") or {}
        nodes = []
        for node in self.scenario.nodes:
            labels = {"kubernetes.io/hostname": node["name"], "kubernetes.io/os": "linux",
                      **(node.get("labels") or {})}
            if all(labels.get(k) == v for k, v in selector.items()):
                nodes.append(node["name"])
        all_pods = self._owned("pods", ds)
        for node in nodes:
            if not by_node.get(node) and not any(
                    p["spec"].get("nodeName") == node for p in all_pods):
                self._create_pod(ds, ds["spec"]["template"],
                                 f"{name}-{_random_suffix()}",
                                 {"controller-revision-hash": revision,
                                  "pod-template-generation": str(ds["metadata"].get("generation", 1))},
                                 node=node)
        strategy = (ds["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate")
        if strategy == "RollingUpdate" and all(_is_ready(p) for p in pods) and \
                len(pods) == len(nodes):
            stale = [p for p in pods if (p["metadata"].get("labels") or {})
                     .get("controller-revision-hash") != revision]
            if stale:
                self._delete_pod(ds, stale[0])
        pods = [p for p in self._owned("pods", ds) if _is_active(p)]
        ready = sum(1 for p in pods if _is_ready(p))
        updated = sum(1 for p in pods if (p["metadata"].get("labels") or {})
                      .get("controller-revision-hash") == revision)
        self._set_status("daemonsets", ds, {
            "observedGeneration": ds["metadata"].get("generation", 1),
            "desiredNumberScheduled": len(nodes), "currentNumberScheduled": len(pods),
            "numberReady": ready, "numberAvailable": ready or None,
            "numberUnavailable": (len(nodes) - ready) if len(nodes) > ready else None,
            "updatedNumberScheduled": updated or None, "numberMisscheduled": 0})
