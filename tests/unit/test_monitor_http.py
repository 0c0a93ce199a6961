"""HTTP/1.1 over a tunnel: request bytes, response head, body framing and truncation (fake tunnel)."""

from __future__ import annotations

import itertools
import os

import pytest

from kubectl_dotnet_monitor.errors import UnavailableError
from kubectl_dotnet_monitor.monitor import http


class FakeTunnel:
    """Serves ``data`` in pieces of the cycled ``sizes``; then a clean EOF or ``end_error``."""

    def __init__(self, data: bytes, sizes=(1 << 20,), end_error: Exception | None = None) -> None:
        self.data = data
        self.pos = 0
        self.sizes = itertools.cycle(sizes)
        self.end_error = end_error
        self.sent = bytearray()
        self.timeout = "unset"
        self.closed = False
        self.recv_calls = 0

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv_into(self, buf) -> int:
        self.recv_calls += 1
        if self.pos >= len(self.data):
            if self.end_error:
                raise self.end_error
            return 0
        n = min(len(buf), next(self.sizes), len(self.data) - self.pos)
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n

    def settimeout(self, seconds):
        self.timeout = seconds

    def close(self) -> None:
        self.closed = True


def chunked(body: bytes, sizes, ext: bytes = b"", trailers: bytes = b"") -> bytes:
    out = bytearray()
    pos = 0
    for size in itertools.cycle(sizes):
        if pos >= len(body):
            break
        piece = body[pos : pos + size]
        out += b"%x%s\r\n" % (len(piece), ext) + piece + b"\r\n"
        pos += size
    return bytes(out) + b"0\r\n" + trailers + b"\r\n"


HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n"


def test_encode_request():
    raw = http.encode_request("GET", "/gcdump?uid=1", [("Accept", "*/*"), ("Authorization", "Bearer t")])
    assert raw == (b"GET /gcdump?uid=1 HTTP/1.1\r\nHost: localhost:52323\r\nAccept: */*\r\n"
                   b"Authorization: Bearer t\r\nConnection: close\r\n\r\n")
    raw = http.encode_request("POST", "/trace", {"Content-Type": "application/json"}, b'{"a":1}')
    assert raw.endswith(b"Content-Length: 7\r\n\r\n{\"a\":1}")
    assert b"Content-Length: 0" in http.encode_request("POST", "/x", {})
    with pytest.raises(ValueError):
        http.encode_request("GET", "/", {"X": "a\r\nInjected: 1"})


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 4096, 1 << 20])
def test_chunked_body_any_split(piece):
    body = os.urandom(50_000)
    tunnel = FakeTunnel(HEAD + chunked(body, [1, 10, 4093, 20_000]), sizes=[piece])
    resp = http.request(tunnel, "GET", "/gcdump")
    assert resp.status == 200 and resp.chunked and resp.content_length is None
    assert resp.read() == body
    assert resp.complete and resp.bytes_read == len(body)
    assert resp.read_into(bytearray(10)) == 0


def test_chunk_extensions_trailers_and_uppercase_hex():
    body = os.urandom(300)
    wire = HEAD + b"12C;name=value\r\n" + body + b"\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n"
    assert http.request(FakeTunnel(wire), "GET", "/").read() == body


def test_read_into_respects_caller_buffer_and_reads_directly_from_the_tunnel():
    body = os.urandom(1_000_000)
    wire = HEAD + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    tunnel = FakeTunnel(wire, sizes=[64 * 1024])
    resp = http.request(tunnel, "GET", "/")
    buf = bytearray(100_000)
    out = bytearray()
    while n := resp.read_into(buf):
        assert n <= len(buf)
        out += buf[:n]
    assert bytes(out) == body
    assert tunnel.recv_calls < 40  # large pieces, not byte-sized reads


def test_missing_terminator_is_truncation():
    body = os.urandom(10_000)
    wire = HEAD + chunked(body, [4000])[: -len(b"0\r\n\r\n")]
    with pytest.raises(http.TruncatedError) as err:
        http.request(FakeTunnel(wire), "GET", "/").read()
    assert err.value.received == 10_000 and err.value.expected is None
    assert "10,000 bytes arrived" in err.value.message
    assert isinstance(err.value, UnavailableError)


@pytest.mark.parametrize("cut", [1, 2, 3, 10, 4004, 4005, 4006])
def test_cut_anywhere_is_truncation(cut):
    wire = HEAD + chunked(os.urandom(8000), [4000])
    with pytest.raises(http.TruncatedError):
        http.request(FakeTunnel(wire[:-cut]), "GET", "/").read()


def test_missing_crlf_after_chunk_is_corruption():
    wire = HEAD + b"3\r\nabcX\r\n0\r\n\r\n"
    with pytest.raises(http.HttpProtocolError, match="not followed by CRLF"):
        http.request(FakeTunnel(wire), "GET", "/").read()


@pytest.mark.parametrize("size_line", [b"zz", b"", b"-1", b"0x10", b"1" * 17])
def test_bad_chunk_size(size_line):
    wire = HEAD + size_line + b"\r\nabc\r\n0\r\n\r\n"
    with pytest.raises(http.HttpProtocolError, match="bad chunk size"):
        http.request(FakeTunnel(wire), "GET", "/").read()


