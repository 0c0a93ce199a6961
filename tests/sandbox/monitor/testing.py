"""Small test doubles and a raw HTTP/1.1 client for exercising the simulated monitor directly.

Used by ``tests/sandbox_tests/test_monitor*.py``; the real sandbox passes its own network/recorder.
"""

from __future__ import annotations

import base64
import errno
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

AUDIENCE = "https://github.com/dotnet/dotnet-monitor"
ISSUER = "https://github.com/dotnet/dotnet-monitor/generatekey+MonitorApiKey"
MONITOR_IMAGE = "mcr.microsoft.com/dotnet/monitor:10.0"


class FakeNetwork:
    """(ns, pod, container port) → loopback port; a taken port raises EADDRINUSE like the kernel."""

    def __init__(self) -> None:
        self.ports: dict[tuple[str, str, int], tuple[int, bool]] = {}
        self._lock = threading.Lock()

    def register(self, ns: str, pod: str, container_port: int, host_port: int, bind_all: bool) -> None:
        with self._lock:
            if (ns, pod, container_port) in self.ports:
                raise OSError(errno.EADDRINUSE, "Address already in use")
            self.ports[(ns, pod, container_port)] = (host_port, bind_all)

    def unregister(self, ns: str, pod: str, container_port: int) -> None:
        with self._lock:
            self.ports.pop((ns, pod, container_port), None)

    def port(self, pod: str, container_port: int, ns: str = "default") -> int:
        return self.ports[(ns, pod, container_port)][0]


class ListRecorder:
    def __init__(self) -> None:
        self.records: list[dict] = []
        self._cond = threading.Condition()

    def record(self, rec: dict) -> None:
        with self._cond:
            self.records.append(rec)
            self._cond.notify_all()

    def wait_for(self, pred, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.records:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching artifact record")
                self._cond.wait(left)


# ------------------------------------------------------------------------------------------------
# pods and containers


def prepared_pod(name: str = "app-0", app_user: int | None = 1654, processes: int = 1, ns: str = "default",
                 extra_env: list[dict] | None = None, share_pidns: bool = False) -> dict:
    """A pod prepared for Listen mode: diagvol at /diag, DOTNET_DiagnosticPorts=…,nosuspend."""
    sc = {"runAsUser": app_user} if app_user is not None else {}
    return {
        "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, name))},
        "spec": {
            "shareProcessNamespace": share_pidns,
            "volumes": [{"name": "diagvol", "emptyDir": {}}],
            "containers": [{
                "name": "app", "image": "example/app:1",
                "securityContext": sc,
                "env": [{"name": "DOTNET_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock,nosuspend"}]
                + (extra_env or []),
                "volumeMounts": [{"name": "diagvol", "mountPath": "/diag"}],
            }],
        },
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "state": {"running": {}}}]},
    }


def unprepared_pod(name: str = "plain-0", app_user: int | None = None, ns: str = "default") -> dict:
    sc = {"runAsUser": app_user} if app_user is not None else {}
    return {
        "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, name))},
        "spec": {"containers": [{"name": "app", "image": "example/app:1", "securityContext": sc}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "state": {"running": {}}}]},
    }


def monitor_container(env: dict[str, str] | None = None, args: list[str] | None = None, name: str = "dotnet-monitor",
                      user: int | None = 1654, mounts: bool = True, image: str = MONITOR_IMAGE, **extra) -> dict:
    base_env = {"DotnetMonitor_Urls": "http://localhost:52323",
                "DotnetMonitor_DiagnosticPort__ConnectionMode": "Listen",
                "DotnetMonitor_Storage__DefaultSharedPath": "/diag"}
    base_env.update(env or {})
    c = {"name": name, "image": image,
         "env": [{"name": k, "value": v} for k, v in base_env.items() if v is not None],
         "securityContext": {"runAsUser": user} if user is not None else {}}
    if mounts:
        c["volumeMounts"] = [{"name": "diagvol", "mountPath": "/diag"}]
    if args is not None:
        c["args"] = args
    c.update(extra)
    return c


def scenario(pod_name: str = "app-0", processes: list[dict] | None = None, monitor: dict | None = None,
             containers: dict | None = None) -> dict:
    procs = processes if processes is not None else [{"pid": 1, "name": "dotnet", "commandLine": "dotnet App.dll",
                                                      "managedEntryPointAssemblyName": "App"}]
    return {"sandbox": {"monitor": {"time_scale": 0.05, **(monitor or {})},
                        "pods": {pod_name: {"containers": containers or {"app": {"processes": procs}}}}}}


