"""A scripted ``v4.channel.k8s.io`` port-forward server for the tunnel tests (plain TCP or TLS).

It plays the API server + kubelet side of one port-forward: answers the websocket upgrade (or
refuses it), sends the two port prefixes, reads the client's HTTP request from the data channel,
then sends a scripted response cut into frames of the given sizes and ends the way the scenario
says (close frame, bare EOF, TCP reset, stall). It runs in a forked process so that throughput and
``tracemalloc`` figures in the test process measure only the client.

Written for these tests only: it checks what a real server would (client frames masked, the key),
and reports what it saw through a queue.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import multiprocessing
import os
import select
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass
class Scenario:
    """What the server does with one connection."""

    status: int = 101                     # != 101: refuse the upgrade with this status
    refusal_body: bytes = b""
    refusal_reason: str = "Refused"
    bad_accept: bool = False
    protocol: str | None = "v4.channel.k8s.io"
    port: int = 52323                     # port written in the channel prefixes
    send_prefixes: bool = True
    read_request: bool = True             # read one HTTP request from the data channel first
    delay_before_response: float = 0.0    # seconds (answers pings meanwhile)
    error_before: str | None = None       # kubelet error text before any data
    response: Callable[[], Iterable[bytes]] | bytes = b""
    frame_sizes: list[int] = field(default_factory=lambda: [32768])
    error_after: str | None = None        # kubelet error text after the data
    ending: str = "close"                 # close | close-abnormal | eof | reset | stall | none
    stall_seconds: float = 5.0
    ping_before_data: bool = False
    never_answer: bool = False            # accept TCP but never answer the upgrade


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        return struct.pack("!BB", b0, n) + payload
    if n < 65536:
        return struct.pack("!BBH", b0, 126, n) + payload
    return struct.pack("!BBQ", b0, 127, n) + payload


def _frame_header(opcode: int, n: int) -> bytes:
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n)
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n)
    return struct.pack("!BBQ", 0x80 | opcode, 127, n)


class _Reader:
    def __init__(self, sock: socket.socket, initial: bytes = b"") -> None:
        self.sock = sock
        self.buf = bytearray(initial)

    def _need(self, n: int) -> bool:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def frame(self) -> tuple[int, bool, bytes] | None:
        """One client frame (must be masked), unmasked."""
        if not self._need(2):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        assert b1 & 0x80, "client frame not masked"
        n = b1 & 0x7F
        off = 2
        if n == 126:
            self._need(4)
            n = struct.unpack_from("!H", self.buf, 2)[0]
            off = 4
        elif n == 127:
            self._need(10)
            n = struct.unpack_from("!Q", self.buf, 2)[0]
            off = 10
        if not self._need(off + 4 + n):
            return None
        key = bytes(self.buf[off : off + 4])
        data = bytes(self.buf[off + 4 : off + 4 + n])
        del self.buf[: off + 4 + n]
        mask = (key * (n // 4 + 1))[:n]
        plain = (int.from_bytes(data, "little") ^ int.from_bytes(mask, "little")).to_bytes(n, "little") if n else b""
        return b0 & 0x0F, bool(b0 & 0x80), plain


class _Writer:
    """Batches frames into large sendall() calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()

    def data(self, channel: int, payload: bytes | memoryview) -> None:
        self.out += _frame_header(0x2, len(payload) + 1)
        self.out.append(channel)
        self.out += payload
        if len(self.out) >= 512 * 1024:
            self.flush()

    def raw(self, frame: bytes) -> None:
        self.out += frame

    def flush(self) -> None:
        if self.out:
            self.sock.sendall(self.out)
            self.out = bytearray()


def _pieces(response: Callable[[], Iterable[bytes]] | bytes) -> Iterator[memoryview]:
    if isinstance(response, (bytes, bytearray)):
        yield memoryview(response)
        return
    for piece in response():
        yield memoryview(piece)


def _frames(pieces: Iterator[memoryview], sizes: list[int]) -> Iterator[memoryview | bytes]:
    """Re-cut a byte stream into frames of the cycled sizes."""
    cycle = itertools.cycle(sizes)
    want = next(cycle)
    pending = bytearray()
    for piece in pieces:
        if not pending and len(piece) >= want:
            pos = 0
            while len(piece) - pos >= want:
                yield piece[pos : pos + want]
                pos += want
                want = next(cycle)
            pending += piece[pos:]
            continue
        pending += piece
        while len(pending) >= want:
            yield bytes(pending[:want])
            del pending[:want]
            want = next(cycle)
    if pending:
        yield bytes(pending)


