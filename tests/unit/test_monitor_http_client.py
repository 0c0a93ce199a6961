"""MonitorClient: what it sends, and how dotnet-monitor's answers become typed errors."""

from __future__ import annotations

import json

import pytest

from kubectl_dotnet_monitor.errors import (
    BusyError,
    ExitCode,
    ForbiddenError,
    MonitorError,
    NotFoundError,
    UnavailableError,
)
from kubectl_dotnet_monitor.monitor.client import (
    MonitorClient,
    encode_query,
    monitor_error,
    operation_id_from_location,
)
from kubectl_dotnet_monitor.monitor.http import Headers

from .test_monitor_http import FakeTunnel

TOKEN = "eyJhbGciOiJFUzM4NCJ9.secret.sig"


def _answer(status: int, body: bytes = b"", headers: dict | None = None, reason: str = "X") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Tunnels:
    """open_tunnel() for the client: each call serves the next canned answer."""

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)
        self.opened: list[FakeTunnel] = []

    def __call__(self) -> FakeTunnel:
        tunnel = FakeTunnel(self.answers.pop(0), sizes=[5, 1000])
        self.opened.append(tunnel)
        return tunnel

    def request(self, i: int = 0) -> bytes:
        return bytes(self.opened[i].sent)


def _problem(detail: str, status: int = 400) -> bytes:
    return json.dumps({"type": "https://tools.ietf.org/html/rfc9110#section-15.5.1", "title": "Bad Request",
                       "status": status, "detail": detail}).encode()


def test_processes_sends_token_accept_and_host():
    procs = [{"pid": 1, "uid": "a-b", "name": "app", "isDefault": True}]
    tunnels = Tunnels(_answer(200, json.dumps(procs).encode(), {"Content-Type": "application/json"}))
    client = MonitorClient(tunnels, TOKEN)
    assert client.processes() == procs
    sent = tunnels.request()
    assert sent.startswith(b"GET /processes HTTP/1.1\r\nHost: localhost:52323\r\n")
    assert b"\r\nAccept: application/json\r\n" in sent
    assert f"\r\nAuthorization: Bearer {TOKEN}\r\n".encode() in sent
    assert b"\r\nConnection: keep-alive\r\n" in sent
    assert not tunnels.opened[0].closed and tunnels.opened[0].timeout == 30.0  # kept for the next request
    client.close()
    assert tunnels.opened[0].closed
    assert TOKEN not in repr(client)


def test_no_token_no_authorization_header():
    tunnels = Tunnels(_answer(200, b'{"version":"10.0.3"}'))
    assert MonitorClient(tunnels, None).info() == {"version": "10.0.3"}
    assert b"Authorization" not in tunnels.request()


def test_request_json_body_and_query():
    tunnels = Tunnels(_answer(200, b"[]"))
    query = {"uid": "u", "durationSeconds": 5, "egressProvider": None}
    MonitorClient(tunnels, TOKEN).request_json("POST", "/trace", query, body={"providers": [{"name": "X"}]})
    sent = tunnels.request()
    assert sent.startswith(b"POST /trace?uid=u&durationSeconds=5 HTTP/1.1\r\n")
    assert b"Content-Type: application/json\r\n" in sent
    assert sent.endswith(b'\r\n\r\n{"providers": [{"name": "X"}]}')


def test_delete_operation_stop():
    tunnels = Tunnels(_answer(202))
    MonitorClient(tunnels, TOKEN).delete_operation("0f1e", stop=True)
    assert tunnels.request().startswith(b"DELETE /operations/0f1e?stop=true HTTP/1.1\r\n")


def test_operation_and_location():
    tunnels = Tunnels(_answer(201, b'{"status":"Succeeded"}'))
    assert MonitorClient(tunnels, TOKEN).operation("abc")["status"] == "Succeeded"
    assert operation_id_from_location("http://localhost:52323/operations/1a2b") == "1a2b"
    assert operation_id_from_location("http://localhost:52323/other/1a2b") is None
    assert operation_id_from_location(None) is None


