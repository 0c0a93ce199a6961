"""PodTunnel against a scripted v4.channel.k8s.io server: handshake, refusals, channel errors, failures."""

from __future__ import annotations

import json
import socket
import time

import pytest

from kubectl_dotnet_monitor.errors import (
    ExitCode,
    ForbiddenError,
    NotFoundError,
    NotReadyError,
    UnavailableError,
)
from kubectl_dotnet_monitor.monitor import http
from kubectl_dotnet_monitor.tunnel.portforward import (
    PodPortError,
    PodTunnel,
    TunnelClosedError,
    TunnelError,
    TunnelForbiddenError,
    TunnelNotFoundError,
    TunnelProtocolError,
    TunnelStalledError,
    TunnelUnavailableError,
    error_channel_hint,
    upgrade_error,
)

from .wsv4_server import FakeConnection, Scenario, V4Server, make_cert, status_body

REFUSED = ("error forwarding port 52323 to pod 4f1c, uid : failed to connect to localhost:52323 inside "
           'namespace "8a1b", IPv4: dial tcp4 127.0.0.1:52323: connect: connection refused IPv6 dial tcp6 '
           "[::1]:52323: connect: connection refused ")
OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(str(tmp_path_factory.mktemp("tls")))


def _open(server: V4Server, cert=None, **kw) -> PodTunnel:
    conn = FakeConnection(server.url, ca_file=cert[0] if cert else None)
    return PodTunnel.open(conn, "default", "app-0", 52323, connect_timeout=kw.pop("connect_timeout", 5), **kw)


def _drain(tunnel: PodTunnel, size: int = 65536) -> bytes:
    out = bytearray()
    buf = memoryview(bytearray(size))
    while n := tunnel.recv_into(buf):
        out += buf[:n]
    return bytes(out)


# -- handshake ----------------------------------------------------------------------------------

@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_handshake_headers_and_request(tls, cert):
    with V4Server(Scenario(response=OK_RESPONSE), cert=cert if tls else None) as server:
        with _open(server, cert if tls else None) as tunnel:
            tunnel.sendall(b"GET /processes HTTP/1.1\r\nHost: localhost:52323\r\n\r\n")
            assert _drain(tunnel) == OK_RESPONSE
        report = server.report()
    h = report["headers"]
    assert report["request_line"] == "GET /api/v1/namespaces/default/pods/app-0/portforward?ports=52323 HTTP/1.1"
    assert h["upgrade"] == "websocket" and h["connection"] == "Upgrade"
    assert h["sec-websocket-protocol"] == "v4.channel.k8s.io"
    assert h["sec-websocket-version"] == "13"
    assert h["authorization"] == "Bearer s3cr3t-token"
    assert h["host"] == f"127.0.0.1:{server.port}"
    assert report["close_answer"] == 0x8  # we answered the server's close frame


def test_server_path_prefix_is_kept():
    with V4Server(Scenario(response=OK_RESPONSE)) as server:
        conn = FakeConnection(server.url + "/k8s/clusters/c-1")
        with PodTunnel.open(conn, "ns", "pod", 52323, connect_timeout=5) as tunnel:
            tunnel.sendall(b"GET / HTTP/1.1\r\n\r\n")
            _drain(tunnel)
        assert server.report()["request_line"].startswith(
            "GET /k8s/clusters/c-1/api/v1/namespaces/ns/pods/pod/portforward?ports=52323 ")


def test_tls_with_an_unknown_ca_fails_with_a_clear_message(cert, tmp_path):
    other = make_cert(str(tmp_path))
    with V4Server(Scenario(), cert=cert) as server:
        with pytest.raises(TunnelUnavailableError, match="TLS verification") as err:
            _open(server, other)
    assert err.value.exit_code == ExitCode.UNAVAILABLE


def test_bad_accept_key_is_rejected():
    with V4Server(Scenario(bad_accept=True)) as server, pytest.raises(TunnelProtocolError, match="Accept"):
        _open(server)


def test_other_subprotocol_is_rejected():
    with V4Server(Scenario(protocol="v4.base64.channel.k8s.io")) as server:
        with pytest.raises(TunnelProtocolError, match="subprotocol"):
            _open(server)


def test_connect_timeout_covers_the_upgrade():
    with V4Server(Scenario(never_answer=True)) as server:
        start = time.monotonic()
        with pytest.raises(TunnelStalledError, match="timed out after 0.5 s"):
            _open(server, connect_timeout=0.5)
        assert time.monotonic() - start < 3


def test_connection_refused():
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(TunnelUnavailableError, match="cannot connect"):
        PodTunnel.open(FakeConnection(f"http://127.0.0.1:{port}"), "default", "p", 52323, connect_timeout=2)


# -- refused upgrades ----------------------------------------------------------------------------

