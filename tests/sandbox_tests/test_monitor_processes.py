"""Which processes the simulated monitor sees (reference §4, §6) and how it is configured (§7)."""

from __future__ import annotations

import copy

import pytest

from tests.sandbox.monitor import start_monitor
from tests.sandbox.monitor.config import monitor_config
from tests.sandbox.monitor.testing import (FakeNetwork, ListRecorder, monitor_container, prepared_pod, request,
                                           scenario, unprepared_pod)

NOAUTH = ["collect", "--no-auth", "--urls", "http://localhost:52323"]


def _procs(pod, container, sc=None):
    net = FakeNetwork()
    h = start_monitor(pod, container, sc or scenario(pod["metadata"]["name"]), net, ListRecorder())
    try:
        return request(h.ports[52323], "GET", "/processes").json(), h
    finally:
        h.stop()


def test_prepared_pod_shows_default_process():
    procs, _ = _procs(prepared_pod(), monitor_container(args=NOAUTH))
    assert [(p["pid"], p["name"], p["isDefault"]) for p in procs] == [(1, "dotnet", True)]


def test_unprepared_pod_shows_nothing_and_selection_fails():
    pod = unprepared_pod("plain-0")
    c = monitor_container(args=NOAUTH, mounts=False)
    h = start_monitor(pod, c, scenario("plain-0"), FakeNetwork(), ListRecorder())
    try:
        port = h.ports[52323]
        assert request(port, "GET", "/processes").json() == []
        r = request(port, "GET", "/gcdump?pid=1")
        assert r.status == 400 and r.json()["detail"] == "Unable to discover a target process."
        assert request(port, "GET", "/metrics", {}).body == b""
    finally:
        h.stop()


@pytest.mark.parametrize("mutate", [
    lambda pod, c: c.pop("volumeMounts"),                                            # monitor without the volume
    lambda pod, c: pod["spec"]["containers"][0]["env"].clear(),                      # app without DiagnosticPorts
    lambda pod, c: pod["spec"]["containers"][0]["env"].append({"name": "DOTNET_EnableDiagnostics", "value": "0"}),
    lambda pod, c: pod["spec"]["containers"][0]["volumeMounts"][0].update(mountPath="/other"),
    lambda pod, c: pod["spec"]["containers"][0]["securityContext"].update(runAsUser=1000),  # uid can't open socket
    lambda pod, c: c["env"].__setitem__(1, {"name": "DotnetMonitor_DiagnosticPort__ConnectionMode", "value": "Connect"}),
])
def test_unprepared_variants_hide_the_process(mutate):
    pod, c = prepared_pod(), monitor_container(args=NOAUTH)
    mutate(pod, c)
    procs, _ = _procs(pod, c)
    assert procs == []


def test_root_app_connects_but_dump_access_denied():
    pod = prepared_pod(app_user=0)
    h = start_monitor(pod, monitor_container(args=NOAUTH), scenario(), FakeNetwork(), ListRecorder())
    try:
        port = h.ports[52323]
        assert len(request(port, "GET", "/processes").json()) == 1
        r = request(port, "GET", "/dump")
        assert r.status == 400 and "Access to the path '/diag/dumps/" in r.json()["detail"]
        assert request(port, "GET", "/gcdump").status == 200      # pure IPC still works
    finally:
        h.stop()


def test_dump_folder_not_shared_is_500():
    c = monitor_container(args=NOAUTH, env={"DotnetMonitor_Storage__DumpTempFolder": "/tmp"})
    h = start_monitor(prepared_pod(), c, scenario(), FakeNetwork(), ListRecorder())
    try:
        r = request(h.ports[52323], "GET", "/dump")
        assert (r.status, r.body) == (500, b"")
    finally:
        h.stop()


def test_two_processes_no_default_and_ambiguous_pid():
    procs = [{"pid": 1, "name": "dotnet"}, {"pid": 57, "name": "dotnet", "commandLine": "dotnet Worker.dll"}]
    h = start_monitor(prepared_pod(), monitor_container(args=NOAUTH), scenario(processes=procs), FakeNetwork(), ListRecorder())
    try:
        port = h.ports[52323]
        listed = request(port, "GET", "/processes").json()
        assert [(p["pid"], p["isDefault"]) for p in listed] == [(1, True), (57, False)]
        assert request(port, "GET", "/process?pid=57").json()["commandLine"] == "dotnet Worker.dll"
        r = request(port, "GET", "/process?name=DOTNET")
        assert r.status == 400 and "multiple target processes" in r.json()["detail"]
    finally:
        h.stop()


def test_wrapper_shell_breaks_default_process():
    procs = [{"pid": 7, "name": "dotnet"}]
    h = start_monitor(prepared_pod(), monitor_container(args=NOAUTH), scenario(processes=procs), FakeNetwork(), ListRecorder())
    try:
        port = h.ports[52323]
        assert request(port, "GET", "/processes").json()[0]["isDefault"] is False
        assert request(port, "GET", "/process").json()["detail"] == "Unable to discover a target process."
        assert request(port, "GET", "/process?pid=7").status == 200
    finally:
        h.stop()


