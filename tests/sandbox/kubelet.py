"""The simulated kubelet: ephemeral container state machines and the monitors they start.

What a real node does for `spec.ephemeralContainers` (kubernetes-notes §3.4), and nothing easier:

* The kubelet notices a new ephemeral container only on a pod bound to a node and Running; it
  writes `status.ephemeralContainerStatuses` later ("after a sync"), never as part of the PATCH.
* ``Waiting/ContainerCreating`` first; then either ``Running`` (``startedAt``) after the scenario's
  ``container_start_delay``, or, for an image the scenario marks unpullable,
  ``Waiting/ErrImagePull`` -> ``Waiting/ImagePullBackOff`` -> ``ErrImagePull`` ... forever (back-off
  doubling, capped), never Running. A malformed image reference gives ``InvalidImageName``.
* A container whose process exits becomes ``Terminated`` (``Completed`` for exit 0, else ``Error``)
  and is never restarted: an ephemeral container is started only while no status exists for it,
  so its name stays taken for the life of the pod.
* When a container of a dotnet-monitor image (``ImageInfo.monitor`` or an image matching
  ``*/dotnet/monitor*``) becomes Running, a simulated dotnet-monitor is started for it with
  ``tests.sandbox.monitor.start_monitor(pod, container, scenario, network, recorder)``; its exit
  (port taken, stdin closed, ...) terminates the container. Other images run until the pod goes,
  unless the scenario's image entry says ``exit_code`` (after ``exit_after`` seconds).
* Clusters with the ``ContainerStatusUser`` feature (1.33+, SupplementalGroupsPolicy beta) report
  ``user.linux {uid, gid, supplementalGroups}``: runAsUser/runAsGroup (container over pod), else
  the image's USER from the scenario, else root.
* Pod deletion (deletionTimestamp or removal) stops the pod's monitors; nothing is written after.
* It owns every pod on its nodes, not only ephemeral containers: ``adopt(pods)`` at start rewrites
  the status of a pod whose container env cannot be resolved (``Pending``,
  ``CreateContainerConfigError``) and keeps retrying it; a new ``Pending`` pod (from a controller)
  gets ``ContainerCreating`` -> ``Running``/``Ready``, a pod IP and ``startTime``.
* Env is resolved as ``makeEnvironmentVariables`` does (``resolve_env``): ``envFrom``, then
  ``env`` with ``$(VAR)`` expansion, ``valueFrom.secretKeyRef``/``configMapKeyRef`` (``optional``
  honoured) and ``fieldRef`` (metadata.name/namespace/uid/labels/annotations, spec.nodeName,
  status.podIP/hostIP...). A missing object or key leaves the container Waiting with
  ``CreateContainerConfigError`` and the kubelet's message (``secret "NAME" not found``,
  ``couldn't find key KEY in Secret NS/NAME``). A simulated monitor gets the resolved env, and the
  pod it sees carries its app containers' resolved env.
* Events as ``kubectl describe`` shows them (``events=EventRecorder``): Pulling, Pulled, Created,
  Started, Failed (``Error: ErrImagePull``/``ImagePullBackOff``/config errors), BackOff, with the
  container's ``fieldPath``.

Collaborators (duck-typed; see the Protocols): the store (``update_pod_status(ns, name, fn)``
where ``fn`` edits a copy of the pod, returns None when the pod is gone, and may raise the store's
``Unchanged``), the scenario (``tests.sandbox.scenario.Scenario``), the network (passed through to
the monitor) and the recorder (``record(event, **fields)`` if it has one).
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Image references a real runtime refuses to parse (lower-case repository, optional tag/digest).
_IMAGE_REF = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")
_MONITOR_IMAGE_PATTERN = "*/dotnet/monitor*"
_BACKOFF_CAP_FACTOR = 16.0
_EXIT_POLL_INTERVAL = 0.25


class PodStore(Protocol):
    """What the kubelet needs from the store."""

    def update_pod_status(self, namespace: str, name: str,
                          fn: Callable[[dict], dict | None]) -> dict | None: ...


class MonitorHandle(Protocol):
    """What `start_monitor` returns. `exited` is None while running, else ``(exit_code, message)``
    (an object with ``exit_code``/``message`` attributes is accepted too). An optional
    ``exit_event: threading.Event`` lets the kubelet wait instead of polling."""

    exited: Any

    def stop(self) -> None: ...


MonitorFactory = Callable[[dict, dict, Any, Any, Any], MonitorHandle]


def _default_monitor_factory(pod: dict, container: dict, scenario: Any, network: Any,
                             recorder: Any) -> MonitorHandle:
    from tests.sandbox.monitor import (
        start_monitor,  # lazy: the monitor package is heavy
    )

    return start_monitor(pod, container, scenario, network, recorder)


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def full_image(ref: str) -> str:
    """The runtime's normalised reference (``busybox`` -> ``docker.io/library/busybox:latest``)."""
    try:
        from tests.sandbox.scenario import full_image as scenario_full_image

        return scenario_full_image(ref)
    except ImportError:  # pragma: no cover - the scenario module is part of the sandbox
        name, _, digest = ref.partition("@")
        first = name.split("/", 1)[0]
        if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
            name = "docker.io/" + (name if "/" in name else "library/" + name)
        if not digest and ":" not in name.rsplit("/", 1)[-1]:
            name += ":latest"
        return name + ("@" + digest if digest else "")