def test_403_names_the_missing_permission():
    msg = ('pods "app-0" is forbidden: User "alice" cannot get resource "pods/portforward" '
           'in API group "" in the namespace "default"')
    sc = Scenario(status=403, refusal_reason="Forbidden", refusal_body=status_body(403, "Forbidden", msg))
    with V4Server(sc) as server, pytest.raises(TunnelForbiddenError) as err:
        _open(server)
    e = err.value
    assert isinstance(e, ForbiddenError) and e.exit_code == ExitCode.FORBIDDEN
    assert e.status == 403 and e.api_message == msg
    assert "missing `get` on `pods/portforward`" in e.message and msg in e.message
    assert "create" in e.hint


def test_404_is_not_found():
    sc = Scenario(status=404, refusal_reason="Not Found",
                  refusal_body=status_body(404, "NotFound", 'pods "app-0" not found'))
    with V4Server(sc) as server, pytest.raises(TunnelNotFoundError) as err:
        _open(server)
    assert isinstance(err.value, NotFoundError) and 'pods "app-0" not found' in str(err.value)


@pytest.mark.parametrize(
    ("status", "body", "kind", "text"),
    [
        (401, b'{"kind":"Status","message":"Unauthorized","code":401}', ForbiddenError, "rejected our credentials"),
        (400, status_body(400, "BadRequest", "pod app-0 does not have a host assigned"), NotReadyError,
         "does not have a host assigned"),
        (400, status_body(400, "BadRequest", "Upgrade request required"), UnavailableError,
         "Upgrade request required"),
        (500, b"<html>oops</html>", UnavailableError, "500"),
        (503, status_body(503, "ServiceUnavailable", "no endpoints"), UnavailableError, "no endpoints"),
        (200, b"{}", UnavailableError, "instead of upgrading"),
    ],
)
def test_refusals_are_typed(status, body, kind, text):
    with V4Server(Scenario(status=status, refusal_body=body)) as server, pytest.raises(kind) as err:
        _open(server)
    assert isinstance(err.value, TunnelError)
    assert err.value.status == status
    assert text in str(err.value)


def test_upgrade_error_with_both_verbs_and_no_body():
    msg = 'User "bob" cannot create resource "pods/portforward" in API group ""'
    e = upgrade_error(403, "Forbidden", json.dumps({"message": msg}).encode(), "ns", "p", 52323, "x")
    assert "missing `create`" in e.message
    e = upgrade_error(403, "Forbidden", b"", "ns", "p", 52323, "x")
    assert "missing `get` and `create`" in e.message


# -- error channel and stream failures ------------------------------------------------------------

def test_error_channel_before_data():
    with V4Server(Scenario(error_before=REFUSED, response=b"")) as server:
        with _open(server) as tunnel:
            tunnel.sendall(b"GET / HTTP/1.1\r\n\r\n")
            with pytest.raises(PodPortError) as err:
                _drain(tunnel)
            with pytest.raises(PodPortError):  # keeps failing, never a clean EOF afterwards
                _drain(tunnel)
    e = err.value
    assert isinstance(e, UnavailableError)
    assert "connection refused" in e.message and e.api_message == REFUSED.strip()
    assert "nothing listens on port 52323 in the pod: is dotnet-monitor running" in e.hint


def test_error_channel_after_data():
    with V4Server(Scenario(response=b"x" * 100_000, error_after="error forwarding port 52323: reset")) as server:
        with _open(server) as tunnel:
            tunnel.sendall(b"GET / HTTP/1.1\r\n\r\n")
            got = bytearray()
            buf = memoryview(bytearray(65536))
            with pytest.raises(PodPortError, match="reset"):
                while n := tunnel.recv_into(buf):
                    got += buf[:n]
    assert len(got) == 100_000


def test_error_channel_hints():
    assert error_channel_hint("dial tcp4 127.0.0.1:1: connect: connection refused", 1).startswith("nothing listens")
    assert error_channel_hint("something else", 1) is None


def test_wrong_port_prefix_is_a_protocol_error():
    with V4Server(Scenario(port=8080, response=OK_RESPONSE)) as server:
        with _open(server) as tunnel:
            tunnel.sendall(b"GET / HTTP/1.1\r\n\r\n")
            with pytest.raises(TunnelProtocolError, match="port 8080"):
                _drain(tunnel)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_reset_mid_stream(tls, cert):
    with V4Server(Scenario(response=b"y" * 3_000_000, ending="reset"), cert=cert if tls else None) as server:
        with _open(server, cert if tls else None) as tunnel:
            tunnel.sendall(b"GET / HTTP/1.1\r\n\r\n")
            time.sleep(0.3)  # let the reset arrive while data is still unread
            with pytest.raises(TunnelClosedError) as err:
                _drain(tunnel)
    assert isinstance(err.value, UnavailableError)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_eof_without_close_frame(tls, cert):
    with V4Server(Scenario(response=b"z" * 50_000, ending="eof"), cert=cert if tls else None) as server:
        with _open(server, cert if tls else None) as tunnel:
            tunnel.sendall(b"GET / HTTP/1.1\r\n\r\n")
            with pytest.raises(TunnelClosedError, match="without a websocket close frame|TLS|reset"):
                _drain(tunnel)


