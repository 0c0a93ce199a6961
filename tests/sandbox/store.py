"""The sandbox's etcd + controllers: objects by (resource, namespace, name), watches, deletion, GC.

Contract for other sandbox modules (kubelet, monitor, control):

* ``Store.get(resource, namespace, name) -> dict | None`` — a deep copy, safe to modify.
* ``Store.mutate(resource, namespace, name, fn) -> dict | None`` — atomically read-modify-write:
  ``fn`` receives a deep copy and returns the new object (or None to keep its in-place edits);
  raising ``Unchanged`` inside ``fn`` aborts without a write. The resourceVersion is bumped and
  watchers see MODIFIED. Returns the stored copy, or None when the object does not exist (a pod
  deleted meanwhile). ``update_pod_status(namespace, name, fn)`` is the same for pods, for the
  kubelet.
* ``Store.delete(resource, namespace, name, grace_seconds=None)`` — pods go through graceful
  termination (deletionTimestamp set, removed after the scenario's ``pod_termination_grace``);
  everything else goes at once. Objects whose ``ownerReferences`` name a deleted uid are garbage
  collected shortly after (background propagation), as the real garbage collector does.
* ``Store.on_deleted(callback)`` — callback(resource, obj) after an object is really gone.

Objects kept here are never mutated after being stored (every write stores a new dict), so the API
server can serialise snapshots without copying them.
"""

from __future__ import annotations

import copy
import itertools
import queue
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

#: resource name -> (apiVersion, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "namespaces": ("v1", "Namespace", False),
    "nodes": ("v1", "Node", False),
    "pods": ("v1", "Pod", True),
    "secrets": ("v1", "Secret", True),
    "configmaps": ("v1", "ConfigMap", True),
    "services": ("v1", "Service", True),
    "serviceaccounts": ("v1", "ServiceAccount", True),
    "events": ("v1", "Event", True),
    "deployments": ("apps/v1", "Deployment", True),
    "replicasets": ("apps/v1", "ReplicaSet", True),
    "statefulsets": ("apps/v1", "StatefulSet", True),
    "daemonsets": ("apps/v1", "DaemonSet", True),
}
KIND_TO_RESOURCE = {kind: res for res, (_, kind, _) in RESOURCES.items()}

Key = tuple[str, str, str]  # (resource, namespace or "", name)


class StoreError(Exception):
    """Base of the store's errors; the API server maps them to Status bodies."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class Conflict(StoreError):
    pass


class Gone(StoreError):
    """A watch asked for a resourceVersion older than the history kept."""


class Unchanged(Exception):
    """Raise inside a `mutate` callback to abort without writing."""


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class Event:
    """One change: type ADDED/MODIFIED/DELETED, the object after (or last state), the one before."""

    type: str
    resource: str
    obj: dict
    old: dict | None
    rv: int


class Watcher:
    """A queue of events for one resource (optionally one namespace) — or every resource when
    `resource` is None (what the controllers use). Close it when done."""

    def __init__(self, store: "Store", resource: str | None, namespace: str | None) -> None:
        self.store = store
        self.resource = resource
        self.namespace = namespace
        self.events: "queue.Queue[Event | None]" = queue.Queue()

    def wants(self, event: Event) -> bool:
        if self.resource is not None and event.resource != self.resource:
            return False
        return self.namespace is None or event.obj["metadata"].get("namespace") == self.namespace

    def get(self, timeout: float) -> Event | None:
        """The next event, or None after `timeout` seconds (or when the store closes)."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.store._remove_watcher(self)


