"""Request bodies in `application/vnd.kubernetes.protobuf` (what kubectl 1.32+ sends for
`create secret|configmap`), the 415 for what the sandbox cannot decode, JSON still accepted, and
the `python -m tests.sandbox fire-rule` subcommand."""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.sandbox import Sandbox, SandboxHandle
from tests.sandbox import protobuf as pb
from tests.sandbox_tests.test_workloads import wait_for

REPO = Path(__file__).resolve().parents[2]

# kubectl 1.29-1.31 send JSON for these creates; 1.32 is the first to send protobuf.
VERSIONS = [None, "1.31", "1.32"]


def _have(version: str | None) -> bool:
    return os.access(SandboxHandle.kubectl_path(version), os.X_OK)


versions = pytest.mark.parametrize(
    "version",
    [pytest.param(v, id=v or "installed",
                  marks=pytest.mark.skipif(not _have(v), reason=f"no kubectl {v}")) for v in VERSIONS],
)


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


# ---------------------------------------------------------------------------- the decoder

#: The body kubectl 1.33 sends for `kubectl create secret generic s1 --from-literal=a=b`
#: (captured with -v=8): every optional string of ObjectMeta present and empty, an empty `type`.
KUBECTL_SECRET = bytes.fromhex(
    "6b387300 0a0c0a02 7631 1206 536563726574 121e 0a12 0a027331 1200 1a00 2200 2a00 3200"
    " 3800 4200 1206 0a0161 120162 1a00 1a00 2200".replace(" ", ""))


def test_decodes_the_body_kubectl_sends() -> None:
    assert pb.decode(KUBECTL_SECRET) == {"apiVersion": "v1", "kind": "Secret",
                                         "metadata": {"name": "s1"}, "data": {"a": b64("b")}}


def _entry(key: str, value: bytes | str) -> bytes:
    return pb.field(1, key) + pb.field(2, value)


def test_secret_with_every_decoded_field() -> None:
    owner = (pb.field(5, "v1") + pb.field(1, "Pod") + pb.field(3, "web-1") + pb.field(4, "u-1")
             + pb.field(6, True) + pb.field(7, False))
    meta = (pb.field(1, "") + pb.field(2, "creds-") + pb.field(3, "shop")
            + pb.field(8, b"")                            # creationTimestamp: server-set, ignored
            + pb.field(11, _entry("app", "web")) + pb.field(11, _entry("tier", ""))
            + pb.field(12, _entry("note", "héllo"))
            + pb.field(13, owner) + pb.field(14, "example.com/keep")
            + pb.field(99, "a field from the future"))     # unknown fields are skipped
    raw = (pb.field(1, meta) + pb.field(2, _entry("bin", b"\x00\xff\n"))
           + pb.field(2, _entry("empty", b"")) + pb.field(3, "example.com/custom")
           + pb.field(4, _entry("token", "s3cr3t")) + pb.field(5, True))
    assert pb.decode(pb.wrap("v1", "Secret", raw)) == {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "generateName": "creds-", "namespace": "shop",
            "labels": {"app": "web", "tier": ""}, "annotations": {"note": "héllo"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "u-1",
                                 "controller": True, "blockOwnerDeletion": False}],
            "finalizers": ["example.com/keep"]},
        "data": {"bin": b64(b"\x00\xff\n"), "empty": ""},
        "type": "example.com/custom", "stringData": {"token": "s3cr3t"}, "immutable": True,
    }