def test_no_default_filters_configured():
    c = monitor_container(args=NOAUTH, env={"DefaultProcess__Filters__0__Key": "", "DefaultProcess__Filters__0__Value": None})
    cfg = monitor_config({**c, "env": [e for e in c["env"]]}, image_env={})
    assert cfg.default_process_filters == []
    h = start_monitor(prepared_pod(), c, scenario(), FakeNetwork(), ListRecorder())
    h.monitor.cfg.default_process_filters = []
    try:
        r = request(h.ports[52323], "GET", "/process")
        assert r.json()["detail"] == "No default process configuration has been set."
    finally:
        h.stop()


def test_process_namespace_route_needs_target_uid_and_proc_paths():
    pod = unprepared_pod("plain-0", app_user=1654)
    env = {"DotnetMonitor_DiagnosticPort__ConnectionMode": None, "DotnetMonitor_Storage__DefaultSharedPath": None,
           "TMPDIR": "/proc/1/root/tmp", "DotnetMonitor_Storage__DumpTempFolder": "/proc/1/root/tmp"}
    c = monitor_container(args=NOAUTH, env=env, mounts=False, targetContainerName="app")
    procs, _ = _procs(pod, c, scenario("plain-0"))
    assert [p["pid"] for p in procs] == [1]
    for change in ({"targetContainerName": None}, {"securityContext": {"runAsUser": 1000}}):
        c2 = copy.deepcopy(c)
        c2.update(change)
        assert _procs(pod, c2, scenario("plain-0"))[0] == []
    c3 = monitor_container(args=NOAUTH, env={**env, "TMPDIR": None}, mounts=False, targetContainerName="app")
    assert _procs(pod, c3, scenario("plain-0"))[0] == []


# ---------------------------------------------------------------------------------------------- config

def test_image_default_cmd_never_listens_on_https():
    c = {"name": "dotnet-monitor", "image": "mcr.microsoft.com/dotnet/monitor:8"}
    net = FakeNetwork()
    h = start_monitor(prepared_pod(), c, scenario(), net, ListRecorder())
    try:
        assert 52323 not in h.ports and 52325 in h.ports
        assert net.ports[("default", "app-0", 52325)][1] is True          # http://+ binds all
        assert any('"EventId": 15' in line for line in h.logs)
    finally:
        h.stop()


def test_precedence_prefixed_env_beats_unprefixed_beats_args():
    c = monitor_container(args=["collect", "--urls", "http://+:1111"],
                          env={"DotnetMonitor_Urls": None, "ASPNETCORE_URLS": "http://localhost:2222"})
    assert [u.port for u in monitor_config(c).urls] == [2222]
    c["env"].append({"name": "DOTNETMONITOR_URLS", "value": "http://localhost:3333"})
    assert [u.port for u in monitor_config(c).urls] == [3333]
    c2 = monitor_container(args=["collect"], env={"DotnetMonitor_Urls": None})
    cfg = monitor_config(c2)
    assert [(u.raw, u.bind_all) for u in cfg.urls + cfg.metric_urls] == [
        ("https://localhost:52323", False), ("http://localhost:52325", False)]


def test_second_monitor_in_pod_fails_to_bind():
    net = FakeNetwork()
    pod = prepared_pod()
    h1 = start_monitor(pod, monitor_container(args=NOAUTH), scenario(), net, ListRecorder())
    h2 = start_monitor(pod, monitor_container(args=NOAUTH, name="dotnet-monitor-2"), scenario(), net, ListRecorder())
    try:
        assert h1.exited is None
        code, message = h2.exited
        assert code == 1 and "address already in use" in message
    finally:
        h1.stop()
        h2.stop()


def test_exit_on_stdin_disconnect():
    args = NOAUTH + ["--exit-on-stdin-disconnect"]
    h = start_monitor(prepared_pod(), monitor_container(args=args), scenario(), FakeNetwork(), ListRecorder())
    assert h.exited is not None and h.exited[0] == 0
    h2 = start_monitor(prepared_pod(), monitor_container(args=args, stdin=True), scenario(), FakeNetwork(), ListRecorder())
    assert h2.exited is None
    h2.close_stdin()
    assert h2.exited[0] == 0


def test_second_monitor_fails_to_bind_on_sandbox_network():
    network = pytest.importorskip("tests.sandbox.network")
    net = network.PodNetwork()
    pod = prepared_pod()
    h1 = start_monitor(pod, monitor_container(args=NOAUTH), scenario(), net, ListRecorder())
    h2 = start_monitor(pod, monitor_container(args=NOAUTH, name="dotnet-monitor-2"), scenario(), net, ListRecorder())
    try:
        assert h1.exited is None and h2.exited[0] == 1
        assert [listener.host_port for listener in net.listeners("default", "app-0") if listener.port == 52323] == [h1.ports[52323]]
    finally:
        h1.stop()
        h2.stop()