def test_open_stream_returns_the_unread_body():
    body = b"gcdump-bytes" * 1000
    wire = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Disposition: attachment; filename=x.gcdump\r\n\r\n"
            + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    tunnels = Tunnels(wire)
    resp = MonitorClient(tunnels, TOKEN).open_stream("GET", "/gcdump", {"uid": "u"}, "application/octet-stream")
    assert tunnels.opened[0].timeout is None  # waits as long as the collection takes
    with resp:
        assert resp.read() == body
    assert b"Accept: application/octet-stream\r\n" in tunnels.request()


def test_open_stream_429_is_busy_and_closes_the_tunnel():
    tunnels = Tunnels(_answer(429, _problem("Rate limit reached.", 429), {"Content-Type": "application/problem+json"}))
    with pytest.raises(BusyError) as err:
        MonitorClient(tunnels, TOKEN).open_stream("GET", "/gcdump", {"uid": "u"}, "*/*")
    assert err.value.exit_code == ExitCode.BUSY
    assert "another gcdump collection is running in this pod" in err.value.message
    assert "--wait" in err.value.hint
    assert tunnels.opened[0].closed


def test_invalid_json_is_a_monitor_error():
    with pytest.raises(MonitorError, match="invalid JSON"):
        MonitorClient(Tunnels(_answer(200, b"{nope")), TOKEN).info()


def test_processes_not_a_list():
    with pytest.raises(UnavailableError):
        MonitorClient(Tunnels(_answer(200, b"{}")), TOKEN).processes()


def test_token_never_in_error_messages():
    tunnels = Tunnels(_answer(401, b"", {"WWW-Authenticate": 'Bearer error="invalid_token", '
                                         'error_description="The token expired at 12:00"'}))
    with pytest.raises(ForbiddenError) as err:
        MonitorClient(tunnels, TOKEN).processes()
    assert TOKEN not in str(err.value)
    assert "rejected our API key (401): The token expired at 12:00" in err.value.message
    assert "re-inject" in err.value.hint


# -- monitor_error (pure) -------------------------------------------------------------------------

def _err(status: int, body: bytes = b"", headers: Headers | None = None, target: str = "/gcdump?uid=u", **kw):
    return monitor_error(status, "Reason", headers or Headers(), body, method="GET", target=target, **kw)


def test_400_problem_detail():
    e = _err(400, _problem("The 'Exceptions' feature is not enabled."))
    assert isinstance(e, MonitorError) and not isinstance(e, BusyError)
    assert e.exit_code == ExitCode.MONITOR
    assert e.message == "dotnet-monitor refused GET /gcdump?uid=u: The 'Exceptions' feature is not enabled."
    assert e.detail == "The 'Exceptions' feature is not enabled."


def test_400_no_target_process():
    e = _err(400, _problem("Unable to discover a target process."))
    assert isinstance(e, MonitorError) and "cannot find the target process" in e.message
    assert "prepared" in e.hint


@pytest.mark.parametrize("detail", [
    "Unable to select a single target process because multiple target processes have been discovered.",
    "No default process configuration has been set.",
])
def test_400_ambiguous_process(detail):
    e = _err(400, _problem(detail))
    assert "--pid, --uid or --process-name" in e.hint


def test_400_operation_not_found_is_not_found():
    e = _err(400, _problem("Operation not found."), target="/operations/1")
    assert isinstance(e, NotFoundError) and e.exit_code == ExitCode.NOT_FOUND


def test_400_empty_body_says_malformed_and_what_was_sent():
    e = _err(400, target="/trace?uid=u&profile=cpu")
    assert isinstance(e, MonitorError)
    assert "malformed" in e.message and "GET /trace?uid=u&profile=cpu" in e.message


def test_400_validation_problem_details_are_listed():
    body = json.dumps({"title": "One or more validation errors occurred.", "status": 400,
                       "errors": {"durationSeconds": ["The value 'x' is not valid."],
                                  "pid": ["bad", "worse"]}}).encode()
    e = _err(400, body)
    assert "One or more validation errors occurred." in e.message
    assert "durationSeconds: The value 'x' is not valid." in e.message
    assert "pid: bad; worse" in e.message


def test_403_subject_mismatch():
    e = _err(403)
    assert isinstance(e, ForbiddenError) and e.exit_code == ExitCode.FORBIDDEN and "subject" in e.message


def test_404_unknown_route():
    e = _err(404, target="/stacks?uid=u")
    assert isinstance(e, MonitorError) and "does not support stacks" in e.message


