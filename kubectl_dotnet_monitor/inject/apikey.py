"""The API key an injected dotnet-monitor trusts, and the short-lived tokens signed with it.

dotnet-monitor's ``MonitorApiKey`` authentication (reference §5) checks a JWT against a public key
given in its configuration. The plugin makes a fresh EC P-384 key pair per injection, puts the
subject and the public key into the monitor's environment (neither is secret) and signs an ES384
token for every command. The private key never leaves the plugin and the pod-owned Secret
(see ``keystore.py``); neither it nor a token is ever printed.

``cryptography`` is imported inside the functions: ``--help`` must not pay for it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from functools import cached_property

from kubectl_dotnet_monitor.errors import ConfigError, UsageError

#: The ``aud`` dotnet-monitor requires.
AUDIENCE = "https://github.com/dotnet/dotnet-monitor"
#: The ``iss`` dotnet-monitor requires when ``MonitorApiKey:Issuer`` is not configured.
ISSUER = "https://github.com/dotnet/dotnet-monitor/generatekey+MonitorApiKey"
#: ES384 works on P-384; coordinates and signature halves are 48 bytes each.
_COORDINATE_BYTES = 48


@dataclass(frozen=True)
class ApiKey:
    """A monitor's API key: the subject it expects and the private key that signs tokens.

    ``private_key_pem`` is an unencrypted PKCS#8 PEM. ``repr()`` never shows it.
    """

    subject: str
    private_key_pem: bytes

    def __repr__(self) -> str:
        return f"ApiKey(subject={self.subject!r}, private_key=<hidden>)"

    __str__ = __repr__

    @cached_property
    def signing_key(self):  # -> ec.EllipticCurvePrivateKey (lazy import)
        """The parsed private key, parsed once (PEM parsing costs more than a signature)."""
        return _parse_private_key(self)

    def public_jwk(self) -> dict[str, str]:
        """The public half as a JWK (``kty``, ``crv``, ``x``, ``y``)."""
        numbers = self.signing_key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-384",
            "x": _b64url(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
            "y": _b64url(numbers.y.to_bytes(_COORDINATE_BYTES, "big")),
        }

    def public_key_config(self) -> str:
        """The value for ``DotnetMonitor_Authentication__MonitorApiKey__PublicKey``.

        base64url without padding of the compact JWK JSON, as dotnet-monitor validates it
        (``^[0-9a-zA-Z_-]+$``).
        """
        return _b64url(_compact_json(self.public_jwk()))


def generate_api_key() -> ApiKey:
    """A fresh EC P-384 key pair with a random UUID subject."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private_key = ec.generate_private_key(ec.SECP384R1())
    pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    return ApiKey(subject=str(uuid.uuid4()), private_key_pem=pem)


def api_key_from_pem(subject: str, private_key_pem: bytes) -> ApiKey:
    """An ``ApiKey`` from stored parts, checked: a P-384 EC private key and a non-empty subject.

    Raises ``ConfigError`` (without echoing the key) when the stored material is unusable.
    """
    key = ApiKey(subject=subject, private_key_pem=private_key_pem)
    if not subject:
        raise ConfigError("the stored API key has no subject")
    key.signing_key  # noqa: B018 - parse now: unusable material fails here, not at first use
    return key


def mint_token(key: ApiKey, ttl_seconds: int = 900, now: float | None = None) -> str:
    """A compact JWS (ES384) that dotnet-monitor accepts for ``key`` until ``now + ttl_seconds``.

    Claims: ``aud``, ``iss`` (dotnet-monitor's defaults), ``sub`` = the key's subject, ``iat``,
    ``nbf`` and ``exp`` (integer seconds). The signature is the JOSE raw ``r||s`` form (96 bytes),
    not DER.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    if ttl_seconds <= 0:
        raise UsageError(f"token lifetime must be positive, not {ttl_seconds} seconds")
    issued = int(time.time() if now is None else now)
    header = {"alg": "ES384", "typ": "JWT"}
    payload = {
        "aud": AUDIENCE,
        "iss": ISSUER,
        "sub": key.subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl_seconds),
    }
    signing_input = f"{_b64url(_compact_json(header))}.{_b64url(_compact_json(payload))}".encode("ascii")
    der = key.signing_key.sign(signing_input, ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")
    return f"{signing_input.decode('ascii')}.{_b64url(raw)}"


def _parse_private_key(key: ApiKey):  # -> ec.EllipticCurvePrivateKey (lazy import)
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        private_key = serialization.load_pem_private_key(key.private_key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The exception text may quote the input: do not chain it.
        raise ConfigError(
            f"the stored private key for API-key subject {key.subject!r} is not a readable PEM key"
        ) from None
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp384r1":
        raise ConfigError(f"the stored private key for API-key subject {key.subject!r} is not an EC P-384 key")
    return private_key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _compact_json(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")
