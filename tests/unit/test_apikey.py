"""API keys: the public key config dotnet-monitor parses, and tokens it accepts.

The token is checked independently with ``cryptography`` only: decode the parts, rebuild the public
key from the JWK in the config value, verify the raw r||s signature.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kubectl_dotnet_monitor.errors import ConfigError, UsageError
from kubectl_dotnet_monitor.inject.apikey import (
    AUDIENCE,
    ISSUER,
    ApiKey,
    api_key_from_pem,
    generate_api_key,
    mint_token,
)


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_key_from_config(config: str) -> ec.EllipticCurvePublicKey:
    jwk = json.loads(_b64url_decode(config))
    assert set(jwk) == {"kty", "crv", "x", "y"}
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-384"
    x, y = _b64url_decode(jwk["x"]), _b64url_decode(jwk["y"])
    assert len(x) == 48 and len(y) == 48
    numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP384R1())
    return numbers.public_key()


def _verify(token: str, public_key: ec.EllipticCurvePublicKey) -> tuple[dict, dict]:
    header_b64, payload_b64, signature_b64 = token.split(".")
    raw = _b64url_decode(signature_b64)
    assert len(raw) == 96, "ES384 signature must be raw r||s, 96 bytes"
    der = encode_dss_signature(int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big"))
    public_key.verify(der, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA384()))
    return json.loads(_b64url_decode(header_b64)), json.loads(_b64url_decode(payload_b64))


@pytest.fixture(scope="module")
def key() -> ApiKey:
    return generate_api_key()


def test_public_key_config_is_base64url_jwk_without_padding(key):
    config = key.public_key_config()
    assert re.fullmatch(r"[0-9a-zA-Z_-]+", config)
    # Compact JSON, lowercase RFC member names, no private member.
    decoded = _b64url_decode(config)
    assert b" " not in decoded and b'"d"' not in decoded
    public = _public_key_from_config(config)
    private = serialization.load_pem_private_key(key.private_key_pem, password=None)
    assert public.public_numbers() == private.public_key().public_numbers()


def test_generated_keys_are_fresh():
    a, b = generate_api_key(), generate_api_key()
    assert a.subject != b.subject
    assert a.public_key_config() != b.public_key_config()
    assert re.fullmatch(r"[0-9a-f-]{36}", a.subject)


def test_token_verifies_against_the_configured_public_key(key):
    token = mint_token(key, ttl_seconds=600, now=1_700_000_000.7)
    header, payload = _verify(token, _public_key_from_config(key.public_key_config()))
    assert header == {"alg": "ES384", "typ": "JWT"}
    assert payload == {
        "aud": AUDIENCE,
        "iss": ISSUER,
        "sub": key.subject,
        "iat": 1_700_000_000,
        "nbf": 1_700_000_000,
        "exp": 1_700_000_600,
    }
    assert AUDIENCE == "https://github.com/dotnet/dotnet-monitor"
    assert ISSUER == "https://github.com/dotnet/dotnet-monitor/generatekey+MonitorApiKey"


def test_token_defaults_to_fifteen_minutes_from_now(key):
    import time

    before = int(time.time())
    _, payload = _verify(mint_token(key), _public_key_from_config(key.public_key_config()))
    assert before <= payload["iat"] <= before + 5
    assert payload["exp"] - payload["iat"] == 900
    assert all(isinstance(payload[c], int) for c in ("iat", "nbf", "exp"))


def test_token_does_not_verify_with_another_key(key):
    other = generate_api_key()
    with pytest.raises(InvalidSignature):
        _verify(mint_token(key), _public_key_from_config(other.public_key_config()))


def test_tampered_payload_fails_verification(key):
    header, payload, signature = mint_token(key, now=1000).split(".")
    forged = base64.urlsafe_b64encode(
        json.dumps({"sub": "someone-else", "exp": 9_999_999_999}).encode()
    ).rstrip(b"=").decode()
    with pytest.raises(InvalidSignature):
        _verify(f"{header}.{forged}.{signature}", _public_key_from_config(key.public_key_config()))


def test_non_positive_ttl_is_refused(key):
    with pytest.raises(UsageError):
        mint_token(key, ttl_seconds=0)


def test_repr_and_str_never_show_the_private_key(key):
    pem_body = key.private_key_pem.decode().splitlines()[1]
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert "PRIVATE" not in text and pem_body not in text
        assert key.subject in text


def test_api_key_from_pem_round_trip(key):
    again = api_key_from_pem(key.subject, key.private_key_pem)
    assert again.public_key_config() == key.public_key_config()


@pytest.mark.parametrize(
    "pem",
    [
        b"not a key",
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    ],
    ids=["garbage", "wrong-curve"],
)
def test_api_key_from_pem_refuses_unusable_material(pem):
    with pytest.raises(ConfigError) as info:
        api_key_from_pem("subject", pem)
    assert "not a key" not in str(info.value)
    assert info.value.__cause__ is None


def test_api_key_from_pem_requires_a_subject(key):
    with pytest.raises(ConfigError):
        api_key_from_pem("", key.private_key_pem)
