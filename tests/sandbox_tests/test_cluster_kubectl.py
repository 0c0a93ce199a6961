"""Real kubectl against the sandbox: the installed one and the versioned 1.29 / 1.31 binaries."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.sandbox import SandboxHandle

from tests.reference import SAMPLE_CUSTOM
MONITOR_IMAGE = "mcr.microsoft.com/dotnet/monitor:9"

VERSIONS = [None, "1.29", "1.31"]


def _have(version: str | None) -> bool:
    return os.access(SandboxHandle.kubectl_path(version), os.X_OK)


versions = pytest.mark.parametrize(
    "version",
    [pytest.param(v, id=v or "installed",
                  marks=pytest.mark.skipif(not _have(v), reason=f"no kubectl {v}")) for v in VERSIONS],
)


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"kubectl failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _web_pods(sandbox: SandboxHandle) -> list[str]:
    out = _ok(sandbox.kubectl("get", "pods", "-l", "app=web", "-o", "name"))
    return sorted(line.split("/", 1)[1] for line in out.split())


@versions
def test_get_pods_prints_the_table(sandbox: SandboxHandle, version: str | None) -> None:
    out = _ok(sandbox.kubectl("get", "pods", version=version))
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert {"unprepared", "pending", "twoproc", "nodotnet"} <= set(rows)
    assert rows["pending"][1:3] == ["0/1", "Pending"]
    assert rows["unprepared"][1:4] == ["1/1", "Running", "0"]
    assert sum(1 for name in rows if name.startswith("web-")) == 2


@versions
def test_get_pods_with_label_selector(sandbox: SandboxHandle, version: str | None) -> None:
    out = _ok(sandbox.kubectl("get", "pods", "-l", "app=web", "--no-headers", version=version))
    names = [line.split()[0] for line in out.splitlines()]
    assert len(names) == 2 and all(n.startswith("web-") for n in names)
    out = _ok(sandbox.kubectl("get", "pods", "-l", "app in (twoproc,nodotnet)", "-o", "name",
                              version=version))
    assert out.split() == ["pod/nodotnet", "pod/twoproc"]
    out = _ok(sandbox.kubectl("get", "pods", "--field-selector", "status.phase=Pending", "-o",
                              "name", version=version))
    assert out.split() == ["pod/pending"]


@versions
def test_get_pod_yaml_shows_a_prepared_pod(sandbox: SandboxHandle, version: str | None) -> None:
    name = _web_pods(sandbox)[0]
    pod = yaml.safe_load(_ok(sandbox.kubectl("get", "pod", name, "-o", "yaml", version=version)))
    app = pod["spec"]["containers"][0]
    assert {"name": "DOTNET_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock,nosuspend"} \
        in app["env"]
    assert {"name": "diagvol", "emptyDir": {}} in pod["spec"]["volumes"]
    assert pod["status"]["phase"] == "Running"
    owner = pod["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet" and owner["controller"] is True
    rs = yaml.safe_load(_ok(sandbox.kubectl("get", "rs", owner["name"], "-o", "yaml",
                                            version=version)))
    assert rs["metadata"]["uid"] == owner["uid"]
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"


def test_workloads_resolve_like_kubectl(sandbox: SandboxHandle) -> None:
    out = _ok(sandbox.kubectl("get", "deploy/web", "-o", "jsonpath={.spec.selector.matchLabels}"))
    assert json.loads(out) == {"app": "web"}
    out = _ok(sandbox.kubectl("get", "sts/orders", "-n", "shop", "--no-headers"))
    assert out.split()[:2] == ["orders", "1/1"]
    out = _ok(sandbox.kubectl("get", "ds", "-n", "kube-system", "--no-headers"))
    assert out.split()[0] == "agent"


@versions
def test_watch_sees_a_deletion(sandbox_factory, version: str | None) -> None:
    sb = sandbox_factory("basic", fresh=True)
    proc = subprocess.Popen([sb.kubectl_path(version), "get", "pods", "--watch"], env=sb.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.split()[:2] == ["NAME", "READY"]
        time.sleep(0.3)
        sb.control.delete_pod("default", "nodotnet")
        deadline = time.monotonic() + 10
        seen = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            if line.startswith("nodotnet") and "Terminating" in line:
                break
        else:
            pytest.fail(f"no Terminating line: {seen}")
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("user,patch_ok,pf_ok", [
    ("admin", "yes", "yes"), ("no-patch", "no", "yes"), ("no-portforward", "yes", "no")])
@versions
def test_auth_can_i_per_user(sandbox: SandboxHandle, version: str | None, user: str,
                             patch_ok: str, pf_ok: str) -> None:
    def can_i(*args: str) -> str:
        proc = sandbox.kubectl("--context", user, "auth", "can-i", *args, version=version)
        return proc.stdout.strip()

    assert can_i("patch", "pods", "--subresource=ephemeralcontainers") == patch_ok
    assert can_i("create", "pods", "--subresource=portforward") == pf_ok
    assert can_i("get", "pods") == "yes"


def test_denied_user_gets_the_real_403(sandbox: SandboxHandle) -> None:
    proc = sandbox.kubectl("--context", "shop-only", "get", "pods")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        'Error from server (Forbidden): pods is forbidden: User "shop-only" cannot list resource '
        '"pods" in API group "" in the namespace "default"')
    assert sandbox.kubectl("--context", "shop-only", "get", "pods", "-n", "shop").returncode == 0


def test_bad_token_is_unauthorized(sandbox: SandboxHandle) -> None:
    proc = sandbox.kubectl("--token", "not-a-token", "get", "pods")
    assert proc.returncode == 1
    assert "Unauthorized" in proc.stderr


@pytest.mark.parametrize("context,namespace,user", [
    ("sandbox", "default", "admin"), ("sandbox-nons", None, "admin"),
    ("no-patch", "default", "no-patch"), ("admin-cert", "default", "admin-cert")])
def test_config_view_minify_per_context(sandbox: SandboxHandle, context: str,
                                        namespace: str | None, user: str) -> None:
    out = _ok(sandbox.kubectl("config", "view", "--minify", "--context", context, "-o", "json"))
    cfg = json.loads(out)
    ctx = cfg["contexts"][0]["context"]
    assert ctx.get("namespace") == namespace
    assert ctx["user"] == user
    assert cfg["clusters"][0]["cluster"]["server"] == sandbox.server
    # ...and every context really works against the server.
    assert sandbox.kubectl("--context", context, "get", "pods", "-n", "default").returncode == 0


def test_client_certificate_user(sandbox: SandboxHandle) -> None:
    out = _ok(sandbox.kubectl("--context", "admin-cert", "auth", "whoami", "-o", "json"))
    assert json.loads(out)["status"]["userInfo"]["username"] == "admin"


# ---------------------------------------------------------------------------------------------
# kubectl debug: needs tests/sandbox/admission.py (validation + Pod Security) and kubelet.py.

needs_admission = pytest.mark.skipif(
    not (Path(__file__).resolve().parents[1] / "sandbox" / "admission.py").exists(),
    reason="tests/sandbox/admission.py not there yet")


@needs_admission
@pytest.mark.parametrize("version", [pytest.param(None, id="installed"), "1.31"])
def test_debug_custom_profile_general(sandbox_factory, version: str | None) -> None:
    sb = sandbox_factory("basic", fresh=True)
    pod = _web_pods(sb)[0]
    proc = sb.kubectl("debug", pod, "--image", MONITOR_IMAGE, "--container", "dotnet-monitor",
                      "--custom", str(SAMPLE_CUSTOM), "--profile", "general", version=version)
    _ok(proc)
    spec = json.loads(_ok(sb.kubectl("get", "pod", pod, "-o",
                                     "jsonpath={.spec.ephemeralContainers[0]}")))
    assert spec["name"] == "dotnet-monitor"
    assert spec["args"] == ["collect", "--no-auth"]
    assert spec["securityContext"] == {"capabilities": {"add": ["SYS_PTRACE"]}}
    assert {"name": "diagvol", "mountPath": "/diag"} in spec["volumeMounts"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = sb.kubectl("get", "pod", pod, "-o",
                         "jsonpath={.status.ephemeralContainerStatuses[0].state}").stdout
        if out and "running" in json.loads(out):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the ephemeral container never reported Running")


@needs_admission
@pytest.mark.parametrize("version", [pytest.param(None, id="installed"), "1.31"])
def test_debug_general_is_forbidden_under_baseline(sandbox: SandboxHandle,
                                                   version: str | None) -> None:
    pod = _ok(sandbox.kubectl("get", "pods", "-n", "baseline", "-o", "name")).split()[0]
    name = pod.split("/", 1)[1]
    proc = sandbox.kubectl("debug", "-n", "baseline", pod, "--image", MONITOR_IMAGE,
                           "--container", "dotnet-monitor", "--custom", str(SAMPLE_CUSTOM),
                           "--profile", "general", version=version)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f'Error from server (Forbidden): pods "{name}" is forbidden: violates PodSecurity '
        f'"baseline:latest": non-default capabilities (container "dotnet-monitor" must not include '
        f'"SYS_PTRACE" in securityContext.capabilities.add)')


@pytest.mark.parametrize("version", VERSIONS[:2])
def test_debug_denied_without_patch_permission(sandbox: SandboxHandle, version: str | None) -> None:
    pod = _web_pods(sandbox)[0]
    proc = sandbox.kubectl("--context", "no-patch", "debug", pod, "--image", MONITOR_IMAGE,
                           "--container", "never", "--profile", "general", version=version)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f'Error from server (Forbidden): pods "{pod}" is forbidden: User "no-patch" cannot patch '
        f'resource "pods/ephemeralcontainers" in API group "" in the namespace "default"')


def test_old_cluster_has_no_ephemeral_containers(sandbox_factory) -> None:
    sb = sandbox_factory("old-cluster")
    version = json.loads(_ok(sb.kubectl("version", "-o", "json")))["serverVersion"]
    assert version["gitVersion"] == "v1.24.17" and version["minor"] == "24"
    pod = _web_pods(sb)[0]
    proc = sb.kubectl("debug", pod, "--image", MONITOR_IMAGE, "--container", "m",
                      "--profile", "general", version="1.29")
    assert proc.returncode == 1
    assert "ephemeral containers are disabled for this cluster" in proc.stderr
