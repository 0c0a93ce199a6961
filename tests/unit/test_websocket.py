"""RFC 6455 pieces and the v4 channel reader, driven in-process over a socketpair."""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest

from kubectl_dotnet_monitor.tunnel.portforward import PodPortError, PodTunnel
from kubectl_dotnet_monitor.tunnel.websocket import (
    OP_BINARY,
    OP_CLOSE,
    TunnelClosedError,
    TunnelProtocolError,
    TunnelStalledError,
    WebSocket,
    accept_key,
    encode_frame,
    mask_payload,
)

from .wsv4_server import _frame, _Reader


def test_accept_key_rfc_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 125, 126, 65535, 65536, 1_000_003])
def test_mask_matches_the_per_byte_definition(n):
    key = os.urandom(4)
    data = os.urandom(n)
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert mask_payload(key, data) == expected
    assert mask_payload(key, expected) == data


@pytest.mark.parametrize(("n", "header_len"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_client_frames_are_masked_with_the_right_length_encoding(n, header_len):
    frame = encode_frame(OP_BINARY, b"a" * n, mask_key=b"\x01\x02\x03\x04")
    assert frame[0] == 0x82
    assert frame[1] & 0x80
    assert len(frame) == header_len + 4 + n
    assert frame[header_len : header_len + 4] == b"\x01\x02\x03\x04"


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _binary(channel: int, payload: bytes, fin: bool = True) -> bytes:
    return _frame(OP_BINARY, bytes([channel]) + payload, fin)


PREFIX = _binary(0, struct.pack("<H", 52323)) + _binary(1, struct.pack("<H", 52323))


def _tunnel(sock: socket.socket, **kw) -> PodTunnel:
    return PodTunnel(WebSocket(sock, describe="pod ns/p port 52323", **kw), "ns", "p", 52323)


def _drain(tunnel: PodTunnel, size: int = 4096) -> bytes:
    out = bytearray()
    buf = memoryview(bytearray(size))
    while n := tunnel.recv_into(buf):
        out += buf[:n]
    return bytes(out)


def test_fragmented_data_with_control_frames_in_between(pair):
    client, server = pair
    wire = (PREFIX
            + _binary(0, b"hel", fin=False)
            + _frame(0x9, b"p1")                       # ping between fragments
            + _frame(0x0, b"lo ", fin=False)
            + _frame(0xA, b"unsolicited pong")
            + _frame(0x0, b"world", fin=True)
            + _binary(0, b"")                           # empty data message
            + _binary(0, b"!")
            + _frame(OP_CLOSE, struct.pack("!H", 1000)))
    server.sendall(wire)
    tunnel = _tunnel(client)
    assert _drain(tunnel, 2) == b"hello world!"
    assert tunnel.recv_into(bytearray(10)) == 0  # stays at EOF
    reader = _Reader(server)
    op, _fin, payload = reader.frame()
    assert (op, payload) == (0xA, b"p1")        # pong echoes the ping
    op, _fin, payload = reader.frame()
    assert (op, payload) == (0x8, struct.pack("!H", 1000))  # close answered


def test_close_without_code_is_clean(pair):
    client, server = pair
    server.sendall(PREFIX + _binary(0, b"abc") + _frame(OP_CLOSE, b""))
    assert _drain(_tunnel(client)) == b"abc"


def test_fragmented_error_message(pair):
    client, server = pair
    server.sendall(PREFIX + _binary(0, b"partial") + _binary(1, b"error forwarding ", fin=False)
                   + _frame(0x0, b"port 52323: boom"))
    tunnel = _tunnel(client)
    buf = bytearray(100)
    assert tunnel.recv_into(buf) == 7
    with pytest.raises(PodPortError, match="error forwarding port 52323: boom"):
        tunnel.recv_into(buf)


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (PREFIX + _binary(2, b"x"), "unknown channel 2"),
        (PREFIX + _frame(0x1, b"\x00text"), "text frame"),
        (_binary(0, b"x"), "did not start with the port"),
        (PREFIX + _frame(0x0, b"orphan"), "continuation"),
        (PREFIX + bytes([0x82, 0x81, 0, 0, 0, 0, 0]), "masked frame"),
        (PREFIX + bytes([0xC2, 0x01, 0]), "reserved bits"),
        (PREFIX + _frame(0x9, b"x" * 126), "invalid control frame"),
        (PREFIX + _frame(0x3, b"x"), "unknown opcode"),
        (PREFIX + _frame(OP_BINARY, b""), "no channel byte"),
    ],
)
def test_protocol_violations(pair, wire, match):
    client, server = pair
    server.sendall(wire)
    with pytest.raises(TunnelProtocolError, match=match):
        _drain(_tunnel(client))


def test_bare_eof_is_an_error_not_a_clean_end(pair):
    client, server = pair
    server.sendall(PREFIX + _binary(0, b"abc"))
    server.shutdown(socket.SHUT_WR)
    tunnel = _tunnel(client)
    assert tunnel.recv_into(bytearray(10)) == 3
    with pytest.raises(TunnelClosedError, match="without a websocket close frame"):
        tunnel.recv_into(bytearray(10))


def test_frame_split_byte_by_byte_across_reads(pair):
    client, server = pair
    payload = os.urandom(70_000)
    wire = PREFIX + _binary(0, payload) + _frame(OP_CLOSE, struct.pack("!H", 1000))
    tunnel = _tunnel(client, buffer_size=1024)

    def feed():
        for i in range(0, 300):  # first bytes one at a time, then the rest
            server.sendall(wire[i : i + 1])
        server.sendall(wire[300:])

    t = threading.Thread(target=feed)
    t.start()
    try:
        assert _drain(tunnel, 100_000) == payload
    finally:
        t.join()


def test_large_error_text_and_small_buffer(pair):
    client, server = pair
    text = b"e" * 5000
    server.sendall(PREFIX + _binary(1, text))
    with pytest.raises(PodPortError) as err:
        _drain(_tunnel(client, buffer_size=1024))
    assert err.value.api_message == text.decode()


def test_idle_timeout_on_websocket(pair):
    client, server = pair
    server.sendall(PREFIX)
    tunnel = _tunnel(client)
    tunnel.settimeout(0.2)
    with pytest.raises(TunnelStalledError, match="no data for 0.2 s"):
        tunnel.recv_into(bytearray(10))


def test_large_send_is_fragmented_and_masked(pair):
    client, server = pair
    ws = WebSocket(client)
    data = os.urandom(2 * 1024 * 1024 + 5)
    t = threading.Thread(target=ws.send_binary, args=(data,))
    t.start()
    reader = _Reader(server)
    got = bytearray()
    ops = []
    while True:
        op, fin, payload = reader.frame()
        ops.append(op)
        got += payload
        if fin:
            break
    t.join()
    assert bytes(got) == data
    assert ops == [0x2, 0x0, 0x0]


def test_close_sends_a_close_frame(pair):
    client, server = pair
    ws = WebSocket(client)
    ws.close()
    ws.close()  # idempotent
    op, _fin, payload = _Reader(server).frame()
    assert op == 0x8 and payload == struct.pack("!H", 1000)
