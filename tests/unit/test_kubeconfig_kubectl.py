"""Our kubeconfig resolution against REAL kubectl, over a matrix of kubeconfigs.

Two oracles:
- ``kubectl config view --minify -o json`` (context name, cluster server, context namespace; with
  ``--flatten`` also the bytes of a relatively-referenced CA file);
- ``kubectl get pods`` against a loopback HTTP recorder, because ``config view`` ignores ``-n``,
  ``--cluster`` and ``--user``: the request path shows the server (each cluster has its own path
  prefix) and the namespace, the Authorization header shows the user.

Each case runs with a temporary HOME, so the real ~/.kube is never read or written.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from kubectl_dotnet_monitor.kube.config import KubeFlags, resolve_connection

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def kubectl(args, env, check=True):
    proc = subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
    return proc


def flag_args(flags: KubeFlags) -> list[str]:
    args = []
    for name in ("kubeconfig", "context", "cluster", "user", "namespace"):
        value = getattr(flags, name)
        if value:
            args += [f"--{name}", value]
    return args


def write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def kc(current=None, clusters=(), users=(), contexts=()):
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": n, "cluster": b} for n, b in clusters],
           "users": [{"name": n, "user": b} for n, b in users],
           "contexts": [{"name": n, "context": b} for n, b in contexts]}
    if current:
        doc["current-context"] = current
    return doc


# -- config view matrix --------------------------------------------------------------------------

def _files_two_current_contexts(d):
    a = write(d / "a" / "config", kc("from-a", clusters=[("shared", {"server": "https://a.example:6443"})],
                                     users=[("ua", {"token": "a"})],
                                     contexts=[("from-a", {"cluster": "shared", "user": "ua", "namespace": "na"})]))
    b = write(d / "b" / "config", kc("from-b", clusters=[("shared", {"server": "https://b.example:6443"}),
                                                         ("onlyb", {"server": "https://onlyb.example"})],
                                     users=[("ub", {"token": "b"})],
                                     contexts=[("from-b", {"cluster": "onlyb", "user": "ub"}),
                                               ("from-a", {"cluster": "onlyb", "user": "ub", "namespace": "shadow"})]))
    return [a, b]


def _files_first_without_current(d):
    a = write(d / "a.yaml", kc(None, clusters=[("ca", {"server": "https://first.example"})],
                               contexts=[("ctx-b", {"cluster": "ca", "namespace": "from-a"})]))
    b = write(d / "b.yaml", kc("ctx-b", clusters=[("cb", {"server": "https://second.example"})],
                               contexts=[("ctx-b", {"cluster": "cb", "namespace": "from-b"}),
                                         ("other", {"cluster": "cb"})]))
    return [a, b]


def _files_context_from_later_file(d):
    a = write(d / "a.yaml", kc("late", clusters=[("c1", {"server": "https://one.example"})]))
    b = write(d / "b.yaml", kc(None, clusters=[("c2", {"server": "https://two.example:7443"})],
                               contexts=[("late", {"cluster": "c2", "namespace": "nlate"}),
                                         ("early", {"cluster": "c1"})]))
    return [a, b]


MATRIX = {
    "two-files-first-current-context-wins": _files_two_current_contexts,
    "first-file-without-current-context": _files_first_without_current,
    "context-defined-in-later-file": _files_context_from_later_file,
}


def _kubectl_minify(args, env):
    doc = json.loads(kubectl(["config", "view", "--minify", "-o", "json", *args], env).stdout)
    ctx = doc["contexts"][0]
    server = doc["clusters"][0]["cluster"]["server"]
    return doc["current-context"], server.rstrip("/"), ctx["context"].get("namespace") or "default"


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    (h / ".kube").mkdir(parents=True)
    return h


def _env(home, kubeconfig_list=None):
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}
    if kubeconfig_list is not None:
        env["KUBECONFIG"] = kubeconfig_list
    return env


@pytest.mark.parametrize("case", sorted(MATRIX))
@pytest.mark.parametrize("extra", ["none", "missing-files", "duplicates", "context-override"])
def test_config_view_matrix(tmp_path, home, case, extra):
    files = MATRIX[case](tmp_path / "cfg")
    if extra == "missing-files":
        files = [str(tmp_path / "nope1"), files[0], str(tmp_path / "nope2"), *files[1:]]
    elif extra == "duplicates":
        files = [files[0], *files, files[0]]
    env = _env(home, os.pathsep.join(files))
    flags = KubeFlags()
    if extra == "context-override":
        merged_contexts = [c["name"] for f in files if os.path.exists(f)
                           for c in yaml.safe_load(open(f)).get("contexts") or []]
        flags = KubeFlags(context=merged_contexts[-1])
    expected = _kubectl_minify(flag_args(flags), env)
    conn = resolve_connection(flags, env)
    assert (conn.context_name, conn.server, conn.namespace) == expected


def test_explicit_kubeconfig_flag_ignores_env_list(tmp_path, home):
    a, b = _files_two_current_contexts(tmp_path / "cfg")
    env = _env(home, a)
    flags = KubeFlags(kubeconfig=b)
    assert (resolve_connection(flags, env).context_name, resolve_connection(flags, env).server,
            resolve_connection(flags, env).namespace) == _kubectl_minify(flag_args(flags), env)


def test_default_home_kube_config(tmp_path, home):
    write(home / ".kube" / "config", kc("d", clusters=[("c", {"server": "https://home.example"})],
                                        contexts=[("d", {"cluster": "c", "namespace": "home-ns"})]))
    env = _env(home)
    conn = resolve_connection(KubeFlags(), env)
    assert (conn.context_name, conn.server, conn.namespace) == _kubectl_minify([], env)


def test_relative_certificate_authority_matches_kubectl_flatten(tmp_path, home):
    (tmp_path / "one" / "pki").mkdir(parents=True)
    (tmp_path / "one" / "pki" / "ca.crt").write_bytes(b"CA FROM DIR ONE\n")
    (tmp_path / "two" / "pki").mkdir(parents=True)
    (tmp_path / "two" / "pki" / "ca.crt").write_bytes(b"CA FROM DIR TWO\n")
    a = write(tmp_path / "one" / "config", kc("x", contexts=[("x", {"cluster": "c"})]))
    b = write(tmp_path / "two" / "config", kc(None, clusters=[("c", {"server": "https://h",
                                                                      "certificate-authority": "pki/ca.crt"})]))
    env = _env(home, os.pathsep.join([a, b]))
    doc = json.loads(kubectl(["config", "view", "--minify", "--flatten", "-o", "json"], env).stdout)
    kubectl_ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    conn = resolve_connection(KubeFlags(), env)
    with open(conn.tls.ca_file, "rb") as fh:
        assert fh.read() == kubectl_ca == b"CA FROM DIR TWO\n"


def test_unknown_context_fails_in_both(tmp_path, home):
    a, b = _files_two_current_contexts(tmp_path / "cfg")
    env = _env(home, os.pathsep.join([a, b]))
    assert kubectl(["config", "view", "--minify", "--context", "nope"], env, check=False).returncode != 0
    from kubectl_dotnet_monitor.errors import ConfigError

    with pytest.raises(ConfigError):
        resolve_connection(KubeFlags(context="nope"), env)


# -- overrides kubectl applies only when talking to a server: an HTTP recorder ---------------------


class _Recorder(BaseHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):  # quiet
        pass

    def _send(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        prefix, _, rest = self.path.partition("?")[0].lstrip("/").partition("/")
        rest = "/" + rest
        if rest == "/api":
            return self._send({"kind": "APIVersions", "versions": ["v1"],
                               "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "x"}]})
        if rest == "/apis":
            return self._send({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if rest == "/api/v1":
            return self._send({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                 "verbs": ["get", "list"], "shortNames": ["po"]}]})
        self.server.seen.append({"prefix": prefix, "path": rest, "auth": self.headers.get("Authorization")})
        return self._send({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})


def _start_recorder(tmpdir, tls):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []
    server.scheme = "http"
    if tls:
        from tests.unit.test_kube_api import _write_pem_pair, make_pki

        pki = make_pki()
        cert, key = _write_pem_pair(str(tmpdir), pki.server, "recorder")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        server.scheme = "https"
        server.ca_data = base64.b64encode(pki.ca.cert).decode()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server


@pytest.fixture(scope="module")
def recorder(tmp_path_factory):
    server = _start_recorder(tmp_path_factory.mktemp("recorder"), tls=True)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def plain_recorder(tmp_path_factory):
    server = _start_recorder(tmp_path_factory.mktemp("plain"), tls=False)
    yield server
    server.shutdown()
    server.server_close()


def _recorded_cluster_files(tmp_path, recorder):
    base = f"{recorder.scheme}://127.0.0.1:{recorder.server_address[1]}"
    tls = {"certificate-authority-data": recorder.ca_data} if recorder.scheme == "https" else {}

    def cluster(prefix):
        return {"server": f"{base}/{prefix}", **tls}

    a = write(tmp_path / "a.yaml", kc(
        "main",
        clusters=[("alpha", cluster("alpha")), ("beta", cluster("beta"))],
        users=[("ann", {"token": "ann-token"}), ("bob", {"token": "bob-token"})],
        contexts=[("main", {"cluster": "alpha", "user": "ann", "namespace": "ns-main"}),
                  ("bare", {"cluster": "beta", "user": "bob"})]))
    b = write(tmp_path / "b.yaml", kc(
        "bare",
        clusters=[("gamma", cluster("gamma")), ("alpha", cluster("shadowed"))],
        users=[("cat", {"tokenFile": "tokens/cat"})],
        contexts=[("third", {"cluster": "gamma", "user": "cat", "namespace": "ns-third"})]))
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "cat").write_text("cat-token\n")
    return [a, b]


@pytest.mark.parametrize("flags", [
    KubeFlags(),
    KubeFlags(namespace="explicit"),
    KubeFlags(context="bare"),
    KubeFlags(context="third"),
    KubeFlags(cluster="beta"),
    KubeFlags(user="bob"),
    KubeFlags(user="cat", cluster="gamma"),
    KubeFlags(context="bare", namespace="n2", cluster="alpha", user="cat"),
], ids=lambda f: ",".join(f"{k}={v}" for k, v in vars(f).items() if v) or "defaults")
def test_overrides_match_kubectl_requests(tmp_path, home, recorder, flags):
    _compare_with_kubectl_request(tmp_path, home, recorder, flags)
    assert recorder.seen[-1]["auth"]  # over TLS, kubectl sent the user's token


def _compare_with_kubectl_request(tmp_path, home, recorder, flags):
    files = _recorded_cluster_files(tmp_path / "cfg", recorder)
    env = _env(home, os.pathsep.join(files))
    recorder.seen.clear()
    proc = kubectl(["get", "pods", "--request-timeout", "10s", *flag_args(flags)], env, check=False)
    assert recorder.seen, f"kubectl sent no pod list request: {proc.stderr}"
    seen = recorder.seen[-1]
    conn = resolve_connection(flags, env)
    port = recorder.server_address[1]
    assert conn.server == f"{recorder.scheme}://127.0.0.1:{port}/{seen['prefix']}"
    assert f"/api/v1/namespaces/{conn.namespace}/pods" == seen["path"]
    assert conn.auth_headers().get("Authorization") == seen["auth"]


@pytest.mark.parametrize("flags", [KubeFlags(), KubeFlags(user="bob", namespace="x")], ids=["defaults", "user"])
def test_plain_http_server_gets_no_credentials_like_kubectl(tmp_path, home, plain_recorder, flags):
    _compare_with_kubectl_request(tmp_path, home, plain_recorder, flags)
    assert plain_recorder.seen[-1]["auth"] is None
