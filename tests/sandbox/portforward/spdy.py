"""Server side of SPDY/3.1 port-forward, as the kubelet/runtime streaming server speaks it.

The kubelet side of `kubectl port-forward` is `k8s.io/apimachinery/pkg/util/httpstream/spdy` on top
of `github.com/moby/spdystream` and its `spdy` framer, with the pairing logic of
`k8s.io/kubelet/pkg/cri/streaming/portforward/httpstream.go` and containerd's `portForward` copy
loop. What that stack does on the wire, and what is reproduced here:

- frames: 8-byte header; control frames `1vvv vvvv vvvv vvvv | type(16)` + `flags(8) length(24)`;
  data frames `0 stream-id(31)` + `flags(8) length(24)`; version is not checked; unknown control
  types, zero stream ids, a RST_STREAM with status 0, PING/GOAWAY/WINDOW_UPDATE with flags or a bad
  length, an undecodable or mis-sized header block and upper-case or hop-by-hop header names are
  fatal read errors: the server stops reading and closes the connection.
- header blocks: one zlib stream per direction for the whole connection, seeded with the SPDY/3
  dictionary, every block ends with a sync flush; `u32 count, (u32 len, name, u32 len, value)*`,
  multiple values joined by NUL; names lower-case on the wire.
- streams from the client: ids must grow (else RST_STREAM PROTOCOL_ERROR); after GOAWAY new streams
  are ignored. A stream needs `port` (1..65535) and `streamtype` (`error` or `data`) headers, else it
  is reset (RST_STREAM CANCEL, or nothing if it was opened unidirectional); accepted streams get a
  SYN_REPLY with no headers. Streams pair up by `requestid` (old clients without it: error stream id,
  data stream id - 2); a second stream of the same type in a pair prints
  `error processing stream for request R: ... stream already assigned` on the pair's error stream; a
  pair not complete after `creation_timeout` (kubelet default 30 s) prints
  `(conn=..., request=R) timed out waiting for streams`.
- a complete pair dials the pod (port from the data stream) and copies both ways, one DATA frame per
  read (32 KiB reads, `frame_size`); a client FIN or RST ends client->pod (the pod connection is *not*
  half-closed, as in containerd); when one direction ends the other gets `grace` (1 s) before the pod
  connection is closed, then FIN on the data stream, FIN on the error stream. A dial failure writes
  `error forwarding port P to pod SANDBOX, uid : MESSAGE` on the error stream, then both FINs.
- PING with the client's parity is echoed; SETTINGS, WINDOW_UPDATE and HEADERS are read and ignored.
  spdystream implements no flow control: it never sends WINDOW_UPDATE and never waits for the peer's
  window, and kubectl's client side is the same library, so windows are tracked here (for tests) but
  never enforced — enforcing them would stall kubectl after 64 KiB.
- client GOAWAY: no new streams; the connection is closed once every stream is finished. Client EOF:
  every stream ends, pod connections close after `grace`.
"""

from __future__ import annotations

import socket
import struct
import threading
import zlib
from collections.abc import Callable
from typing import Protocol

# --- constants ---------------------------------------------------------------------------------

VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5
FLOW_CONTROL_ERROR = 7

SETTINGS_INITIAL_WINDOW_SIZE = 7
DEFAULT_WINDOW = 64 * 1024

GOAWAY_OK = 0

HEADER_PORT = "port"
HEADER_STREAM_TYPE = "streamtype"
HEADER_REQUEST_ID = "requestid"
STREAM_TYPE_ERROR = "error"
STREAM_TYPE_DATA = "data"

_INVALID_REQUEST_HEADERS = {"connection", "host", "keep-alive", "proxy-connection",
                            "transfer-encoding"}