def image_id(ref: str) -> str:
    """``repo@sha256:...`` as the runtime reports it."""
    try:
        from tests.sandbox.scenario import image_id as scenario_image_id

        return scenario_image_id(ref)
    except ImportError:  # pragma: no cover
        repo = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
        return f"{repo}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


def is_monitor_image(image: str, info: Any = None) -> bool:
    """A dotnet-monitor image: the scenario says so, or ``*/dotnet/monitor*``."""
    return bool(getattr(info, "monitor", False)) or fnmatch.fnmatchcase(image,
                                                                        _MONITOR_IMAGE_PATTERN)


def _exit_of(handle: Any) -> tuple[int, str] | None:
    exited = getattr(handle, "exited", None)
    if exited is None:
        return None
    if isinstance(exited, tuple):
        code = int(exited[0])
        return code, str(exited[1]) if len(exited) > 1 and exited[1] is not None else ""
    if isinstance(exited, bool):
        return (0, "") if exited else None
    if isinstance(exited, int):
        return exited, ""
    code = getattr(exited, "exit_code", None)
    if code is None:
        return None
    return int(code), str(getattr(exited, "message", "") or "")


@dataclass
class _Run:
    """One ephemeral container's life on the node."""

    namespace: str
    pod_name: str
    pod_uid: str
    name: str
    spec: dict
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    monitor: Any = None
    started_at: str | None = None
    container_id: str = ""
    finished: bool = False


