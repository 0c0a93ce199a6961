"""The sandbox's port-forward server against real clients: the Python client and real kubectl.

The server under test is the `pf_target` fixture. Until the sandbox's API server is wired in, it is
`PortForwardHarness` below: a minimal TLS "API server" that answers the pod GET and discovery kubectl
asks for and hands `pods/NAME/portforward` to `tests.sandbox.portforward.serve`, with a pod whose
port `POD_PORT` is a small HTTP server serving deterministic bytes (and nothing on `CLOSED_PORT`).
To run the same tests through the real sandbox, make `pf_target` yield a `PortForwardTarget` built
from it (kubeconfig, pod, the port of an HTTP server in the pod with a known body, a port where
nothing listens, and the expected error text).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.sandbox import portforward
from tests.sandbox.pki import create_pki

POD_PORT = 52323
CLOSED_PORT = 52399
BLOB_SIZE = 6 * 1024 * 1024 + 12345   # not a multiple of any frame size
SANDBOX_ID = hashlib.sha256(b"sandbox:default/app-0").hexdigest()
KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")


# --------------------------------------------------------------------------------------------
# the pod: a tiny HTTP server with deterministic bodies
# --------------------------------------------------------------------------------------------

def make_blob(size: int, seed: int = 20261129) -> bytes:
    return random.Random(seed).randbytes(size)


class PodHttpServer:
    """GET /blob -> the blob; GET /stream?bytes=N -> N bytes (blob repeated); POST /sha256 ->
    hex digest of the request body. HTTP/1.1 keep-alive, Content-Length bodies."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        try:
            while True:
                line = rfile.readline(65536)
                if not line:
                    return
                _method, target, _ = line.decode().split(" ", 2)
                headers = http.client.parse_headers(rfile)
                url = urllib.parse.urlsplit(target)
                length = int(headers.get("Content-Length") or 0)
                if url.path == "/sha256":
                    digest = hashlib.sha256()
                    while length:
                        chunk = rfile.read(min(length, 1 << 20))
                        digest.update(chunk)
                        length -= len(chunk)
                    self._respond(conn, digest.hexdigest().encode())
                elif url.path == "/blob":
                    self._respond(conn, self.blob)
                elif url.path == "/stream":
                    total = int(urllib.parse.parse_qs(url.query)["bytes"][0])
                    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode())
                    view = memoryview(self.blob)
                    while total:
                        n = min(total, len(view))
                        conn.sendall(view[:n])
                        total -= n
                else:
                    self._respond(conn, b"not found", "404 Not Found")
                if (headers.get("Connection") or "").lower() == "close":
                    return
        except (OSError, ValueError):
            return
        finally:
            conn.close()

    @staticmethod
    def _respond(conn: socket.socket, body: bytes, status: str = "200 OK") -> None:
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n".encode())
        conn.sendall(body)

    def close(self) -> None:
        self.listener.close()


# --------------------------------------------------------------------------------------------
# a minimal API server in front of portforward.serve
# --------------------------------------------------------------------------------------------

def refused_message(port: int) -> str:
    return (f'failed to execute portforward in network namespace "/var/run/netns/cni-test": '
            f"IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused "
            f"IPv6: dial tcp6 [::1]:{port}: connect: connection refused")


