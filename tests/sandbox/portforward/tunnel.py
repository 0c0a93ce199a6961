"""SPDY tunnelled through a websocket, the way kubectl 1.31+ port-forwards first.

Since Kubernetes 1.31 (`PortForwardWebsockets`, beta, on) the API server terminates a websocket whose
subprotocols include `SPDY/3.1+<proto>.k8s.io` and speaks plain SPDY to the kubelet
(`k8s.io/apiserver/pkg/util/proxy/streamtunnel.go`). The websocket carries the SPDY byte stream in
binary messages with no extra framing (`k8s.io/client-go/tools/portforward/tunneling_connection.go`).
What the client sees, reproduced here:

- the API server first upgrades to SPDY towards the kubelet (so a subprotocol that is not
  `portforward.k8s.io` gets the kubelet's 403), then upgrades the websocket with gorilla/websocket:
  `Connection` must contain `upgrade`, `Upgrade` `websocket` (400), method GET (405), version 13
  (400), a base64 16-byte key (400); errors carry `Sec-Websocket-Version: 13` and the status text as
  body. The 101 names `SPDY/3.1+portforward.k8s.io`.
- server-to-client message boundaries: the kubelet copies the runtime's bytes in reads of up to
  32 KiB into TLS records (Go's dynamic record sizing: ~1.2 KB records growing during the first
  128 KiB, then 16 KiB) and the API server turns each record it reads into one binary message. gorilla
  frames a message through its 4 KiB write buffer: payloads up to 8 KiB go out in frames of at most
  4082 bytes, larger ones as one non-final frame plus an empty final continuation frame.
- client-to-server: messages are reassembled from fragments; a text message ends the tunnel; an
  unmasked frame, reserved bits, an unknown opcode or a bad control frame is a protocol error
  (close 1002 with gorilla's reason); ping gets pong; a close frame is echoed with its code and ends
  the tunnel, which makes the kubelet side see EOF.
- when the SPDY side closes the connection, the tunnel sends close 1000 and drops TCP.
"""

from __future__ import annotations

import socket
import struct
import threading

from .websocket import (
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_payload,
    frame_header,
    read_frame,
)

TUNNEL_PREFIX = "SPDY/3.1+"
K8S_SUFFIX = ".k8s.io"

_TLS_MAX_PLAINTEXT = 16384
_TLS_BOOST_THRESHOLD = 128 * 1024
_TLS_SMALL_RECORD = 1186   # Go: tcpMSSEstimate(1208) - header(5) - AEAD tag(16) - type byte(1)


def tunnel_protocols(offered: list[str]) -> list[str]:
    """The SPDY protocols hidden in the websocket subprotocols (prefix stripped)."""
    return [p[len(TUNNEL_PREFIX):] for p in offered
            if p.startswith(TUNNEL_PREFIX) and p.endswith(K8S_SUFFIX)]


def gorilla_frames(message: bytes, write_buffer: int = 4096) -> list[bytes]:
    """How gorilla/websocket's server writes one binary message through its write buffer."""
    if len(message) > 2 * write_buffer:
        return [frame_header(OP_BINARY, len(message), fin=False), message,
                frame_header(OP_CONTINUATION, 0, fin=True)]
    room = write_buffer - 14  # maxFrameHeaderSize reserved in the buffer
    out: list[bytes] = []
    pos = 0
    opcode = OP_BINARY
    while True:
        chunk = message[pos:pos + room]
        pos += len(chunk)
        last = pos >= len(message)
        out.append(frame_header(opcode, len(chunk), fin=last))
        out.append(chunk)
        if last:
            return out
        opcode = OP_CONTINUATION


