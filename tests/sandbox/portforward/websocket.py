"""Server side of RFC 6455 websockets and the kubelet's `v4.channel.k8s.io` port-forward protocol.

What is simulated is the path a websocket port-forward takes in a real cluster: the API server
proxies the upgrade byte-for-byte to the kubelet, which hands it to the container runtime's
streaming server (`k8s.io/kubelet/pkg/cri/streaming/portforward/websocket.go` on top of
`k8s.io/apimachinery/pkg/util/httpstream/wsstream` and `golang.org/x/net/websocket`). The behaviour
below follows those sources:

- handshake: `GET` only (405 otherwise), `Sec-WebSocket-Version: 13` (400 with the supported
  version otherwise), a key; subprotocols are taken from the first `Sec-WebSocket-Protocol` line,
  split on commas, and the first one the server supports wins (`""` = none, `v4.channel.k8s.io`,
  `v4.base64.channel.k8s.io`); no match is a bare `403 Forbidden`. When the client offers nothing,
  x/net still writes an empty `Sec-WebSocket-Protocol:` line.
- two channels per port (index i: data `2*i`, error `2*i+1`); the first message on each is the port
  as uint16 little-endian; every later message is the channel byte + payload, one message per read
  from the pod connection (32 KiB reads in the real runtime, `frame_size` here).
- each client *frame* is a message of its own (x/net reads frame by frame, so a fragmented client
  message is not reassembled); empty frames and unknown channels are ignored, data on an error
  channel is dropped; unmasked client frames get a 1002 close; ping is answered with pong, but a
  pong from the client ends the session (x/net returns ErrNotImplemented for it), as does a frame
  over 32 MiB.
- one TCP connection per port (containerd `portForward`): when one direction ends the other gets one
  second (`grace`) before the pod connection is closed; when every port is done the websocket is
  closed with status 1000 and the TCP connection dropped without waiting for the client's close.
- a dial failure puts `error forwarding port P to pod SANDBOX, uid : MESSAGE` on the error channel.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from collections.abc import Callable
from typing import NamedTuple

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002

V4_BINARY = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
#: What the runtime's websocket port-forward handler accepts ("" = no subprotocol, binary).
KUBELET_PROTOCOLS = ("", V4_BINARY, V4_BASE64)

#: x/net/websocket's default maximum payload of one received frame.
MAX_PAYLOAD = 32 << 20

# Room kept in front of the data in a pump buffer: longest header (10) + channel byte (1), rounded.
_HEAD_ROOM = 16


class ProtocolError(Exception):
    """The peer broke the websocket protocol; the connection is closed."""

    def __init__(self, message: str, close_code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.close_code = close_code


class Frame(NamedTuple):
    """One websocket frame as read from a client (payload already unmasked)."""

    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes


def accept_key(key: str) -> str:
    """The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`."""
    return base64.b64encode(hashlib.sha1(key.strip().encode("latin-1") + GUID).digest()).decode()


def frame_header(opcode: int, length: int, fin: bool = True) -> bytes:
    """Header of an unmasked (server-to-client) frame carrying `length` payload bytes."""
    b0 = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes((b0, length))
    if length < 65536:
        return struct.pack("!BBH", b0, 126, length)
    return struct.pack("!BBQ", b0, 127, length)


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A complete unmasked frame."""
    return frame_header(opcode, len(payload), fin) + payload


def close_payload(code: int, reason: str = "") -> bytes:
    """Payload of a close frame."""
    return struct.pack("!H", code) + reason.encode()


def unmask(payload: bytes, key: bytes) -> bytes:
    """XOR `payload` with the 4-byte masking `key`, using big-integer XOR (no per-byte loop)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def _read_exact(rfile, n: int) -> bytes:
    data = rfile.read(n)
    if data is None or len(data) != n:
        raise EOFError("connection closed mid-frame" if data else "connection closed")
    return data


def read_frame(rfile, max_payload: int = MAX_PAYLOAD) -> Frame | None:
    """Read one frame from a client; None on a clean EOF before the frame started."""
    first = rfile.read(2)
    if not first:
        return None
    if len(first) < 2:
        first += _read_exact(rfile, 2 - len(first))
    b0, b1 = first[0], first[1]
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _read_exact(rfile, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _read_exact(rfile, 8))
    masked = bool(b1 & 0x80)
    key = _read_exact(rfile, 4) if masked else b""
    if length > max_payload:
        raise ProtocolError(f"frame of {length} bytes exceeds {max_payload}", CLOSE_NORMAL)
    payload = _read_exact(rfile, length) if length else b""
    if masked:
        payload = unmask(payload, key)
    return Frame(bool(b0 & 0x80), (b0 >> 4) & 0x7, b0 & 0x0F, masked, payload)


def offered_protocols(headers) -> list[str]:
    """Subprotocols as x/net/websocket reads them: the first header line, split on commas."""
    value = (headers.get("Sec-WebSocket-Protocol") or "").strip()
    if not value:
        return []
    return [p.strip() for p in value.split(",")]


def valid_key(key: str) -> bool:
    """gorilla's check: the key is base64 of exactly 16 bytes."""
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except ValueError:
        return False


def negotiate(offered: list[str], supported=KUBELET_PROTOCOLS) -> str | None:
    """wsstream's choice: the first offered protocol the server supports; `""` when none offered."""
    for protocol in offered or [""]:
        if protocol in supported:
            return protocol
    return None


class SocketWriter:
    """Serialises writes of several threads onto the client socket; remembers when it closed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.closed = False

    def send(self, data) -> bool:
        """Write everything or nothing after close; False when the connection is gone."""
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True
                return False
            return True

    def close(self, final: bytes = b"") -> None:
        """Write `final` (e.g. a close frame) unless already closed, then drop the TCP connection."""
        with self.lock:
            if not self.closed and final:
                try:
                    self.sock.sendall(final)
                except OSError:
                    pass
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _PortStream:
    """One forwarded port: its pod connection and both directions of the copy."""

    def __init__(self, session: ChannelSession, index: int, port: int) -> None:
        self.session = session
        self.index = index
        self.port = port
        self.conn: socket.socket | None = None
        self.dialled = threading.Event()      # set when the dial finished (either way)
        self.client_done = threading.Event()  # client->pod direction ended
        self.thread = threading.Thread(target=self._run, name=f"portforward-v4-{port}", daemon=True)

    # client -> pod (called from the session's reader thread)
    def write(self, data: bytes) -> None:
        self.dialled.wait()
        conn = self.conn
        if conn is None or self.client_done.is_set():
            return
        try:
            conn.sendall(data)
        except OSError:
            pass  # the runtime logs "Unable to write frame" and keeps reading

    # pod -> client
    def _run(self) -> None:
        session = self.session
        try:
            try:
                self.conn = session.dial(self.port)
            except OSError as exc:
                self.dialled.set()
                session.send_message(2 * self.index + 1, session.error_text(self.port, exc).encode())
                return
            self.dialled.set()
            self._pump(self.conn)
            # one direction ended: give the other one `grace` seconds (containerd), then close
            self.client_done.wait(session.grace)
        finally:
            self.dialled.set()
            if self.conn is not None:
                try:
                    self.conn.close()
                except OSError:
                    pass
            session.port_finished()

    def _pump(self, conn: socket.socket) -> None:
        session = self.session
        size = session.frame_size
        buf = bytearray(_HEAD_ROOM + size)
        view = memoryview(buf)
        channel = 2 * self.index
        binary = session.binary
        while True:
            try:
                n = conn.recv_into(view[_HEAD_ROOM:], size)
            except OSError:
                return
            if n == 0:
                return
            if binary:
                header = frame_header(OP_BINARY, n + 1)
                start = _HEAD_ROOM - 1 - len(header)
                buf[start:_HEAD_ROOM - 1] = header
                buf[_HEAD_ROOM - 1] = channel
                ok = session.writer.send(view[start:_HEAD_ROOM + n])
            else:
                ok = session.send_message(channel, bytes(view[_HEAD_ROOM:_HEAD_ROOM + n]))
            if not ok:
                return


class ChannelSession:
    """A `v4.channel.k8s.io` (or its base64 variant) port-forward session after the 101."""

    def __init__(self, rfile, writer: SocketWriter, ports: list[int],
                 dial: Callable[[int], socket.socket], protocol: str, pod_sandbox_id: str,
                 frame_size: int = 32 * 1024, grace: float = 1.0) -> None:
        self.rfile = rfile
        self.writer = writer
        self.dial = dial
        self.binary = protocol != V4_BASE64
        self.pod_sandbox_id = pod_sandbox_id
        self.frame_size = frame_size
        self.grace = grace
        self.streams = [_PortStream(self, i, port) for i, port in enumerate(ports)]
        self._remaining = len(self.streams)
        self._lock = threading.Lock()

    def error_text(self, port: int, exc: BaseException) -> str:
        """The kubelet's message for a failed `PortForward` call (uid is empty behind CRI)."""
        return f"error forwarding port {port} to pod {self.pod_sandbox_id}, uid : {exc}"

    def send_message(self, channel: int, data: bytes) -> bool:
        """One message on `channel`, in the negotiated codec."""
        if self.binary:
            return self.writer.send(server_frame(OP_BINARY, bytes((channel,)) + data))
        text = chr(ord("0") + channel) + base64.b64encode(data).decode()
        return self.writer.send(server_frame(OP_TEXT, text.encode()))

    def port_finished(self) -> None:
        with self._lock:
            self._remaining -= 1
            last = self._remaining == 0
        if last:
            self.writer.close(server_frame(OP_CLOSE, close_payload(CLOSE_NORMAL)))

    def run(self) -> None:
        """Send the port prefixes, start the copies, read client frames until the end."""
        for stream in self.streams:
            prefix = struct.pack("<H", stream.port)
            self.send_message(2 * stream.index, prefix)
            self.send_message(2 * stream.index + 1, prefix)
        for stream in self.streams:
            stream.thread.start()
        close_frame = server_frame(OP_CLOSE, close_payload(CLOSE_NORMAL))
        try:
            self._read_loop()
        except ProtocolError as exc:
            close_frame = server_frame(OP_CLOSE, close_payload(exc.close_code))
        except (EOFError, OSError, ValueError):
            pass
        # the channels close with the websocket: client->pod ends for every port
        self.writer.close(close_frame)
        for stream in self.streams:
            stream.client_done.set()
        for stream in self.streams:
            stream.thread.join(self.grace)
        for stream in self.streams:
            conn = stream.conn
            if stream.thread.is_alive() and conn is not None:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for stream in self.streams:
            stream.thread.join(5.0)

    def _read_loop(self) -> None:
        streams = self.streams
        while True:
            frame = read_frame(self.rfile)
            if frame is None:
                return
            if not frame.masked:
                raise ProtocolError("unmasked client frame")
            opcode = frame.opcode
            if opcode == OP_CLOSE:
                return
            if opcode == OP_PING:
                self.writer.send(server_frame(OP_PONG, frame.payload[:125]))
                continue
            if opcode == OP_PONG:
                # x/net/websocket answers an (unsolicited) pong with ErrNotImplemented, which ends
                # the runtime's receive loop: the websocket is closed
                return
            if opcode not in (OP_BINARY, OP_TEXT, OP_CONTINUATION):
                raise ProtocolError(f"unknown opcode {opcode}")
            data = frame.payload
            if not data:
                continue
            channel = data[0]
            if not self.binary:
                channel -= ord("0")
                try:
                    payload = base64.b64decode(data[1:], validate=True)
                except ValueError:
                    continue  # logged by the runtime, message dropped
            else:
                payload = data[1:]
            if channel < 0 or channel >= 2 * len(streams) or channel % 2 == 1:
                continue  # invalid channel or write-only error channel: ignored
            streams[channel // 2].write(payload)