def test_config_map() -> None:
    raw = (pb.field(1, pb.field(1, "settings")) + pb.field(2, _entry("mode", "fast"))
           + pb.field(3, _entry("blob", b"\x01\x02")) + pb.field(4, False))
    assert pb.decode(pb.wrap("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
        "data": {"mode": "fast"}, "binaryData": {"blob": b64(b"\x01\x02")}, "immutable": False}


def test_self_subject_reviews() -> None:
    attrs = pb.field(2, "patch") + pb.field(5, "pods") + pb.field(6, "ephemeralcontainers") + pb.field(3, "")
    ssar = pb.field(1, b"") + pb.field(2, pb.field(1, attrs))
    assert pb.decode(pb.wrap("authorization.k8s.io/v1", "SelfSubjectAccessReview", ssar)) == {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {},
        "spec": {"resourceAttributes": {"verb": "patch", "resource": "pods",
                                        "subresource": "ephemeralcontainers"}}}
    ssrr = pb.field(2, pb.field(1, "shop"))
    assert pb.decode(pb.wrap("authorization.k8s.io/v1", "SelfSubjectRulesReview", ssrr))["spec"] \
        == {"namespace": "shop"}


@pytest.mark.parametrize("body, message", [
    (b'{"kind": "Secret"}', ("provided data does not appear to be a protobuf message, "
                             "expected prefix [107 56 115 0]")),
    (KUBECTL_SECRET[:-9], "unexpected EOF"),
    (pb.MAGIC + pb.field(2, b""), "Object 'Kind' is missing in protobuf envelope"),
    (pb.wrap("v1", "Secret", pb.field(1, 7)), "proto: wrong wireType = 0 for field metadata"),
    (pb.wrap("v1", "Secret", b"\x0f"), "proto: illegal wireType 7"),
])
def test_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(pb.DecodeError) as exc:
        pb.decode(body)
    assert str(exc.value) == message


def test_kinds_without_a_decoder() -> None:
    with pytest.raises(pb.UnsupportedKind) as exc:
        pb.decode(pb.wrap("v1", "Pod", pb.field(1, pb.field(1, "p"))))
    assert (exc.value.api_version, exc.value.kind) == ("v1", "Pod")


# ---------------------------------------------------------------------------- the sandbox

@pytest.fixture(scope="module")
def sb(tmp_path_factory):
    sandbox = Sandbox("basic", tmp_path_factory.mktemp("sandbox-protobuf")).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def handle(sb) -> SandboxHandle:
    return sb.handle()


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"kubectl failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _suffix(version: str | None) -> str:
    return (version or "installed").replace(".", "-")


def _raw(sb: Sandbox, method: str, path: str, body: bytes, ctype: str) -> tuple[int, dict]:
    host, port = sb.server.replace("https://", "").split(":")
    ctx = ssl.create_default_context(cafile=str(Path(sb.state_dir) / "ca.crt"))
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=20)
    try:
        conn.request(method, path, body=body, headers={
            "Authorization": f"Bearer {sb.tokens['admin']}", "Content-Type": ctype,
            "Accept": "application/vnd.kubernetes.protobuf,application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


@versions
def test_kubectl_create_secret_generic_literals_and_files(handle, tmp_path, version) -> None:
    name = f"gen-{_suffix(version)}"
    blob = bytes(range(256)) * 3
    (tmp_path / "blob.bin").write_bytes(blob)
    (tmp_path / "app.conf").write_text("a = 1\nb = two\n")
    out = _ok(handle.kubectl("create", "secret", "generic", name, "--from-literal=user=admin",
                             "--from-literal=pass=p@ss w:rd=", f"--from-file={tmp_path / 'blob.bin'}",
                             f"--from-file=conf={tmp_path / 'app.conf'}", version=version))
    assert out.strip() == f"secret/{name} created"
    secret = json.loads(_ok(handle.kubectl("get", "secret", name, "-o", "json", version=version)))
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"user": b64("admin"), "pass": b64("p@ss w:rd="),
                              "blob.bin": b64(blob), "conf": b64("a = 1\nb = two\n")}
    assert secret["metadata"]["namespace"] == "default" and secret["metadata"]["uid"]
    assert "stringData" not in secret
    again = handle.kubectl("create", "secret", "generic", name, "--from-literal=x=y", version=version)
    assert again.returncode == 1 and f'secrets "{name}" already exists' in again.stderr


@versions
def test_kubectl_create_secret_tls_and_docker_registry(handle, tmp_path, version) -> None:
    tls, reg = f"tls-{_suffix(version)}", f"reg-{_suffix(version)}"
    # kubectl checks that the pair matches before sending anything: make a real one
    proc = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                           "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                           str(tmp_path / "tls.key"), "-out", str(tmp_path / "tls.crt"), "-days",
                           "1", "-subj", "/CN=sandbox"], capture_output=True, check=False)
    if proc.returncode != 0:
        pytest.skip("openssl cannot make a key pair here")
    _ok(handle.kubectl("create", "secret", "tls", tls, "-n", "shop",
                       f"--cert={tmp_path / 'tls.crt'}", f"--key={tmp_path / 'tls.key'}",
                       version=version))
    got = yaml.safe_load(_ok(handle.kubectl("get", "secret", tls, "-n", "shop", "-o", "yaml",
                                            version=version)))
    assert got["type"] == "kubernetes.io/tls" and got["metadata"]["namespace"] == "shop"
    assert got["data"] == {"tls.crt": b64((tmp_path / "tls.crt").read_bytes()),
                           "tls.key": b64((tmp_path / "tls.key").read_bytes())}
    _ok(handle.kubectl("create", "secret", "docker-registry", reg, "--docker-server=r.example",
                       "--docker-username=u", "--docker-password=p", version=version))
    got = yaml.safe_load(_ok(handle.kubectl("get", "secret", reg, "-o", "yaml", version=version)))
    assert got["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(got["data"][".dockerconfigjson"]))
    assert config["auths"]["r.example"]["username"] == "u"
    assert config["auths"]["r.example"]["auth"] == b64("u:p")


@versions
def test_kubectl_create_configmap(handle, tmp_path, version) -> None:
    name = f"cm-{_suffix(version)}"
    (tmp_path / "text.txt").write_text("line 1\nline 2\n")
    (tmp_path / "bin.dat").write_bytes(b"\x00\xfe\xff binary")
    _ok(handle.kubectl("create", "configmap", name, "--from-literal=mode=fast",
                       f"--from-file={tmp_path / 'text.txt'}", f"--from-file={tmp_path / 'bin.dat'}",
                       version=version))
    cm = json.loads(_ok(handle.kubectl("get", "configmap", name, "-o", "json", version=version)))
    assert cm["data"] == {"mode": "fast", "text.txt": "line 1\nline 2\n"}
    assert cm["binaryData"] == {"bin.dat": b64(b"\x00\xfe\xff binary")}


@versions
def test_kubectl_dry_run_server_stores_nothing(handle, version) -> None:
    name = f"dry-{_suffix(version)}"
    out = _ok(handle.kubectl("create", "secret", "generic", name, "--from-literal=a=b",
                             "--dry-run=server", "-o", "json", version=version))
    assert json.loads(out)["data"] == {"a": b64("b")}
    gone = handle.kubectl("get", "secret", name, version=version)
    assert gone.returncode == 1 and "NotFound" in gone.stderr


@versions
def test_kubectl_auth_can_i_list(handle, version) -> None:
    # SelfSubjectRulesReview: protobuf from kubectl 1.32 on
    out = _ok(handle.kubectl("auth", "can-i", "--list", "-n", "shop", version=version))
    assert "selfsubjectaccessreviews.authorization.k8s.io" in out
    assert _ok(handle.kubectl("auth", "can-i", "create", "secrets", version=version)).strip() == "yes"


def test_kubectl_does_not_fall_back_to_json_on_415(handle, monkeypatch) -> None:
    """What kubectl (1.32+) does when a server refuses protobuf: one request, no JSON retry."""
    if not _have("1.32"):
        pytest.skip("no kubectl 1.32")
    monkeypatch.delitem(pb.KINDS, ("v1", "Secret"))
    proc = handle.kubectl("create", "secret", "generic", "refused", "--from-literal=a=b", "-v=8",
                          version="1.32")
    assert proc.returncode == 1
    assert ("error: failed to create secret the body of the request was in an unknown format - "
            "accepted media types include: application/json, application/yaml") in proc.stderr
    posts = [line for line in proc.stderr.splitlines() if "POST" in line and "/secrets?" in line]
    assert len(posts) == 1, posts
    assert proc.stderr.count("Content-Type: application/vnd.kubernetes.protobuf") == 1
    monkeypatch.undo()
    assert handle.kubectl("get", "secret", "refused").returncode == 1


def test_unsupported_bodies_get_the_servers_415(sb) -> None:
    path = "/api/v1/namespaces/default/secrets"
    code, status = _raw(sb, "POST", path, pb.wrap("v1", "Pod", pb.field(1, pb.field(1, "p"))),
                        pb.MEDIA_TYPE)
    assert (code, status) == (415, {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the body of the request was in an unknown format - accepted media types "
                   "include: application/json, application/yaml",
        "reason": "UnsupportedMediaType", "code": 415})
    code, status = _raw(sb, "POST", path, b"a=b", "text/plain")
    assert code == 415 and status["message"].endswith(
        "application/json, application/yaml, application/vnd.kubernetes.protobuf")
    code, status = _raw(sb, "POST", path, b'{"kind": "Secret"}', pb.MEDIA_TYPE)
    assert code == 400 and status["reason"] == "BadRequest"
    assert status["message"].startswith("provided data does not appear to be a protobuf message")


def test_json_and_yaml_bodies_still_work(sb) -> None:
    path = "/api/v1/namespaces/default/secrets"
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "from-yaml"},
            "stringData": {"k": "v"}}
    code, created = _raw(sb, "POST", path, yaml.safe_dump(body).encode(), "application/yaml")
    assert code == 201 and created["data"] == {"k": b64("v")} and created["type"] == "Opaque"
    code, created = _raw(sb, "POST", path, b"{}", "application/json; charset=utf-8")
    assert code == 422  # decoded, then refused for the missing name