class TunnelTransport:
    """The SPDY byte stream carried in websocket messages (server side)."""

    def __init__(self, rfile, sock: socket.socket, read_chunk: int = 32 * 1024,
                 dynamic_records: bool = True, write_buffer: int = 4096) -> None:
        self.rfile = rfile
        self.sock = sock
        self.lock = threading.Lock()
        self.closed = False          # close frame sent or connection broken: no more writes
        self.read_chunk = read_chunk
        self.dynamic_records = dynamic_records
        self.write_buffer = write_buffer
        self._in = bytearray()
        self._in_message = False
        self._eof = False
        self._records_sent = 0
        self._bytes_sent = 0
        self.messages_sent = 0
        self.frames_received = 0

    # -- reading --------------------------------------------------------------------------------
    def read_exact(self, n: int) -> bytes:
        while len(self._in) < n:
            if self._eof:
                raise EOFError("tunnel closed")
            self._fill()
        data = bytes(self._in[:n])
        del self._in[:n]
        return data

    def _protocol_error(self, reason: str) -> None:
        self._send_close(CLOSE_PROTOCOL_ERROR, reason)
        self._eof = True
        raise EOFError(reason)

    def _fill(self) -> None:
        try:
            frame = read_frame(self.rfile, max_payload=1 << 62)
        except OSError as exc:
            self._eof = True
            raise EOFError(str(exc)) from exc
        if frame is None:
            self._eof = True
            raise EOFError("connection closed")
        self.frames_received += 1
        if not frame.masked:
            self._protocol_error("incorrect mask flag")
        if frame.rsv:
            self._protocol_error(f"unexpected reserved bits 0x{frame.rsv << 4:x}")
        opcode = frame.opcode
        if opcode >= 0x8:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                self._protocol_error(f"unknown opcode {opcode}")
            if len(frame.payload) > 125:
                self._protocol_error("control frame length > 125")
            if not frame.fin:
                self._protocol_error("control frame not final")
            if opcode == OP_PING:
                with self.lock:
                    self._send_locked_raw(frame_header(OP_PONG, len(frame.payload)) + frame.payload)
            elif opcode == OP_CLOSE:
                payload = frame.payload
                if len(payload) == 1:
                    self._protocol_error("invalid close frame")
                code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                self._send_close(code, "", raw_empty=not payload)
                self._eof = True
                raise EOFError(f"close {code}")
            return
        if opcode == OP_CONTINUATION:
            if not self._in_message:
                self._protocol_error("continuation after FIN")
        elif opcode in (OP_BINARY, OP_TEXT):
            if self._in_message:
                self._protocol_error("data before FIN")
            if opcode == OP_TEXT:
                # TunnelingConnection.Read: "invalid message type received" -> the tunnel ends
                self._eof = True
                raise EOFError("invalid message type received")
        else:
            self._protocol_error(f"unknown opcode {opcode}")
        self._in_message = not frame.fin
        self._in += frame.payload

    # -- writing --------------------------------------------------------------------------------
    def _send_locked_raw(self, data: bytes) -> bool:
        if self.closed:
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True
            return False
        return True

    def _send_close(self, code: int, reason: str, raw_empty: bool = False) -> None:
        payload = b"" if raw_empty else close_payload(code, reason)
        with self.lock:
            self._send_locked_raw(frame_header(OP_CLOSE, len(payload)) + payload)
            self.closed = True

    def _record_size(self) -> int:
        if not self.dynamic_records or self._bytes_sent >= _TLS_BOOST_THRESHOLD:
            return _TLS_MAX_PLAINTEXT
        return min(_TLS_SMALL_RECORD * (self._records_sent + 1), _TLS_MAX_PLAINTEXT)

    def send_locked(self, data) -> bool:
        """Write SPDY bytes (caller holds `lock`) as the kubelet + API server would frame them.

        Once the client side of the tunnel ended, the API server's proxy tears both directions
        down at once: nothing more from the kubelet reaches the client."""
        if self.closed or self._eof:
            return False
        data = bytes(data)
        out: list[bytes] = []
        for start in range(0, len(data), self.read_chunk):
            chunk = data[start:start + self.read_chunk]
            pos = 0
            while pos < len(chunk):
                size = self._record_size()
                record = chunk[pos:pos + size]
                pos += len(record)
                self._records_sent += 1
                self._bytes_sent += len(record)
                self.messages_sent += 1
                out.extend(gorilla_frames(record, self.write_buffer))
        if not out:
            return True
        return self._send_locked_raw(b"".join(out))

    def close(self) -> None:
        """The SPDY side is done: close 1000 (unless a close was already sent), drop TCP."""
        self._send_close(CLOSE_NORMAL, "")
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
