"""The simulated kubelet's ephemeral-container state machine, with a fake store and monitor."""

from __future__ import annotations

import copy
import threading
import time
from types import SimpleNamespace

import pytest

from tests.sandbox.kubelet import Kubelet
from tests.sandbox.store import Unchanged

MONITOR = "mcr.microsoft.com/dotnet/monitor:10.0"


class FakeStore:
    """Pods by (ns, name) with the real store's `update_pod_status` contract."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pods: dict[tuple[str, str], dict] = {}
        self.writes = 0

    def put(self, pod: dict) -> None:
        with self.lock:
            self.pods[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = copy.deepcopy(pod)

    def get(self, ns: str, name: str) -> dict | None:
        with self.lock:
            pod = self.pods.get((ns, name))
            return copy.deepcopy(pod)

    def remove(self, ns: str, name: str) -> None:
        with self.lock:
            self.pods.pop((ns, name), None)

    def update_pod_status(self, ns, name, fn):
        with self.lock:
            old = self.pods.get((ns, name))
            if old is None:
                return None
            new = copy.deepcopy(old)
            try:
                result = fn(new)
            except Unchanged:
                return copy.deepcopy(old)
            self.pods[(ns, name)] = result if result is not None else new
            self.writes += 1
            return copy.deepcopy(self.pods[(ns, name)])


class FakeMonitor:
    def __init__(self) -> None:
        self.exited = None
        self.exit_event = threading.Event()
        self.stopped = threading.Event()

    def exit(self, code: int, message: str = "") -> None:
        self.exited = (code, message)
        self.exit_event.set()

    def stop(self) -> None:
        self.stopped.set()


class MonitorFactory:
    def __init__(self) -> None:
        self.started: list[tuple[dict, dict]] = []
        self.handles: list[FakeMonitor] = []

    def __call__(self, pod, container, scenario, network, recorder):
        self.started.append((pod, container))
        handle = FakeMonitor()
        self.handles.append(handle)
        return handle


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def record(self, event, **fields):
        self.events.append((event, fields))


def make_scenario(*, unpullable=(), images=None, user_feature=True, minor=33, start=0.05,
                  pull_error=0.05, backoff=0.05):
    images = images or {}
    kubelet = SimpleNamespace(container_start_delay=start, image_pull_error_delay=pull_error,
                              image_pull_backoff_delay=backoff, pod_termination_grace=0.1)

    def image(ref):
        return images.get(ref, SimpleNamespace(ref=ref, user=None, group=None, monitor=False,
                                               raw={}))

    return SimpleNamespace(
        sandbox=SimpleNamespace(kubelet=kubelet),
        image=image,
        image_pullable=lambda ref: ref not in unpullable,
        features={"ContainerStatusUser": user_feature},
        minor=minor,
    )


def make_pod(*ephemeral, pod_sc=None, running=True, node="node-1", uid="uid-1") -> dict:
    return {
        "metadata": {"name": "app-0", "namespace": "shop", "uid": uid},
        "spec": {
            **({"nodeName": node} if node else {}),
            **({"securityContext": pod_sc} if pod_sc else {}),
            "containers": [{"name": "app", "image": "shop/app:1"}],
            "volumes": [{"name": "diagvol", "emptyDir": {}}],
            "ephemeralContainers": list(ephemeral),
        },
        "status": {"phase": "Running" if running else "Pending"},
    }


def ec(name="dotnet-monitor", image=MONITOR, **extra) -> dict:
    return {"name": name, "image": image, "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent", **extra}


def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not reached")


def status_of(store: FakeStore, name="dotnet-monitor") -> dict | None:
    pod = store.get("shop", "app-0")
    for s in (pod or {}).get("status", {}).get("ephemeralContainerStatuses") or []:
        if s["name"] == name:
            return s
    return None


def state_of(store, name="dotnet-monitor") -> str | None:
    s = status_of(store, name)
    if s is None:
        return None
    (kind, body), = s["state"].items()
    return f"{kind}:{body.get('reason', '')}"


@pytest.fixture
def rig():
    store, factory, recorder = FakeStore(), MonitorFactory(), Recorder()
    made = []

    def build(scenario=None, pod=None):
        pod = pod or make_pod(ec())
        store.put(pod)
        kubelet = Kubelet(store, network=object(), scenario=scenario or make_scenario(),
                          recorder=recorder, monitor_factory=factory)
        made.append(kubelet)
        return kubelet, pod

    yield SimpleNamespace(store=store, factory=factory, recorder=recorder, build=build)
    for k in made:
        k.stop()


def test_container_creating_then_running_and_monitor_started(rig):
    kubelet, pod = rig.build()
    kubelet.on_pod_changed(pod)
    assert status_of(rig.store) is None  # never part of the write that added the container
    assert wait_for(lambda: state_of(rig.store) == "waiting:ContainerCreating"
                    or state_of(rig.store) == "running:")
    wait_for(lambda: state_of(rig.store) == "running:")
    s = status_of(rig.store)
    assert s["state"]["running"]["startedAt"].endswith("Z")
    assert s["ready"] is False and s["restartCount"] == 0 and s["lastState"] == {}
    assert s["image"] == MONITOR and s["imageID"].startswith("mcr.microsoft.com/dotnet/monitor@")
    assert s["containerID"].startswith("containerd://")
    assert s["user"] == {"linux": {"uid": 0, "gid": 0, "supplementalGroups": [0]}}
    [(mpod, container)] = rig.factory.started
    assert container["name"] == "dotnet-monitor" and mpod["metadata"]["uid"] == "uid-1"


def test_waiting_state_is_observable(rig):
    kubelet, pod = rig.build(make_scenario(start=0.5))
    kubelet.on_pod_changed(pod)
    wait_for(lambda: state_of(rig.store) == "waiting:ContainerCreating")
    s = status_of(rig.store)
    assert s["image"] == MONITOR and s["imageID"] == ""
    wait_for(lambda: state_of(rig.store) == "running:")


def test_unpullable_image_backs_off_forever(rig):
    kubelet, pod = rig.build(make_scenario(unpullable={MONITOR}, backoff=0.05))
    kubelet.on_pod_changed(pod)
    seen = []

    def collect():
        st = state_of(rig.store)
        if st and (not seen or seen[-1] != st):
            seen.append(st)
        return len(seen) >= 5

    wait_for(collect)
    assert seen[:5] == ["waiting:ContainerCreating", "waiting:ErrImagePull",
                        "waiting:ImagePullBackOff", "waiting:ErrImagePull",
                        "waiting:ImagePullBackOff"]
    s = status_of(rig.store)
    assert s["state"]["waiting"]["message"].startswith(f'Back-off pulling image "{MONITOR}"')
    assert rig.factory.started == []


def test_err_image_pull_message(rig):
    kubelet, pod = rig.build(make_scenario(unpullable={MONITOR}, backoff=5))
    kubelet.on_pod_changed(pod)
    wait_for(lambda: state_of(rig.store) == "waiting:ErrImagePull")
    message = status_of(rig.store)["state"]["waiting"]["message"]
    assert "failed to pull and unpack image" in message and "not found" in message


def test_invalid_image_name(rig):
    kubelet, pod = rig.build(pod=make_pod(ec(image="Not/A:Valid:Ref")))
    kubelet.on_pod_changed(pod)
    wait_for(lambda: state_of(rig.store) == "waiting:InvalidImageName")


@pytest.mark.parametrize("code,reason", [(1, "Error"), (0, "Completed")])
def test_monitor_exit_terminates_and_is_never_restarted(rig, code, reason):
    kubelet, pod = rig.build()
    kubelet.on_pod_changed(pod)
    wait_for(lambda: rig.factory.handles and state_of(rig.store) == "running:")
    rig.factory.handles[0].exit(code, "Unable to bind to http://+:52323: address in use")
    wait_for(lambda: state_of(rig.store) == f"terminated:{reason}")
    term = status_of(rig.store)["state"]["terminated"]
    assert term["exitCode"] == code
    assert term["startedAt"] and term["finishedAt"] and term["containerID"]
    assert "message" not in term  # terminationMessagePolicy File, nothing written to the file
    # later pod events never restart it
    kubelet.on_pod_changed(rig.store.get("shop", "app-0"))
    time.sleep(0.2)
    assert len(rig.factory.started) == 1
    assert state_of(rig.store) == f"terminated:{reason}"


def test_fallback_to_logs_on_error_reports_the_message(rig):
    kubelet, pod = rig.build(pod=make_pod(ec(terminationMessagePolicy="FallbackToLogsOnError")))
    kubelet.on_pod_changed(pod)
    wait_for(lambda: rig.factory.handles and state_of(rig.store) == "running:")
    rig.factory.handles[0].exit(3, "boom")
    wait_for(lambda: state_of(rig.store) == "terminated:Error")
    assert status_of(rig.store)["state"]["terminated"]["message"] == "boom"


def test_second_container_is_independent(rig):
    kubelet, pod = rig.build()
    kubelet.on_pod_changed(pod)
    wait_for(lambda: rig.factory.handles)
    rig.factory.handles[0].exit(1)
    wait_for(lambda: state_of(rig.store) == "terminated:Error")
    pod = rig.store.get("shop", "app-0")
    pod["spec"]["ephemeralContainers"].append(ec("dotnet-monitor-2"))
    rig.store.put(pod)
    kubelet.on_pod_changed(pod)
    wait_for(lambda: state_of(rig.store, "dotnet-monitor-2") == "running:")
    names = [s["name"] for s in rig.store.get("shop", "app-0")["status"]
             ["ephemeralContainerStatuses"]]
    assert names == ["dotnet-monitor", "dotnet-monitor-2"]
    assert state_of(rig.store) == "terminated:Error"


def test_pending_pod_gets_no_status(rig):
    kubelet, pod = rig.build(pod=make_pod(ec(), running=False, node=None))
    kubelet.on_pod_changed(pod)
    time.sleep(0.3)
    assert status_of(rig.store) is None and rig.store.writes == 0


def test_existing_status_without_a_run_is_not_restarted(rig):
    pod = make_pod(ec())
    pod["status"]["ephemeralContainerStatuses"] = [{"name": "dotnet-monitor", "state": {
        "terminated": {"exitCode": 1, "reason": "Error"}}}]
    kubelet, pod = rig.build(pod=pod)
    kubelet.on_pod_changed(pod)
    time.sleep(0.2)
    assert rig.factory.started == [] and rig.store.writes == 0


@pytest.mark.parametrize("pod_sc,container_sc,image_user,expected", [
    ({"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000]}, None, None,
     {"uid": 1000, "gid": 3000, "supplementalGroups": [3000, 4000]}),
    ({"runAsUser": 1000, "fsGroup": 2000}, {"runAsUser": 1654}, None,
     {"uid": 1654, "gid": 1654, "supplementalGroups": [1654, 2000]}),
    (None, None, 1654, {"uid": 1654, "gid": 1654, "supplementalGroups": [1654]}),
])
def test_container_user_is_reported(rig, pod_sc, container_sc, image_user, expected):
    images = {MONITOR: SimpleNamespace(ref=MONITOR, user=image_user, group=image_user,
                                       monitor=True, raw={})}
    extra = {"securityContext": container_sc} if container_sc else {}
    kubelet, pod = rig.build(make_scenario(images=images), make_pod(ec(**extra), pod_sc=pod_sc))
    kubelet.on_pod_changed(pod)
    wait_for(lambda: state_of(rig.store) == "running:")
    assert status_of(rig.store)["user"] == {"linux": expected}


def test_no_user_before_the_feature(rig):
    kubelet, pod = rig.build(make_scenario(user_feature=False, minor=30))
    kubelet.on_pod_changed(pod)
    wait_for(lambda: state_of(rig.store) == "running:")
    assert "user" not in status_of(rig.store)


def test_volume_mounts_reported_on_new_clusters(rig):
    pod = make_pod(ec(volumeMounts=[{"name": "diagvol", "mountPath": "/diag"}]))
    kubelet, pod = rig.build(pod=pod)
    kubelet.on_pod_changed(pod)
    wait_for(lambda: state_of(rig.store) == "running:")
    assert status_of(rig.store)["volumeMounts"] == [{"name": "diagvol", "mountPath": "/diag"}]


def test_plain_image_with_exit_code_knob(rig):
    images = {"busybox:1.36": SimpleNamespace(ref="busybox:1.36", user=None, group=None,
                                              monitor=False, raw={"exit_code": 0,
                                                                  "exit_after": 0.05})}
    kubelet, pod = rig.build(make_scenario(images=images), make_pod(ec("dbg", "busybox:1.36")))
    kubelet.on_pod_changed(pod)
    wait_for(lambda: state_of(rig.store, "dbg") == "terminated:Completed")
    assert rig.factory.started == []
    assert status_of(rig.store, "dbg")["image"] == "docker.io/library/busybox:1.36"


def test_pod_deletion_stops_the_monitor_and_writes_nothing_more(rig):
    kubelet, pod = rig.build()
    kubelet.on_pod_changed(pod)
    wait_for(lambda: rig.factory.handles and state_of(rig.store) == "running:")
    rig.store.remove("shop", "app-0")
    kubelet.on_pod_deleted(pod)
    assert rig.factory.handles[0].stopped.wait(2)
    # a new pod with the same name is a different pod (uid)
    kubelet.on_pod_changed(pod)  # a stale event for the old uid starts nothing new
    time.sleep(0.1)


def test_terminating_pod_terminates_running_monitor(rig):
    kubelet, pod = rig.build()
    kubelet.on_pod_changed(pod)
    wait_for(lambda: rig.factory.handles and state_of(rig.store) == "running:")
    terminating = rig.store.get("shop", "app-0")
    terminating["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    kubelet.on_pod_changed(terminating)
    assert rig.factory.handles[0].stopped.wait(2)
    wait_for(lambda: state_of(rig.store) == "terminated:Completed")


def test_status_for_a_replaced_pod_is_not_written(rig):
    kubelet, pod = rig.build(make_scenario(start=0.3))
    kubelet.on_pod_changed(pod)
    replacement = make_pod(uid="uid-2")
    rig.store.put(replacement)
    time.sleep(0.5)
    assert status_of(rig.store) is None
    assert rig.factory.started == []


def test_stop_stops_monitors(rig):
    kubelet, pod = rig.build()
    kubelet.on_pod_changed(pod)
    wait_for(lambda: rig.factory.handles and state_of(rig.store) == "running:")
    kubelet.stop()
    assert rig.factory.handles[0].stopped.is_set()


def test_monitor_start_failure_terminates_the_container(rig):
    def broken(*args):
        raise OSError("exec format error")

    store = rig.store
    pod = make_pod(ec())
    store.put(pod)
    kubelet = Kubelet(store, object(), make_scenario(), rig.recorder, monitor_factory=broken)
    try:
        kubelet.on_pod_changed(pod)
        wait_for(lambda: state_of(store) == "terminated:Error")
    finally:
        kubelet.stop()


def test_recorder_sees_lifecycle_events(rig):
    kubelet, pod = rig.build()
    kubelet.on_pod_changed(pod)
    wait_for(lambda: rig.factory.handles)
    rig.factory.handles[0].exit(0)
    wait_for(lambda: any(e == "container-terminated" for e, _ in rig.recorder.events))
    started = [f for e, f in rig.recorder.events if e == "container-started"]
    assert started and started[0]["container"] == "dotnet-monitor"