def test_python_client_create_namespaced_secret_sends_json(handle) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(handle.kubeconfig)))
    body = client.V1Secret(metadata=client.V1ObjectMeta(name="py-secret", labels={"a": "b"}),
                           data={"bin": b64(b"\x00\x01")}, string_data={"s": "text"})
    created = api.create_namespaced_secret("default", body)
    assert created.data == {"bin": b64(b"\x00\x01"), "s": b64("text")}
    assert created.type == "Opaque" and created.metadata.labels == {"a": "b"}
    got = json.loads(_ok(handle.kubectl("get", "secret", "py-secret", "-o", "json")))
    assert got["data"] == created.data
    api.delete_namespaced_secret("py-secret", "default")
    assert kubernetes  # imported for the skip only


# ---------------------------------------------------------------------------- fire-rule

MONITOR_ENV = {
    "DotnetMonitor_DiagnosticPort__ConnectionMode": "Listen",
    "DotnetMonitor_DiagnosticPort__EndpointName": "/diag/dotnet-monitor.sock",
    "DotnetMonitor_Storage__DefaultSharedPath": "/diag",
    "DotnetMonitor_Egress__FileSystem__files__DirectoryPath": "/diag/out",
    "DotnetMonitor_CollectionRules__Leak__Trigger__Type": "GCHeapSize",
    "DotnetMonitor_CollectionRules__Leak__Trigger__Settings__HeapSizeThreshold": "1000",
    "DotnetMonitor_CollectionRules__Leak__Actions__0__Type": "CollectGCDump",
    "DotnetMonitor_CollectionRules__Leak__Actions__0__Settings__Egress": "files",
    "DotnetMonitor_CollectionRules__Leak__Limits__ActionCount": "1",
}