def test_abnormal_close_code_is_an_error():
    with V4Server(Scenario(response=b"z" * 10, ending="close-abnormal")) as server:
        with _open(server) as tunnel:
            tunnel.sendall(b"GET / HTTP/1.1\r\n\r\n")
            with pytest.raises(TunnelClosedError, match="code 1011: kubelet went away"):
                _drain(tunnel)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_stall_fires_the_idle_timeout(tls, cert):
    sc = Scenario(response=b"a" * 1000, ending="stall", stall_seconds=5)
    with V4Server(sc, cert=cert if tls else None) as server:
        with _open(server, cert if tls else None) as tunnel:
            tunnel.settimeout(0.4)
            tunnel.sendall(b"GET / HTTP/1.1\r\n\r\n")
            start = time.monotonic()
            with pytest.raises(TunnelStalledError, match="stalled: no data for 0.4 s") as err:
                _drain(tunnel)
            assert 0.3 < time.monotonic() - start < 2
    assert err.value.seconds == 0.4


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_keepalive_pings_while_waiting_then_data_arrives(tls, cert):
    sc = Scenario(response=OK_RESPONSE, delay_before_response=1.2)
    with V4Server(sc, cert=cert if tls else None) as server:
        with _open(server, cert if tls else None, keepalive=0.25) as tunnel:
            tunnel.settimeout(3)
            tunnel.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert _drain(tunnel) == OK_RESPONSE
        assert server.report()["pings"] >= 3


def test_keepalive_does_not_extend_the_idle_timeout():
    with V4Server(Scenario(response=OK_RESPONSE, delay_before_response=3)) as server:
        with _open(server, keepalive=0.2) as tunnel:
            tunnel.settimeout(0.7)
            tunnel.sendall(b"GET / HTTP/1.1\r\n\r\n")
            start = time.monotonic()
            with pytest.raises(TunnelStalledError):
                _drain(tunnel)
            assert 0.6 < time.monotonic() - start < 1.5


def test_server_ping_is_answered():
    with V4Server(Scenario(response=OK_RESPONSE, ping_before_data=True)) as server:
        with _open(server) as tunnel:
            tunnel.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert _drain(tunnel) == OK_RESPONSE
        assert server.report()["pong"] == b"hello"


def test_http_over_tunnel_error_before_head_is_the_kubelet_message():
    with V4Server(Scenario(error_before=REFUSED)) as server:
        with pytest.raises(PodPortError, match="connection refused"):
            http.request(_open(server), "GET", "/processes", [("Accept", "application/json")])


# -- proxy and credential refresh -----------------------------------------------------------------

class _ConnectProxy:
    """A one-connection HTTP CONNECT proxy (thread) that relays to the target."""

    def __init__(self, status: int = 200) -> None:
        import threading

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://user:p%40ss@127.0.0.1:{self.listener.getsockname()[1]}"
        self.status = status
        self.request = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import threading

        client, _ = self.listener.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += client.recv(4096)
        self.request = data
        if self.status != 200:
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        host, port = data.split(b" ")[1].decode().rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(src, dst):
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        t = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        t.start()
        pipe(client, upstream)
        t.join(5)
        client.close()
        upstream.close()

    def close(self) -> None:
        self.listener.close()


class _TlsSettings:
    def __init__(self, proxy_url=None):
        self.proxy_url = proxy_url


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_http_connect_proxy(tls, cert):
    proxy = _ConnectProxy()
    try:
        with V4Server(Scenario(response=OK_RESPONSE), cert=cert if tls else None) as server:
            conn = FakeConnection(server.url, ca_file=cert[0] if tls else None)
            conn.tls = _TlsSettings(proxy.url)
            with PodTunnel.open(conn, "default", "app-0", 52323, connect_timeout=5) as tunnel:
                tunnel.sendall(b"GET / HTTP/1.1\r\n\r\n")
                assert _drain(tunnel) == OK_RESPONSE
    finally:
        proxy.close()
    assert proxy.request.startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n".encode())
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in proxy.request  # user:p@ss


def test_proxy_refusal_and_unsupported_scheme():
    proxy = _ConnectProxy(status=407)
    conn = FakeConnection("http://127.0.0.1:1")
    conn.tls = _TlsSettings(proxy.url)
    try:
        with pytest.raises(TunnelUnavailableError, match="407"):
            PodTunnel.open(conn, "default", "p", 52323, connect_timeout=5)
    finally:
        proxy.close()
    conn.tls = _TlsSettings("socks5://127.0.0.1:1080")
    with pytest.raises(TunnelUnavailableError, match="only http:// proxies"):
        PodTunnel.open(conn, "default", "p", 52323, connect_timeout=5)


def test_401_retries_once_with_refreshed_credentials():
    sc = Scenario(status=401, refusal_body=b'{"kind":"Status","message":"Unauthorized","code":401}')
    with V4Server(sc, connections=2) as server:
        conn = FakeConnection(server.url)
        calls = []
        conn.refresh_credentials = lambda: calls.append(1) or True
        with pytest.raises(TunnelForbiddenError):
            PodTunnel.open(conn, "default", "p", 52323, connect_timeout=5)
        assert len(calls) == 1
        assert server.report() and server.report()  # two upgrade attempts
