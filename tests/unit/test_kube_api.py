"""KubeClient against a tiny local HTTPS server: requests, Status -> typed errors, TLS, timeouts, watch."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import logging
import os
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from kubectl_dotnet_monitor.errors import (
    ConfigError,
    ExitCode,
    ForbiddenError,
    NotFoundError,
    UnavailableError,
    UsageError,
)
from kubectl_dotnet_monitor.kube import pods
from kubectl_dotnet_monitor.kube.api import (
    ApiConflict,
    ApiError,
    ApiForbidden,
    ApiGone,
    ApiInvalid,
    ApiNotFound,
    ApiServerError,
    ApiTLSError,
    ApiUnauthorized,
    ApiUnreachable,
    KubeClient,
)
from kubectl_dotnet_monitor.kube.config import KubeFlags, resolve_connection

# -- PKI -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key):
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(name="test-ca") -> tuple[Pem, object, object]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)), cert, key


def issue(ca_cert, ca_key, *, cn, sans=(), client=False) -> Pem:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                     else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    names = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Pem(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


@dataclass
class Pki:
    ca: Pem
    server: Pem  # 127.0.0.1 + localhost
    named_only: Pem  # only DNS kube.test
    client: Pem  # CN=alice
    other_ca: Pem


_PKI: list[Pki] = []


def make_pki() -> Pki:
    """One PKI per test session (EC keys: fast)."""
    if not _PKI:
        ca, ca_cert, ca_key = make_ca()
        other, _, _ = make_ca("other-ca")
        _PKI.append(Pki(ca=ca, server=issue(ca_cert, ca_key, cn="apiserver", sans=("127.0.0.1", "localhost")),
                        named_only=issue(ca_cert, ca_key, cn="kube.test", sans=("kube.test",)),
                        client=issue(ca_cert, ca_key, cn="alice", client=True), other_ca=other))
    return _PKI[0]


def _write_pem_pair(tmpdir, pem: Pem, name: str) -> tuple[str, str]:
    cert, key = os.path.join(tmpdir, f"{name}.crt"), os.path.join(tmpdir, f"{name}.key")
    with open(cert, "wb") as fh:
        fh.write(pem.cert)
    with open(key, "wb") as fh:
        fh.write(pem.key)
    return cert, key


# -- a tiny HTTPS API server -------------------------------------------------------------------


class FakeApi(ThreadingHTTPServer):
    """Routes: ``(method, path) -> handler(req) | (status, doc)``; records every request."""

    daemon_threads = True

    def __init__(self, tmpdir, pem: Pem, ca: Pem | None = None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict = {}
        self.seen: list[dict] = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = _write_pem_pair(tmpdir, pem, f"server-{id(self)}")
        ctx.load_cert_chain(cert, key)
        if ca is not None:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(cadata=ca.cert.decode())
        self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"https://127.0.0.1:{self.server_address[1]}"

    def stop(self):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _handle(self):
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        peer = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        self.server.seen.append({"method": self.command, "path": path, "query": query, "headers": dict(self.headers),
                                 "body": body, "peer": peer})
        route = self.server.routes.get((self.command, path))
        if route is None:
            return self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "message": "the server could not find the requested resource",
                                    "reason": "NotFound", "code": 404})
        if callable(route):
            return route(self)
        status, doc = route
        return self.reply(status, doc)

    def reply(self, status, doc, content_type="application/json"):
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815


@pytest.fixture(scope="module")
def pki():
    return make_pki()


@pytest.fixture
def api(tmp_path, pki):
    server = FakeApi(str(tmp_path), pki.server, ca=pki.ca)
    yield server
    server.stop()


def kubeconfig(tmp_path, server_url, *, cluster=None, user=None, name="kc.yaml"):
    cluster_body = {"server": server_url}
    cluster_body.update(cluster if cluster is not None else
                        {"certificate-authority-data": base64.b64encode(make_pki().ca.cert).decode()})
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "t",
           "clusters": [{"name": "test", "cluster": cluster_body}],
           "users": [{"name": "tester", "user": user if user is not None else {"token": "SECRET-TOKEN-42"}}],
           "contexts": [{"name": "t", "context": {"cluster": "test", "user": "tester", "namespace": "ns1"}}]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def connect(tmp_path, server_url, timeout=None, **kw):
    path = kubeconfig(tmp_path, server_url, **kw)
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", ""), "KUBECONFIG": path}
    return resolve_connection(KubeFlags(request_timeout=timeout), env)


def status(code, reason, message, **details):
    doc = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
           "reason": reason, "code": code}
    if details:
        doc["details"] = details
    return doc


# -- requests ------------------------------------------------------------------------------------


def test_get_sends_token_user_agent_and_query(tmp_path, api):
    api.routes[("GET", "/api/v1/namespaces/ns1/pods")] = (200, {"kind": "PodList", "items": []})
    client = KubeClient(connect(tmp_path, api.url))
    assert client.get("/api/v1/namespaces/ns1/pods", {"labelSelector": "app=x", "limit": 5, "watch": False}) == {
        "kind": "PodList", "items": []}
    req = api.seen[-1]
    assert req["headers"]["Authorization"] == "Bearer SECRET-TOKEN-42"
    assert req["headers"]["User-Agent"].startswith("kubectl-dotnet_monitor/")
    assert req["query"] == "labelSelector=app%3Dx&limit=5&watch=false"


def test_post_patch_delete_version(tmp_path, api):
    api.routes[("POST", "/api/v1/namespaces/ns1/secrets")] = (201, {"kind": "Secret"})
    api.routes[("PATCH", "/api/v1/namespaces/ns1/pods/p/ephemeralcontainers")] = (200, {"kind": "Pod"})
    api.routes[("DELETE", "/api/v1/namespaces/ns1/secrets/s")] = (200, {"kind": "Status", "status": "Success"})
    api.routes[("GET", "/version")] = (200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0"})
    client = KubeClient(connect(tmp_path, api.url))
    assert client.post("/api/v1/namespaces/ns1/secrets", {"metadata": {"name": "s"}}) == {"kind": "Secret"}
    assert json.loads(api.seen[-1]["body"]) == {"metadata": {"name": "s"}}
    assert api.seen[-1]["headers"]["Content-Type"] == "application/json"
    for patch_type, ctype in (("strategic", "application/strategic-merge-patch+json"),
                              ("merge", "application/merge-patch+json"), ("json", "application/json-patch+json")):
        client.patch("/api/v1/namespaces/ns1/pods/p/ephemeralcontainers", {"spec": {}}, patch_type=patch_type)
        assert api.seen[-1]["headers"]["Content-Type"] == ctype and api.seen[-1]["query"] == ""
    client.patch("/api/v1/namespaces/ns1/pods/p/ephemeralcontainers", [{"op": "add"}], "json", dry_run=True)
    assert api.seen[-1]["query"] == "dryRun=All" and json.loads(api.seen[-1]["body"]) == [{"op": "add"}]
    assert client.delete("/api/v1/namespaces/ns1/secrets/s")["status"] == "Success"
    assert client.version()["gitVersion"] == "v1.31.0"
    with pytest.raises(ValueError):
        client.patch("/x", {}, patch_type="bogus")


def test_pod_helpers(tmp_path, api):
    pod = {"metadata": {"name": "p", "annotations": {"kubectl.kubernetes.io/default-container": "app"}},
           "spec": {"containers": [{"name": "side"}, {"name": "app"}], "ephemeralContainers": [{"name": "dotnet-monitor"}]},
           "status": {"phase": "Running",
                      "containerStatuses": [{"name": "app", "state": {"running": {"startedAt": "t"}}}],
                      "ephemeralContainerStatuses": [{"name": "dotnet-monitor",
                                                      "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}
    api.routes[("GET", "/api/v1/namespaces/ns1/pods/p")] = (200, pod)
    client = KubeClient(connect(tmp_path, api.url))
    got = pods.get_pod(client, "ns1", "p")
    assert pods.pod_phase(got) == "Running"
    assert pods.find_container(got, "dotnet-monitor") == ("ephemeralContainers", {"name": "dotnet-monitor"})
    assert pods.find_container(got, "nope") is None
    assert pods.container_state(pods.container_status(got, "dotnet-monitor")) == (
        "waiting", {"reason": "ImagePullBackOff"})
    assert pods.container_state(pods.container_status(got, "app"))[0] == "running"
    assert pods.container_state(None) == ("unknown", {})
    assert pods.default_container_name(got) == "app"
    assert pods.pod_path("a b", "p/q", "portforward") == "/api/v1/namespaces/a%20b/pods/p%2Fq/portforward"
    api.routes[("GET", "/api/v1/namespaces/ns1/pods/gone")] = (404, status(404, "NotFound", 'pods "gone" not found'))
    with pytest.raises(ApiNotFound, match='pod "gone" not found in namespace "ns1"') as err:
        pods.get_pod(client, "ns1", "gone")
    assert err.value.exit_code == ExitCode.NOT_FOUND and "kubectl get pods -n ns1" in err.value.hint


# -- error mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize("code, reason, cls, kind, exit_code", [
    (401, "Unauthorized", ApiUnauthorized, ForbiddenError, ExitCode.FORBIDDEN),
    (403, "Forbidden", ApiForbidden, ForbiddenError, ExitCode.FORBIDDEN),
    (404, "NotFound", ApiNotFound, NotFoundError, ExitCode.NOT_FOUND),
    (409, "AlreadyExists", ApiConflict, UsageError, ExitCode.USAGE),
    (410, "Expired", ApiGone, UnavailableError, ExitCode.UNAVAILABLE),
    (422, "Invalid", ApiInvalid, UsageError, ExitCode.USAGE),
    (400, "BadRequest", ApiInvalid, UsageError, ExitCode.USAGE),
    (429, "TooManyRequests", ApiServerError, UnavailableError, ExitCode.UNAVAILABLE),
    (500, "InternalError", ApiServerError, UnavailableError, ExitCode.UNAVAILABLE),
    (503, "ServiceUnavailable", ApiServerError, UnavailableError, ExitCode.UNAVAILABLE),
    (405, "MethodNotAllowed", ApiError, ApiError, ExitCode.FAILURE),
])
def test_status_mapping(tmp_path, api, code, reason, cls, kind, exit_code):
    message = f"server says {reason}"
    api.routes[("GET", "/x")] = (code, status(code, reason, message, name="n", kind="pods"))
    with pytest.raises(cls) as err:
        KubeClient(connect(tmp_path, api.url)).get("/x")
    e = err.value
    assert isinstance(e, kind) and isinstance(e, ApiError) and e.exit_code == exit_code
    assert (e.status, e.reason, e.api_message, e.details["name"]) == (code, reason, message, "n")
    assert "SECRET-TOKEN-42" not in str(e)


def test_forbidden_keeps_server_text(tmp_path, api):
    text = ('pods "p" is forbidden: User "bob" cannot patch resource "pods/ephemeralcontainers" '
            'in API group "" in the namespace "ns1"')
    api.routes[("PATCH", "/p")] = (403, status(403, "Forbidden", text))
    with pytest.raises(ApiForbidden) as err:
        KubeClient(connect(tmp_path, api.url)).patch("/p", {})
    assert err.value.message == text and "kubectl auth can-i" in err.value.hint


def test_unauthorized_hint(tmp_path, api):
    api.routes[("GET", "/x")] = (401, status(401, "Unauthorized", "Unauthorized"))
    with pytest.raises(ApiUnauthorized) as err:
        KubeClient(connect(tmp_path, api.url)).get("/x")
    assert 'user "tester"' in err.value.message and "expired or are invalid" in err.value.hint


def test_invalid_keeps_causes(tmp_path, api):
    causes = [{"reason": "FieldValueForbidden", "message": "Forbidden: cannot be set for an Ephemeral Container",
               "field": "spec.ephemeralContainers[0].ports"}]
    api.routes[("PATCH", "/p")] = (422, status(422, "Invalid", 'Pod "p" is invalid: ...', causes=causes))
    with pytest.raises(ApiInvalid) as err:
        KubeClient(connect(tmp_path, api.url)).patch("/p", {})
    assert err.value.causes == causes
    assert "spec.ephemeralContainers[0].ports" in err.value.message


def test_non_status_error_body(tmp_path, api):
    api.routes[("GET", "/x")] = lambda h: h.reply(502, b"<html>bad gateway</html>", "text/html")
    with pytest.raises(ApiServerError, match="bad gateway"):
        KubeClient(connect(tmp_path, api.url)).get("/x")
    with pytest.raises(ApiNotFound, match="could not find /nothing-here"):
        api.routes[("GET", "/nothing-here")] = lambda h: h.reply(404, b"404 page not found", "text/plain")
        KubeClient(connect(tmp_path, api.url)).get("/nothing-here")


def test_non_json_success_is_unavailable(tmp_path, api):
    api.routes[("GET", "/x")] = lambda h: h.reply(200, b"<html>login page</html>", "text/html")
    with pytest.raises(UnavailableError, match="not JSON"):
        KubeClient(connect(tmp_path, api.url)).get("/x")


# -- TLS -----------------------------------------------------------------------------------------


def test_untrusted_ca_is_tls_error_with_hint(tmp_path, api, pki):
    conn = connect(tmp_path, api.url, cluster={"certificate-authority-data": base64.b64encode(pki.other_ca.cert).decode()})
    with pytest.raises(ApiTLSError) as err:
        KubeClient(conn).get("/version")
    e = err.value
    assert e.exit_code == ExitCode.UNAVAILABLE
    assert "cannot verify the TLS certificate" in e.message and api.url in e.message
    assert "certificate-authority" in e.hint and "insecure-skip-tls-verify" in e.hint
    assert not api.seen or all(r["path"] != "/version" for r in api.seen)


def test_system_roots_do_not_trust_private_ca(tmp_path, api):
    with pytest.raises(ApiTLSError):
        KubeClient(connect(tmp_path, api.url, cluster={})).get("/version")


def test_insecure_skip_tls_verify_only_when_asked(tmp_path, api):
    api.routes[("GET", "/version")] = (200, {"gitVersion": "v1"})
    conn = connect(tmp_path, api.url, cluster={"insecure-skip-tls-verify": True})
    assert KubeClient(conn).version() == {"gitVersion": "v1"}


def test_tls_server_name(tmp_path, pki):
    server = FakeApi(str(tmp_path), pki.named_only)
    try:
        server.routes[("GET", "/version")] = (200, {"gitVersion": "v1"})
        ca = base64.b64encode(pki.ca.cert).decode()
        with pytest.raises(ApiTLSError, match="cannot verify"):
            KubeClient(connect(tmp_path, server.url, cluster={"certificate-authority-data": ca})).version()
        conn = connect(tmp_path, server.url, cluster={"certificate-authority-data": ca, "tls-server-name": "kube.test"},
                       name="named.yaml")
        assert conn.server_hostname() == "kube.test"
        assert KubeClient(conn).version() == {"gitVersion": "v1"}
    finally:
        server.stop()


def test_client_certificate_from_data_and_files(tmp_path, api, pki):
    api.routes[("GET", "/version")] = (200, {"gitVersion": "v1"})
    user = {"client-certificate-data": base64.b64encode(pki.client.cert).decode(),
            "client-key-data": base64.b64encode(pki.client.key).decode()}
    KubeClient(connect(tmp_path, api.url, user=user)).version()
    subject = dict(x[0] for x in api.seen[-1]["peer"]["subject"])
    assert subject["commonName"] == "alice"
    assert "Authorization" not in api.seen[-1]["headers"]
    cert, key = _write_pem_pair(str(tmp_path), pki.client, "alice")
    KubeClient(connect(tmp_path, api.url, user={"client-certificate": "alice.crt", "client-key": "alice.key"},
                       name="files.yaml")).version()
    assert dict(x[0] for x in api.seen[-1]["peer"]["subject"])["commonName"] == "alice"


def test_in_memory_client_key_leaves_no_files(tmp_path, pki, monkeypatch):
    import tempfile

    from kubectl_dotnet_monitor.kube.config import TlsSettings, build_ssl_context
    from kubectl_dotnet_monitor.kube.credentials import ClientCertificate

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ctx = build_ssl_context(TlsSettings(ca_data=pki.ca.cert), ClientCertificate(cert_pem=pki.client.cert,
                                                                                 key_pem=pki.client.key))
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2 and ctx.verify_mode == ssl.CERT_REQUIRED
    assert list(scratch.iterdir()) == []


def test_bad_ca_data_is_config_error(tmp_path, api):
    conn = connect(tmp_path, api.url, cluster={"certificate-authority-data": base64.b64encode(b"not a cert").decode()})
    with pytest.raises(ConfigError, match="certificate-authority-data"):
        KubeClient(conn).version()


# -- reachability and timeouts -------------------------------------------------------------------


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_refused(tmp_path):
    url = f"https://127.0.0.1:{_free_port()}"
    with pytest.raises(ApiUnreachable) as err:
        KubeClient(connect(tmp_path, url)).version()
    e = err.value
    assert e.message == f"cannot reach the Kubernetes API at {url}: connection refused"
    assert "check that the cluster is up and the kubeconfig's server is right" in e.hint
    assert e.exit_code == ExitCode.UNAVAILABLE


def test_unresolvable_host(tmp_path):
    with pytest.raises(ApiUnreachable, match="cannot reach the Kubernetes API at https://no-such-host.invalid:6443"):
        KubeClient(connect(tmp_path, "https://no-such-host.invalid:6443")).version()


def test_read_timeout_honoured(tmp_path, api):
    api.routes[("GET", "/slow")] = lambda h: (time.sleep(2), h.reply(200, {}))
    started = time.monotonic()
    with pytest.raises(ApiUnreachable, match="did not answer GET /slow within 0.5 s"):
        KubeClient(connect(tmp_path, api.url, timeout=0.5)).get("/slow")
    assert time.monotonic() - started < 1.8


def test_tls_handshake_timeout_honoured(tmp_path):
    # The kernel accepts the TCP connection, but nobody ever answers the TLS ClientHello.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    url = f"https://127.0.0.1:{listener.getsockname()[1]}"
    try:
        started = time.monotonic()
        with pytest.raises(ApiUnreachable):
            KubeClient(connect(tmp_path, url, timeout=0.5)).version()  # TLS handshake never answered
        assert time.monotonic() - started < 3
    finally:
        listener.close()


# -- credentials never leak ------------------------------------------------------------------------


def test_no_token_in_logs(tmp_path, api, caplog):
    api.routes[("GET", "/x")] = (200, {})
    api.routes[("GET", "/denied")] = (401, status(401, "Unauthorized", "Unauthorized"))
    caplog.set_level(logging.DEBUG)
    client = KubeClient(connect(tmp_path, api.url))
    client.get("/x")
    with pytest.raises(ApiUnauthorized):
        client.get("/denied")
    assert "GET" in caplog.text and "SECRET-TOKEN-42" not in caplog.text


def _exec_plugin(tmp_path, counter):
    script = tmp_path / "plug"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json\n"
        f"path = {str(counter)!r}\n"
        "try:\n    n = int(open(path).read())\nexcept OSError:\n    n = 0\n"
        "open(path, 'w').write(str(n + 1))\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',\n"
        "                  'status': {'token': f'exec-{n + 1}'}}))\n")
    script.chmod(0o755)
    return str(script)


def test_401_reruns_exec_plugin_once(tmp_path, api):
    counter = tmp_path / "count"
    plugin = _exec_plugin(tmp_path, counter)
    api.routes[("GET", "/x")] = lambda h: (h.reply(200, {"ok": True}) if h.headers["Authorization"] == "Bearer exec-2"
                                           else h.reply(401, status(401, "Unauthorized", "Unauthorized")))
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": plugin, "interactiveMode": "Never"}}
    client = KubeClient(connect(tmp_path, api.url, user=user))
    assert client.get("/x") == {"ok": True}
    assert counter.read_text() == "2"
    api.routes[("GET", "/y")] = (401, status(401, "Unauthorized", "Unauthorized"))
    with pytest.raises(ApiUnauthorized):
        client.get("/y")
    assert counter.read_text() == "3"  # one retry, not a loop


def test_failing_exec_plugin_never_sends_anonymous_request(tmp_path, api):
    script = tmp_path / "fail"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write('token expired, run: login\\n')\nsys.exit(1)\n")
    script.chmod(0o755)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script),
                     "interactiveMode": "Never", "installHint": "install the login tool"}}
    with pytest.raises(ConfigError, match="token expired, run: login") as err:
        KubeClient(connect(tmp_path, api.url, user=user)).version()
    assert err.value.hint == "install the login tool"
    assert api.seen == []


# -- watch ---------------------------------------------------------------------------------------


def _stream(events, hold=0.0):
    def handler(h):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for ev in events:
            data = (json.dumps(ev) + "\n").encode()
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()
        time.sleep(hold)
        try:
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
    return handler


def test_watch_yields_events_and_sends_timeout(tmp_path, api):
    pod = {"metadata": {"name": "p", "resourceVersion": "5"}}
    api.routes[("GET", "/api/v1/namespaces/ns1/pods")] = _stream(
        [{"type": "ADDED", "object": pod}, {"type": "MODIFIED", "object": pod},
         {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "6"}}}])
    client = KubeClient(connect(tmp_path, api.url))
    events = list(client.watch("/api/v1/namespaces/ns1/pods", {"fieldSelector": "metadata.name=p"}, timeout=10))
    assert [t for t, _ in events] == ["ADDED", "MODIFIED", "BOOKMARK"] and events[0][1] == pod
    query = api.seen[-1]["query"]
    assert "watch=true" in query and "timeoutSeconds=10" in query and "fieldSelector=metadata.name%3Dp" in query


def test_watch_410_raises_gone(tmp_path, api):
    api.routes[("GET", "/w")] = _stream([{"type": "ADDED", "object": {}},
                                         {"type": "ERROR", "object": status(410, "Expired", "too old resource version")}])
    got = []
    with pytest.raises(ApiGone, match="too old resource version"):
        for event in KubeClient(connect(tmp_path, api.url)).watch("/w", {"resourceVersion": "1"}, timeout=5):
            got.append(event)
    assert got == [("ADDED", {})]


def test_watch_http_error_status(tmp_path, api):
    api.routes[("GET", "/w")] = (403, status(403, "Forbidden", "cannot watch pods"))
    with pytest.raises(ApiForbidden, match="cannot watch pods"):
        list(KubeClient(connect(tmp_path, api.url)).watch("/w", {}, timeout=5))


def test_watch_stops_at_timeout_when_server_keeps_quiet(tmp_path, api):
    api.routes[("GET", "/w")] = _stream([{"type": "ADDED", "object": {"n": 1}}], hold=8)
    started = time.monotonic()
    events = list(KubeClient(connect(tmp_path, api.url)).watch("/w", {}, timeout=1))
    elapsed = time.monotonic() - started
    assert events == [("ADDED", {"n": 1})]
    assert elapsed < 3.5  # ended at the deadline (+ grace), not by the server 8 s later


# -- proxy-url -----------------------------------------------------------------------------------


class _ConnectProxy:
    """A minimal HTTP CONNECT proxy that records the targets it was asked for."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.targets: list[str] = []
        self.auth: list[str | None] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(4096)
            if not chunk:
                return client.close()
            data += chunk
        target = data.split(b" ")[1].decode()
        self.targets.append(target)
        auth = [line.split(b":", 1)[1].strip().decode() for line in data.split(b"\r\n")
                if line.lower().startswith(b"proxy-authorization:")]
        self.auth.append(auth[0] if auth else None)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(src, dst):
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    def close(self):
        self.listener.close()


