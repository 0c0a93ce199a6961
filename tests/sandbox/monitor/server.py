"""HTTP/1.1 transport of the simulated dotnet-monitor (one thread per connection, keep-alive).

Kestrel-like details: ``Server: Kestrel`` and ``Date`` headers, artifact bodies with
``Transfer-Encoding: chunked`` and no Content-Length, headers of a streamed response sent together
with its first body byte. Faults (reset / truncate / stall) are applied here, at exact byte offsets.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import parse_qsl, urlsplit

from .artifacts import BackgroundHasher

REASONS = {100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           406: "Not Acceptable", 411: "Length Required", 413: "Payload Too Large",
           415: "Unsupported Media Type", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error"}
MAX_BODY = 8 << 20


class ClientGone(Exception):
    """The client closed the connection."""


class StreamCut(Exception):
    """A fault ended the body (``kind`` = reset | truncate | stall-released)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Cancelled(Exception):
    """The operation was cancelled (DELETE /operations/{id}) or the monitor stops."""


@dataclass
class Request:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]          # names lower-cased
    headers: dict[str, str]              # names lower-cased (repeated headers joined by ", ")
    body: bytes
    group: str                           # "default" | "metrics"
    scheme: str
    local_port: int
    sock: socket.socket | None = None

    def q(self, name: str) -> str | None:
        vals = self.query.get(name.lower())
        return vals[0] if vals else None

    @property
    def host(self) -> str:
        return self.headers.get("host") or f"localhost:{self.local_port}"


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class StreamResponse:
    """A chunked response produced by ``producer(stream)``; ``on_done(stream, error)`` runs after."""
    status: int
    headers: list[tuple[str, str]]
    producer: object
    on_done: object = None
    faults: dict = field(default_factory=dict)
    first_byte_delay: float = 0.0