class PortForwardHarness:
    """TLS listener answering just what kubectl and the Python client ask before port-forwarding."""

    def __init__(self, workdir: Path, pod: PodHttpServer, namespace: str = "default",
                 pod_name: str = "app-0") -> None:
        self.pod = pod
        self.namespace = namespace
        self.pod_name = pod_name
        self.requests: list[tuple[str, str, str]] = []   # (method, path, kind)
        self.sessions_done = 0
        pki = create_pki()
        (workdir / "ca.crt").write_bytes(pki.ca.cert_pem)
        (workdir / "server.crt").write_bytes(pki.server.cert_pem)
        (workdir / "server.key").write_bytes(pki.server.key_pem)
        self.ca_file = workdir / "ca.crt"
        self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl.load_cert_chain(workdir / "server.crt", workdir / "server.key")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.server = f"https://127.0.0.1:{self.port}"
        self.token = "harness-token"
        self.kubeconfig = workdir / "kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "harness",
            "clusters": [{"name": "harness", "cluster": {
                "server": self.server,
                "certificate-authority-data": base64.b64encode(pki.ca.cert_pem).decode()}}],
            "users": [{"name": "harness", "user": {"token": self.token}}],
            "contexts": [{"name": "harness", "context": {
                "cluster": "harness", "user": "harness", "namespace": namespace}}],
        }))
        threading.Thread(target=self._accept, daemon=True).start()

    def dial(self, port: int) -> socket.socket:
        if port == POD_PORT:
            conn = socket.create_connection(("127.0.0.1", self.pod.port))
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn
        raise ConnectionRefusedError(refused_message(port))

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        try:
            conn = self.ssl.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        rfile = conn.makefile("rb")
        try:
            while True:
                line = rfile.readline(65536)
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers = http.client.parse_headers(rfile)
                url = urllib.parse.urlsplit(target)
                length = int(headers.get("Content-Length") or 0)
                if length:
                    rfile.read(length)
                pod_path = f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}"
                if url.path == pod_path + "/portforward":
                    kind = ("websocket" if portforward.is_websocket_request(headers) else "spdy")
                    if "SPDY/3.1+" in (headers.get("Sec-WebSocket-Protocol") or ""):
                        kind = "tunnel"
                    self.requests.append((method, url.path, kind))
                    portforward.serve(method, headers, urllib.parse.parse_qs(url.query), rfile,
                                      conn, self.dial, pod_sandbox_id=SANDBOX_ID)
                    self.sessions_done += 1
                    return
                self.requests.append((method, url.path, "rest"))
                if url.path == pod_path and method == "GET":
                    self._json(conn, 200, self._pod())
                elif url.path == "/api" and method == "GET":
                    self._json(conn, 200, {"kind": "APIVersions", "versions": ["v1"],
                                           "serverAddressByClientCIDRs": [
                                               {"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": f"127.0.0.1:{self.port}"}]})
                elif url.path == "/apis" and method == "GET":
                    self._json(conn, 200, {"kind": "APIGroupList", "apiVersion": "v1",
                                           "groups": []})
                elif url.path == "/api/v1" and method == "GET":
                    self._json(conn, 200, {"kind": "APIResourceList", "groupVersion": "v1",
                                           "resources": [
                                               {"name": "pods", "singularName": "pod",
                                                "namespaced": True, "kind": "Pod",
                                                "shortNames": ["po"],
                                                "verbs": ["get", "list", "watch"]},
                                               {"name": "pods/portforward", "singularName": "",
                                                "namespaced": True,
                                                "kind": "PodPortForwardOptions",
                                                "verbs": ["create", "get"]}]})
                else:
                    self._json(conn, 404, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                           "status": "Failure", "reason": "NotFound",
                                           "message": "the server could not find the requested "
                                                      "resource", "code": 404})
        except (OSError, ValueError, ssl.SSLError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _pod(self) -> dict:
        return {"kind": "Pod", "apiVersion": "v1",
                "metadata": {"name": self.pod_name, "namespace": self.namespace,
                             "uid": "7d0b4cd6-3f7e-4b0e-9d55-0f8f1d2c3a4b",
                             "resourceVersion": "1"},
                "spec": {"containers": [{"name": "app", "image": "example/app:1",
                                         "ports": [{"containerPort": POD_PORT,
                                                    "protocol": "TCP"}]}],
                         "nodeName": "node-1"},
                "status": {"phase": "Running", "podIP": "10.1.0.5"}}

    @staticmethod
    def _json(conn: socket.socket, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        reason = {200: "OK", 404: "Not Found"}[code]
        conn.sendall(f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)

    def close(self) -> None:
        self.listener.close()


# --------------------------------------------------------------------------------------------
# the target: what every test below needs to know about the server under test
# --------------------------------------------------------------------------------------------

@dataclass
class PortForwardTarget:
    kubeconfig: Path
    server: str
    ca_file: Path
    token: str
    namespace: str
    pod: str
    port: int                  # an HTTP server in the pod: /blob, /stream?bytes=N, POST /sha256
    closed_port: int           # nothing listens there
    blob_sha256: str
    blob_size: int
    expected_error: Callable[[int], str]   # the error-channel text for a refused port
    request_log: list | None = None        # (method, path, kind) when the target records it
    extra: dict = field(default_factory=dict)


def _harness_target(workdir: Path, blob: bytes, pod: PodHttpServer):
    harness = PortForwardHarness(workdir, pod)
    target = PortForwardTarget(
        kubeconfig=harness.kubeconfig, server=harness.server, ca_file=harness.ca_file,
        token=harness.token, namespace=harness.namespace, pod=harness.pod_name, port=POD_PORT,
        closed_port=CLOSED_PORT, blob_sha256=hashlib.sha256(blob).hexdigest(),
        blob_size=len(blob),
        expected_error=lambda port: (f"error forwarding port {port} to pod {SANDBOX_ID}, "
                                     f"uid : {refused_message(port)}"),
        request_log=harness.requests, extra={"harness": harness})
    return target, harness.close


def _sandbox_target(workdir: Path, blob: bytes, pod: PodHttpServer):
    """The real sandbox (in this process): its API server, authz and PodNetwork, with the blob
    server registered as a process of a running pod, as a simulated monitor registers itself."""
    from tests.sandbox import Sandbox
    from tests.sandbox.network import refused_message as sandbox_refused
    from tests.sandbox.network import sandbox_id

    sb = Sandbox("basic", state_dir=workdir).start()
    handle = sb.handle()
    running = sorted(p["metadata"]["name"] for p in handle.control.pods("default")
                     if p["status"].get("phase") == "Running")
    name = running[0]
    sb.network.register("default", name, POD_PORT, pod.port, bind_all=False)
    target = PortForwardTarget(
        kubeconfig=handle.kubeconfig, server=handle.server, ca_file=workdir / "ca.crt",
        token=handle.token("admin"), namespace="default", pod=name, port=POD_PORT,
        closed_port=CLOSED_PORT, blob_sha256=hashlib.sha256(blob).hexdigest(),
        blob_size=len(blob),
        expected_error=lambda port: (f"error forwarding port {port} to pod "
                                     f"{sandbox_id('default', name)}, uid : "
                                     f"{sandbox_refused('default', name, port)}"),
        extra={"sandbox": sb})
    return target, sb.stop


@pytest.fixture(scope="module", params=["harness", "sandbox"])
def pf_target(request, tmp_path_factory):
    """The server under test: `harness` (portforward.serve behind a minimal API server) or
    `sandbox` (the whole simulated cluster)."""
    blob = make_blob(BLOB_SIZE)
    pod = PodHttpServer(blob)
    factory = {"harness": _harness_target, "sandbox": _sandbox_target}[request.param]
    target, stop = factory(tmp_path_factory.mktemp(f"pf-{request.param}"), blob, pod)
    yield target
    stop()
    pod.close()


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def http_over(sock, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 exchange over an already connected socket-like object."""
    conn = http.client.HTTPConnection("pod")
    conn.sock = sock
    conn.request(method, path, body=body or None, headers={"Connection": "close"})
    response = conn.getresponse()
    data = response.read()   # raises IncompleteRead on a short body
    return response.status, data


class RawWebsocket:
    """A minimal masked websocket client for protocol checks (not the plugin's client)."""

    def __init__(self, target: PortForwardTarget, query: str, protocols: str | None,
                 extra_headers: dict[str, str] | None = None, method: str = "GET") -> None:
        ctx = ssl.create_default_context(cafile=str(target.ca_file))
        host, port = urllib.parse.urlsplit(target.server).netloc.rsplit(":", 1)
        self.sock = ctx.wrap_socket(socket.create_connection((host, int(port))),
                                    server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode()
        path = f"/api/v1/namespaces/{target.namespace}/pods/{target.pod}/portforward{query}"
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}",
                 f"Authorization: Bearer {target.token}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        if protocols is not None:
            lines.append(f"Sec-WebSocket-Protocol: {protocols}")
        lines += [f"{k}: {v}" for k, v in (extra_headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.rfile = self.sock.makefile("rb")
        status_line = self.rfile.readline().decode()
        self.status = int(status_line.split()[1])
        self.headers = http.client.parse_headers(self.rfile)
        self.key = key

    def body(self) -> bytes:
        n = self.headers.get("Content-Length")
        return self.rfile.read(int(n)) if n else self.rfile.read()

    def send(self, opcode: int, payload: bytes, masked: bool = True, fin: bool = True) -> None:
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        mbit = 0x80 if masked else 0
        if n < 126:
            head = bytes((b0, mbit | n))
        elif n < 65536:
            head = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            head = struct.pack("!BBQ", b0, mbit | 127, n)
        if masked:
            mask = os.urandom(4)
            head += mask
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + payload)

    def recv(self) -> tuple[int, bool, bytes] | None:
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        n = head[1] & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self.rfile.read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self.rfile.read(8))
        return head[0] & 0x0F, bool(head[0] & 0x80), self.rfile.read(n)

    def close(self) -> None:
        self.sock.close()


def kubectl_binaries() -> list[tuple[str, str, dict[str, str]]]:
    """(label, path, extra env) for every kubectl flavour we check, skipping missing binaries."""
    out = []
    for label, name, env in [
        ("installed", "kubectl", {}),
        ("1.29-spdy", "kubectl.1.29", {}),
        ("1.31-tunnel", "kubectl.1.31", {}),
        ("1.31-spdy", "kubectl.1.31", {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}),
    ]:
        path = shutil.which(name) or str(KUBECTL_DIR / name)
        if os.access(path, os.X_OK):
            out.append((label, path, env))
    return out


class KubectlPortForward:
    """`kubectl port-forward pod/NAME :PORT` in the background; `.local_port` once ready."""

    def __init__(self, kubectl: str, target: PortForwardTarget, remote_port: int,
                 env: dict[str, str], home: Path) -> None:
        full_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home),
                    "KUBECONFIG": str(target.kubeconfig), **env}
        self.proc = subprocess.Popen(
            [kubectl, "port-forward", "-n", target.namespace, f"pod/{target.pod}",
             f":{remote_port}"], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"kubectl did not start forwarding: {line!r} "
                                 f"{self.proc.stderr.read()!r}")
        self.local_port = int(match.group(1))

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def local_http(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body or None)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


# --------------------------------------------------------------------------------------------
# the Python client (kubernetes.stream.portforward): websocket v4.channel.k8s.io
# --------------------------------------------------------------------------------------------

def python_client(target: PortForwardTarget):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(target.kubeconfig))
    return client.CoreV1Api(api_client)


def test_python_client_downloads_exact_bytes(pf_target):
    from kubernetes.stream import portforward as k8s_portforward

    api = python_client(pf_target)
    pf = k8s_portforward(api.connect_get_namespaced_pod_portforward, pf_target.pod,
                         pf_target.namespace, ports=str(pf_target.port))
    sock = pf.socket(pf_target.port)
    sock.settimeout(30)
    status, data = http_over(sock, "GET", "/blob")
    assert status == 200
    assert len(data) == pf_target.blob_size
    assert hashlib.sha256(data).hexdigest() == pf_target.blob_sha256
    assert pf.error(pf_target.port) is None
    pf.close()


def test_python_client_uploads_exact_bytes(pf_target):
    from kubernetes.stream import portforward as k8s_portforward

    body = make_blob(3 * 1024 * 1024 + 7, seed=7)
    api = python_client(pf_target)
    pf = k8s_portforward(api.connect_get_namespaced_pod_portforward, pf_target.pod,
                         pf_target.namespace, ports=str(pf_target.port))
    sock = pf.socket(pf_target.port)
    sock.settimeout(30)
    status, data = http_over(sock, "POST", "/sha256", body)
    assert (status, data.decode()) == (200, hashlib.sha256(body).hexdigest())
    pf.close()


def test_python_client_error_channel_when_nothing_listens(pf_target):
    from kubernetes.stream import portforward as k8s_portforward

    api = python_client(pf_target)
    pf = k8s_portforward(api.connect_get_namespaced_pod_portforward, pf_target.pod,
                         pf_target.namespace, ports=str(pf_target.closed_port))
    sock = pf.socket(pf_target.closed_port)
    sock.settimeout(10)
    assert sock.recv(1) == b""   # the client closes the local socket on error-channel text
    deadline = time.monotonic() + 5
    while pf.error(pf_target.closed_port) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pf.error(pf_target.closed_port) == pf_target.expected_error(pf_target.closed_port)
    pf.close()


# --------------------------------------------------------------------------------------------
# websocket protocol details (raw client)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("offered,chosen", [
    ("v5.channel.k8s.io,v4.channel.k8s.io", "v4.channel.k8s.io"),
    ("v4.base64.channel.k8s.io, v4.channel.k8s.io", "v4.base64.channel.k8s.io"),
    (None, ""),
])
def test_websocket_subprotocol_negotiation(pf_target, offered, chosen):
    ws = RawWebsocket(pf_target, f"?ports={pf_target.port}", offered)
    try:
        assert ws.status == 101
        assert ws.headers["Sec-WebSocket-Protocol"] == chosen
        expected_accept = base64.b64encode(hashlib.sha1(
            ws.key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        assert ws.headers["Sec-WebSocket-Accept"] == expected_accept
        first, second = ws.recv(), ws.recv()
        port_bytes = struct.pack("<H", pf_target.port)
        if chosen == "v4.base64.channel.k8s.io":
            assert first == (0x1, True, b"0" + base64.b64encode(port_bytes))
            assert second == (0x1, True, b"1" + base64.b64encode(port_bytes))
        else:
            assert first == (0x2, True, b"\x00" + port_bytes)
            assert second == (0x2, True, b"\x01" + port_bytes)
    finally:
        ws.close()


def test_websocket_unsupported_subprotocol_is_forbidden(pf_target):
    ws = RawWebsocket(pf_target, f"?ports={pf_target.port}", "v5.channel.k8s.io")
    assert ws.status == 403
    ws.close()


def test_websocket_requires_ports(pf_target):
    ws = RawWebsocket(pf_target, "", "v4.channel.k8s.io")
    assert ws.status == 400
    assert b"port" in ws.body()
    ws.close()


def test_websocket_frames_ping_and_close_after_pod_closes(pf_target):
    """Data frames carry at most 32 KiB, ping gets pong, the server closes (1000) after the pod
    closed its connection and the error channel stays silent."""
    ws = RawWebsocket(pf_target, f"?ports={pf_target.port}", "v4.channel.k8s.io")
    try:
        assert ws.recv()[2][:1] == b"\x00" and ws.recv()[2][:1] == b"\x01"
        ws.send(0x9, b"hello")
        request = b"GET /blob HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n"
        ws.send(0x2, b"\x00" + request[:10])
        ws.send(0x2, b"")                       # empty frames are ignored
        ws.send(0x2, b"\x07junk")               # unknown channel: ignored
        ws.send(0x2, b"\x00" + request[10:])
        received = bytearray()
        sizes = []
        pong = None
        while True:
            frame = ws.recv()
            assert frame is not None, "connection dropped without close frame"
            opcode, fin, payload = frame
            if opcode == 0xA:
                pong = payload
                continue
            if opcode == 0x8:
                assert payload[:2] == struct.pack("!H", 1000)
                break
            assert opcode == 0x2 and fin
            assert payload[0] == 0, payload[:80]
            sizes.append(len(payload) - 1)
            received += payload[1:]
        assert pong == b"hello"
        _, _, body = bytes(received).partition(b"\r\n\r\n")
        assert hashlib.sha256(body).hexdigest() == pf_target.blob_sha256
        assert max(sizes) <= 32 * 1024
        assert ws.recv() is None                # TCP closed right after the close frame
    finally:
        ws.close()


def test_websocket_unmasked_frame_is_rejected(pf_target):
    ws = RawWebsocket(pf_target, f"?ports={pf_target.port}", "v4.channel.k8s.io")
    try:
        ws.recv(), ws.recv()
        ws.send(0x2, b"\x00GET / HTTP/1.1\r\n\r\n", masked=False)
        frame = ws.recv()
        assert frame is not None and frame[0] == 0x8
        assert frame[2][:2] == struct.pack("!H", 1002)
    finally:
        ws.close()


def test_websocket_client_pong_ends_session(pf_target):
    """x/net/websocket (the runtime's websocket) fails on a pong it did not ask for."""
    ws = RawWebsocket(pf_target, f"?ports={pf_target.port}", "v4.channel.k8s.io")
    try:
        ws.recv(), ws.recv()
        ws.send(0xA, b"keepalive")
        assert ws.recv() == (0x8, True, struct.pack("!H", 1000))
    finally:
        ws.close()


def test_websocket_two_ports_data_and_error(pf_target):
    ws = RawWebsocket(pf_target, f"?ports={pf_target.closed_port}&ports={pf_target.port}",
                      "v4.channel.k8s.io")
    try:
        prefixes = [ws.recv() for _ in range(4)]
        assert [p[2] for p in prefixes] == [
            b"\x00" + struct.pack("<H", pf_target.closed_port),
            b"\x01" + struct.pack("<H", pf_target.closed_port),
            b"\x02" + struct.pack("<H", pf_target.port),
            b"\x03" + struct.pack("<H", pf_target.port)]
        error = ws.recv()
        assert error[2] == b"\x01" + pf_target.expected_error(pf_target.closed_port).encode()
        body = make_blob(100_000, seed=3)
        request = (b"POST /sha256 HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n"
                   b"Content-Length: 100000\r\n\r\n" + body)
        ws.send(0x2, b"\x02" + request)
        data = bytearray()
        while True:
            frame = ws.recv()
            if frame is None or frame[0] == 0x8:
                break
            assert frame[2][0] == 2
            data += frame[2][1:]
        assert data.endswith(hashlib.sha256(body).hexdigest().encode())
    finally:
        ws.close()


# --------------------------------------------------------------------------------------------
# real kubectl: SPDY, and websocket-tunnelled SPDY (1.31+)
# --------------------------------------------------------------------------------------------

KUBECTLS = kubectl_binaries()


@pytest.mark.parametrize("label,kubectl,env", KUBECTLS, ids=[k[0] for k in KUBECTLS])
def test_kubectl_port_forward_download(pf_target, tmp_path, label, kubectl, env):
    log = pf_target.request_log
    before = len(log) if log is not None else 0
    forward = KubectlPortForward(kubectl, pf_target, pf_target.port, env, tmp_path)
    try:
        status, data = local_http(forward.local_port, "GET", "/blob")
        assert status == 200
        assert hashlib.sha256(data).hexdigest() == pf_target.blob_sha256
        # several connections at once over the one SPDY connection, both directions
        upload = make_blob(2 * 1024 * 1024 + 1, seed=11)
        results: list = [None] * 3

        def run(i: int) -> None:
            if i == 0:
                results[i] = local_http(forward.local_port, "POST", "/sha256", upload)
            else:
                results[i] = local_http(forward.local_port, "GET", "/blob")

        threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results[0] == (200, hashlib.sha256(upload).hexdigest().encode())
        for status, data in results[1:]:
            assert status == 200 and hashlib.sha256(data).hexdigest() == pf_target.blob_sha256
    finally:
        err = forward.stop()
    if log is not None:
        kinds = [kind for (_, path, kind) in log[before:] if path.endswith("/portforward")]
        expected = {"1.29-spdy": ["spdy"], "1.31-spdy": ["spdy"],
                    "1.31-tunnel": ["tunnel"]}.get(label)
        if expected is not None:
            assert kinds == expected, (kinds, err)
        else:
            assert kinds in (["tunnel"], ["spdy"]), (kinds, err)


@pytest.mark.parametrize("label,kubectl,env", KUBECTLS, ids=[k[0] for k in KUBECTLS])
def test_kubectl_port_forward_error_stream(pf_target, tmp_path, label, kubectl, env):
    forward = KubectlPortForward(kubectl, pf_target, pf_target.closed_port, env, tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", forward.local_port), timeout=20) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(1) == b""
        deadline = time.monotonic() + 10
        while forward.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        err = forward.stop()
    # klog quotes the error (err="..."), escaping the quotes inside it
    assert pf_target.expected_error(pf_target.closed_port) in err.replace('\\"', '"'), err
    assert "lost connection to pod" in err


# --------------------------------------------------------------------------------------------
# the ceiling: a fast raw consumer of the v4 websocket
# --------------------------------------------------------------------------------------------

def test_forwarded_download_ceiling(pf_target):
    """Download N bytes through the v4 websocket with a reader that does nothing but parse frames;
    prints MB/s (PF_CEILING_MIB sets the size, default 128 MiB)."""
    total = int(os.environ.get("PF_CEILING_MIB", "128")) * 1024 * 1024
    ws = RawWebsocket(pf_target, f"?ports={pf_target.port}", "v4.channel.k8s.io")
    try:
        ws.recv(), ws.recv()
        ws.send(0x2, f"\x00GET /stream?bytes={total} HTTP/1.1\r\nHost: pod\r\n"
                     "Connection: close\r\n\r\n".encode())
        rfile = ws.rfile
        got = 0
        start = time.perf_counter()
        header_seen = False
        while True:
            head = rfile.read(2)
            if len(head) < 2:
                break
            n = head[1] & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", rfile.read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", rfile.read(8))
            payload = rfile.read(n)
            if head[0] & 0x0F == 0x8:
                break
            if not header_seen:
                _, _, rest = payload[1:].partition(b"\r\n\r\n")
                header_seen = True
                got += len(rest)
            else:
                got += n - 1
            if got >= total:   # stop the clock at the last byte, not at the close (1 s later)
                break
        elapsed = time.perf_counter() - start
    finally:
        ws.close()
    assert got == total
    rate = total / elapsed / 1e6
    print(f"\nforwarded-download ceiling: {total / 2**20:.0f} MiB in {elapsed:.2f} s = "
          f"{rate:.0f} MB/s (TLS, v4.channel.k8s.io, 32 KiB frames)")
    assert rate > 20