class Kubelet:
    """Drives `status.ephemeralContainerStatuses` of the sandbox's pods (see module doc)."""

    def __init__(self, store: PodStore, network: Any, scenario: Any, recorder: Any = None, *,
                 monitor_factory: MonitorFactory | None = None,
                 wall_clock: Callable[[], float] = time.time, events: Any = None) -> None:
        self._store = store
        self._events = events
        self._app_runs: dict[tuple[str, str], _Run] = {}  # (pod uid, app container name)
        self._ip_counter = 100
        self._network = network
        self._scenario = scenario
        self._recorder = recorder
        self._monitor_factory = monitor_factory or _default_monitor_factory
        self._now = wall_clock
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], _Run] = {}  # (pod uid, container name)
        self._stopped = False

    # ---- events from the store

    def on_pod_changed(self, pod: dict) -> None:
        """Start runs for ephemeral containers the node has not seen yet; stop a terminating pod."""
        meta = pod.get("metadata") or {}
        uid = meta.get("uid") or ""
        if meta.get("deletionTimestamp"):
            with self._lock:
                live = any(pod_uid == uid and not r.cancel.is_set()
                           for (pod_uid, _), r in self._runs.items())
            if not live:
                return
            # Never call back into the store from its notification path: do it on a thread.
            threading.Thread(target=self._terminate_pod, args=(uid, True),
                             name=f"kubelet kill {uid}", daemon=True).start()
            return
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        if spec.get("nodeName") and status.get("phase") == "Pending":
            self._start_app_containers(pod)
        if not spec.get("nodeName") or status.get("phase") != "Running":
            return
        known = {s.get("name") for s in status.get("ephemeralContainerStatuses") or []}
        for container in spec.get("ephemeralContainers") or []:
            name = container.get("name")
            key = (uid, name)
            with self._lock:
                if self._stopped or key in self._runs:
                    continue
                if name in known:
                    # A status exists and no run does (e.g. restart of the sandbox): never
                    # restarted, exactly like a real kubelet.
                    continue
                run = _Run(namespace=meta.get("namespace") or "default",
                           pod_name=meta.get("name") or "", pod_uid=uid, name=name,
                           spec=dict(container))
                self._runs[key] = run
            run.thread = threading.Thread(target=self._drive, args=(run, pod),
                                          name=f"kubelet {run.namespace}/{run.pod_name}/{name}",
                                          daemon=True)
            run.thread.start()

    def monitors(self, namespace: str, pod_name: str) -> list[Any]:
        """Handles of the running simulated monitors in a pod (oldest container first)."""
        with self._lock:
            return [r.monitor for r in self._runs.values()
                    if r.namespace == namespace and r.pod_name == pod_name
                    and r.monitor is not None and not r.cancel.is_set()]

    def on_pod_deleted(self, pod: dict) -> None:
        """The pod is gone: stop its monitors and runs; nothing more is written."""
        uid = (pod.get("metadata") or {}).get("uid") or ""
        with self._lock:
            for key in [k for k in self._app_runs if k[0] == uid]:
                self._app_runs.pop(key).cancel.set()
            runs = [r for (pod_uid, _), r in self._runs.items() if pod_uid == uid]
            for run in runs:
                run.cancel.set()
        if runs:
            threading.Thread(target=self._terminate_pod, args=(uid, False),
                             name=f"kubelet cleanup {uid}", daemon=True).start()

    def stop(self) -> None:
        """Stop every run and monitor (sandbox shutdown)."""
        with self._lock:
            self._stopped = True
            runs = list(self._runs.values())
            for app in self._app_runs.values():
                app.cancel.set()
        for run in runs:
            run.cancel.set()
            self._stop_monitor(run)
        for run in runs:
            if run.thread is not None and run.thread is not threading.current_thread():
                run.thread.join(timeout=2.0)

    # ---- internals

    def _terminate_pod(self, uid: str, write_status: bool) -> None:
        with self._lock:
            for key in [k for k in self._app_runs if k[0] == uid]:
                self._app_runs[key].cancel.set()
            runs = [r for (pod_uid, _), r in self._runs.items() if pod_uid == uid]
        for run in runs:
            run.cancel.set()
            stopped_monitor = self._stop_monitor(run)
            if not write_status:
                with self._lock:
                    self._runs.pop((run.pod_uid, run.name), None)
            if write_status and run.started_at and not run.finished:
                # Killed with the pod: a monitor shuts down cleanly on SIGTERM, anything else is
                # SIGKILLed after the grace period.
                code = 0 if stopped_monitor else 137
                self._terminated(run, code, "", force=True)

    def _stop_monitor(self, run: _Run) -> bool:
        handle, run.monitor = run.monitor, None
        if handle is None:
            return False
        try:
            handle.stop()
        except Exception as exc:  # noqa: BLE001 - a broken monitor must not break the kubelet
            self._record("monitor-stop-failed", run, error=repr(exc))
        return True

    def _knobs(self) -> Any:
        return self._scenario.sandbox.kubelet

    def _image_info(self, image: str) -> Any:
        try:
            return self._scenario.image(image)
        except Exception:  # noqa: BLE001
            return None

    def _pullable(self, image: str) -> bool:
        check = getattr(self._scenario, "image_pullable", None)
        return True if check is None else bool(check(image))

    def _wait(self, run: _Run, seconds: float) -> bool:
        """Sleep unless cancelled; True when the run should go on."""
        return not run.cancel.wait(max(0.0, seconds))

    def _drive(self, run: _Run, pod: dict) -> None:
        try:
            self._drive_inner(run, pod)
        except Exception as exc:  # noqa: BLE001
            self._record("kubelet-error", run, error=repr(exc))

    def _drive_inner(self, run: _Run, pod: dict) -> None:
        image = run.spec.get("image") or ""
        knobs = self._knobs()
        # The sync that notices the container: Waiting/ContainerCreating.
        if not self._wait(run, min(0.05, knobs.container_start_delay / 4)):
            return
        if not self._write(run, {"waiting": {"reason": "ContainerCreating"}}, image=image):
            return
        field_path = f"spec.ephemeralContainers{{{run.name}}}"
        if not _IMAGE_REF.match(image):
            self._event(pod, "Warning", "InspectFailed",
                        f'Failed to apply default image tag "{image}": couldn\'t parse image name '
                        f'"{image}": invalid reference format', field_path)
            self._event(pod, "Warning", "Failed", "Error: InvalidImageName", field_path)
            self._write(run, {"waiting": {
                "reason": "InvalidImageName",
                "message": f'Failed to apply default image tag "{image}": couldn\'t parse image '
                           f'name "{image}": invalid reference format'}}, image=image)
            self._record("invalid-image", run, image=image)
            return
        if not self._pullable(image):
            self._pull_forever(run, image, pod, field_path)
            return
        self._event(pod, "Normal", "Pulling", f'Pulling image "{image}"', field_path)
        if not self._wait(run, knobs.container_start_delay):
            return
        self._event(pod, "Normal", "Pulled",
                    f'Successfully pulled image "{image}" in {knobs.container_start_delay:.3g}s '
                    f'({knobs.container_start_delay:.3g}s including waiting)', field_path)
        # generateContainerConfig: env from Secrets/ConfigMaps/the downward API, retried on
        # every sync while it fails (CreateContainerConfigError).
        while True:
            current = self._current_pod(run.namespace, run.pod_name, run.pod_uid) or pod
            env, error = resolve_env(current, run.spec, self._lookup)
            if error is None:
                break
            self._event(current, "Warning", "Failed", f"Error: {error}", field_path)
            if not self._write(run, {"waiting": {"reason": "CreateContainerConfigError",
                                                 "message": error}}, image=image):
                return
            self._record("container-config-error", run, error=error)
            if not self._wait(run, max(knobs.image_pull_backoff_delay, 0.2)):
                return
        pod = _pod_with_resolved_env(current, self._lookup)
        run.spec = {**run.spec, "env": env}
        run.spec.pop("envFrom", None)
        now = self._now()
        run.started_at = _rfc3339(now)
        run.container_id = "containerd://" + hashlib.sha256(
            f"{run.pod_uid}/{run.name}/{now}".encode()).hexdigest()
        info = self._image_info(image)
        if is_monitor_image(image, info):
            try:
                run.monitor = self._monitor_factory(pod, dict(run.spec), self._scenario,
                                                    self._network, self._recorder)
            except Exception as exc:  # noqa: BLE001 - the process failed to start
                self._record("monitor-start-failed", run, error=repr(exc))
                self._write_running(run, pod, info)
                self._terminated(run, 1, str(exc))
                return
        if not self._write_running(run, pod, info):
            self._stop_monitor(run)
            return
        created = "Created container: " if getattr(self._scenario, "minor", 33) >= 32 \
            else "Created container "
        self._event(pod, "Normal", "Created", created + run.name, field_path)
        self._event(pod, "Normal", "Started", f"Started container {run.name}", field_path)
        self._record("container-started", run, image=image)
        if run.monitor is not None:
            self._watch_monitor(run)
        else:
            raw = getattr(info, "raw", None) or {}
            if "exit_code" in raw:
                if self._wait(run, float(raw.get("exit_after", 0.0))):
                    self._terminated(run, int(raw["exit_code"]), str(raw.get("exit_message", "")))

    def _watch_monitor(self, run: _Run) -> None:
        handle = run.monitor
        event = getattr(handle, "exit_event", None)
        while not run.cancel.is_set():
            exited = _exit_of(handle)
            if exited is not None:
                run.monitor = None
                self._terminated(run, exited[0], exited[1])
                return
            if isinstance(event, threading.Event):
                # Wake on exit or cancellation, whichever comes first.
                if event.wait(_EXIT_POLL_INTERVAL):
                    continue
            else:
                run.cancel.wait(_EXIT_POLL_INTERVAL)

    def _pull_forever(self, run: _Run, image: str, pod: dict | None = None,
                      field_path: str | None = None) -> None:
        knobs = self._knobs()
        ref = full_image(image)
        err = (f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
               f'failed to resolve reference "{ref}": {ref}: not found')
        backoff = max(knobs.image_pull_backoff_delay, 0.0)
        cap = max(backoff * _BACKOFF_CAP_FACTOR, backoff)
        minor = getattr(self._scenario, "minor", 33)
        delay = knobs.image_pull_error_delay
        while True:
            if not self._wait(run, delay):
                return
            if pod is not None:
                self._event(pod, "Normal", "Pulling", f'Pulling image "{image}"', field_path)
                self._event(pod, "Warning", "Failed", f'Failed to pull image "{image}": {err}',
                            field_path)
                self._event(pod, "Warning", "Failed", "Error: ErrImagePull", field_path)
            if not self._write(run, {"waiting": {"reason": "ErrImagePull", "message": err}},
                               image=image):
                return
            self._record("image-pull-failed", run, image=image)
            if not self._wait(run, backoff):
                return
            message = f'Back-off pulling image "{image}"'
            if minor >= 32:
                message += f": ErrImagePull: {err}"
            if pod is not None:
                self._event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"',
                            field_path)
                self._event(pod, "Warning", "Failed", "Error: ImagePullBackOff", field_path)
            if not self._write(run, {"waiting": {"reason": "ImagePullBackOff",
                                                 "message": message}}, image=image):
                return
            delay = min(backoff, cap)
            backoff = min(backoff * 2 if backoff else 0.0, cap)

    def _linux_user(self, run: _Run, pod: dict, info: Any) -> dict:
        pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
        c_sc = run.spec.get("securityContext") or {}
        image_user = getattr(info, "user", None)
        image_group = getattr(info, "group", None)
        uid = c_sc.get("runAsUser", pod_sc.get("runAsUser"))
        if uid is None:
            uid = image_user if image_user is not None else 0
        gid = c_sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        if gid is None:
            gid = image_group if image_group is not None else uid
        groups = {gid, *(pod_sc.get("supplementalGroups") or [])}
        if pod_sc.get("fsGroup") is not None:
            groups.add(pod_sc["fsGroup"])
        return {"linux": {"uid": uid, "gid": gid, "supplementalGroups": sorted(groups)}}

    def _write_running(self, run: _Run, pod: dict, info: Any) -> bool:
        extra: dict[str, Any] = {}
        features = getattr(self._scenario, "features", {}) or {}
        if features.get("ContainerStatusUser"):
            extra["user"] = self._linux_user(run, pod, info)
        mounts = run.spec.get("volumeMounts") or []
        if mounts and getattr(self._scenario, "minor", 0) >= 33:
            extra["volumeMounts"] = [
                {"name": m.get("name"), "mountPath": m.get("mountPath"),
                 **({"readOnly": True, "recursiveReadOnly": "Disabled"}
                    if m.get("readOnly") else {})}
                for m in mounts]
        return self._write(run, {"running": {"startedAt": run.started_at}},
                           image=run.spec.get("image") or "", running=True, extra=extra)

    def _terminated(self, run: _Run, code: int, message: str, force: bool = False) -> None:
        with self._lock:
            if run.finished:
                return
            run.finished = True
        state: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": run.started_at,
            "finishedAt": _rfc3339(self._now()),
            "containerID": run.container_id,
        }
        if message and code != 0 and run.spec.get("terminationMessagePolicy") \
                == "FallbackToLogsOnError":
            state["message"] = message
        self._write(run, {"terminated": state}, image=run.spec.get("image") or "",
                    running=True, force=force)
        self._record("container-terminated", run, exit_code=code, message=message)

    def _write(self, run: _Run, state: dict, image: str, running: bool = False,
               extra: dict | None = None, force: bool = False) -> bool:
        """Put this container's status into the pod; False when the pod (or run) is gone."""
        if run.cancel.is_set() and not force:
            return False
        status: dict[str, Any] = {"name": run.name, "state": state, "lastState": {},
                                  "ready": False, "restartCount": 0}
        if running:
            ref = full_image(image)
            status["image"] = ref
            status["imageID"] = image_id(ref)
            status["containerID"] = run.container_id
        else:
            status["image"] = image
            status["imageID"] = ""
        status.update(extra or {})
        gone = False

        def mutate(pod: dict) -> dict | None:
            nonlocal gone
            meta = pod.get("metadata") or {}
            if meta.get("uid") != run.pod_uid:
                gone = True
                return _unchanged()
            pod_status = pod.setdefault("status", {})
            statuses = list(pod_status.get("ephemeralContainerStatuses") or [])
            for i, existing in enumerate(statuses):
                if existing.get("name") == run.name:
                    if "terminated" in (existing.get("state") or {}):
                        gone = True  # never leaves Terminated
                        return _unchanged()
                    statuses[i] = status
                    break
            else:
                statuses.append(status)
            order = [c.get("name") for c in (pod.get("spec") or {}).get("ephemeralContainers")
                     or []]
            statuses.sort(key=lambda s: order.index(s["name"]) if s["name"] in order
                          else len(order))
            pod_status["ephemeralContainerStatuses"] = statuses
            return None

        update = getattr(self._store, "update_pod_status", None) \
            or self._store.update_status
        try:
            result = update(run.namespace, run.pod_name, mutate)
        except KeyError:
            result = None
        if result is None or gone:
            run.cancel.set()
            return False
        return True

    # ---- the pod's own containers (every pod on the node, not only ephemeral containers)

    def adopt(self, pods: list[dict]) -> None:
        """Take over the pods that exist at start: a container whose env cannot be resolved
        (a missing Secret/ConfigMap or key) was never started by the kubelet, so its status is
        rewritten to ``CreateContainerConfigError`` and the kubelet keeps retrying it."""
        for pod in pods:
            spec = pod.get("spec") or {}
            meta = pod.get("metadata") or {}
            if not spec.get("nodeName") or meta.get("deletionTimestamp"):
                continue
            if (pod.get("status") or {}).get("phase") == "Pending":
                self._start_app_containers(pod)
                continue
            errors = {c.get("name"): resolve_env(pod, c, self._lookup)[1]
                      for c in spec.get("containers") or []}
            errors = {k: v for k, v in errors.items() if v is not None}
            if not errors:
                continue

            def demote(p: dict, errors: dict = errors) -> dict | None:
                ps = p.setdefault("status", {})
                ps["phase"] = "Pending"
                for cs in ps.get("containerStatuses") or []:
                    if cs.get("name") in errors:
                        cs.update(state={"waiting": {"reason": "CreateContainerConfigError",
                                                     "message": errors[cs["name"]]}},
                                  ready=False, started=False, image=cs.get("image", ""))
                        cs.pop("containerID", None)
                for c in ps.get("conditions") or []:
                    if c.get("type") in ("Ready", "ContainersReady"):
                        c.update(status="False", reason="ContainersNotReady",
                                 message="containers with unready status: [" +
                                 " ".join(sorted(errors)) + "]")
                return None

            updated = self._store.update_pod_status(meta.get("namespace") or "default",
                                                    meta.get("name") or "", demote)
            self._start_app_containers(updated or pod, only=set(errors))

    def _start_app_containers(self, pod: dict, only: set | None = None) -> None:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid") or ""
        statuses = {s.get("name"): s for s in (pod.get("status") or {}).get("containerStatuses")
                    or []}
        for container in (pod.get("spec") or {}).get("containers") or []:
            name = container.get("name")
            if only is not None and name not in only:
                continue
            if only is None and "running" in ((statuses.get(name) or {}).get("state") or {}):
                continue
            with self._lock:
                if self._stopped or (uid, name) in self._app_runs:
                    continue
                run = _Run(namespace=meta.get("namespace") or "default",
                           pod_name=meta.get("name") or "", pod_uid=uid, name=name,
                           spec=dict(container))
                self._app_runs[(uid, name)] = run
            run.thread = threading.Thread(target=self._drive_app, args=(run, pod),
                                          name=f"kubelet app {run.namespace}/{run.pod_name}/{name}",
                                          daemon=True)
            run.thread.start()

    def _drive_app(self, run: _Run, pod: dict) -> None:
        try:
            self._drive_app_inner(run, pod)
        except Exception as exc:  # noqa: BLE001
            self._record("kubelet-error", run, error=repr(exc))

    def _drive_app_inner(self, run: _Run, pod: dict) -> None:
        knobs = self._knobs()
        image = run.spec.get("image") or ""
        field_path = f"spec.containers{{{run.name}}}"
        if not self._wait(run, min(0.05, knobs.container_start_delay / 4)):
            return
        if not self._write_app(run, {"waiting": {"reason": "ContainerCreating"}}, image):
            return
        attempt = 0
        while True:
            attempt += 1
            if not self._pullable(image):
                ref = full_image(image)
                err = (f'rpc error: code = NotFound desc = failed to pull and unpack image '
                       f'"{ref}": failed to resolve reference "{ref}": {ref}: not found')
                reason, message = ("ErrImagePull", err) if attempt % 2 else \
                    ("ImagePullBackOff", f'Back-off pulling image "{image}"')
                self._event(pod, "Warning", "Failed", f"Error: {reason}", field_path)
            else:
                current = self._current_pod(run.namespace, run.pod_name, run.pod_uid)
                if current is None:
                    return
                _, error = resolve_env(current, run.spec, self._lookup)
                if error is None:
                    break
                reason, message = "CreateContainerConfigError", error
                self._event(current, "Warning", "Failed", f"Error: {error}", field_path)
                self._record("container-config-error", run, error=error)
            if not self._write_app(run, {"waiting": {"reason": reason, "message": message}},
                                   image):
                return
            if not self._wait(run, max(knobs.image_pull_backoff_delay, 0.2)):
                return
        if not self._wait(run, knobs.container_start_delay):
            return
        now = self._now()
        run.started_at = _rfc3339(now)
        run.container_id = "containerd://" + hashlib.sha256(
            f"{run.pod_uid}/{run.name}/{now}".encode()).hexdigest()
        if not self._write_app(run, {"running": {"startedAt": run.started_at}}, image,
                               running=True):
            return
        created = "Created container: " if getattr(self._scenario, "minor", 33) >= 32 \
            else "Created container "
        self._event(pod, "Normal", "Created", created + run.name, field_path)
        self._event(pod, "Normal", "Started", f"Started container {run.name}", field_path)
        self._record("container-started", run, image=image)
        with self._lock:
            self._app_runs.pop((run.pod_uid, run.name), None)

    def _write_app(self, run: _Run, state: dict, image: str, running: bool = False) -> bool:
        """Write one app container's status and the pod's phase/conditions derived from all."""
        if run.cancel.is_set():
            return False
        status: dict[str, Any] = {"name": run.name, "state": state, "lastState": {},
                                  "ready": running, "restartCount": 0,
                                  "image": full_image(image) if running else image,
                                  "imageID": image_id(full_image(image)) if running else "",
                                  "started": running}
        if running:
            status["containerID"] = run.container_id
        gone = False
        ts = _rfc3339(self._now())
        node_ips = self._node_ip(run)

        def mutate(pod: dict) -> dict | None:
            nonlocal gone
            meta = pod.get("metadata") or {}
            if meta.get("uid") != run.pod_uid or meta.get("deletionTimestamp"):
                gone = True
                return _unchanged()
            ps = pod.setdefault("status", {})
            statuses = list(ps.get("containerStatuses") or [])
            for i, existing in enumerate(statuses):
                if existing.get("name") == run.name:
                    statuses[i] = status
                    break
            else:
                statuses.append(status)
            order = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
            for name in order:
                if name not in {x["name"] for x in statuses}:
                    statuses.append({"name": name, "state": {"waiting": {
                        "reason": "ContainerCreating"}}, "lastState": {}, "ready": False,
                        "restartCount": 0, "image": "", "imageID": "", "started": False})
            statuses.sort(key=lambda x: order.index(x["name"]) if x["name"] in order else 99)
            ps["containerStatuses"] = statuses
            if node_ips and not ps.get("podIP"):
                ps["hostIP"] = node_ips[0]
                ps["hostIPs"] = [{"ip": node_ips[0]}]
                ps["podIP"] = node_ips[1]
                ps["podIPs"] = [{"ip": node_ips[1]}]
            ps.setdefault("startTime", ts)
            all_ready = all(x.get("ready") for x in statuses)
            if all(x.get("started") for x in statuses) and ps.get("phase") == "Pending":
                ps["phase"] = "Running"
            ps.setdefault("phase", "Pending")
            conds = {c["type"]: c for c in ps.get("conditions") or []}

            def cond(type_: str, ok: bool, reason: str | None = None) -> dict:
                old = conds.get(type_)
                want = "True" if ok else "False"
                if old and old.get("status") == want:
                    return old
                c = {"type": type_, "status": want, "lastProbeTime": None,
                     "lastTransitionTime": ts}
                if not ok and reason:
                    c["reason"] = reason
                    c["message"] = "containers with unready status: [" + " ".join(
                        x["name"] for x in statuses if not x.get("ready")) + "]"
                return c

            wanted = []
            if getattr(self._scenario, "minor", 33) >= 29:
                wanted.append(cond("PodReadyToStartContainers", True))
            wanted += [cond("Initialized", True),
                       cond("Ready", all_ready, "ContainersNotReady"),
                       cond("ContainersReady", all_ready, "ContainersNotReady"),
                       cond("PodScheduled", True)]
            ps["conditions"] = wanted
            return None

        result = self._store.update_pod_status(run.namespace, run.pod_name, mutate)
        if result is None or gone:
            run.cancel.set()
            return False
        # A pod that just turned Running may already have ephemeral containers to start.
        self.on_pod_changed(result)
        return True

    def _node_ip(self, run: _Run) -> tuple[str, str] | None:
        pod = self._current_pod(run.namespace, run.pod_name, run.pod_uid)
        nodes = [n.get("name") for n in getattr(self._scenario, "nodes", None) or []]
        node = (pod or {}).get("spec", {}).get("nodeName")
        if node not in nodes:
            return None
        index = nodes.index(node) + 1
        with self._lock:
            self._ip_counter += 1
            n = self._ip_counter
        return f"172.18.0.{index + 1}", f"10.244.{index}.{n % 250 + 2}"

    # ---- helpers: store lookups, events

    def _lookup(self, resource: str, namespace: str, name: str) -> dict | None:
        snapshot = getattr(self._store, "snapshot", None)
        if snapshot is None:
            return None
        try:
            return snapshot(resource, namespace, name)
        except Exception:  # noqa: BLE001
            return None

    def _current_pod(self, namespace: str, name: str, uid: str) -> dict | None:
        pod = self._lookup("pods", namespace, name)
        if pod is None or (pod.get("metadata") or {}).get("uid") != uid:
            return None
        return pod

    def _event(self, pod: dict, type_: str, reason: str, message: str,
               field_path: str | None = None) -> None:
        if self._events is None:
            return
        try:
            self._events.emit(pod, type_, reason, message, component="kubelet",
                              field_path=field_path)
        except Exception:  # noqa: BLE001, S110 - events are best effort, as on a real node
            pass

    def _record(self, event: str, run: _Run, **fields: Any) -> None:
        record = getattr(self._recorder, "record", None)
        if record is None:
            return
        try:
            record(event, namespace=run.namespace, pod=run.pod_name, container=run.name,
                   **fields)
        except Exception:  # noqa: BLE001 - recording is best effort
            pass