class Store:
    """Thread-safe object store with resourceVersions, watch history and owner-based GC."""

    HISTORY = 10000

    def __init__(self, pod_termination_grace: float = 0.3, gc_delay: float = 0.05) -> None:
        self._lock = threading.RLock()
        self._objects: dict[Key, dict] = {}
        self._rv = itertools.count(1000)
        self._current_rv = next(self._rv)
        self._history: deque[Event] = deque(maxlen=self.HISTORY)
        self._oldest_rv = self._current_rv
        self._watchers: list[Watcher] = []
        self._deleted_callbacks: list[Callable[[str, dict], None]] = []
        self._timers: set[threading.Timer] = set()
        self._closed = False
        self.pod_termination_grace = pod_termination_grace
        self.gc_delay = gc_delay

    # ---------------------------------------------------------------- reading

    @property
    def resource_version(self) -> str:
        """The current (list) resourceVersion."""
        return str(self._current_rv)

    def get(self, resource: str, namespace: str | None, name: str) -> dict | None:
        """A deep copy of one object, or None."""
        obj = self._objects.get((resource, namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def snapshot(self, resource: str, namespace: str | None, name: str) -> dict | None:
        """The stored object itself (do not modify) — for serialising."""
        return self._objects.get((resource, namespace or "", name))

    def list(self, resource: str, namespace: str | None = None) -> tuple[list[dict], str]:
        """Stored objects (do not modify) of a resource, sorted by namespace/name, and the list RV."""
        with self._lock:
            items = [obj for (res, ns, _), obj in self._objects.items()
                     if res == resource and (namespace is None or ns == namespace)]
            rv = str(self._current_rv)
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items, rv

    def find_by_uid(self, uid: str) -> dict | None:
        with self._lock:
            for obj in self._objects.values():
                if obj["metadata"].get("uid") == uid:
                    return obj
        return None

    # ---------------------------------------------------------------- writing

    def load(self, objects: Iterable[dict]) -> None:
        """Store the initial objects (no events; they predate every watch)."""
        with self._lock:
            for obj in objects:
                resource = KIND_TO_RESOURCE[obj["kind"]]
                self._current_rv = next(self._rv)
                obj = copy.deepcopy(obj)
                obj["metadata"]["resourceVersion"] = str(self._current_rv)
                namespaced = RESOURCES[resource][2]
                if not namespaced:
                    obj["metadata"].pop("namespace", None)
                self._objects[self._key(resource, obj)] = obj
            self._oldest_rv = self._current_rv

    def create(self, resource: str, obj: dict, dry_run: bool = False) -> dict:
        """Store a new object (AlreadyExists if the name is taken); fills uid, timestamps, RV."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        api_version, kind, namespaced = RESOURCES[resource]
        obj["apiVersion"], obj["kind"] = api_version, kind
        if not namespaced:
            meta.pop("namespace", None)
        with self._lock:
            key = self._key(resource, obj)
            if key in self._objects:
                raise AlreadyExists(meta["name"])
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if dry_run:
                meta["resourceVersion"] = ""
                return obj
            if resource in ("deployments", "replicasets", "statefulsets", "daemonsets"):
                meta["generation"] = 1
            self._commit("ADDED", resource, key, obj, None)
        return copy.deepcopy(obj)

    def replace(self, resource: str, obj: dict, expect_rv: str | None = None) -> dict:
        """Store a new version of an existing object (Conflict on a stale resourceVersion)."""
        obj = copy.deepcopy(obj)
        with self._lock:
            key = self._key(resource, obj)
            old = self._objects.get(key)
            if old is None:
                raise NotFound(obj["metadata"]["name"])
            if expect_rv and expect_rv != old["metadata"]["resourceVersion"]:
                raise Conflict(obj["metadata"]["name"])
            for field in ("uid", "creationTimestamp", "deletionTimestamp",
                          "deletionGracePeriodSeconds"):
                if field in old["metadata"]:
                    obj["metadata"][field] = old["metadata"][field]
            self._commit("MODIFIED", resource, key, obj, old)
        return copy.deepcopy(obj)

    def mutate(self, resource: str, namespace: str | None, name: str,
               fn: Callable[[dict], dict | None]) -> dict | None:
        """Atomically apply `fn` to a copy of the object and store the result (see module doc)."""
        with self._lock:
            key = (resource, namespace or "", name)
            old = self._objects.get(key)
            if old is None:
                return None
            new = copy.deepcopy(old)
            try:
                result = fn(new)
            except Unchanged:
                return copy.deepcopy(old)
            if result is not None:
                new = result
            new["metadata"]["name"] = name
            if namespace:
                new["metadata"]["namespace"] = namespace
            self._commit("MODIFIED", resource, key, new, old)
            return copy.deepcopy(new)

    def update_pod_status(self, namespace: str, name: str,
                          fn: Callable[[dict], dict | None]) -> dict | None:
        """`mutate` for a pod: what the kubelet uses to write container statuses."""
        return self.mutate("pods", namespace, name, fn)

    def delete(self, resource: str, namespace: str | None, name: str,
               grace_seconds: int | None = None, expect_uid: str | None = None) -> tuple[dict, bool]:
        """Delete an object. Returns (object, finished): finished is False while a pod terminates."""
        with self._lock:
            key = (resource, namespace or "", name)
            old = self._objects.get(key)
            if old is None:
                raise NotFound(name)
            if expect_uid and old["metadata"].get("uid") != expect_uid:
                raise Conflict(name)
            if resource == "pods" and old["spec"].get("nodeName"):
                if old["metadata"].get("deletionTimestamp"):
                    return copy.deepcopy(old), False
                grace = old["spec"].get("terminationGracePeriodSeconds", 30)
                if grace_seconds is not None:
                    grace = grace_seconds
                if grace > 0:
                    new = copy.deepcopy(old)
                    new["metadata"]["deletionTimestamp"] = time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + grace))
                    new["metadata"]["deletionGracePeriodSeconds"] = grace
                    self._commit("MODIFIED", resource, key, new, old)
                    self._later(min(float(grace), self.pod_termination_grace),
                                self._finish_pod_deletion, namespace, name)
                    return copy.deepcopy(new), False
            self._remove(resource, key, old)
        self._after_delete(resource, old)
        return copy.deepcopy(old), True

    def on_deleted(self, callback: Callable[[str, dict], None]) -> None:
        """Register callback(resource, obj) run after an object is really removed."""
        self._deleted_callbacks.append(callback)

    # ---------------------------------------------------------------- watching

    def watch(self, resource: str, namespace: str | None, since_rv: str | None) -> tuple[Watcher, list[Event]]:
        """A watcher plus the backlog: events after `since_rv` (Gone when too old)."""
        with self._lock:
            watcher = Watcher(self, resource, namespace)
            backlog: list[Event] = []
            if since_rv not in (None, "", "0"):
                try:
                    since = int(since_rv)
                except ValueError:
                    raise Gone(f"invalid resource version {since_rv!r}") from None
                if since < self._oldest_rv:
                    raise Gone(f"too old resource version: {since} ({self._current_rv})")
                backlog = [e for e in self._history if e.rv > since and watcher.wants(e)]
            self._watchers.append(watcher)
        return watcher, backlog

    def close(self) -> None:
        """Stop timers and end every watch."""
        with self._lock:
            self._closed = True
            for timer in list(self._timers):
                timer.cancel()
            for watcher in self._watchers:
                watcher.events.put(None)
            self._watchers.clear()

    # ---------------------------------------------------------------- internals

    def _key(self, resource: str, obj: dict) -> Key:
        meta = obj["metadata"]
        namespace = meta.get("namespace", "") if RESOURCES[resource][2] else ""
        return (resource, namespace, meta["name"])

    def _commit(self, type_: str, resource: str, key: Key, obj: dict, old: dict | None) -> None:
        self._current_rv = next(self._rv)
        obj["metadata"]["resourceVersion"] = str(self._current_rv)
        self._objects[key] = obj
        self._publish(Event(type_, resource, obj, old, self._current_rv))

    def _remove(self, resource: str, key: Key, old: dict) -> None:
        del self._objects[key]
        self._current_rv = next(self._rv)
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._current_rv)
        self._publish(Event("DELETED", resource, gone, old, self._current_rv))

    def _publish(self, event: Event) -> None:
        self._history.append(event)
        if len(self._history) == self._history.maxlen:
            self._oldest_rv = self._history[0].rv - 1
        for watcher in self._watchers:
            if watcher.wants(event):
                watcher.events.put(event)

    def _remove_watcher(self, watcher: Watcher) -> None:
        with self._lock:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

    def _later(self, delay: float, fn: Callable, *args) -> None:
        if self._closed:
            return

        def run() -> None:
            self._timers.discard(timer)
            if not self._closed:
                fn(*args)

        timer = threading.Timer(delay, run)
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def _finish_pod_deletion(self, namespace: str, name: str) -> None:
        with self._lock:
            key = ("pods", namespace or "", name)
            old = self._objects.get(key)
            if old is None or not old["metadata"].get("deletionTimestamp"):
                return
            self._remove("pods", key, old)
        self._after_delete("pods", old)

    def _after_delete(self, resource: str, old: dict) -> None:
        for callback in list(self._deleted_callbacks):
            try:
                callback(resource, copy.deepcopy(old))
            except Exception:  # a broken hook must not break deletion
                import traceback

                traceback.print_exc()
        uid = old["metadata"].get("uid")
        if uid:
            self._later(self.gc_delay, self._collect_dependents, uid)

    def _collect_dependents(self, uid: str) -> None:
        with self._lock:
            dependents = [
                (res, ns, name) for (res, ns, name), obj in self._objects.items()
                if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
            ]
        for res, ns, name in dependents:
            try:
                self.delete(res, ns or None, name)
            except NotFound:
                pass


# -------------------------------------------------------------------- selectors

_LABEL_REQ = re.compile(
    r"""^\s*(?:
        (?P<notexists>!\s*(?P<nk>[^\s,=!()]+)) |
        (?P<setk>[^\s,=!()]+)\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\) |
        (?P<k>[^\s,=!()]+)\s*(?P<op>==|=|!=)\s*(?P<v>[^\s,=!()]*) |
        (?P<exists>[^\s,=!()]+)
    )\s*$""",
    re.VERBOSE,
)


class SelectorError(ValueError):
    """An unparseable selector (the API server answers 400)."""


def parse_label_selector(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """Parse a label selector into (key, op, values) requirements; op is =, !=, in, notin, exists, !."""
    reqs: list[tuple[str, str, tuple[str, ...]]] = []
    if not text or not text.strip():
        return reqs
    for part in _split_top_level(text):
        m = _LABEL_REQ.match(part)
        if not m:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
        if m.group("notexists"):
            reqs.append((m.group("nk"), "!", ()))
        elif m.group("setk"):
            values = tuple(v.strip() for v in m.group("values").split(",") if v.strip())
            reqs.append((m.group("setk"), m.group("setop"), values))
        elif m.group("k"):
            op = "!=" if m.group("op") == "!=" else "="
            reqs.append((m.group("k"), op, (m.group("v"),)))
        else:
            reqs.append((m.group("exists"), "exists", ()))
    return reqs


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def labels_match(reqs: list[tuple[str, str, tuple[str, ...]]], labels: dict | None) -> bool:
    """Whether `labels` satisfy every requirement."""
    labels = labels or {}
    for key, op, values in reqs:
        present = key in labels
        if op == "=" and labels.get(key) != values[0]:
            return False
        if op == "!=" and present and labels[key] == values[0]:
            return False
        if op == "in" and (not present or labels[key] not in values):
            return False
        if op == "notin" and present and labels[key] in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True


#: resource -> field label -> getter; the fields the real API server supports per resource.
_COMMON_FIELDS = {
    "metadata.name": lambda o: o["metadata"].get("name", ""),
    "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
}
FIELD_LABELS: dict[str, dict[str, Callable[[dict], str]]] = {
    "pods": {
        **_COMMON_FIELDS,
        "spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
        "spec.restartPolicy": lambda o: o["spec"].get("restartPolicy", ""),
        "spec.schedulerName": lambda o: o["spec"].get("schedulerName", ""),
        "spec.serviceAccountName": lambda o: o["spec"].get("serviceAccountName", ""),
        "spec.hostNetwork": lambda o: str(bool(o["spec"].get("hostNetwork", False))).lower(),
        "status.phase": lambda o: o.get("status", {}).get("phase", ""),
        "status.podIP": lambda o: o.get("status", {}).get("podIP", ""),
        "status.nominatedNodeName": lambda o: o.get("status", {}).get("nominatedNodeName", ""),
    },
    "secrets": {**_COMMON_FIELDS, "type": lambda o: o.get("type", "")},
    "namespaces": {**_COMMON_FIELDS, "status.phase": lambda o: o.get("status", {}).get("phase", "")},
    "nodes": {**_COMMON_FIELDS, "spec.unschedulable": lambda o: str(bool(o["spec"].get("unschedulable", False))).lower()},
    "events": {**_COMMON_FIELDS,
               "involvedObject.name": lambda o: o.get("involvedObject", {}).get("name", ""),
               "involvedObject.namespace": lambda o: o.get("involvedObject", {}).get("namespace", ""),
               "involvedObject.uid": lambda o: o.get("involvedObject", {}).get("uid", ""),
               "involvedObject.kind": lambda o: o.get("involvedObject", {}).get("kind", ""),
               "reason": lambda o: o.get("reason", ""),
               "type": lambda o: o.get("type", "")},
    "replicasets": {**_COMMON_FIELDS, "status.replicas": lambda o: str(o.get("status", {}).get("replicas", 0))},
}


def parse_field_selector(resource: str, text: str) -> list[tuple[Callable[[dict], str], bool, str]]:
    """Parse a field selector for `resource` into (getter, equal, value) terms."""
    terms: list[tuple[Callable[[dict], str], bool, str]] = []
    if not text or not text.strip():
        return terms
    supported = FIELD_LABELS.get(resource, _COMMON_FIELDS)
    for part in text.split(","):
        part = part.strip()
        m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = m.groups()
        if field not in supported:
            raise SelectorError(f"field label not supported: {field}")
        terms.append((supported[field], op != "!=", value))
    return terms


def fields_match(terms: list[tuple[Callable[[dict], str], bool, str]], obj: dict) -> bool:
    return all((getter(obj) == value) == equal for getter, equal, value in terms)