def test_http_proxy_url_is_used_for_rest(tmp_path, api, pki):
    proxy = _ConnectProxy()
    try:
        api.routes[("GET", "/version")] = (200, {"gitVersion": "v1"})
        conn = connect(tmp_path, api.url, cluster={"certificate-authority-data": base64.b64encode(pki.ca.cert).decode(),
                                                   "proxy-url": proxy.url})
        assert KubeClient(conn).version() == {"gitVersion": "v1"}
        assert proxy.targets == [f"127.0.0.1:{api.server_address[1]}"]
        assert api.seen[-1]["headers"]["Authorization"] == "Bearer SECRET-TOKEN-42"  # end-to-end TLS through the tunnel
    finally:
        proxy.close()


def test_proxy_credentials_in_the_url_are_sent_to_the_proxy(tmp_path, api, pki):
    proxy = _ConnectProxy()
    try:
        api.routes[("GET", "/version")] = (200, {"gitVersion": "v1"})
        url = proxy.url.replace("http://", "http://jane:p%40ss@")
        conn = connect(tmp_path, api.url, cluster={"certificate-authority-data": base64.b64encode(pki.ca.cert).decode(),
                                                   "proxy-url": url})
        assert KubeClient(conn).version() == {"gitVersion": "v1"}
        assert proxy.auth == ["Basic " + base64.b64encode(b"jane:p@ss").decode()]
    finally:
        proxy.close()


def test_socks5_proxy_is_refused_clearly(tmp_path, api):
    conn = connect(tmp_path, api.url, cluster={"insecure-skip-tls-verify": True, "proxy-url": "socks5://127.0.0.1:1080"})
    with pytest.raises(ConfigError, match="socks5 proxy-url"):
        KubeClient(conn).version()