_FIELD_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def _field_value(pod: dict, path: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = _FIELD_REF.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"), "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(i.get("ip", "") for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i.get("ip", "") for i in status.get("podIPs") or []),
    }
    return str(simple.get(path) or "")


def resolve_env(pod: dict, container: dict,
                lookup: Callable[[str, str, str], dict | None]) -> tuple[list[dict], str | None]:
    """The container's effective env as the kubelet builds it (`makeEnvironmentVariables`):
    ``envFrom`` first, then ``env`` in order with ``$(VAR)`` expansion; ``valueFrom`` resolved
    from Secrets, ConfigMaps and the downward API. Returns ``(env, None)`` or ``([], message)``
    with the kubelet's message for ``CreateContainerConfigError``."""
    import base64

    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    values: dict[str, str] = {}
    order: list[str] = []

    def put(name: str, value: str) -> None:
        if name not in values:
            order.append(name)
        values[name] = value

    def source(kind: str, name: str) -> dict | None:
        return lookup("secrets" if kind == "Secret" else "configmaps", ns, name)

    def data_of(kind: str, obj: dict) -> dict[str, str]:
        if kind == "Secret":
            out = {}
            for k, v in (obj.get("data") or {}).items():
                try:
                    out[k] = base64.b64decode(v).decode("utf-8", "replace")
                except Exception:  # noqa: BLE001
                    out[k] = ""
            return out
        return {**{k: str(v) for k, v in (obj.get("data") or {}).items()}}

    for item in container.get("envFrom") or []:
        for ref_key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            ref = item.get(ref_key)
            if ref is None:
                continue
            obj = source(kind, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                return [], f'{kind.lower()} "{ref.get("name", "")}" not found'
            for k, v in data_of(kind, obj).items():
                put(item.get("prefix", "") + k, v)

    def expand(text: str) -> str:
        def sub(m: re.Match) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            return values[name] if name in values else m.group(0)

        return _VAR_REF.sub(sub, text)

    for item in container.get("env") or []:
        name = item.get("name", "")
        vf = item.get("valueFrom")
        if vf is None:
            put(name, expand(str(item.get("value", "") or "")))
            continue
        for ref_key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            ref = vf.get(ref_key)
            if ref is None:
                continue
            obj = source(kind, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    break
                return [], f'{kind.lower()} "{ref.get("name", "")}" not found'
            data = data_of(kind, obj)
            if ref.get("key") not in data:
                if ref.get("optional"):
                    break
                return [], f'couldn\'t find key {ref.get("key")} in {kind} {ns}/{ref.get("name")}'
            put(name, data[ref["key"]])
            break
        else:
            if vf.get("fieldRef") is not None:
                put(name, _field_value(pod, vf["fieldRef"].get("fieldPath", "")))
            elif vf.get("resourceFieldRef") is not None:
                put(name, "0")
    return [{"name": n, "value": values[n]} for n in order], None


def _pod_with_resolved_env(pod: dict, lookup: Callable[[str, str, str], dict | None]) -> dict:
    """A copy of `pod` whose app containers carry their resolved env (what their processes see)."""
    import copy as _copy

    out = _copy.deepcopy(pod)
    for c in (out.get("spec") or {}).get("containers") or []:
        env, error = resolve_env(pod, c, lookup)
        if error is None:
            c["env"] = env
            c.pop("envFrom", None)
    return out


def _unchanged() -> Any:
    """Abort a store mutation without writing (the store's `Unchanged`, else a no-op)."""
    try:
        from tests.sandbox.store import Unchanged
    except ImportError:  # pragma: no cover
        return None
    raise Unchanged()