def test_endless_chunk_header_is_bounded():
    wire = HEAD + b"1" + b" " * 100_000
    with pytest.raises(http.HttpProtocolError, match="too long"):
        http.request(FakeTunnel(wire, sizes=[1000]), "GET", "/").read()


def test_content_length_body_and_short_body():
    body = os.urandom(5000)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
    resp = http.request(FakeTunnel(head + body, sizes=[333]), "GET", "/")
    assert resp.content_length == 5000 and resp.read() == body
    with pytest.raises(http.TruncatedError) as err:
        http.request(FakeTunnel(head + body[:4000]), "GET", "/").read()
    assert (err.value.received, err.value.expected) == (4000, 5000)
    assert "4,000 of 5,000 bytes" in err.value.message


def test_content_length_does_not_read_past_the_body():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    tunnel = FakeTunnel(head + b"abc" + b"garbage", end_error=AssertionError("read past the body"))
    assert http.request(tunnel, "GET", "/").read() == b"abc"


def test_transfer_encoding_wins_over_content_length():
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert http.request(FakeTunnel(wire), "GET", "/").read() == b"abc"


def test_read_until_close_without_length():
    wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello until close"
    resp = http.request(FakeTunnel(wire, sizes=[5]), "GET", "/")
    assert resp.read() == b"hello until close" and resp.complete


def test_read_until_close_propagates_tunnel_errors():
    wire = b"HTTP/1.1 200 OK\r\n\r\npartial"
    with pytest.raises(UnavailableError, match="reset"):
        http.request(FakeTunnel(wire, end_error=UnavailableError("reset")), "GET", "/").read()


def test_no_body_statuses_and_head():
    resp = http.request(FakeTunnel(b"HTTP/1.1 204 No Content\r\n\r\n"), "DELETE", "/x")
    assert resp.complete and resp.read() == b""
    resp = http.request(FakeTunnel(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"), "HEAD", "/x")
    assert resp.read() == b""


def test_interim_responses_are_skipped():
    wire = (b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 202 Accepted\r\nLocation: http://x/operations/1\r\nContent-Length: 0\r\n\r\n")
    resp = http.request(FakeTunnel(wire, sizes=[7]), "GET", "/")
    assert resp.status == 202 and resp.headers["location"] == "http://x/operations/1"


def test_headers_are_case_insensitive_and_multi_valued():
    wire = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\nX-A: 1\r\nx-a: 2\r\n"
            b"Content-Length: 0\r\n\r\n")
    resp = http.request(FakeTunnel(wire), "GET", "/")
    assert resp.status == 400 and resp.reason == "Bad Request"
    assert resp.headers.get("Content-Type") == "application/problem+json" == resp.content_type
    assert resp.headers.get_all("X-A") == ["1", "2"] and resp.headers.get("x-a") == "1, 2"
    assert "CONTENT-TYPE" in resp.headers and resp.headers.get("missing") is None


@pytest.mark.parametrize(
    "wire", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n", b"HTTP/1.1 200 OK\r\nbad line\r\n\r\n"])
def test_malformed_heads(wire):
    with pytest.raises(http.HttpProtocolError):
        http.request(FakeTunnel(wire), "GET", "/")


def test_oversized_head():
    with pytest.raises(http.HttpProtocolError, match="32 KiB"):
        http.request(FakeTunnel(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20_000), "GET", "/")


def test_no_response_at_all():
    with pytest.raises(http.TruncatedError, match="before any response"):
        http.request(FakeTunnel(b""), "GET", "/")
    with pytest.raises(http.TruncatedError, match="middle of the response head"):
        http.request(FakeTunnel(b"HTTP/1.1 200 OK\r\n"), "GET", "/")


def test_invalid_content_length():
    with pytest.raises(http.HttpProtocolError):
        http.request(FakeTunnel(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"), "GET", "/")


def test_read_limit_and_close():
    body = b"x" * 2000
    tunnel = FakeTunnel(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + body)
    with http.request(tunnel, "GET", "/") as resp:
        resp.settimeout(5)
        with pytest.raises(http.HttpProtocolError, match="larger than"):
            resp.read(limit=1000)
    assert tunnel.closed and tunnel.timeout == 5


def test_iter_chunks_reuses_one_buffer():
    body = os.urandom(300_000)
    resp = http.request(FakeTunnel(HEAD + chunked(body, [70_000])), "GET", "/")
    pieces = [bytes(p) for p in resp.iter_chunks(50_000)]
    assert b"".join(pieces) == body and max(map(len, pieces)) <= 50_000


class ReadyTunnel(FakeTunnel):
    """A fake tunnel that says whether more data is already there (lets iter_chunks batch)."""

    def data_ready(self) -> bool:
        return self.pos < len(self.data)


def test_iter_chunks_batches_what_is_already_there():
    body = os.urandom(1_000_000)
    resp = http.request(ReadyTunnel(HEAD + chunked(body, [70_000]), sizes=[16 * 1024]), "GET", "/")
    pieces = [bytes(p) for p in resp.iter_chunks(256 * 1024)]
    assert b"".join(pieces) == body
    assert len(pieces) <= 6  # ~256 KiB per piece, not 16 KiB reads