def test_406_and_500():
    assert "406" in _err(406, target="/logs").message
    e = _err(500, log_hint="kubectl logs -n ns pod -c dotnet-monitor")
    assert isinstance(e, MonitorError) and "500" in e.message
    assert "kubectl logs -n ns pod -c dotnet-monitor" in e.hint


def test_other_status():
    e = _err(418, b"")
    assert isinstance(e, MonitorError) and "418" in e.message


def test_encode_query():
    assert encode_query({"a": 1, "b": None, "c": True, "d": "x y"}) == "?a=1&c=true&d=x+y"
    assert encode_query({}) == "" and encode_query({"a": None}) == ""


# ------------------------------------------------------------------------------------------------
# keep-alive: one tunnel (one port-forward stream) for a JSON exchange and what follows


class ConversationTunnel(FakeTunnel):
    """Answers each request only once it was sent, like a server: ``answers[i]`` after request i."""

    def __init__(self, *answers: bytes, eof_after: int | None = None) -> None:
        super().__init__(b"", sizes=[7, 4096])
        self.answers = list(answers)
        self.requests = 0
        self.eof_after = eof_after

    def sendall(self, data: bytes) -> None:
        super().sendall(data)
        self.requests += 1
        if self.answers and (self.eof_after is None or self.requests <= self.eof_after):
            self.data += self.answers.pop(0)


class Opener:
    def __init__(self, *tunnels: FakeTunnel) -> None:
        self.tunnels = list(tunnels)
        self.opened: list[FakeTunnel] = []

    def __call__(self) -> FakeTunnel:
        tunnel = self.tunnels.pop(0)
        self.opened.append(tunnel)
        return tunnel


PROCS = _answer(200, b'[{"pid": 1, "uid": "u", "name": "app"}]', {"Content-Type": "application/json"})
INFO = _answer(200, b'{"version": "10.0.4"}', {"Content-Type": "application/json"})


def test_json_requests_share_one_tunnel():
    tunnel = ConversationTunnel(PROCS, INFO)
    opener = Opener(tunnel)
    client = MonitorClient(opener, TOKEN)
    assert client.processes()[0]["pid"] == 1
    assert client.info()["version"] == "10.0.4"
    assert len(opener.opened) == 1 and tunnel.requests == 2
    assert bytes(tunnel.sent).count(b"Connection: keep-alive") == 2


def test_connection_close_answer_is_not_reused():
    first = ConversationTunnel(_answer(200, b"[]", {"Connection": "close"}))
    second = ConversationTunnel(INFO)
    opener = Opener(first, second)
    client = MonitorClient(opener, TOKEN)
    assert client.processes() == []
    assert first.closed
    assert client.info()["version"] == "10.0.4"
    assert opener.opened == [first, second]


def test_an_idle_tunnel_the_monitor_closed_is_replaced():
    stale = ConversationTunnel(PROCS, INFO, eof_after=1)  # answers once, then the far end is gone
    fresh = ConversationTunnel(INFO)
    opener = Opener(stale, fresh)
    client = MonitorClient(opener, TOKEN)
    client.processes()
    assert client.info()["version"] == "10.0.4"
    assert stale.closed and opener.opened == [stale, fresh]


def test_an_artifact_stream_takes_the_idle_tunnel_and_closes_it():
    body = b"GCDUMP"
    tunnel = ConversationTunnel(PROCS, _answer(200, body, {"Content-Type": "application/octet-stream"}))
    opener = Opener(tunnel)
    client = MonitorClient(opener, TOKEN)
    client.processes()
    with client.open_stream("GET", "/gcdump", {"uid": "u"}, "application/octet-stream") as resp:
        assert resp.read() == body
    assert len(opener.opened) == 1
    assert bytes(tunnel.sent).rsplit(b"GET /gcdump", 1)[1].count(b"Connection: close") == 1
    assert tunnel.closed


def test_an_error_answer_closes_the_tunnel():
    tunnel = ConversationTunnel(_answer(429, _problem("Rate limit reached.", 429),
                                        {"Content-Type": "application/problem+json"}))
    client = MonitorClient(Opener(tunnel), TOKEN)
    with pytest.raises(BusyError):
        client.request_json("GET", "/gcdump")
    assert tunnel.closed
