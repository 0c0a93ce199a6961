"""A minimal RFC 6455 websocket client over a plain or TLS socket (standard library only).

Just enough websocket for ``v4.channel.k8s.io`` port-forwarding: the opening handshake (with the
``Sec-WebSocket-Accept`` check and the HTTP status kept when the server refuses), a frame reader that
parses headers out of one receive buffer and copies payload straight into the caller's buffer (or has
the socket write it there directly when a frame is large), masked client frames, ping/pong, the close
handshake, an idle timeout and optional keep-alive pings.

Single-threaded: the reader is driven by whoever calls :meth:`WebSocket.read_payload_into`; control
frames (ping, close) are answered as they are met. Memory is bounded by the receive buffer.

Every failure is a :class:`TunnelError` (an :class:`~kubectl_dotnet_monitor.errors.UnavailableError`
kind unless stated), never a silent end of stream: only a websocket close frame is a clean end.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
import ssl
import struct
import time
from collections.abc import Mapping

from kubectl_dotnet_monitor.errors import PluginError, UnavailableError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HANDSHAKE_HEADER = 64 * 1024
_MAX_REFUSAL_BODY = 64 * 1024
#: Close codes that end a stream normally (1005 = the close frame carried no code).
_CLEAN_CLOSE_CODES = frozenset({1000, 1001, 1005})
#: Below this many wanted bytes, refill the internal buffer rather than receive into the caller's.
_DIRECT_READ_MIN = 8 * 1024
DEFAULT_BUFFER_SIZE = 256 * 1024
#: Client frames carry at most this much payload (a large send is split).
_MAX_SEND_FRAME = 1024 * 1024


class TunnelError(PluginError):
    """Base of every tunnel failure. Concrete classes also derive from an ``errors.py`` kind.

    ``status`` is the HTTP status of a refused upgrade (``None`` otherwise); ``api_message`` the
    message the server gave (Kubernetes Status ``message``, or the kubelet's error-channel text).
    """

    status: int | None = None
    api_message: str | None = None


class TunnelUnavailableError(TunnelError, UnavailableError):
    """The API server, the node or the pod could not be reached or stopped talking."""


class TunnelClosedError(TunnelUnavailableError):
    """The connection ended without a websocket close frame (reset, TLS error, bare EOF)."""


class TunnelStalledError(TunnelUnavailableError):
    """No byte arrived within the idle timeout."""

    def __init__(self, message: str, seconds: float, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.seconds = seconds


class TunnelProtocolError(TunnelUnavailableError):
    """The peer broke the websocket or channel protocol."""


class UpgradeRefused(TunnelUnavailableError):
    """The server answered the upgrade request with something other than ``101``.

    Raised by :func:`connect`; the port-forward layer turns it into a typed error per status.
    """

    def __init__(
        self, message: str, status: int, reason: str, headers: Mapping[str, str], body: bytes
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.headers = dict(headers)
        self.body = body


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value a server must answer to ``Sec-WebSocket-Key: key``."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _WS_GUID).digest()).decode("ascii")


def mask_payload(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` (RFC 6455 §5.3), without a per-byte loop."""
    n = len(data)
    if n == 0:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


def encode_frame(opcode: int, payload: bytes | bytearray | memoryview, *, fin: bool = True,
                 mask_key: bytes | None = None) -> bytes:
    """One client frame (masked with ``mask_key``, random when not given)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        header = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", b0, 0x80 | 127, n)
    key = os.urandom(4) if mask_key is None else mask_key
    return header + key + mask_payload(key, payload)


def _parse_header_block(block: bytes) -> tuple[int, str, dict[str, str]]:
    """Status line and headers of an HTTP/1.1 response head (without the blank line).

    Repeated headers are joined with ``", "``; names are lower-cased.
    """
    lines = block.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise TunnelProtocolError(f"the server's answer is not HTTP: {lines[0][:80]!r}")
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise TunnelProtocolError(f"malformed header line in the server's answer: {line[:80]!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return status, reason, headers


class WebSocket:
    """An open websocket (client side). Not thread-safe.

    Reading is two-step: :meth:`next_frame` returns the header of the next data frame (answering
    pings and the close handshake on the way), then the frame's payload (``remaining`` bytes) is
    consumed with :meth:`read_payload_into`, :meth:`read_bytes` or :meth:`skip`.

    ``describe`` names the far end in error messages ("pod default/app port 52323").
    """

    def __init__(self, sock: socket.socket, *, describe: str = "the websocket peer",
                 initial: bytes = b"", buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        self._sock = sock
        self.describe = describe
        self._buf = bytearray(max(buffer_size, 1024, len(initial)))
        self._view = memoryview(self._buf)
        self._pos = 0
        self._end = len(initial)
        self._buf[: self._end] = initial
        #: Payload bytes of the current frame not consumed yet.
        self.remaining = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self._closed_by_peer = False
        self._closed = False
        self._idle: float | None = None
        self._keepalive: float | None = None
        self._wait_mark = self._last_ping = time.monotonic()
        self._poller: select.poll | None = None
        self._sock_timeout: float | None = sock.gettimeout()

    # -- timeouts -------------------------------------------------------------------------------

    def settimeout(self, seconds: float | None) -> None:
        """Idle timeout: fail with :class:`TunnelStalledError` when no byte arrives for this long.

        ``None`` (or 0) waits forever (keep-alive pings, if enabled, still go out).
        """
        self._idle = seconds or None
        self._apply_wait_step()

    def set_keepalive(self, seconds: float | None) -> None:
        """Send a ping after this many idle seconds while waiting (``None`` disables)."""
        self._keepalive = seconds or None
        self._apply_wait_step()

    def _base_step(self) -> float | None:
        steps = [s for s in (self._idle, self._keepalive) if s]
        return min(steps) if steps else None

    def _apply_wait_step(self, step: float | None = None) -> None:
        step = self._base_step() if step is None else step
        if step != self._sock_timeout:
            self._sock.settimeout(step)
            self._sock_timeout = step

    # -- low level receive ---------------------------------------------------------------------

    def _recv(self, into: memoryview) -> int:
        """``recv_into`` with idle timeout, keep-alive and errors turned into ``TunnelError``."""
        try:
            got = self._sock.recv_into(into)
        except TimeoutError:
            got = self._recv_slow(into)
        except (ssl.SSLError, OSError) as exc:
            raise self._transport_error(exc) from exc
        if not got:
            raise TunnelClosedError(
                f"{self.describe} closed the connection without a websocket close frame",
                hint="the stream is incomplete; a proxy or load balancer may have cut it, try again",
            )
        return got

    def _recv_slow(self, into: memoryview) -> int:
        """Waiting past one wait step: keep-alive pings until the idle timeout is spent.

        Idle time counts from the last call to :meth:`next_frame` / :meth:`read_payload_into`, so
        the peer's pongs (or pings) do not keep a stalled stream alive.
        """
        try:
            while True:
                now = time.monotonic()
                step: float | None = None
                if self._idle is not None:
                    idle_left = self._idle - (now - self._wait_mark)
                    if idle_left <= 1e-6:
                        raise TunnelStalledError(
                            f"the stream from {self.describe} stalled: no data for {self._idle:g} s",
                            seconds=self._idle,
                            hint="raise the timeout if the monitor needs longer before it answers",
                        )
                    step = idle_left
                if self._keepalive is not None:
                    ping_left = self._keepalive - (now - self._last_ping)
                    if ping_left <= 1e-6:
                        self.ping()
                        ping_left = self._keepalive
                    step = ping_left if step is None else min(step, ping_left)
                self._apply_wait_step(step)
                try:
                    return self._sock.recv_into(into)
                except TimeoutError:
                    continue
                except (ssl.SSLError, OSError) as exc:
                    raise self._transport_error(exc) from exc
        finally:
            self._apply_wait_step()

    def _transport_error(self, exc: BaseException) -> TunnelError:
        if isinstance(exc, ConnectionResetError):
            what = "reset the connection"
        elif isinstance(exc, ssl.SSLError):
            what = f"broke the TLS stream ({exc.reason or exc})"
        else:
            what = f"failed ({exc.strerror or exc})" if isinstance(exc, OSError) else f"failed ({exc})"
        return TunnelClosedError(f"the connection to {self.describe} {what}",
                                 hint="the stream is incomplete; try again")

    def _ensure(self, n: int) -> None:
        """Make at least ``n`` bytes available in the buffer from ``_pos``."""
        while self._end - self._pos < n:
            if self._pos == self._end:
                self._pos = self._end = 0
            elif len(self._buf) - self._pos < n:
                size = self._end - self._pos
                self._buf[:size] = bytes(self._view[self._pos : self._end])  # may overlap: copy first
                self._pos, self._end = 0, size
            self._end += self._recv(self._view[self._end :])

    # -- frames -------------------------------------------------------------------------------

    def next_frame(self) -> tuple[int, bool, int]:
        """Header of the next data frame: ``(opcode, fin, payload_length)``.

        Pings are answered, pongs dropped; a close frame is answered and returns
        ``(OP_CLOSE, True, 0)`` (then again on every later call) for a normal close code, and raises
        :class:`TunnelClosedError` for an abnormal one. Unconsumed payload of the previous frame is
        skipped first.
        """
        self._wait_mark = time.monotonic()
        if self.remaining:
            self.skip(self.remaining)
        while True:
            if self._closed_by_peer:
                return OP_CLOSE, True, 0
            self._ensure(2)
            buf, pos = self._buf, self._pos
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 & 0x70:
                raise TunnelProtocolError(f"{self.describe} sent a frame with reserved bits set")
            if b1 & 0x80:
                raise TunnelProtocolError(f"{self.describe} sent a masked frame (servers must not mask)")
            opcode = b0 & 0x0F
            length = b1 & 0x7F
            if length == 126:
                self._ensure(4)
                (length,) = struct.unpack_from("!H", self._buf, self._pos + 2)
                self._pos += 4
            elif length == 127:
                self._ensure(10)
                (length,) = struct.unpack_from("!Q", self._buf, self._pos + 2)
                self._pos += 10
                if length >> 63:
                    raise TunnelProtocolError(f"{self.describe} sent an invalid frame length")
            else:
                self._pos += 2
            self.remaining = length
            fin = bool(b0 & 0x80)
            if opcode in (OP_BINARY, OP_TEXT, OP_CONTINUATION):
                return opcode, fin, length
            if opcode >= 0x8 and (length > 125 or not fin):
                raise TunnelProtocolError(f"{self.describe} sent an invalid control frame")
            if opcode == OP_PING:
                payload = self.read_bytes(length)
                self._send_frame(OP_PONG, payload)
            elif opcode == OP_PONG:
                self.skip(length)
            elif opcode == OP_CLOSE:
                self._on_close(self.read_bytes(length))
            else:
                raise TunnelProtocolError(f"{self.describe} sent a frame with unknown opcode {opcode}")

    def _on_close(self, payload: bytes) -> None:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        self.close_code = code
        self.close_reason = payload[2:].decode("utf-8", "replace")
        self._closed_by_peer = True
        try:  # answer the close handshake; the peer may already be gone
            self._send_frame(OP_CLOSE, payload[:2])
        except TunnelError:
            pass
        if code not in _CLEAN_CLOSE_CODES:
            reason = f": {self.close_reason}" if self.close_reason else ""
            raise TunnelClosedError(f"{self.describe} closed the websocket with code {code}{reason}",
                                    hint="the stream is incomplete; try again")

    def read_payload_into(self, into: memoryview) -> int:
        """Copy up to ``len(into)`` (> 0, at most :attr:`remaining`) payload bytes; return the count.

        Buffered bytes are copied once; when the buffer is empty and the caller wants a lot, the
        socket receives straight into ``into``. Never returns 0 (EOF raises).
        """
        want = len(into)
        avail = self._end - self._pos
        if not avail:
            self._wait_mark = time.monotonic()
            if want >= _DIRECT_READ_MIN:
                got = self._recv(into)
                self.remaining -= got
                return got
            self._pos = self._end = 0
            avail = self._end = self._recv(self._view)
        if avail >= want:
            into[:] = self._view[self._pos : self._pos + want]
            self._pos += want
            self.remaining -= want
            return want
        into[:avail] = self._view[self._pos : self._end]
        self._pos = self._end
        self.remaining -= avail
        return avail

    def read_bytes(self, n: int) -> bytes:
        """Exactly ``n`` (small, at most :attr:`remaining`) payload bytes."""
        if n > len(self._buf):
            out = bytearray()
            while len(out) < n:
                chunk = min(n - len(out), len(self._buf))
                self._ensure(chunk)
                out += self._view[self._pos : self._pos + chunk]
                self._pos += chunk
            self.remaining -= n
            return bytes(out)
        self._ensure(n)
        data = bytes(self._view[self._pos : self._pos + n])
        self._pos += n
        self.remaining -= n
        return data

    def skip(self, n: int) -> None:
        """Drop ``n`` payload bytes."""
        while n:
            if self._pos == self._end:
                self._pos = self._end = 0
                self._end = self._recv(self._view)
            k = min(n, self._end - self._pos)
            self._pos += k
            self.remaining -= k
            n -= k

    def data_ready(self) -> bool:
        """True when a read would not block: bytes buffered here, in TLS, or in the kernel."""
        if self._end > self._pos:
            return True
        sock = self._sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(sock, select.POLLIN)
        return bool(self._poller.poll(0))

    # -- sending --------------------------------------------------------------------------------

    def _send_frame(self, opcode: int, payload: bytes | bytearray | memoryview, fin: bool = True) -> None:
        if self._closed:
            raise TunnelClosedError(f"the connection to {self.describe} is already closed")
        try:
            self._sock.sendall(encode_frame(opcode, payload, fin=fin))
        except TimeoutError as exc:
            raise TunnelStalledError(f"sending to {self.describe} stalled", seconds=self._sock_timeout or 0.0) from exc
        except (ssl.SSLError, OSError) as exc:
            raise self._transport_error(exc) from exc

    def send_binary(self, payload: bytes | bytearray | memoryview) -> None:
        """Send ``payload`` as one binary message (fragmented above 1 MiB)."""
        view = memoryview(payload)
        if len(view) <= _MAX_SEND_FRAME:
            self._send_frame(OP_BINARY, view)
            return
        opcode = OP_BINARY
        for start in range(0, len(view), _MAX_SEND_FRAME):
            piece = view[start : start + _MAX_SEND_FRAME]
            self._send_frame(opcode, piece, fin=start + len(piece) >= len(view))
            opcode = OP_CONTINUATION

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping (the pong is dropped by the reader). Keeps idle proxies from cutting us."""
        self._send_frame(OP_PING, payload[:125])
        self._last_ping = time.monotonic()

    def close(self, code: int = 1000) -> None:
        """Send a close frame (unless the handshake already happened) and close the socket.

        Does not wait for the peer's answer: the caller is done with the stream.
        """
        if self._closed:
            return
        try:
            if not self._closed_by_peer:
                self._sock.settimeout(1.0)
                self._send_frame(OP_CLOSE, struct.pack("!H", code))
        except (TunnelError, OSError):
            pass
        finally:
            self._closed = True
            try:
                self._sock.close()
            except OSError:
                pass


def connect(
    *,
    host: str,
    port: int,
    target: str,
    headers: Mapping[str, str],
    subprotocol: str,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
    timeout: float | None,
    describe: str,
    endpoint: str,
    proxy: str | None = None,
) -> WebSocket:
    """Dial ``host:port`` (TLS when ``ssl_context`` is given), upgrade ``target`` to a websocket.

    ``timeout`` bounds TCP connect, TLS handshake and the upgrade together. ``endpoint`` names the
    server in errors ("the API server at https://…"). A non-101 answer raises :class:`UpgradeRefused`
    with the status and (bounded) body; a 101 with a wrong ``Sec-WebSocket-Accept`` or subprotocol
    raises :class:`TunnelProtocolError`. ``proxy`` (``http://[user:pass@]host:port``) is used with
    ``CONNECT``; https and socks proxies are not supported.
    """
    deadline = None if not timeout else time.monotonic() + timeout

    def left() -> float | None:
        if deadline is None:
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError()
        return remaining

    sock: socket.socket | None = None
    try:
        if proxy:
            sock = _connect_via_proxy(proxy, host, port, left)
        else:
            try:
                sock = socket.create_connection((host, port), timeout=left())
            except socket.gaierror as exc:
                raise TunnelUnavailableError(f"cannot resolve {host}: {exc.strerror or exc}",
                                             hint="check the cluster's server address in the kubeconfig") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            sock.settimeout(left())
            try:
                sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
            except ssl.SSLCertVerificationError as exc:
                raise TunnelUnavailableError(
                    f"TLS verification of {endpoint} failed: {exc.verify_message or exc.reason}",
                    hint="check certificate-authority(-data) and tls-server-name in the kubeconfig",
                ) from exc
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        host_header = f"[{host}]" if ":" in host else host
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {host_header}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Sec-WebSocket-Protocol: {subprotocol}",
        ]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        sock.settimeout(left())
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

        data = bytearray()
        while True:
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(data) > _MAX_HANDSHAKE_HEADER:
                raise TunnelProtocolError(f"{endpoint} sent an oversized answer to the upgrade request")
            sock.settimeout(left())
            chunk = sock.recv(65536)
            if not chunk:
                raise TunnelClosedError(f"{endpoint} closed the connection during the websocket upgrade",
                                        hint="a proxy in between may not support websockets")
            data += chunk
        status, reason, resp_headers = _parse_header_block(bytes(data[:end]))
        rest = bytes(data[end + 4 :])
        if status != 101:
            body = _read_refusal_body(sock, resp_headers, rest, left)
            raise UpgradeRefused(f"{endpoint} refused the websocket upgrade: {status} {reason}".rstrip(),
                                 status, reason, resp_headers, body)
        if resp_headers.get("upgrade", "").lower() != "websocket":
            raise TunnelProtocolError(f"{endpoint} answered 101 without 'Upgrade: websocket'")
        if resp_headers.get("sec-websocket-accept") != accept_key(key):
            raise TunnelProtocolError(f"{endpoint} answered the upgrade with a wrong Sec-WebSocket-Accept")
        chosen = resp_headers.get("sec-websocket-protocol")
        if chosen is not None and chosen != subprotocol:
            raise TunnelProtocolError(f"{endpoint} chose websocket subprotocol {chosen!r}, not {subprotocol!r}")
        ws = WebSocket(sock, describe=describe, initial=rest)
        ws.settimeout(None)
        return ws
    except TimeoutError as exc:
        _close_quietly(sock)
        raise TunnelStalledError(f"connecting to {describe} through {endpoint} timed out after {timeout or 0:g} s",
                                 seconds=timeout or 0.0,
                                 hint="check that the API server is reachable (network, VPN, proxy)") from exc
    except TunnelError:
        _close_quietly(sock)
        raise
    except ssl.SSLError as exc:
        _close_quietly(sock)
        raise TunnelUnavailableError(f"TLS with {endpoint} failed: {exc.reason or exc}") from exc
    except OSError as exc:
        _close_quietly(sock)
        raise TunnelUnavailableError(f"cannot connect to {endpoint}: {exc.strerror or exc}",
                                     hint="check that the API server is reachable (network, VPN, proxy)") from exc
    except BaseException:
        _close_quietly(sock)
        raise


