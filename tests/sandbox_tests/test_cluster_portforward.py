"""Port-forward through the sandbox with real kubectl and the Python client, bytes checked.

Needs the whole chain: admission.py (inject), kubelet.py + monitor/ (a simulated dotnet-monitor
listening), portforward/ (websocket v4, SPDY, tunnelled SPDY).
"""

from __future__ import annotations

import hashlib
import http.client
import re
import subprocess
import time

import pytest

from tests.sandbox import SandboxHandle

from tests.reference import SAMPLE_CUSTOM
MONITOR_IMAGE = "mcr.microsoft.com/dotnet/monitor:9"


@pytest.fixture(scope="module")
def monitored(sandbox_factory) -> tuple[SandboxHandle, str]:
    """A private basic sandbox whose first web pod runs an injected `--no-auth` monitor."""
    sb = sandbox_factory("basic", fresh=True)
    pod = sorted(sb.kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.split())[0]
    pod = pod.split("/", 1)[1]
    proc = sb.kubectl("debug", pod, "--image", MONITOR_IMAGE, "--container", "dotnet-monitor",
                      "--custom", str(SAMPLE_CUSTOM), "--profile", "general")
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(l["pod"] == pod and l["port"] == 52323 for l in sb.control.listeners()):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the simulated monitor never listened on 52323")
    return sb, pod


def _gcdump_records(sb: SandboxHandle) -> list[dict]:
    return [a for a in sb.control.artifacts() if a.get("route") == "/gcdump"]


def _new_record(sb: SandboxHandle, before: int) -> dict:
    """The artifact record of the download just made (the monitor records it once it is sent)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = _gcdump_records(sb)
        if len(records) > before:
            return records[before]
        time.sleep(0.05)
    raise AssertionError("no artifact record appeared")


def _forward(sb: SandboxHandle, pod: str, version: str | None, context: str = "sandbox"):
    proc = subprocess.Popen([sb.kubectl_path(version), "--context", context, "port-forward", pod,
                             ":52323"], env=sb.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"127\.0\.0\.1:(\d+) -> 52323", line)
    if not m:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"port-forward did not start: {line}{out}{err}")
    return proc, int(m.group(1))


@pytest.mark.parametrize("version", [pytest.param(None, id="installed"), "1.29", "1.31"])
def test_kubectl_port_forward_download_is_exact(monitored, version: str | None) -> None:
    sb, pod = monitored
    before = len(_gcdump_records(sb))
    proc, port = _forward(sb, pod, version)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/gcdump?pid=1")
        resp = conn.getresponse()
        assert resp.status == 200
        body = resp.read()
        conn.close()
    finally:
        proc.kill()
        proc.communicate()
    record = _new_record(sb, before)
    assert record["complete"] and record["bytes"] == len(body)
    assert record["sha256"] == hashlib.sha256(body).hexdigest()


def test_port_forward_denied_without_permission(monitored) -> None:
    sb, pod = monitored
    proc = sb.kubectl("--context", "no-portforward", "port-forward", pod, ":52323", timeout=30)
    assert proc.returncode == 1
    assert 'User "no-portforward" cannot create resource "pods/portforward"' in proc.stderr


def test_python_client_port_forward_download_is_exact(monitored) -> None:
    from kubernetes import client, config
    from kubernetes.stream import portforward

    sb, pod = monitored
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(sb.kubeconfig)))
    before = len(_gcdump_records(sb))
    pf = portforward(api.connect_get_namespaced_pod_portforward, pod, "default", ports="52323")
    try:
        sock = pf.socket(52323)
        sock.settimeout(30)
        conn = http.client.HTTPConnection("127.0.0.1")
        conn.sock = sock
        conn.request("GET", "/gcdump?pid=1")
        resp = conn.getresponse()
        assert resp.status == 200
        body = resp.read()
    finally:
        pf.close()
    record = _new_record(sb, before)
    assert record["sha256"] == hashlib.sha256(body).hexdigest()


def test_nothing_listening_gives_the_runtime_error(monitored) -> None:
    from kubernetes import client, config
    from kubernetes.stream import portforward

    sb, pod = monitored
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(sb.kubeconfig)))
    pf = portforward(api.connect_get_namespaced_pod_portforward, pod, "default", ports="8080")
    try:
        sock = pf.socket(8080)
        sock.settimeout(10)
        assert sock.recv(1) == b""
        deadline = time.monotonic() + 5
        while pf.error(8080) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "failed to connect to localhost:8080 inside namespace" in (pf.error(8080) or "")
        assert "connect: connection refused" in pf.error(8080)
    finally:
        pf.close()