@pytest.fixture(scope="module")
def monitored(sb, handle) -> str:
    """A prepared `web` pod with a monitor (one rule, `Leak`) injected with real kubectl."""
    pods = json.loads(_ok(handle.kubectl("get", "pods", "-l", "app=web", "-o", "json")))["items"]
    name = min(p["metadata"]["name"] for p in pods)
    container = {"name": "monitor", "image": "mcr.microsoft.com/dotnet/monitor:9",
                 "args": ["collect", "--urls", "http://+:52323", "--no-auth"],
                 "env": [{"name": k, "value": v} for k, v in MONITOR_ENV.items()],
                 "volumeMounts": [{"name": "diagvol", "mountPath": "/diag"}]}
    _ok(handle.kubectl("patch", "pod", name, "--subresource=ephemeralcontainers",
                       "--type=strategic", "-p",
                       json.dumps({"spec": {"ephemeralContainers": [container]}})))
    wait_for(lambda: sb.kubelet.monitors("default", name), what="the monitor to start")
    return name


def fire(handle: SandboxHandle, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.sandbox", "fire-rule", "--state-dir",
                           str(handle.state_dir), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)


def test_fire_rule_prints_the_operation_and_the_monitor_egresses(handle, monitored) -> None:
    handle.control.clear_artifacts()
    run = fire(handle, "default", monitored, "leak")   # rule names are case-insensitive
    assert run.returncode == 0, run.stderr
    [op] = run.stdout.split()
    rec = wait_for(lambda: next((r for r in handle.control.artifacts()
                                 if r.get("operation_id") == op), None), what="the egress record")
    assert rec["rule"] == "Leak" and rec["egress"] == "files" and rec["artifact"] == "gcdump"
    # ActionCount 1: the rule is finished now; firing again starts nothing, and says so
    again = fire(handle, "default", monitored, "Leak")
    assert again.returncode == 0 and again.stdout == ""
    assert "started no operation" in again.stderr


def test_fire_rule_errors(handle, monitored) -> None:
    run = fire(handle, "default", monitored, "Nope")
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip() == (f"error: no collection rule 'Nope' in the dotnet-monitor of pod "
                                  f"default/{monitored} (configured: Leak)")
    run = fire(handle, "default", "unprepared", "Leak")
    assert run.returncode == 1
    assert run.stderr.strip() == "error: no dotnet-monitor is running in pod default/unprepared"
    run = fire(handle, "default", "no-such-pod", "Leak")
    assert run.returncode == 1
    assert run.stderr.strip() == 'error: pod "no-such-pod" not found in namespace "default"'
    run = fire(handle, "default", monitored, "Leak", "--pid", "99999")
    assert run.returncode == 0 and run.stdout == "" and "no process 99999" in run.stderr


def test_fire_rule_without_a_sandbox(tmp_path) -> None:
    run = subprocess.run([sys.executable, "-m", "tests.sandbox", "fire-rule", "--state-dir",
                          str(tmp_path), "default", "web", "Leak"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1 and run.stderr.strip() == f"error: no sandbox running from {tmp_path}"
