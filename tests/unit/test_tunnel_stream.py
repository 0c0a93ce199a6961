"""Bodies through the whole data path: websocket v4 server -> PodTunnel -> HTTP body reader.

Exact bytes (SHA-256) over odd frame and chunk sizes, plain TCP and TLS; truncation; bounded memory
for a 256 MiB body; one short throughput figure (printed, see ``-s``).
"""

from __future__ import annotations

import hashlib
import random
import time
import tracemalloc

import pytest

from kubectl_dotnet_monitor.errors import UnavailableError
from kubectl_dotnet_monitor.monitor import http
from kubectl_dotnet_monitor.tunnel.portforward import PodTunnel, TunnelClosedError

from .wsv4_server import FakeConnection, Scenario, V4Server, chunked, make_cert

MiB = 1024 * 1024
HEAD_CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Transfer-Encoding: chunked\r\nLocation: http://localhost:52323/operations/x\r\n\r\n")


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(str(tmp_path_factory.mktemp("tls")))


def _random_body(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def _rotating_blocks(total: int):
    """``total`` bytes as views of one 1 MiB random block, rotated per block (cheap to generate)."""
    block = memoryview(random.Random(3).randbytes(MiB))
    sent = i = 0
    while sent < total:
        k = (i * 7919) % MiB
        for part in (block[k:], block[:k]):
            part = part[: total - sent]
            if part:
                yield part
                sent += len(part)
        i += 1


def _open(server: V4Server, cert=None, **kw) -> PodTunnel:
    conn = FakeConnection(server.url, ca_file=cert[0] if cert else None)
    return PodTunnel.open(conn, "default", "app-0", 52323, connect_timeout=5, **kw)


def _get(tunnel: PodTunnel) -> http.HttpResponse:
    return http.request(tunnel, "GET", "/gcdump?uid=abc", [("Accept", "*/*")])


ODD_FRAMES = [1, 1, 2, 3, 32 * 1024, MiB, 5, 7, 32 * 1024 - 1, 13, 65536 + 3, 1]
ODD_CHUNKS = [1, 17, 4093, 65536, 300_001, 2, 32 * 1024]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_multi_mib_chunked_body_exact_bytes(tls, cert):
    body = _random_body(5 * MiB + 12345)
    sc = Scenario(response=lambda: [HEAD_CHUNKED, *chunked([body], ODD_CHUNKS)], frame_sizes=ODD_FRAMES)
    with V4Server(sc, cert=cert if tls else None) as server:
        resp = _get(_open(server, cert if tls else None))
        with resp:
            assert resp.status == 200 and resp.chunked
            digest = hashlib.sha256()
            for piece in resp.iter_chunks(256 * 1024):
                digest.update(piece)
            assert resp.complete
        assert digest.hexdigest() == hashlib.sha256(body).hexdigest()
        assert resp.bytes_read == len(body)
        report = server.report()
        assert report["request_line"].startswith("GET /api/v1/namespaces/default/pods/app-0/portforward?ports=52323 ")
        assert report["http_request"].startswith(b"GET /gcdump?uid=abc HTTP/1.1\r\nHost: localhost:52323\r\n")


def test_one_byte_frames_split_every_chunk_header():
    body = _random_body(40_000, seed=11)
    sc = Scenario(response=lambda: [HEAD_CHUNKED, *chunked([body], [1, 3, 1000, 7])], frame_sizes=[1])
    with V4Server(sc) as server:
        with _get(_open(server)) as resp:
            got = resp.read()
    assert got == body


def test_read_into_small_caller_buffers():
    body = _random_body(3 * MiB, seed=5)
    sc = Scenario(response=lambda: [HEAD_CHUNKED, *chunked([body], [MiB + 1, 9])], frame_sizes=[MiB, 1, 32768])
    with V4Server(sc) as server:
        with _get(_open(server)) as resp:
            out = bytearray()
            buf = memoryview(bytearray(1000))
            while n := resp.read_into(buf):
                out += buf[:n]
    assert bytes(out) == body


def test_content_length_body():
    body = _random_body(2 * MiB + 1)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    with V4Server(Scenario(response=head + body, frame_sizes=[4096, 1, 70000])) as server:
        with _get(_open(server)) as resp:
            assert resp.content_length == len(body)
            assert resp.read(4 * MiB) == body


def test_chunked_missing_terminator_is_truncation():
    body = _random_body(300_000)
    encoded = b"".join(bytes(p) for p in chunked([body], [65536]))
    cut = encoded[: -len(b"0\r\n\r\n")]
    with V4Server(Scenario(response=HEAD_CHUNKED + cut, ending="close")) as server:
        with _get(_open(server)) as resp, pytest.raises(http.TruncatedError) as err:
            resp.read()
    assert err.value.received == len(body)
    assert f"{len(body):,} bytes arrived" in str(err.value)
    assert isinstance(err.value, UnavailableError)


def test_chunked_cut_mid_chunk_is_truncation():
    encoded = b"".join(bytes(p) for p in chunked([_random_body(100_000)], [65536]))
    with V4Server(Scenario(response=HEAD_CHUNKED + encoded[:70_000], ending="close")) as server:
        with _get(_open(server)) as resp, pytest.raises(http.TruncatedError):
            resp.read()


def test_content_length_short_body_is_truncation():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    with V4Server(Scenario(response=head + b"x" * 600, ending="close")) as server:
        with _get(_open(server)) as resp, pytest.raises(http.TruncatedError) as err:
            resp.read()
    assert "600 of 1,000 bytes" in str(err.value)


def test_eof_without_close_frame_mid_body_is_an_error():
    encoded = b"".join(bytes(p) for p in chunked([_random_body(500_000)], [65536]))
    with V4Server(Scenario(response=HEAD_CHUNKED + encoded[:200_000], ending="eof")) as server:
        with _get(_open(server)) as resp, pytest.raises(TunnelClosedError):
            resp.read()


def test_256_mib_body_memory_is_bounded():
    total = 256 * MiB

    def response():
        yield HEAD_CHUNKED
        yield from chunked(_rotating_blocks(total), [64 * 1024])

    expected = hashlib.sha256()
    for part in _rotating_blocks(total):
        expected.update(part)
    with V4Server(Scenario(response=response, frame_sizes=[32 * 1024])) as server:
        tunnel = _open(server)
        tracemalloc.start()
        try:
            with _get(tunnel) as resp:
                digest = hashlib.sha256()
                for piece in resp.iter_chunks(MiB):
                    digest.update(piece)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert resp.bytes_read == total
    assert digest.hexdigest() == expected.hexdigest()
    assert peak < 4 * MiB, f"peak traced memory {peak:,} bytes"


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_throughput_figure(tls, cert, capsys):
    """Not a pass/fail speed test: prints MB/s for a 128 MiB body (server in another process)."""
    total = 128 * MiB

    def response():
        yield HEAD_CHUNKED
        yield from chunked(_rotating_blocks(total), [64 * 1024])

    with V4Server(Scenario(response=response, frame_sizes=[32 * 1024]), cert=cert if tls else None) as server:
        tunnel = _open(server, cert if tls else None)
        start = time.perf_counter()
        with _get(tunnel) as resp:
            for _piece in resp.iter_chunks(MiB):
                pass
        elapsed = time.perf_counter() - start
    assert resp.bytes_read == total
    with capsys.disabled():
        print(f"\n[throughput] {'tls' if tls else 'plain'}: {total / MiB:.0f} MiB in {elapsed:.2f} s "
              f"= {total / elapsed / 1e6:.0f} MB/s (server and client on the same 2 shared cores)")
