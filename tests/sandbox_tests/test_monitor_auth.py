"""API-key authentication of the simulated dotnet-monitor (reference §5)."""

from __future__ import annotations

import time

import pytest

from tests.sandbox.monitor import start_monitor
from tests.sandbox.monitor.auth import ApiKeyValidator
from tests.sandbox.monitor.testing import (FakeNetwork, ListRecorder, monitor_container, new_key, prepared_pod,
                                           request, scenario, sign)


def _start(env=None, args=None):
    h = start_monitor(prepared_pod(), monitor_container(env=env, args=args), scenario(), FakeNetwork(), ListRecorder())
    return h, h.ports[52323]


@pytest.fixture(scope="module")
def es384():
    return new_key("ES384")


@pytest.fixture(scope="module")
def monitor(es384):
    h, port = _start(es384.env())
    yield port
    h.stop()


def _get(port, token, path="/processes"):
    return request(port, "GET", path, {"Authorization": f"Bearer {token}"} if token is not None else {})


def test_valid_es384_token(monitor, es384):
    assert _get(monitor, es384.token()).status == 200


def test_wrong_subject_is_403_with_empty_body(monitor, es384):
    r = _get(monitor, es384.token(sub="someone-else"))
    assert (r.status, r.body, r.header("WWW-Authenticate")) == (403, b"", None)


@pytest.mark.parametrize("claims", [
    {"exp": int(time.time()) - 400},                 # expired beyond the 5-minute skew
    {"aud": "https://example.com"},
    {"iss": "https://example.com/issuer"},
    {"exp": None},
])
def test_invalid_claims_are_401_with_error(monitor, es384, claims):
    r = _get(monitor, es384.token(**claims))
    assert r.status == 401 and r.body == b""
    assert r.header("WWW-Authenticate").startswith('Bearer error="invalid_token"')


def test_expired_within_skew_still_accepted(monitor, es384):
    assert _get(monitor, es384.token(exp=int(time.time()) - 60)).status == 200


def test_hs256_and_other_key_rejected(monitor, es384):
    claims = {"aud": "https://github.com/dotnet/dotnet-monitor",
              "iss": "https://github.com/dotnet/dotnet-monitor/generatekey+MonitorApiKey",
              "sub": es384.subject, "exp": int(time.time()) + 600}
    assert _get(monitor, sign(None, "HS256", claims)).status == 401
    other = new_key("ES384")
    assert _get(monitor, sign(other.private, "ES384", claims)).status == 401


def test_no_token_is_plain_bearer_challenge(monitor):
    r = _get(monitor, None)
    assert (r.status, r.header("WWW-Authenticate"), r.body) == (401, "Bearer", b"")


def test_metrics_never_authenticated(monitor):
    assert _get(monitor, None, "/metrics").status == 200


@pytest.mark.parametrize("alg", ["ES256", "ES512", "RS256", "RS384", "RS512"])
def test_other_allowed_algorithms(alg):
    key = new_key(alg)
    v = ApiKeyValidator(key.subject, key.public_key_config, None)
    assert v.check(f"Bearer {key.token()}").allowed
    assert v.check(f"bearer {key.token()}").allowed          # scheme case-insensitive


def test_no_key_configured_everything_401():
    h, port = _start()
    try:
        assert _get(port, None).status == 401
        assert _get(port, new_key().token()).status == 401
        assert _get(port, None, "/metrics").status == 200
    finally:
        h.stop()


def test_invalid_public_key_everything_401(es384):
    h, port = _start({**es384.env(), "DotnetMonitor_Authentication__MonitorApiKey__PublicKey": es384.public_key_config + "="})
    try:
        assert _get(port, es384.token()).status == 401
        assert any('"EventId": 21' in line for line in h.logs)
    finally:
        h.stop()


def test_no_auth_opens_everything():
    h, port = _start(args=["collect", "--no-auth"])
    try:
        assert _get(port, None).status == 200
    finally:
        h.stop()


def test_temp_apikey_logged_and_accepted():
    h, port = _start(args=["collect", "--temp-apikey", "--urls", "http://localhost:52323"])
    try:
        line = next(line for line in h.logs if '"EventId": 23' in line)
        token = line.split("Authorization: Bearer ")[1].split("\\n")[0].split('"')[0]
        assert _get(port, token).status == 200
        assert _get(port, None).status == 401
    finally:
        h.stop()