class BodyStream:
    """Chunked body writer with byte-exact faults and the SHA-256 of exactly what was sent."""

    def __init__(self, sock: socket.socket, status: int, headers: list[tuple[str, str]], faults: dict,
                 stop: threading.Event) -> None:
        self.sock = sock
        self._head = _head(status, headers + [("Transfer-Encoding", "chunked")])
        self.faults = faults
        self.stop = stop
        self.sent = 0
        self.hasher = BackgroundHasher()
        self.started = False
        self.complete = False
        self.fault_applied: str | None = None

    def _send_head(self) -> None:
        if not self.started:
            self.started = True
            self.sock.sendall(self._head)

    def start(self) -> None:
        """Send the headers now (empty bodies, or before a pause)."""
        try:
            self._send_head()
        except OSError as exc:
            raise ClientGone() from exc

    def write(self, data) -> None:
        if not len(data):
            return
        data = memoryview(data) if not isinstance(data, memoryview) else data
        for kind in ("reset", "truncate", "stall"):
            f = self.faults.get(kind)
            if f is not None and self.sent + len(data) >= f.after and self.fault_applied is None:
                head = data[:max(0, f.after - self.sent)]
                if len(head):
                    self._emit(head)
                self.fault_applied = kind
                if kind == "stall":
                    self.start()
                    self.wait_forever()
                raise StreamCut(kind)
        self._emit(data)

    def _emit(self, data: memoryview) -> None:
        try:
            if not self.started:
                self.started = True
                self.sock.sendall(self._head + b"%x\r\n" % len(data))
            else:
                self.sock.sendall(b"%x\r\n" % len(data))
            self.sock.sendall(data)
            self.sock.sendall(b"\r\n")
        except OSError as exc:
            raise ClientGone() from exc
        self.hasher.update(data)
        self.sent += len(data)

    def finish(self) -> None:
        """Chunked terminator: the body ends cleanly (whether or not it is complete)."""
        try:
            self._send_head()
            self.sock.sendall(b"0\r\n\r\n")
        except OSError as exc:
            raise ClientGone() from exc

    def reset(self) -> None:
        """Abort with an RST (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def client_gone(self) -> bool:
        try:
            r, _, _ = select.select([self.sock], [], [], 0)
            if r:
                return self.sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True
        return False

    def pause(self, seconds: float, *events: threading.Event) -> bool:
        """Sleep up to ``seconds``; True if one of ``events`` fired. Raises ClientGone / Cancelled."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if self.stop.is_set():
                raise Cancelled()
            for e in events:
                if e.is_set():
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                r, _, _ = select.select([self.sock], [], [], min(left, 0.05))
                if r:
                    if self.sock.recv(1, socket.MSG_PEEK) == b"":
                        raise ClientGone()
                    time.sleep(min(left, 0.05))  # pipelined bytes: not an EOF
            except (OSError, ValueError) as exc:
                raise ClientGone() from exc

    def wait_forever(self) -> None:
        while True:
            self.pause(3600)


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
             f"Date: {formatdate(usegmt=True)}", "Server: Kestrel"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class HttpListener:
    """One Kestrel listener on a real 127.0.0.1 ephemeral port."""

    def __init__(self, app, group: str, scheme: str, stop: threading.Event, ssl_context=None) -> None:
        self.app = app
        self.group = group
        self.scheme = scheme
        self.stop = stop
        self.ssl_context = ssl_context
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, name=f"monitor-{group}-{self.port}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass

    def _accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                try:
                    conn = self.ssl_context.wrap_socket(conn, server_side=True)
                except OSError:
                    conn.close()
                    continue
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="monitor-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb", buffering=65536)
        try:
            while not self.stop.is_set():
                req = _read_request(rfile, conn, self.group, self.scheme, self.port)
                if req is None:
                    return
                if isinstance(req, Response):
                    _send_plain(conn, req, close=True)
                    return
                resp = self.app.handle(req)
                keep = req.headers.get("connection", "").lower() != "close"
                if isinstance(resp, StreamResponse):
                    if not self._stream(conn, resp):
                        return
                else:
                    _send_plain(conn, resp, close=not keep)
                if not keep:
                    return
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                rfile.close()
                conn.close()
            except OSError:
                pass

    def _stream(self, conn: socket.socket, resp: StreamResponse) -> bool:
        """Run a producer; returns whether the connection can be reused."""
        stream = BodyStream(conn, resp.status, resp.headers, resp.faults, self.stop)
        error: str | None = None
        try:
            if resp.first_byte_delay > 0:
                stream.pause(resp.first_byte_delay)
            resp.producer(stream)
            stream.complete = True
            stream.finish()
        except StreamCut as cut:
            error = cut.kind
            if cut.kind == "truncate":
                try:
                    stream.finish()
                except ClientGone:
                    error = "client_gone"
            else:
                stream.reset()
        except Cancelled:
            error = "cancelled"
            try:
                stream.finish()
            except ClientGone:
                pass
        except ClientGone:
            error = "client_gone"
        except Exception:  # noqa: BLE001 - an unhandled producer error aborts the connection
            error = "error"
            stream.reset()
        if resp.on_done is not None:
            resp.on_done(stream, error)
        return error is None


def _send_plain(conn: socket.socket, resp: Response, close: bool) -> None:
    headers = list(resp.headers) + [("Content-Length", str(len(resp.body)))]
    if close:
        headers.append(("Connection", "close"))
    conn.sendall(_head(resp.status, headers) + resp.body)


def _read_request(rfile, conn, group: str, scheme: str, port: int):
    line = rfile.readline(65537)
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(65537)
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
    except ValueError:
        return Response(400)
    if not version.startswith("HTTP/1."):
        return Response(400)
    headers: dict[str, str] = {}
    total = 0
    while True:
        h = rfile.readline(65537)
        total += len(h)
        if total > 65536:
            return Response(431)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if version == "HTTP/1.0" and "connection" not in headers:
        headers["connection"] = "close"
    if headers.get("expect", "").lower() == "100-continue":
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        size_total = 0
        while True:
            size_line = rfile.readline(1024)
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                return Response(400)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                break
            size_total += size
            if size_total > MAX_BODY:
                return Response(413)
            parts.append(rfile.read(size))
            rfile.readline(1024)
        body = b"".join(parts)
    elif headers.get("content-length"):
        try:
            n = int(headers["content-length"])
        except ValueError:
            return Response(400)
        if n > MAX_BODY:
            return Response(413)
        body = rfile.read(n)
    split = urlsplit(target)
    query: dict[str, list[str]] = {}
    for k, v in parse_qsl(split.query, keep_blank_values=True):
        query.setdefault(k.lower(), []).append(v)
    return Request(method=method.upper(), target=target, path=split.path or "/", query=query, headers=headers,
                   body=body, group=group, scheme=scheme, local_port=port, sock=conn)