# ------------------------------------------------------------------------------------------------
# API keys


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TestKey:
    private: object
    alg: str
    subject: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def public_key_config(self) -> str:
        from cryptography.hazmat.primitives.asymmetric import ec
        pub = self.private.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey):
            n = pub.public_numbers()
            size = (pub.curve.key_size + 7) // 8
            crv = {256: "P-256", 384: "P-384", 521: "P-521"}[pub.curve.key_size]
            jwk = {"kty": "EC", "crv": crv, "x": b64u(n.x.to_bytes(size, "big")), "y": b64u(n.y.to_bytes(size, "big"))}
        else:
            n = pub.public_numbers()
            jwk = {"kty": "RSA", "n": b64u(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
                   "e": b64u(n.e.to_bytes((n.e.bit_length() + 7) // 8, "big"))}
        return b64u(json.dumps(jwk, separators=(",", ":")).encode())

    def env(self) -> dict[str, str]:
        return {"DotnetMonitor_Authentication__MonitorApiKey__Subject": self.subject,
                "DotnetMonitor_Authentication__MonitorApiKey__PublicKey": self.public_key_config}

    def token(self, **overrides) -> str:
        claims = {"aud": AUDIENCE, "iss": ISSUER, "sub": self.subject, "exp": int(time.time()) + 600}
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return sign(self.private, self.alg, claims)


def new_key(alg: str = "ES384") -> TestKey:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    if alg.startswith("ES"):
        curve = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}[alg]()
        return TestKey(ec.generate_private_key(curve), alg)
    return TestKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), alg)


def sign(private, alg: str, claims: dict, header: dict | None = None) -> str:
    import hmac
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    h = b64u(json.dumps(header or {"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    c = b64u(json.dumps(claims, separators=(",", ":")).encode())
    data = f"{h}.{c}".encode()
    bits = alg[2:]
    digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[bits]
    if alg.startswith("HS"):
        import hashlib
        sig = hmac.new(b"secret", data, getattr(hashlib, f"sha{bits}")).digest()
    elif alg.startswith("ES"):
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(digest)))
        size = (private.curve.key_size + 7) // 8
        sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    else:
        sig = private.sign(data, padding.PKCS1v15(), digest)
    return f"{h}.{c}.{b64u(sig)}"


# ------------------------------------------------------------------------------------------------
# raw HTTP/1.1 client


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool          # chunked terminator / full Content-Length seen
    error: str | None       # "reset", "eof", "timeout" when the body did not end properly

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def content_type(self) -> str | None:
        return self.header("content-type")

    def json(self):
        return json.loads(self.body)


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
            timeout: float = 15.0, on_headers=None, max_body: int | None = None) -> Reply:
    """One request on a fresh connection; reads the whole body (chunked or Content-Length)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        hs = {"Host": f"localhost:{port}", "Connection": "close"}
        hs.update(headers or {})
        if body is not None:
            hs.setdefault("Content-Length", str(len(body)))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items()) + "\r\n"
        s.sendall(head.encode() + (body or b""))
        f = s.makefile("rb", buffering=1 << 20)
        status_line = f.readline()
        if not status_line:
            return Reply(0, [], b"", False, "eof")
        status = int(status_line.split()[1])
        headers_out = []
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers_out.append((k.strip(), v.strip()))
        reply = Reply(status, headers_out, b"", False, None)
        if on_headers is not None:
            on_headers(reply)
        parts = []
        got = 0
        try:
            if (reply.header("transfer-encoding") or "").lower() == "chunked":
                while True:
                    line = f.readline()
                    if not line:
                        reply.error = "eof"
                        break
                    n = int(line.split(b";")[0], 16)
                    if n == 0:
                        f.readline()
                        reply.complete = True
                        break
                    data = f.read(n)
                    if len(data) < n:
                        parts.append(data)
                        reply.error = "eof"
                        break
                    got += n
                    if max_body is None or got <= max_body:
                        parts.append(data)
                    f.readline()
            else:
                n = int(reply.header("content-length") or 0)
                data = f.read(n)
                parts.append(data)
                reply.complete = len(data) == n
        except ConnectionResetError:
            reply.error = "reset"
        except socket.timeout:
            reply.error = "timeout"
        reply.body = b"".join(parts)
        return reply
    finally:
        s.close()