def _dictionary() -> bytes:
    """The SPDY/3 header-compression dictionary (draft 3, section 2.6.10.1): length-prefixed
    words, then an unprefixed tail."""
    words = [
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
        "accept-encoding", "accept-language", "accept-ranges", "age", "allow",
        "authorization", "cache-control", "connection", "content-base", "content-encoding",
        "content-language", "content-length", "content-location", "content-md5",
        "content-range", "content-type", "date", "etag", "expect", "expires", "from",
        "host", "if-match", "if-modified-since", "if-none-match", "if-range",
        "if-unmodified-since", "last-modified", "location", "max-forwards", "pragma",
        "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
        "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary",
        "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
        "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
    ]
    out = bytearray()
    for word in words:
        item = word.encode()
        out += struct.pack("!I", len(item)) + item
    out += (
        b"100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        b"502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        b"400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        b"501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        b"Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        b"image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
        b"publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return bytes(out)


DICTIONARY = _dictionary()


class SpdyProtocolError(Exception):
    """A fatal read error: the server stops reading and closes the connection."""


# --- header blocks -----------------------------------------------------------------------------

def encode_header_block(headers: dict[str, list[str]]) -> bytes:
    """Uncompressed name/value block (names lower-cased, values NUL-joined)."""
    out = [struct.pack("!I", len(headers))]
    for name, values in headers.items():
        n = name.lower().encode()
        v = "\x00".join(values).encode()
        out.append(struct.pack("!I", len(n)) + n + struct.pack("!I", len(v)) + v)
    return b"".join(out)


def decode_header_block(block: bytes) -> dict[str, list[str]]:
    """Parse an uncompressed block; raises SpdyProtocolError like spdystream's framer."""
    try:
        (count,) = struct.unpack_from("!I", block, 0)
        pos = 4
        headers: dict[str, list[str]] = {}
        for _ in range(count):
            (nlen,) = struct.unpack_from("!I", block, pos)
            pos += 4
            name = block[pos:pos + nlen].decode("latin-1")
            if len(name) != nlen:
                raise SpdyProtocolError("truncated header block")
            pos += nlen
            (vlen,) = struct.unpack_from("!I", block, pos)
            pos += 4
            value = block[pos:pos + vlen].decode("latin-1")
            if len(value) != vlen:
                raise SpdyProtocolError("truncated header block")
            pos += vlen
            if name != name.lower():
                raise SpdyProtocolError("header was not lowercased")
            headers.setdefault(name, []).extend(value.split("\x00"))
    except struct.error as exc:
        raise SpdyProtocolError("truncated header block") from exc
    if pos != len(block):
        raise SpdyProtocolError("compressed payload size was incorrect")
    return headers


class HeaderCompressor:
    """One direction's zlib context (best compression, SPDY dictionary, sync flush per block)."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def compress(self, headers: dict[str, list[str]]) -> bytes:
        block = encode_header_block(headers)
        return self._z.compress(block) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The other direction's zlib context, shared by every header block of the connection."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, DICTIONARY)

    def decompress(self, data: bytes) -> dict[str, list[str]]:
        try:
            block = self._z.decompress(data)
        except zlib.error as exc:
            raise SpdyProtocolError(f"header decompression failed: {exc}") from exc
        if self._z.unconsumed_tail:
            raise SpdyProtocolError("compressed payload size was incorrect")
        return decode_header_block(block)


# --- frame builders (server to client) ---------------------------------------------------------

def control_frame(frame_type: int, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, data: bytes, flags: int = 0) -> bytes:
    return struct.pack("!II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


def rst_stream(stream_id: int, status: int) -> bytes:
    return control_frame(RST_STREAM, 0, struct.pack("!II", stream_id, status))


def goaway(last_good: int, status: int = GOAWAY_OK) -> bytes:
    return control_frame(GOAWAY, 0, struct.pack("!II", last_good, status))


def ping(ping_id: int) -> bytes:
    return control_frame(PING, 0, struct.pack("!I", ping_id))


# --- transport ---------------------------------------------------------------------------------

class Transport(Protocol):
    """The SPDY byte stream: direct over the upgraded socket, or tunnelled in websocket messages."""

    lock: threading.Lock

    def read_exact(self, n: int) -> bytes:
        """Exactly n bytes; EOFError at end of stream."""

    def send_locked(self, data) -> bool:
        """Write (caller holds `lock`); False once the connection is gone."""

    def close(self) -> None:
        """Close the connection as the kubelet closing its end would look to the client."""


class DirectTransport:
    """SPDY straight over the upgraded HTTP connection."""

    def __init__(self, rfile, sock: socket.socket) -> None:
        self.rfile = rfile
        self.sock = sock
        self.lock = threading.Lock()
        self.closed = False

    def read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n) if n else b""
        if data is None or len(data) != n:
            raise EOFError("connection closed")
        return data

    def send_locked(self, data) -> bool:
        if self.closed:
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True
            return False
        return True

    def close(self) -> None:
        with self.lock:
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# --- streams and pairs -------------------------------------------------------------------------

class SpdyStream:
    """A client-initiated stream as the server sees it."""

    def __init__(self, stream_id: int, headers: dict[str, list[str]], fin: bool,
                 unidirectional: bool) -> None:
        self.id = stream_id
        self.headers = headers
        self.remote_closed = fin            # client sent FIN (or RST)
        self.local_finished = unidirectional  # we may not send FIN any more
        self.reset = False
        self.send_window = DEFAULT_WINDOW   # tracked only (spdystream ignores windows)
        self.pending: list[bytes] = []      # client data that arrived before the pod connection
        self.sink: _PairForward | None = None

    def header(self, name: str) -> str:
        values = self.headers.get(name)
        return values[0] if values else ""


class _Pair:
    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.error: SpdyStream | None = None
        self.data: SpdyStream | None = None
        self.complete = threading.Event()


class _PairForward:
    """containerd's copy loop for one (error, data) pair."""

    def __init__(self, session: SpdySession, pair: _Pair) -> None:
        self.session = session
        self.pair = pair
        self.conn: socket.socket | None = None
        self.dialled = threading.Event()
        self.client_done = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"portforward-spdy-{pair.request_id}")

    # client -> pod, from the reader thread
    def client_data(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or self.client_done.is_set():
            return
        try:
            conn.sendall(data)
        except OSError:
            self.client_eof()

    def client_eof(self) -> None:
        """client->pod ended (FIN, RST or connection gone): the pod side gets `grace` seconds."""
        with self.lock:
            if self.client_done.is_set():
                return
            self.client_done.set()
        timer = threading.Timer(self.session.grace, self._force_close)
        timer.daemon = True
        timer.start()

    def _force_close(self) -> None:
        conn = self.conn
        if conn is not None and self.thread.is_alive():
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _run(self) -> None:
        session = self.session
        data, error = self.pair.data, self.pair.error
        assert data is not None and error is not None
        try:
            port = int(data.header(HEADER_PORT))
        except ValueError:
            port = 0
        try:
            try:
                self.conn = session.dial(port)
            except OSError as exc:
                self.dialled.set()
                text = f"error forwarding port {port} to pod {session.pod_sandbox_id}, uid : {exc}"
                session.send_data(error, text.encode())
                return
            # flush what the client sent before the connection existed, before anything newer
            with self.lock:
                pending, data.pending = data.pending, []
                try:
                    for chunk in pending:
                        self.conn.sendall(chunk)
                except OSError:
                    pass
                self.dialled.set()
            if data.remote_closed:
                self.client_eof()
            self._pump(self.conn, data)
            self.client_done.wait(session.grace)
            try:
                self.conn.close()
            except OSError:
                pass
            session.finish(data)     # containerd closes the stream it was given
        finally:
            self.dialled.set()
            session.finish(error)    # kubelet's deferred Close()s: error, then data
            session.finish(data)
            session.pair_done(self)

    def _pump(self, conn: socket.socket, stream: SpdyStream) -> None:
        session = self.session
        size = session.frame_size
        buf = bytearray(8 + size)
        view = memoryview(buf)
        sid = stream.id & 0x7FFFFFFF
        while True:
            try:
                n = conn.recv_into(view[8:], size)
            except OSError:
                return
            if n == 0:
                return
            struct.pack_into("!II", buf, 0, sid, n)
            with session.transport.lock:
                stream.send_window -= n
                if not session.transport.send_locked(view[:8 + n]):
                    return


class SpdySession:
    """The kubelet side of one SPDY port-forward connection."""

    def __init__(self, transport: Transport, dial: Callable[[int], socket.socket],
                 pod_sandbox_id: str, frame_size: int = 32 * 1024, grace: float = 1.0,
                 creation_timeout: float = 30.0) -> None:
        self.transport = transport
        self.dial = dial
        self.pod_sandbox_id = pod_sandbox_id
        self.frame_size = frame_size
        self.grace = grace
        self.creation_timeout = creation_timeout
        self._compressor = HeaderCompressor()
        self._decompressor = HeaderDecompressor()
        self._streams: dict[int, SpdyStream] = {}
        self._pairs: dict[str, _Pair] = {}
        self._forwards: set[_PairForward] = set()
        self._lock = threading.Lock()
        self._next_client_id = 1
        self._gone_away = False
        self._closing = False
        self.initial_window = DEFAULT_WINDOW
        self.frames_received = 0
        self._timers: list[threading.Timer] = []

    # -- writing --------------------------------------------------------------------------------
    def _send(self, frame: bytes) -> bool:
        with self.transport.lock:
            return self.transport.send_locked(frame)

    def send_data(self, stream: SpdyStream, data: bytes) -> bool:
        with self.transport.lock:
            stream.send_window -= len(data)
            return self.transport.send_locked(data_frame(stream.id, data))

    def finish(self, stream: SpdyStream) -> None:
        """spdystream Stream.Close(): empty DATA with FIN unless this side already finished."""
        with self.transport.lock:
            if stream.local_finished:
                return
            stream.local_finished = True
            self.transport.send_locked(data_frame(stream.id, b"", FLAG_FIN))
        self._maybe_forget(stream)

    def _reply(self, stream: SpdyStream) -> None:
        with self.transport.lock:
            block = self._compressor.compress({})
            self.transport.send_locked(
                control_frame(SYN_REPLY, 0, struct.pack("!I", stream.id) + block))

    # -- bookkeeping ----------------------------------------------------------------------------
    def _maybe_forget(self, stream: SpdyStream) -> None:
        with self._lock:
            if stream.local_finished and stream.remote_closed:
                self._streams.pop(stream.id, None)
            self._check_drained_locked()

    def _check_drained_locked(self) -> None:
        if self._gone_away and not self._streams and not self._forwards and not self._closing:
            self._closing = True
            threading.Thread(target=self.transport.close, daemon=True).start()

    def pair_done(self, forward: _PairForward) -> None:
        with self._lock:
            self._forwards.discard(forward)
            self._check_drained_locked()

    # -- reading --------------------------------------------------------------------------------
    def run(self) -> None:
        """Read frames until EOF or a fatal error, then tear down like the kubelet does."""
        try:
            while True:
                self._read_frame()
        except (EOFError, OSError, SpdyProtocolError):
            pass
        finally:
            self._teardown()

    def _teardown(self) -> None:
        with self._lock:
            forwards = list(self._forwards)
            self._closing = True
            last = self._next_client_id - 2 if self._next_client_id > 2 else 0
            for timer in self._timers:
                timer.cancel()
        # kubelet: connection.Close() resets every unfinished stream, spdystream sends GOAWAY,
        # then the connection is closed (all best effort: the client is usually gone already)
        with self.transport.lock:
            for stream in list(self._streams.values()):
                if not stream.local_finished:
                    stream.local_finished = True
                    self.transport.send_locked(rst_stream(stream.id, CANCEL))
            self.transport.send_locked(goaway(max(last, 0)))
        self.transport.close()
        for forward in forwards:
            forward.client_eof()
        for forward in forwards:
            forward.thread.join(self.grace + 5.0)

    def _read_frame(self) -> None:
        head = self.transport.read_exact(8)
        word0, word1 = struct.unpack("!II", head)
        flags, length = word1 >> 24, word1 & 0xFFFFFF
        self.frames_received += 1
        if word0 & 0x80000000:
            frame_type = word0 & 0xFFFF
            payload = self.transport.read_exact(length)
            handler = {
                SYN_STREAM: self._on_syn_stream,
                SYN_REPLY: self._on_syn_reply,
                RST_STREAM: self._on_rst_stream,
                SETTINGS: self._on_settings,
                PING: self._on_ping,
                GOAWAY: self._on_goaway,
                HEADERS: self._on_headers,
                WINDOW_UPDATE: self._on_window_update,
            }.get(frame_type)
            if handler is None:
                raise SpdyProtocolError(f"invalid control frame type {frame_type}")
            handler(flags, payload)
        else:
            stream_id = word0 & 0x7FFFFFFF
            data = self.transport.read_exact(length)
            if stream_id == 0:
                raise SpdyProtocolError("stream id zero is disallowed")
            self._on_data(stream_id, flags, data)

    def _on_syn_stream(self, flags: int, payload: bytes) -> None:
        if len(payload) < 10:
            raise SpdyProtocolError("short SYN_STREAM")
        stream_id, _assoc = struct.unpack_from("!II", payload, 0)
        stream_id &= 0x7FFFFFFF
        headers = self._decompressor.decompress(payload[10:])
        for name in headers:
            if name in _INVALID_REQUEST_HEADERS:
                raise SpdyProtocolError("frame contained invalid header")
        if stream_id == 0:
            raise SpdyProtocolError("stream id zero is disallowed")
        with self._lock:
            if self._gone_away:
                return
            if stream_id < self._next_client_id:
                invalid = True
            else:
                invalid = False
                self._next_client_id = stream_id + 2
        if invalid:
            self._send(rst_stream(stream_id, PROTOCOL_ERROR))
            return
        stream = SpdyStream(stream_id, headers, bool(flags & FLAG_FIN),
                            bool(flags & FLAG_UNIDIRECTIONAL))
        stream.send_window = self.initial_window
        with self._lock:
            self._streams[stream_id] = stream
        if not self._valid_port_stream(stream):
            with self._lock:
                self._streams.pop(stream_id, None)
            if not stream.local_finished:  # spdystream Reset() is a no-op on a finished stream
                stream.local_finished = True
                self._send(rst_stream(stream_id, CANCEL))
            return
        self._reply(stream)
        self._add_to_pair(stream)

    @staticmethod
    def _valid_port_stream(stream: SpdyStream) -> bool:
        port = stream.header(HEADER_PORT)
        if not port or not port.isdigit() or not 1 <= int(port) <= 65535:
            return False
        return stream.header(HEADER_STREAM_TYPE) in (STREAM_TYPE_ERROR, STREAM_TYPE_DATA)

    def _add_to_pair(self, stream: SpdyStream) -> None:
        stream_type = stream.header(HEADER_STREAM_TYPE)
        request_id = stream.header(HEADER_REQUEST_ID)
        if not request_id:
            request_id = str(stream.id if stream_type == STREAM_TYPE_ERROR else stream.id - 2)
        with self._lock:
            pair = self._pairs.get(request_id)
            created = pair is None
            if created:
                pair = self._pairs[request_id] = _Pair(request_id)
            error_message = None
            if stream_type == STREAM_TYPE_ERROR:
                if pair.error is not None:
                    error_message = "error stream already assigned"
                else:
                    pair.error = stream
            else:
                if pair.data is not None:
                    error_message = "data stream already assigned"
                else:
                    pair.data = stream
            complete = error_message is None and pair.error is not None and pair.data is not None
            forward = None
            if complete:
                pair.complete.set()
                self._pairs.pop(request_id, None)
                forward = _PairForward(self, pair)
                pair.data.sink = forward
                self._forwards.add(forward)
        if created and not complete:
            timer = threading.Timer(self.creation_timeout, self._pair_timeout, (pair,))
            timer.daemon = True
            with self._lock:
                self._timers.append(timer)
            timer.start()
        if error_message is not None and pair.error is not None:
            self.send_data(pair.error, (f"error processing stream for request {request_id}: "
                                        f"{error_message}").encode())
        if forward is not None:
            forward.thread.start()

    def _pair_timeout(self, pair: _Pair) -> None:
        if pair.complete.is_set():
            return
        with self._lock:
            if self._pairs.get(pair.request_id) is pair:
                del self._pairs[pair.request_id]
        if pair.error is not None:
            self.send_data(pair.error, (f"(conn=&{{{id(self):#x}}}, request={pair.request_id}) "
                                        "timed out waiting for streams").encode())

    def _on_syn_reply(self, flags: int, payload: bytes) -> None:
        # the server opens no streams; decompress to keep the zlib context in step, then ignore
        if len(payload) < 4:
            raise SpdyProtocolError("short SYN_REPLY")
        self._decompressor.decompress(payload[4:])

    def _on_headers(self, flags: int, payload: bytes) -> None:
        if len(payload) < 4:
            raise SpdyProtocolError("short HEADERS")
        (stream_id,) = struct.unpack_from("!I", payload, 0)
        self._decompressor.decompress(payload[4:])
        if stream_id & 0x7FFFFFFF == 0:
            raise SpdyProtocolError("stream id zero is disallowed")

    def _on_rst_stream(self, flags: int, payload: bytes) -> None:
        if len(payload) < 8:
            raise SpdyProtocolError("short RST_STREAM")
        stream_id, status = struct.unpack_from("!II", payload, 0)
        stream_id &= 0x7FFFFFFF
        if status == 0:
            raise SpdyProtocolError("invalid control frame")
        if stream_id == 0:
            raise SpdyProtocolError("stream id zero is disallowed")
        with self._lock:
            stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        stream.reset = True
        stream.remote_closed = True
        with self.transport.lock:
            stream.local_finished = True
        if stream.sink is not None:
            stream.sink.client_eof()
        with self._lock:
            self._check_drained_locked()

    def _on_settings(self, flags: int, payload: bytes) -> None:
        if len(payload) < 4:
            raise SpdyProtocolError("short SETTINGS")
        (count,) = struct.unpack_from("!I", payload, 0)
        if len(payload) < 4 + 8 * count:
            raise SpdyProtocolError("short SETTINGS")
        for i in range(count):
            flag_id, value = struct.unpack_from("!II", payload, 4 + 8 * i)
            if flag_id & 0xFFFFFF == SETTINGS_INITIAL_WINDOW_SIZE:
                self.initial_window = value

    def _on_ping(self, flags: int, payload: bytes) -> None:
        if len(payload) < 4:
            raise SpdyProtocolError("short PING")
        (ping_id,) = struct.unpack_from("!I", payload, 0)
        if ping_id == 0 or flags:
            raise SpdyProtocolError("invalid PING")
        if ping_id & 1:  # the client's parity: echo; even ids would be answers to our own pings
            self._send(ping(ping_id))

    def _on_goaway(self, flags: int, payload: bytes) -> None:
        if flags or len(payload) != 8:
            raise SpdyProtocolError("invalid GOAWAY")
        with self._lock:
            self._gone_away = True
            self._check_drained_locked()

    def _on_window_update(self, flags: int, payload: bytes) -> None:
        if flags or len(payload) != 8:
            raise SpdyProtocolError("invalid WINDOW_UPDATE")
        stream_id, delta = struct.unpack_from("!II", payload, 0)
        with self._lock:
            stream = self._streams.get(stream_id & 0x7FFFFFFF)
        if stream is not None:
            with self.transport.lock:
                stream.send_window += delta & 0x7FFFFFFF

    def _on_data(self, stream_id: int, flags: int, data: bytes) -> None:
        with self._lock:
            stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return
        fin = bool(flags & FLAG_FIN)
        if stream.header(HEADER_STREAM_TYPE) == STREAM_TYPE_DATA and data:
            sink = stream.sink
            if sink is None or not sink.dialled.is_set():
                if sink is None:
                    stream.pending.append(data)
                else:
                    with sink.lock:
                        if not sink.dialled.is_set():
                            stream.pending.append(data)
                            data = b""
                    if data:
                        sink.client_data(data)
            else:
                sink.client_data(data)
        if fin:
            stream.remote_closed = True
            if stream.sink is not None:
                stream.sink.client_eof()
            self._maybe_forget(stream)
