"""Issue 3: `kubectl dotnet-monitor inject POD`, run as a user runs it, against the sandbox.

What is checked is what the API server received: the pod read back with real
`kubectl get pod -o json`, the key Secret read back with `kubectl get secret -o json`.
Each error case checks the exit code, a message that says what to do, and no traceback.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.integration.conftest import REPO, assert_user_error, pod_json, pods_by_label, run_plugin

SAMPLE_CONFIG = REPO.parent / "shared" / "reference" / "ephemeral-sample-config.yaml"
if not SAMPLE_CONFIG.exists():  # the copy kept in the repo
    SAMPLE_CONFIG = REPO / "tests" / "reference" / "ephemeral-sample-config.yaml"


@pytest.fixture(scope="module")
def pods(sb) -> list[str]:
    names = pods_by_label(sb, "default", app="inject")
    assert len(names) >= 8, names
    return names


def monitors(pod: dict) -> dict[str, dict]:
    return {c["name"]: c for c in pod["spec"].get("ephemeralContainers") or []}


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def secrets_owned_by(sb, namespace: str, pod_uid: str) -> list[dict]:
    proc = sb.kubectl("get", "secrets", "-n", namespace, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return [s for s in json.loads(proc.stdout)["items"]
            if any(o.get("uid") == pod_uid for o in s["metadata"].get("ownerReferences") or [])]


# ----------------------------------------------------------------------------------------- happy path

def test_newcomer_one_command_injects_a_safe_monitor(sb, pods):
    name = pods[0]
    run = run_plugin(sb, "inject", name)
    assert run.rc == 0, str(run)
    assert run.stdout.strip() == "dotnet-monitor", str(run)     # stdout: the container's name
    assert "Traceback" not in run.stderr
    assert "running" in run.stderr

    pod = pod_json(sb, "default", name)
    container = monitors(pod)["dotnet-monitor"]
    env = env_of(container)

    # Localhost only: every URL the monitor binds.
    urls = [v for k, v in env.items() if k.lower().endswith(("urls", "endpoints")) and v]
    assert urls, env
    for value in urls:
        for url in value.split(";"):
            assert urlsplit(url).hostname in ("localhost", "127.0.0.1", "::1"), url

    # Restricted Pod Security, as the app's user (the image's USER 1654), no SYS_PTRACE.
    sc = container["securityContext"]
    assert "SYS_PTRACE" not in (sc.get("capabilities") or {}).get("add", [])
    assert not (sc.get("capabilities") or {}).get("add"), sc
    assert sc.get("allowPrivilegeEscalation") is False
    assert sc.get("capabilities", {}).get("drop") == ["ALL"]
    assert sc.get("runAsNonRoot") is True
    assert sc.get("runAsUser") == 1654
    assert (sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault"
    assert not sc.get("privileged")

    # Listen mode on the app's own socket (this deployment uses /diag/sockets/app.sock, not the
    # usual name: it must be discovered from DOTNET_DiagnosticPorts) and its volume.
    assert env.get("DotnetMonitor_DiagnosticPort__ConnectionMode") == "Listen"
    assert env.get("DotnetMonitor_DiagnosticPort__EndpointName") == "/diag/sockets/app.sock"
    assert {"name": "diag", "mountPath": "/diag"} in [
        {k: m[k] for k in ("name", "mountPath")} for m in container.get("volumeMounts") or []]

    # API key: subject and public key in the env, never the private half; no --no-auth.
    subject = env.get("DotnetMonitor_Authentication__MonitorApiKey__Subject")
    assert subject and env.get("DotnetMonitor_Authentication__MonitorApiKey__PublicKey")
    assert "--no-auth" not in (container.get("args") or [])
    assert "PRIVATE KEY" not in json.dumps(container)

    # The key Secret: owned by the pod, only `subject` and `private-key.pem`.
    secret_name = env.get("KUBECTL_DOTNET_MONITOR_KEY_SECRET")
    assert secret_name
    owned = secrets_owned_by(sb, "default", pod["metadata"]["uid"])
    assert [s["metadata"]["name"] for s in owned] == [secret_name]
    secret = owned[0]
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Pod", name)
    assert set(secret["data"]) == {"subject", "private-key.pem"}
    assert base64.b64decode(secret["data"]["subject"]).decode() == subject
    assert b"PRIVATE KEY" in base64.b64decode(secret["data"]["private-key.pem"])

    # The monitor really runs (the kubelet's view).
    statuses = {s["name"]: s for s in pod["status"].get("ephemeralContainerStatuses") or []}
    assert "running" in statuses["dotnet-monitor"]["state"]

    # A second inject reuses it: same name, nothing new sent, no second Secret.
    again = run_plugin(sb, "inject", f"pod/{name}")
    assert again.rc == 0, str(again)
    assert again.stdout.strip() == "dotnet-monitor"
    assert "already running" in again.stderr
    pod2 = pod_json(sb, "default", name)
    assert list(monitors(pod2)) == ["dotnet-monitor"]
    assert len(secrets_owned_by(sb, "default", pod2["metadata"]["uid"])) == 1


def test_dry_run_prints_yaml_and_creates_nothing(sb, pods):
    name = pods[1]
    run = run_plugin(sb, "inject", name, "--dry-run")
    assert run.rc == 0, str(run)
    container = yaml.safe_load(run.stdout)
    assert container["name"] == "dotnet-monitor"
    assert container["image"].startswith("mcr.microsoft.com/dotnet/monitor")
    assert env_of(container).get("DotnetMonitor_DiagnosticPort__EndpointName") == "/diag/sockets/app.sock"
    pod = pod_json(sb, "default", name)
    assert monitors(pod) == {}
    assert secrets_owned_by(sb, "default", pod["metadata"]["uid"]) == []


def test_terminated_monitor_gets_a_fresh_name(sb, pods, tmp_path):
    name = pods[2]
    # A monitor that exits at once: --exit-on-stdin-disconnect without stdin.
    cfg = tmp_path / "exit.yaml"
    cfg.write_text("args: [collect, --exit-on-stdin-disconnect]\n")
    first = run_plugin(sb, "inject", name, "--config", str(cfg))
    assert first.stdout.strip() in ("dotnet-monitor", ""), str(first)

    def terminated() -> bool:
        statuses = pod_json(sb, "default", name)["status"].get("ephemeralContainerStatuses") or []
        return any(s["name"] == "dotnet-monitor" and "terminated" in s["state"] for s in statuses)

    from tests.integration.conftest import wait_for
    wait_for(terminated, timeout=10)

    second = run_plugin(sb, "inject", name)
    assert second.rc == 0, str(second)
    assert second.stdout.strip() == "dotnet-monitor-2"
    pod = pod_json(sb, "default", name)
    assert sorted(monitors(pod)) == ["dotnet-monitor", "dotnet-monitor-2"]
    statuses = {s["name"]: s["state"] for s in pod["status"]["ephemeralContainerStatuses"]}
    assert "running" in statuses["dotnet-monitor-2"]


def test_upstream_sample_config_is_accepted_with_warnings(sb):
    name = "sample"   # mounts `diagvol` at /diag, as the sample expects
    run = run_plugin(sb, "inject", name, "--config", str(SAMPLE_CONFIG))
    assert run.rc == 0, str(run)
    low = run.stderr.lower()
    assert "warning" in low and "+:52323" in run.stderr        # binds beyond localhost
    assert "--no-auth" in run.stderr                           # the sample turns auth off
    container = monitors(pod_json(sb, "default", name))["dotnet-monitor"]
    assert "--no-auth" in container["args"]
    assert env_of(container)["DotnetMonitor_Urls"] == "http://+:52323"


def test_config_with_ports_is_refused_before_any_api_call(sb, pods, tmp_path):
    cfg = tmp_path / "ports.yaml"
    cfg.write_text("ports:\n- containerPort: 52323\n")
    # A kubeconfig that cannot work proves no API call happened: the refusal comes first.
    run = run_plugin(sb, "--kubeconfig", str(tmp_path / "missing"), "inject", pods[4], "--config", str(cfg))
    assert_user_error(run, 2, "ports", "ephemeral")
    assert monitors(pod_json(sb, "default", pods[4])) == {}


def test_no_auth_warns_and_still_binds_localhost(sb, pods):
    name = pods[4]
    run = run_plugin(sb, "inject", name, "--no-auth")
    assert run.rc == 0, str(run)
    assert "warning: --no-auth" in run.stderr
    container = monitors(pod_json(sb, "default", name))["dotnet-monitor"]
    env = env_of(container)
    assert urlsplit(env["DotnetMonitor_Urls"]).hostname in ("localhost", "127.0.0.1")
    assert "DotnetMonitor_Authentication__MonitorApiKey__PublicKey" not in env


# ----------------------------------------------------------------------------------------- errors

def test_pod_not_found(sb):
    run = run_plugin(sb, "inject", "no-such-pod")
    assert_user_error(run, 4, "no-such-pod", "not found", "kubectl get pods")


def test_pod_pending(sb):
    run = run_plugin(sb, "inject", "pending")
    assert_user_error(run, 7, "pending", "wait")


def test_rbac_denied_names_the_permission(sb, pods):
    run = run_plugin(sb, "--context", "no-patch", "inject", pods[7])
    assert_user_error(run, 5, "pods/ephemeralcontainers", "patch")
    assert monitors(pod_json(sb, "default", pods[7])) == {}


def test_pod_security_rejection(sb):
    [name] = pods_by_label(sb, "locked", app="rootapp")
    run = run_plugin(sb, "-n", "locked", "inject", name)
    assert_user_error(run, 5, "Pod Security", "restricted")
    assert monitors(pod_json(sb, "locked", name)) == {}


def test_image_pull_failure(sb, pods):
    run = run_plugin(sb, "inject", pods[5], "--image", "registry.invalid/dotnet/monitor:10.0", "--timeout", "30s")
    assert_user_error(run, 7, "ImagePullBackOff", "--image")


def test_inject_after_image_pull_failure_gets_a_fresh_container(sb, pods):
    name = pods[5]
    if not monitors(pod_json(sb, "default", name)):
        run_plugin(sb, "inject", name, "--image", "registry.invalid/dotnet/monitor:10.0", "--timeout", "5s")
    run = run_plugin(sb, "inject", name, "--timeout", "5s")
    assert run.rc == 0, str(run)
    assert run.stdout.strip() == "dotnet-monitor-2"


def test_container_terminated(sb, pods):
    run = run_plugin(sb, "inject", pods[6], "--image", "registry.example/tools/crashy:1")
    assert_user_error(run, 7, "terminated", "kubectl logs")


def test_wait_timeout(sandbox_factory):
    slow = sandbox_factory("slow-start")
    run = run_plugin(slow, "inject", "slowpoke", "--timeout", "1s")
    assert_user_error(run, 7, "did not start within", "--timeout")


def test_old_cluster(sandbox_factory):
    old = sandbox_factory("old-cluster")
    [name, *_] = pods_by_label(old, "default", app="web")
    run = run_plugin(old, "inject", name)
    assert_user_error(run, 7, "1.25")


# ------------------------------------------------------------------------------ kubeconfig problems

def _kubeconfig(path: Path, server: str, ca: Path, user: dict) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "default"}}],
    }))
    return path


def _other_ca(path: Path) -> Path:
    """A CA certificate that did not sign the sandbox's API server certificate."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-the-sandbox-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_exec_credential_plugin_failing(sb, tmp_path):
    kc = _kubeconfig(tmp_path / "kc", sb.server, sb.state_dir / "ca.crt", {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/false", "interactiveMode": "Never"}})
    run = run_plugin(sb, "--kubeconfig", str(kc), "inject", "twoproc")
    assert_user_error(run, 3, "exec credential plugin", "/bin/false")


def test_unknown_context(sb):
    run = run_plugin(sb, "--context", "no-such-context", "inject", "twoproc")
    assert_user_error(run, 3, "no-such-context", "--context")


def test_kubeconfig_missing(sb, tmp_path):
    run = run_plugin(sb, "inject", "twoproc", "--kubeconfig", str(tmp_path / "nope"))
    assert_user_error(run, 3, "does not exist")


def test_api_unreachable(sb, tmp_path):
    kc = _kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", sb.state_dir / "ca.crt", {"token": sb.token("admin")})
    run = run_plugin(sb, "--kubeconfig", str(kc), "inject", "twoproc")
    assert_user_error(run, 6, "cannot reach", "127.0.0.1:1")


def test_tls_verification_failure(sb, tmp_path):
    kc = _kubeconfig(tmp_path / "kc", sb.server, _other_ca(tmp_path / "other-ca.crt"), {"token": sb.token("admin")})
    run = run_plugin(sb, "--kubeconfig", str(kc), "inject", "twoproc")
    assert_user_error(run, 6, "certificate", "certificate-authority")
    assert "insecure" not in run.stdout