def _connect_via_proxy(proxy: str, host: str, port: int, left) -> socket.socket:
    """A TCP connection to ``host:port`` through an HTTP proxy (``CONNECT``)."""
    import urllib.parse

    split = urllib.parse.urlsplit(proxy)
    if split.scheme.lower() != "http" or not split.hostname:
        raise TunnelUnavailableError(
            f"the port-forward tunnel supports only http:// proxies, not {split.scheme or 'a proxy-url without a scheme'!r}",
            hint="use an http:// proxy-url, or reach the API server without a proxy")
    shown = f"{split.hostname}:{split.port or 80}"
    try:
        sock = socket.create_connection((split.hostname, split.port or 80), timeout=left())
    except socket.gaierror as exc:
        raise TunnelUnavailableError(f"cannot resolve the proxy {split.hostname}: {exc.strerror or exc}") from exc
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if split.username is not None:
            cred = f"{urllib.parse.unquote(split.username)}:{urllib.parse.unquote(split.password or '')}"
            lines.append("Proxy-Authorization: Basic " + base64.b64encode(cred.encode()).decode("ascii"))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = bytearray()
        while b"\r\n\r\n" not in data:
            if len(data) > _MAX_HANDSHAKE_HEADER:
                raise TunnelProtocolError(f"the proxy {shown} sent an oversized answer to CONNECT")
            sock.settimeout(left())
            chunk = sock.recv(4096)  # small reads: nothing after the head may be consumed
            if not chunk:
                raise TunnelClosedError(f"the proxy {shown} closed the connection during CONNECT")
            data += chunk
        head, _, rest = bytes(data).partition(b"\r\n\r\n")
        status, reason, _headers = _parse_header_block(head)
        if status != 200:
            raise TunnelUnavailableError(f"the proxy {shown} refused to connect to {authority}: {status} {reason}",
                                         hint="check proxy-url (and its credentials) in the kubeconfig")
        if rest:
            raise TunnelProtocolError(f"the proxy {shown} sent data before the tunnel was established")
        return sock
    except BaseException:
        _close_quietly(sock)
        raise


def _read_refusal_body(sock: socket.socket, headers: Mapping[str, str], rest: bytes, left) -> bytes:
    """Body of a non-101 answer, bounded; best effort (the status is what matters)."""
    body = bytearray(rest)
    length = headers.get("content-length")
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    want = int(length) if length and length.isdigit() else None
    try:
        while len(body) < _MAX_REFUSAL_BODY:
            if want is not None and len(body) >= want:
                break
            if chunked and body.endswith(b"0\r\n\r\n"):
                break
            sock.settimeout(min(left() or 5.0, 5.0))
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    except (TimeoutError, OSError):
        pass
    if chunked:
        body = bytearray(_dechunk_lenient(bytes(body)))
    return bytes(body[:want] if want is not None else body)


def _dechunk_lenient(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            break
        try:
            size = int(data[pos:eol].split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += data[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2
    return bytes(out)


def _close_quietly(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