def serve_one(conn: socket.socket, sc: Scenario, report: dict) -> None:
    if sc.never_answer:
        time.sleep(30)
        return
    head = bytearray()
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(65536)
        if not chunk:
            return
        head += chunk
    raw_head, _, rest = bytes(head).partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    report["request_line"] = lines[0]
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    report["headers"] = headers
    if sc.status != 101:
        body = sc.refusal_body
        conn.sendall(
            f"HTTP/1.1 {sc.status} {sc.refusal_reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        return
    key = headers.get("sec-websocket-key", "")
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    if sc.bad_accept:
        accept = base64.b64encode(b"x" * 20).decode()
    resp = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept}"]
    if sc.protocol:
        resp.append(f"Sec-WebSocket-Protocol: {sc.protocol}")
    conn.sendall(("\r\n".join(resp) + "\r\n\r\n").encode())
    w = _Writer(conn)
    reader = _Reader(conn, rest)
    if sc.send_prefixes:
        port = struct.pack("<H", sc.port)
        w.data(0, port)
        w.data(1, port)
    if sc.ping_before_data:
        w.raw(_frame(0x9, b"hello"))
    w.flush()
    pings = 0
    if sc.read_request:
        req = bytearray()
        while True:
            fr = reader.frame()
            if fr is None:
                report["client_gone"] = True
                return
            op, _fin, payload = fr
            if op == 0x9:
                pings += 1
                conn.sendall(_frame(0xA, payload))
                continue
            if op == 0xA:
                report["pong"] = payload
                continue
            if op == 0x8:
                report["client_close"] = payload
                return
            assert payload[0] == 0, "client wrote on a channel other than 0"
            req += payload[1:]
            if b"\r\n\r\n" in req:
                h, _, b = bytes(req).partition(b"\r\n\r\n")
                cl = 0
                for line in h.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        cl = int(line.split(b":")[1])
                if len(b) >= cl:
                    break
        report["http_request"] = bytes(req)
    if sc.delay_before_response:
        deadline = time.monotonic() + sc.delay_before_response
        while (left := deadline - time.monotonic()) > 0:
            if conn.pending() if isinstance(conn, ssl.SSLSocket) else False:
                ready = True
            else:
                ready = bool(select.select([conn], [], [], left)[0])
            if ready:
                fr = reader.frame()
                if fr is None:
                    break
                if fr[0] == 0x9:
                    pings += 1
                    conn.sendall(_frame(0xA, fr[2]))
    report["pings"] = pings
    if sc.error_before:
        w.data(1, sc.error_before.encode())
    for frame in _frames(_pieces(sc.response), sc.frame_sizes):
        w.data(0, frame)
    if sc.error_after:
        w.data(1, sc.error_after.encode())
    w.flush()
    if sc.ending == "close":
        conn.sendall(_frame(0x8, struct.pack("!H", 1000)))
        try:  # wait for the client's close answer
            conn.settimeout(2)
            while (fr := reader.frame()) is not None:
                if fr[0] == 0xA:
                    report["pong"] = fr[2]
                    continue
                report["close_answer"] = fr[0]
                break
        except OSError:
            pass
    elif sc.ending == "close-abnormal":
        conn.sendall(_frame(0x8, struct.pack("!H", 1011) + b"kubelet went away"))
    elif sc.ending == "reset":
        raw = conn
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif sc.ending == "stall":
        time.sleep(sc.stall_seconds)
    elif sc.ending == "eof":
        pass


def _child(listener: socket.socket, sc: Scenario, cert: tuple[str, str] | None, queue, connections: int) -> None:
    """Serve ``connections`` connections, sending one report per connection through ``queue`` (a pipe end)."""
    ctx = None
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
    for _ in range(connections):
        conn, _addr = listener.accept()
        report: dict = {}
        try:
            if ctx:
                conn = ctx.wrap_socket(conn, server_side=True)
            serve_one(conn, sc, report)
        except Exception as exc:  # reported to the test
            report["server_error"] = repr(exc)
        finally:
            queue.send(report)
            try:
                conn.close()
            except OSError:
                pass
    os._exit(0)


class V4Server:
    """Start with a scenario; ``url`` to point a fake ClusterConnection at; ``report()`` afterwards."""

    def __init__(self, scenario: Scenario, cert: tuple[str, str] | None = None, connections: int = 1) -> None:
        ctx = multiprocessing.get_context("fork")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"{'https' if cert else 'http'}://127.0.0.1:{self.port}"
        self._reports, child_end = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_child, args=(self.listener, scenario, cert, child_end, connections),
                                daemon=True)
        self.proc.start()
        child_end.close()

    def report(self, timeout: float = 10.0) -> dict:
        if not self._reports.poll(timeout):
            raise TimeoutError("the test server did not report")
        return self._reports.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.listener.close()
        self._reports.close()

    def __enter__(self) -> V4Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def status_body(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                       "reason": reason, "code": code}).encode()


def make_cert(directory: str) -> tuple[str, str]:
    """A self-signed certificate for localhost / 127.0.0.1: (cert_path, key_path)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-apiserver")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "server.crt")
    key_path = os.path.join(directory, "server.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class FakeConnection:
    """The slice of ``kube.config.ClusterConnection`` the tunnel uses."""

    def __init__(self, server: str, ca_file: str | None = None, token: str | None = "s3cr3t-token",
                 tls_server_name: str | None = None) -> None:
        self.server = server
        self.namespace = "default"
        self.request_timeout = None
        self._ca_file = ca_file
        self._token = token
        self._tls_server_name = tls_server_name

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self._ca_file)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def host_port(self) -> tuple[str, int]:
        from urllib.parse import urlsplit

        split = urlsplit(self.server)
        return split.hostname or "", split.port or (443 if split.scheme == "https" else 80)

    def server_hostname(self) -> str:
        return self._tls_server_name or self.host_port()[0]


def chunked(pieces: Iterable[bytes | memoryview], sizes: list[int]) -> Iterator[bytes | memoryview]:
    """Encode a byte stream as an HTTP chunked body with chunks of the cycled sizes (+ terminator)."""
    for chunk in _frames((memoryview(p) for p in pieces), sizes):
        yield b"%x\r\n" % len(chunk)
        yield chunk
        yield b"\r\n"
    yield b"0\r\n\r\n"
