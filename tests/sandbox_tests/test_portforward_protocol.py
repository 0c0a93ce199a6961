"""Wire-level checks of `tests.sandbox.portforward.serve` over a socket pair (no TLS, no kubectl).

The end-to-end tests with real clients live in `test_portforward.py`; these pin down the details a
real kubelet/runtime shows and a client has to cope with: frame order at the end of a stream, error
texts, resets, pings, protocol errors, and how the websocket tunnel cuts the SPDY byte stream.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import socket
import struct
import threading
import time
import zlib

import pytest

from tests.sandbox import portforward
from tests.sandbox.portforward import spdy, tunnel
from tests.sandbox.portforward.websocket import unmask

SANDBOX = "f" * 64
BODY = os.urandom(300_000)


# --- a pod with one tiny HTTP server --------------------------------------------------------

@pytest.fixture(scope="module")
def pod_port():
    listener = socket.create_server(("127.0.0.1", 0))

    def handle(conn):
        with conn:
            rfile = conn.makefile("rb")
            while True:
                line = rfile.readline()
                if not line:
                    return
                headers = http.client.parse_headers(rfile)
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
                             + BODY)
                if (headers.get("Connection") or "").lower() == "close":
                    return

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def make_dial(pod_port):
    def dial(port: int) -> socket.socket:
        if port == 80:
            return socket.create_connection(("127.0.0.1", pod_port))
        raise ConnectionRefusedError(f"nothing on {port}")
    return dial


def start(headers: str, pod_port, method="POST", query=None, options=None):
    """Run serve() on one end of a socket pair; return the client end and its reader."""
    server, client = socket.socketpair()
    parsed = http.client.parse_headers(io.BytesIO(headers.replace("\n", "\r\n").encode()
                                                  + b"\r\n"))
    rfile = server.makefile("rb")

    def run():
        try:
            portforward.serve(method, parsed, query or {}, rfile, server, make_dial(pod_port),
                              pod_sandbox_id=SANDBOX, options=options)
        finally:
            server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    client.settimeout(10)
    return client, client.makefile("rb"), thread


def read_response_head(rfile) -> tuple[int, http.client.HTTPMessage]:
    status = int(rfile.readline().split()[1])
    return status, http.client.parse_headers(rfile)


SPDY_HEADERS = ("Connection: Upgrade\nUpgrade: SPDY/3.1\n"
                "X-Stream-Protocol-Version: portforward.k8s.io\n")


# --- a minimal SPDY client --------------------------------------------------------------------

class SpdyClient:
    def __init__(self, sock, rfile) -> None:
        self.sock, self.rfile = sock, rfile
        self.comp = spdy.HeaderCompressor()
        self.decomp = spdy.HeaderDecompressor()

    def syn(self, sid: int, headers: dict[str, str], flags: int = 0) -> None:
        block = self.comp.compress({k: [v] for k, v in headers.items()})
        self.sock.sendall(spdy.control_frame(spdy.SYN_STREAM, flags,
                                             struct.pack("!IIBB", sid, 0, 0, 0) + block))

    def data(self, sid: int, payload: bytes, fin: bool = False) -> None:
        self.sock.sendall(spdy.data_frame(sid, payload, spdy.FLAG_FIN if fin else 0))

    def control(self, frame_type: int, payload: bytes, flags: int = 0) -> None:
        self.sock.sendall(spdy.control_frame(frame_type, flags, payload))

    def read(self):
        """('ctl', type, flags, payload|headers) or ('data', sid, flags, payload); None at EOF."""
        head = self.rfile.read(8)
        if len(head) < 8:
            return None
        w0, w1 = struct.unpack("!II", head)
        payload = self.rfile.read(w1 & 0xFFFFFF)
        if w0 & 0x80000000:
            ftype = w0 & 0xFFFF
            if ftype == spdy.SYN_REPLY:
                sid = struct.unpack_from("!I", payload)[0]
                return ("ctl", ftype, w1 >> 24, (sid, self.decomp.decompress(payload[4:])))
            return ("ctl", ftype, w1 >> 24, payload)
        return ("data", w0, w1 >> 24, payload)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def open_pair(self, request_id: str, first_sid: int, port: int = 80) -> None:
        self.syn(first_sid, {"streamtype": "error", "port": str(port), "requestid": request_id})
        self.data(first_sid, b"", fin=True)
        self.syn(first_sid + 2, {"streamtype": "data", "port": str(port),
                                 "requestid": request_id})


def upgraded_spdy(pod_port, options=None):
    sock, rfile, thread = start(SPDY_HEADERS, pod_port, options=options)
    status, headers = read_response_head(rfile)
    assert status == 101
    return SpdyClient(sock, rfile), headers, thread


# --- SPDY -------------------------------------------------------------------------------------

def test_spdy_upgrade_response_headers(pod_port):
    client, headers, _ = upgraded_spdy(pod_port)
    assert headers["Connection"] == "Upgrade"
    assert headers["Upgrade"] == "SPDY/3.1"
    assert headers["X-Stream-Protocol-Version"] == "portforward.k8s.io"
    assert headers["Date"].endswith("GMT")
    client.close()


def test_spdy_download_and_end_of_stream_order(pod_port):
    client, _, thread = upgraded_spdy(pod_port)
    client.open_pair("0", 1)
    client.data(3, b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
    replies, data, events = [], bytearray(), []
    while len(events) < 2:
        frame = client.read()
        assert frame is not None
        if frame[0] == "ctl":
            assert frame[1] == spdy.SYN_REPLY and frame[2] == 0
            replies.append(frame[3])
        else:
            _, sid, flags, payload = frame
            if sid == 3:
                data += payload
                assert len(payload) <= 32 * 1024
            else:
                assert payload == b""      # nothing on the error stream
            if flags & spdy.FLAG_FIN:
                events.append(sid)
    assert replies == [(1, {}), (3, {})]
    assert events == [3, 1]                 # containerd closes the data stream, then the kubelet
    assert bytes(data).endswith(BODY)
    client.control(spdy.PING, struct.pack("!I", 1))
    assert client.read() == ("ctl", spdy.PING, 0, struct.pack("!I", 1))
    client.control(spdy.PING, struct.pack("!I", 2))   # even = answer to a server ping: ignored
    client.control(spdy.PING, struct.pack("!I", 3))
    assert client.read() == ("ctl", spdy.PING, 0, struct.pack("!I", 3))
    client.close()
    thread.join(5)
    assert not thread.is_alive()


def test_spdy_dial_failure_text_then_fins(pod_port):
    client, _, _ = upgraded_spdy(pod_port)
    client.open_pair("7", 1, port=81)
    frames = [client.read() for _ in range(5)]
    assert frames[0][1] == spdy.SYN_REPLY and frames[1][1] == spdy.SYN_REPLY
    assert frames[2] == ("data", 1, 0, f"error forwarding port 81 to pod {SANDBOX}, uid : "
                                       "nothing on 81".encode())
    assert frames[3] == ("data", 1, spdy.FLAG_FIN, b"")
    assert frames[4] == ("data", 3, spdy.FLAG_FIN, b"")
    client.close()


def test_spdy_invalid_streams_are_reset(pod_port):
    client, _, _ = upgraded_spdy(pod_port)
    client.syn(5, {"streamtype": "data", "requestid": "0"})              # no port
    assert client.read() == ("ctl", spdy.RST_STREAM, 0, struct.pack("!II", 5, spdy.CANCEL))
    client.syn(7, {"streamtype": "bogus", "port": "80"})
    assert client.read() == ("ctl", spdy.RST_STREAM, 0, struct.pack("!II", 7, spdy.CANCEL))
    client.syn(3, {"streamtype": "data", "port": "80"})                  # id went backwards
    assert client.read() == ("ctl", spdy.RST_STREAM, 0,
                             struct.pack("!II", 3, spdy.PROTOCOL_ERROR))
    client.close()


def test_spdy_duplicate_stream_and_creation_timeout(pod_port):
    options = portforward.ForwardOptions(stream_creation_timeout=0.3)
    client, _, _ = upgraded_spdy(pod_port, options)
    client.syn(1, {"streamtype": "error", "port": "80", "requestid": "9"})
    client.syn(3, {"streamtype": "error", "port": "80", "requestid": "9"})
    frames = [client.read() for _ in range(4)]
    assert [f[1] for f in frames[:2]] == [spdy.SYN_REPLY, spdy.SYN_REPLY]
    assert frames[2] == ("data", 1, 0, (b"error processing stream for request 9: "
                                        b"error stream already assigned"))
    assert frames[3][:3] == ("data", 1, 0)
    assert frames[3][3].endswith(b", request=9) timed out waiting for streams")
    assert frames[3][3].startswith(b"(conn=")
    client.close()


def test_spdy_client_fin_keeps_response_flowing_within_grace(pod_port):
    client, _, _ = upgraded_spdy(pod_port)
    client.open_pair("0", 1)
    client.data(3, b"GET / HTTP/1.1\r\nHost: pod\r\n\r\n", fin=True)   # keep-alive + half-close
    data, start = bytearray(), time.monotonic()
    while True:
        frame = client.read()
        if frame[0] == "data" and frame[1] == 3:
            data += frame[3]
            if frame[2] & spdy.FLAG_FIN:
                break
    elapsed = time.monotonic() - start
    assert bytes(data).endswith(BODY)
    assert 0.9 < elapsed < 3.0   # the pod never closes: containerd gives up after 1 s
    client.close()


def test_spdy_goaway_closes_once_streams_are_done(pod_port):
    client, _, thread = upgraded_spdy(pod_port)
    client.control(spdy.GOAWAY, struct.pack("!II", 0, 0))
    # No stream is open, so the server is done at once: the connection ends without a frame.
    assert client.read() is None
    thread.join(5)
    assert not thread.is_alive()
    client.close()


def test_spdy_settings_window_update_headers_are_ignored(pod_port):
    client, _, _ = upgraded_spdy(pod_port)
    client.control(spdy.SETTINGS, struct.pack("!III", 1, spdy.SETTINGS_INITIAL_WINDOW_SIZE, 1000))
    client.open_pair("0", 1)
    client.control(spdy.WINDOW_UPDATE, struct.pack("!II", 3, 5000))
    block = client.comp.compress({"x-extra": ["1"]})
    client.control(spdy.HEADERS, struct.pack("!I", 3) + block)
    client.data(3, b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
    data = bytearray()
    while True:
        frame = client.read()
        if frame[0] == "data" and frame[1] == 3:
            data += frame[3]
            if frame[2] & spdy.FLAG_FIN:
                break
    # no flow control: far more than the 1000-byte window arrives without WINDOW_UPDATE
    assert bytes(data).endswith(BODY)
    client.close()


def test_spdy_fatal_frame_closes_connection(pod_port):
    client, _, thread = upgraded_spdy(pod_port)
    client.control(5, b"")     # NOOP does not exist in SPDY/3
    frame = client.read()
    assert frame == ("ctl", spdy.GOAWAY, 0, struct.pack("!II", 0, 0))
    assert client.read() is None
    thread.join(5)
    assert not thread.is_alive()


def test_spdy_negotiation_errors(pod_port):
    _, rfile, _ = start("Connection: Upgrade\nUpgrade: SPDY/3.1\n"
                        "X-Stream-Protocol-Version: channel.k8s.io\n", pod_port)
    status, headers = read_response_head(rfile)
    assert status == 403
    assert headers["X-Accepted-Stream-Protocol-Versions"] == "portforward.k8s.io"
    assert b"unable to negotiate protocol" in rfile.read()
    _, rfile, _ = start("Accept: */*\n", pod_port, method="GET")
    status, headers = read_response_head(rfile)
    body = json.loads(rfile.read(int(headers["Content-Length"])))
    assert (status, body["reason"], body["message"]) == (400, "BadRequest",
                                                         "Upgrade request required")


def test_header_dictionary_matches_spdy3():
    # the DICTID kubectl's zlib stream announces (captured from kubectl 1.32's first SYN_STREAM)
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert len(spdy.DICTIONARY) == 1423


# --- websocket-tunnelled SPDY -----------------------------------------------------------------

def ws_frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    head = bytes((b0, (0x80 if masked else 0) | n)) if n < 126 else \
        struct.pack("!BBH", b0, (0x80 if masked else 0) | 126, n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + unmask(payload, key)


def read_ws(rfile):
    head = rfile.read(2)
    if len(head) < 2:
        return None
    n = head[1] & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", rfile.read(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", rfile.read(8))
    return head[0] & 0x0F, bool(head[0] & 0x80), rfile.read(n)


TUNNEL_HEADERS = ("Connection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Version: 13\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
                  "Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\n")


def test_gorilla_framing():
    frames = tunnel.gorilla_frames(b"x" * 5000)
    assert [len(f) for f in frames] == [4, 4082, 4, 918]
    assert frames[0][0] == 0x02 and frames[2][0] == 0x80   # binary non-final, final continuation
    big = tunnel.gorilla_frames(b"y" * 16384)
    assert big[0] == bytes((0x02, 126)) + struct.pack("!H", 16384)
    assert big[2] == bytes((0x80, 0))                       # empty final continuation
    assert tunnel.gorilla_frames(b"z" * 8) == [bytes((0x82, 8)), b"z" * 8]


def test_tunnel_download_through_websocket(pod_port):
    sock, rfile, thread = start(TUNNEL_HEADERS, pod_port, method="GET")
    status, headers = read_response_head(rfile)
    assert status == 101
    assert headers["Sec-WebSocket-Protocol"] == "SPDY/3.1+portforward.k8s.io"
    assert headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    comp = spdy.HeaderCompressor()

    def send_spdy(raw: bytes) -> None:
        # split the byte stream at odd places, and fragment one message, like a real client may
        sock.sendall(ws_frame(0x2, raw[:3], fin=False) + ws_frame(0x9, b"p")
                     + ws_frame(0x0, raw[3:]))

    for sid, stype in ((1, "error"), (3, "data")):
        block = comp.compress({"streamtype": [stype], "port": ["80"], "requestid": ["0"]})
        send_spdy(spdy.control_frame(spdy.SYN_STREAM, 0, struct.pack("!IIBB", sid, 0, 0, 0)
                                     + block))
    send_spdy(spdy.data_frame(3, b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n"))
    stream, messages, frames, pongs = bytearray(), 0, [], 0
    decomp = spdy.HeaderDecompressor()
    fins = []
    buf = bytearray()
    while len(fins) < 2:
        opcode, fin, payload = read_ws(rfile)
        if opcode == 0xA:
            pongs += 1
            continue
        assert opcode in (0x0, 0x2)
        frames.append(len(payload))
        messages += fin
        buf += payload
        while len(buf) >= 8:
            w0, w1 = struct.unpack_from("!II", buf)
            length = w1 & 0xFFFFFF
            if len(buf) < 8 + length:
                break
            body = bytes(buf[8:8 + length])
            del buf[:8 + length]
            if w0 & 0x80000000:
                if w0 & 0xFFFF == spdy.SYN_REPLY:
                    decomp.decompress(body[4:])
                continue
            if w0 == 3:
                stream += body
            if w1 >> 24 & spdy.FLAG_FIN:
                fins.append(w0)
    assert fins == [3, 1]
    assert bytes(stream).endswith(BODY)
    assert pongs == 3
    assert max(frames) <= 16384
    # client close: echoed with the same code, then the connection ends
    sock.sendall(ws_frame(0x8, struct.pack("!H", 1000)))
    frame = read_ws(rfile)
    while frame is not None and frame[0] != 0x8:
        frame = read_ws(rfile)
    assert frame == (0x8, True, struct.pack("!H", 1000))
    thread.join(5)
    assert not thread.is_alive()


def test_tunnel_rejects_unmasked_and_text(pod_port):
    sock, rfile, thread = start(TUNNEL_HEADERS, pod_port, method="GET")
    assert read_response_head(rfile)[0] == 101
    sock.sendall(ws_frame(0x2, b"\x80\x03\x00\x06", masked=False))
    assert read_ws(rfile) == (0x8, True, struct.pack("!H", 1002) + b"incorrect mask flag")
    thread.join(5)
    sock, rfile, thread = start(TUNNEL_HEADERS, pod_port, method="GET")
    assert read_response_head(rfile)[0] == 101
    sock.sendall(ws_frame(0x1, b"hello"))
    assert read_ws(rfile) == (0x8, True, struct.pack("!H", 1000))   # the tunnel just ends
    thread.join(5)
    assert not thread.is_alive()


def test_tunnel_bad_websocket_version(pod_port):
    _, rfile, _ = start(TUNNEL_HEADERS.replace("Version: 13", "Version: 8"), pod_port,
                        method="GET")
    status, headers = read_response_head(rfile)
    assert status == 400 and headers["Sec-Websocket-Version"] == "13"


# --- websocket v4, base64 flavour -------------------------------------------------------------

def test_v4_base64_roundtrip(pod_port):
    sock, rfile, thread = start(
        "Connection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Version: 13\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
        "Sec-WebSocket-Protocol: v4.base64.channel.k8s.io\n", pod_port, method="GET",
        query={"ports": ["80"]})
    assert read_response_head(rfile)[0] == 101
    assert read_ws(rfile) == (0x1, True, b"0" + base64.b64encode(struct.pack("<H", 80)))
    assert read_ws(rfile) == (0x1, True, b"1" + base64.b64encode(struct.pack("<H", 80)))
    request = b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n"
    sock.sendall(ws_frame(0x1, b"0" + base64.b64encode(request)))
    data = bytearray()
    while True:
        opcode, _, payload = read_ws(rfile)
        if opcode == 0x8:
            break
        assert opcode == 0x1 and payload[:1] == b"0"
        data += base64.b64decode(payload[1:])
    assert bytes(data).endswith(BODY)
    thread.join(5)
    assert hashlib.sha256(bytes(data)[-len(BODY):]).digest() == hashlib.sha256(BODY).digest()
