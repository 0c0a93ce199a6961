"""Minimal HTTP/1.1 over a :class:`~kubectl_dotnet_monitor.tunnel.portforward.PodTunnel`.

One request at a time per tunnel (a ``v4.channel.k8s.io`` websocket is one TCP connection), sent
with ``Connection: close`` unless the caller asks for keep-alive; a response read to its verified
end can then hand the tunnel on (:meth:`HttpResponse.reusable`, :meth:`HttpResponse.detach`).
The response head is parsed with bounded sizes; the body is read with ``Content-Length``,
``Transfer-Encoding: chunked`` (the terminating zero-size chunk is required) or, when neither is
given, until the tunnel closes cleanly. A body that ends early is a
:class:`TruncatedError`, never a short success.

Speed: payload bytes are copied once, from the tunnel into the caller's buffer; when this layer's
own buffer is empty the tunnel writes straight into the caller's buffer. Chunk headers are parsed
with ``bytearray.find`` in that buffer, not byte by byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from kubectl_dotnet_monitor.errors import UnavailableError

DEFAULT_HOST = "localhost:52323"
_MAX_HEAD = 32 * 1024
_MAX_LINE = 8 * 1024
_MAX_TRAILERS = 16 * 1024
_BUFFER_SIZE = 64 * 1024
#: Ask the tunnel for at most this much when we only need a chunk header (the rest is copied twice).
_HEADER_FILL = 16 * 1024


class Tunnel(Protocol):
    """What HTTP needs from a tunnel (``PodTunnel`` and test fakes)."""

    def sendall(self, data: bytes) -> None: ...
    # optional: def data_ready(self) -> bool  (True when recv_into would not block)
    def recv_into(self, buf: memoryview) -> int: ...
    def settimeout(self, seconds: float | None) -> None: ...
    def close(self) -> None: ...


class HttpProtocolError(UnavailableError):
    """The far end did not speak HTTP/1.1 as expected (malformed or oversized head/body)."""


class TruncatedError(UnavailableError):
    """The body ended before its declared end (``Content-Length`` or the chunked terminator).

    ``received`` is the number of body bytes that arrived, ``expected`` the declared length (``None``
    for chunked bodies).
    """

    def __init__(self, message: str, received: int, expected: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.received = received
        self.expected = expected


class Headers:
    """Case-insensitive, multi-valued response headers."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = list(items)
        self._index: dict[str, list[str]] = {}
        for name, value in self._items:
            self._index.setdefault(name.lower(), []).append(value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """All values of ``name`` joined with ``", "``, or ``default``."""
        values = self._index.get(name.lower())
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in arrival order (``[]`` when absent)."""
        return list(self._index.get(name.lower(), []))

    def items(self) -> list[tuple[str, str]]:
        """``(name, value)`` pairs as received (names keep their case)."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def _fmt(n: int) -> str:
    return f"{n:,}"


class HttpResponse:
    """A response whose body is read from the tunnel on demand. Owns (and closes) the tunnel."""

    _NONE, _LENGTH, _CHUNKED, _CLOSE = range(4)

    def __init__(self, tunnel: Tunnel, status: int, reason: str, version: str, headers: Headers,
                 buf: bytearray, pos: int, end: int, method: str) -> None:
        self.tunnel = tunnel
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self._buf = buf
        self._view = memoryview(buf)
        self._pos = pos
        self._end = end
        #: Body bytes delivered so far (decoded, i.e. without chunk framing).
        self.bytes_read = 0
        self.content_length: int | None = None
        self._left = 0             # LENGTH: body bytes left; CHUNKED: bytes left in current chunk
        self._need_crlf = False    # CHUNKED: the CRLF after a chunk's data is pending
        self._done = False
        self._closed = False
        te = (headers.get("transfer-encoding") or "").lower()
        cl = headers.get("content-length")
        if method.upper() == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._mode = self._NONE
            self._done = True
        elif te:
            self._mode = self._CHUNKED if te.rsplit(",", 1)[-1].strip() == "chunked" else self._CLOSE
        elif cl is not None:
            values = {v.strip() for v in cl.split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise HttpProtocolError(f"invalid Content-Length in the response: {cl!r}")
            self._mode = self._LENGTH
            self.content_length = self._left = int(values.pop())
            self._done = self._left == 0
        else:
            self._mode = self._CLOSE

    # -- properties ---------------------------------------------------------------------------

    @property
    def chunked(self) -> bool:
        """True when the body is sent with ``Transfer-Encoding: chunked``."""
        return self._mode == self._CHUNKED

    @property
    def complete(self) -> bool:
        """True once the whole body has been read (and verified)."""
        return self._done

    @property
    def content_type(self) -> str | None:
        """The ``Content-Type`` header, if any."""
        return self.headers.get("content-type")

    def settimeout(self, seconds: float | None) -> None:
        """Idle timeout for the rest of the body (passed to the tunnel)."""
        self.tunnel.settimeout(seconds)

    # -- body ---------------------------------------------------------------------------------

    def read_into(self, into: memoryview | bytearray) -> int:
        """Read body bytes into ``into``; 0 only at the verified end of the body."""
        if self._done or not len(into):
            return 0
        view = into if isinstance(into, memoryview) else memoryview(into)
        mode = self._mode
        if mode == self._CHUNKED:
            while not self._left:
                self._next_chunk()
                if self._done:
                    return 0
            n = self._read_payload(view, self._left)
            self._left -= n
        elif mode == self._LENGTH:
            n = self._read_payload(view, self._left)
            self._left -= n
            if not self._left:
                self._done = True
        else:
            n = self._read_payload(view, None)
            if not n:
                self._done = True
        self.bytes_read += n
        return n

    def iter_chunks(self, size: int = 1024 * 1024) -> Iterator[memoryview]:
        """Yield the body as memoryviews of one reused buffer of ``size`` bytes.

        Each view is valid only until the next iteration: write it out, don't keep it. A view holds
        what has arrived so far (never waiting to fill the buffer), so writes are large when the
        stream is fast and progress is prompt when it is slow.
        """
        buf = memoryview(bytearray(size))
        read_into = self.read_into
        ready = self._data_ready
        low_water = size - min(size // 4, 16 * 1024)
        while True:
            n = read_into(buf)
            if not n:
                return
            while n < low_water and ready():
                got = read_into(buf[n:])
                if not got:
                    break
                n += got
            yield buf[:n]

    def _data_ready(self) -> bool:
        if self._done:
            return False
        if self._end > self._pos:
            return True
        check = getattr(self.tunnel, "data_ready", None)
        return bool(check and check())

    def read(self, limit: int = 16 * 1024 * 1024) -> bytes:
        """The whole (remaining) body; :class:`HttpProtocolError` above ``limit`` bytes."""
        out = bytearray()
        for piece in self.iter_chunks(64 * 1024):
            out += piece
            if len(out) > limit:
                raise HttpProtocolError(f"the response body is larger than {_fmt(limit)} bytes")
        return bytes(out)

    def reusable(self) -> bool:
        """True when the tunnel may carry another request: the body was read to its verified end,
        HTTP/1.1 without ``Connection: close``, and nothing beyond this response arrived."""
        return (
            self._done
            and not self._closed
            and self._mode != self._CLOSE
            and self.version == "HTTP/1.1"
            and "close" not in (self.headers.get("connection") or "").lower()
            and self._pos == self._end
        )

    def detach(self) -> Tunnel:
        """Hand the tunnel back (see :meth:`reusable`) instead of closing it."""
        self._closed = True
        return self.tunnel

    def close(self) -> None:
        """Close the tunnel (ending the request if the body was not read)."""
        if not self._closed:
            self._closed = True
            self.tunnel.close()

    def __enter__(self) -> HttpResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _read_payload(self, into: memoryview, limit: int | None) -> int:
        """Up to ``min(len(into), limit)`` body bytes: from our buffer, else straight from the tunnel."""
        if limit is not None and len(into) > limit:
            into = into[:limit]
        avail = self._end - self._pos
        if avail:
            k = min(avail, len(into))
            into[:k] = self._view[self._pos : self._pos + k]
            self._pos += k
            return k
        n = self.tunnel.recv_into(into)
        if not n and limit is not None:
            raise self._truncated()
        return n

    def _truncated(self) -> TruncatedError:
        got = self.bytes_read
        if self._mode == self._LENGTH:
            expected = self.content_length or 0
            return TruncatedError(
                f"the response ended early: {_fmt(got)} of {_fmt(expected)} bytes arrived",
                received=got, expected=expected, hint="the file is incomplete; try again")
        return TruncatedError(
            f"the response ended early: {_fmt(got)} bytes arrived but the chunked body never "
            "reached its terminating chunk",
            received=got, hint="the file is incomplete; try again")

    def _fill(self, max_bytes: int) -> None:
        """Append more bytes from the tunnel to our buffer (compacting it first)."""
        if self._pos == self._end:
            self._pos = self._end = 0
        elif self._pos:
            size = self._end - self._pos
            self._buf[:size] = bytes(self._view[self._pos : self._end])  # may overlap: copy first
            self._pos, self._end = 0, size
        room = min(len(self._buf) - self._end, max_bytes)
        if room <= 0:
            raise HttpProtocolError("a line in the response is too long")
        n = self.tunnel.recv_into(self._view[self._end : self._end + room])
        if not n:
            raise self._truncated()
        self._end += n

    def _read_line(self, limit: int = _MAX_LINE) -> bytes:
        """One line without its line ending (CRLF, or a bare LF)."""
        while True:
            eol = self._buf.find(b"\n", self._pos, self._end)
            if eol >= 0:
                line = bytes(self._view[self._pos : eol])
                self._pos = eol + 1
                if len(line) > limit:
                    raise HttpProtocolError("a chunk header in the response is too long")
                return line[:-1] if line.endswith(b"\r") else line
            if self._end - self._pos > limit:
                raise HttpProtocolError("a chunk header in the response is too long")
            self._fill(_HEADER_FILL)

    def _next_chunk(self) -> None:
        """Parse the next chunk header (and the CRLF ending the previous chunk's data)."""
        if self._need_crlf:
            while self._end - self._pos < 2:
                self._fill(_HEADER_FILL)
            if self._buf[self._pos : self._pos + 2] != b"\r\n":
                raise HttpProtocolError(
                    f"corrupt chunked body after {_fmt(self.bytes_read)} bytes: chunk data not followed by CRLF")
            self._pos += 2
            self._need_crlf = False
        line = self._read_line()
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or size_text.strip(b"0123456789abcdefABCDEF") or len(size_text) > 16:
            raise HttpProtocolError(
                f"corrupt chunked body after {_fmt(self.bytes_read)} bytes: bad chunk size {line[:40]!r}")
        size = int(size_text, 16)
        if size:
            self._left = size
            self._need_crlf = True
            return
        trailer_bytes = 0
        while True:  # trailers, then the empty line
            trailer = self._read_line()
            if not trailer:
                break
            trailer_bytes += len(trailer)
            if trailer_bytes > _MAX_TRAILERS:
                raise HttpProtocolError("the response's trailers are too large")
        self._done = True


def encode_request(method: str, target: str, headers: Mapping[str, str] | Iterable[tuple[str, str]],
                   body: bytes | None = None, host: str = DEFAULT_HOST) -> bytes:
    """PURE: the bytes of one HTTP/1.1 request (``Host``, ``Connection: close`` unless ``headers``
    name a ``Connection``, ``Content-Length``). A header with a line break is a ``ValueError`` that
    names the header, never its value."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    names = {name.lower() for name, _ in items}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {host}")
    for name, value in items:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}")
    if "connection" not in names:
        lines.append("Connection: close")
    if (body is not None or method.upper() in ("POST", "PUT", "PATCH")) and "content-length" not in names:
        lines.append(f"Content-Length: {len(body or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


def read_response(tunnel: Tunnel, method: str = "GET") -> HttpResponse:
    """Read the response head from ``tunnel`` (skipping 1xx) and return the response."""
    buf = bytearray(_BUFFER_SIZE)
    view = memoryview(buf)
    pos = end = 0
    while True:
        head_end = buf.find(b"\r\n\r\n", pos, end)
        if head_end < 0:
            if end - pos >= _MAX_HEAD:
                raise HttpProtocolError("the response head is larger than 32 KiB")
            if pos and len(buf) - end < 4096:
                buf[: end - pos] = bytes(view[pos:end])  # may overlap: copy first
                pos, end = 0, end - pos
            n = tunnel.recv_into(view[end:])
            if not n:
                if end == pos:
                    raise TruncatedError("the connection closed before any response arrived",
                                         received=0)
                raise TruncatedError("the connection closed in the middle of the response head",
                                     received=0)
            end += n
            continue
        status, reason, version, headers = parse_head(bytes(view[pos:head_end]))
        pos = head_end + 4
        if 100 <= status < 200 and status != 101:
            continue  # interim response (100 Continue, 103 Early Hints)
        return HttpResponse(tunnel, status, reason, version, headers, buf, pos, end, method)


def parse_head(block: bytes) -> tuple[int, str, str, Headers]:
    """PURE: status line and header lines (no trailing blank line) -> (status, reason, version, headers)."""
    lines = block.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (len(parts[1]) == 3 and parts[1].isdigit()):
        raise HttpProtocolError(f"not an HTTP/1.1 response: {lines[0][:80]!r}",
                                hint="is something other than dotnet-monitor listening on that port?")
    items = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpProtocolError(f"malformed header line in the response: {line[:80]!r}")
        items.append((name, value.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else "", parts[0], Headers(items)


def request(tunnel: Tunnel, method: str, target: str,
            headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
            body: bytes | None = None, host: str = DEFAULT_HOST) -> HttpResponse:
    """Send one request over ``tunnel`` and read the response head. The response owns the tunnel."""
    tunnel.sendall(encode_request(method, target, headers, body, host))
    return read_response(tunnel, method)
