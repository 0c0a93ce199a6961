"""API-key (JWT) authentication as dotnet-monitor performs it (reference §5).

``MonitorApiKey`` = ``Subject`` + ``PublicKey`` (base64url, no padding, of a JWK) + optional
``Issuer``. Tokens: JWS compact, alg in ES256/384/512 or RS256/384/512, ``aud`` and ``iss`` fixed,
``exp`` required (5 minutes clock skew), signature verified with ``cryptography``. A valid token whose
``sub`` differs from the configured Subject is *authenticated but not authorized* → 403.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass

AUDIENCE = "https://github.com/dotnet/dotnet-monitor"
DEFAULT_ISSUER = "https://github.com/dotnet/dotnet-monitor/generatekey+MonitorApiKey"
CLOCK_SKEW = 300
ALLOWED_ALGS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512")

_CURVES = {"P-256": ("SECP256R1", 32), "P-384": ("SECP384R1", 48), "P-521": ("SECP521R1", 66)}


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64u_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class AuthDecision:
    """``status`` 0 = allowed, else 401/403; ``challenge`` is the WWW-Authenticate value for 401."""
    status: int
    challenge: str | None = None
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 0


class ApiKeyValidator:
    """Validates bearer tokens against one configured MonitorApiKey.

    ``problems`` lists configuration errors (event 21); when non-empty every request is 401,
    exactly like an absent key.
    """

    def __init__(self, subject: str | None, public_key: str | None, issuer: str | None) -> None:
        self.subject = subject
        self.issuer = issuer or DEFAULT_ISSUER
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self._key = None
        self._kty = None
        self.configured = bool(subject or public_key)
        if not self.configured:
            self.problems.append("API key authentication is not configured.")
            return
        if not subject:
            self.problems.append("The Subject field is required.")
        if not public_key:
            self.problems.append("The PublicKey field is required.")
            return
        self._load_public_key(public_key)

    def _load_public_key(self, text: str) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        if not re.fullmatch(r"[0-9a-zA-Z_-]+", text):
            self.problems.append("The field PublicKey must match the regular expression '^[0-9a-zA-Z_-]+$'.")
            return
        try:
            jwk_raw = json.loads(b64u_decode(text))
            if not isinstance(jwk_raw, dict):
                raise ValueError("not an object")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            self.problems.append("The PublicKey field could not be decoded as a JSON Web Key.")
            return
        jwk = {str(k).lower(): v for k, v in jwk_raw.items()}
        kty = str(jwk.get("kty", ""))
        if "d" in jwk or "p" in jwk:
            self.warnings.append("The PublicKey contains private key information.")
        try:
            if kty == "EC":
                crv = jwk.get("crv")
                if crv not in _CURVES:
                    raise ValueError(f"unsupported curve {crv}")
                curve_name, _size = _CURVES[crv]
                x = int.from_bytes(b64u_decode(jwk["x"]), "big")
                y = int.from_bytes(b64u_decode(jwk["y"]), "big")
                self._key = ec.EllipticCurvePublicNumbers(x, y, getattr(ec, curve_name)()).public_key()
            elif kty == "RSA":
                n = int.from_bytes(b64u_decode(jwk["n"]), "big")
                e = int.from_bytes(b64u_decode(jwk["e"]), "big")
                self._key = rsa.RSAPublicNumbers(e, n).public_key()
            else:
                self.problems.append(f"The PublicKey has an unsupported key type '{kty}'; expected EC or RSA.")
                return
        except (KeyError, ValueError, TypeError, binascii.Error) as exc:
            self.problems.append(f"The PublicKey could not be parsed: {exc}")
            return
        self._kty = kty

    @property
    def usable(self) -> bool:
        return not self.problems and self._key is not None

    def check(self, authorization: str | None, now: float | None = None) -> AuthDecision:
        """Decide for one request's ``Authorization`` header value."""
        if authorization is None or not authorization.strip():
            return AuthDecision(401, "Bearer", "no credentials")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return AuthDecision(401, "Bearer", "not a bearer token")
        token = token.strip()
        if not self.usable:
            # The JwtBearer handler has no valid key: any token fails validation.
            return self._invalid("The signature key was not found")
        parts = token.split(".")
        if len(parts) != 3:
            return self._invalid("The token is malformed")
        try:
            header = json.loads(b64u_decode(parts[0]))
            claims = json.loads(b64u_decode(parts[1]))
            signature = b64u_decode(parts[2])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self._invalid("The token is malformed")
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return self._invalid("The token is malformed")
        alg = header.get("alg")
        if alg not in ALLOWED_ALGS or alg[:2] != ("ES" if self._kty == "EC" else "RS"):
            return self._invalid("The signature key was not found")
        if not self._verify(alg, (parts[0] + "." + parts[1]).encode("ascii"), signature):
            return self._invalid("The signature is invalid")
        now = time.time() if now is None else now
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            return self._invalid("The token has no expiration")
        if now > exp + CLOCK_SKEW:
            return self._invalid(f"The token expired at '{time.strftime('%m/%d/%Y %H:%M:%S', time.gmtime(exp))}'")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and now + CLOCK_SKEW < nbf:
            return self._invalid("The token is not valid yet")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if AUDIENCE not in auds:
            return self._invalid("The audience is invalid")
        if claims.get("iss") != self.issuer:
            return self._invalid("The issuer is invalid")
        if claims.get("sub") != self.subject:
            return AuthDecision(403, None, "subject mismatch")
        return AuthDecision(0)

    @staticmethod
    def _invalid(description: str) -> AuthDecision:
        desc = description.replace('"', "'")
        return AuthDecision(401, f'Bearer error="invalid_token", error_description="{desc}"', description)

    def _verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]
        try:
            if alg.startswith("ES"):
                size = (self._key.curve.key_size + 7) // 8
                if len(signature) != 2 * size:
                    return False
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                self._key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(digest))
            else:
                self._key.verify(signature, signing_input, padding.PKCS1v15(), digest)
        except (InvalidSignature, ValueError, AttributeError):
            return False
        return True


def generate_temp_key(now: float | None = None) -> tuple[ApiKeyValidator, str]:
    """``--temp-apikey``: a fresh ES384 key, GUID subject, 7-day token. Returns (validator, token)."""
    import uuid

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = ec.generate_private_key(ec.SECP384R1())
    nums = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-384", "x": b64u_encode(nums.x.to_bytes(48, "big")),
           "y": b64u_encode(nums.y.to_bytes(48, "big"))}
    public = b64u_encode(json.dumps(jwk, separators=(",", ":")).encode())
    subject = str(uuid.uuid4())
    now = time.time() if now is None else now
    header = b64u_encode(json.dumps({"alg": "ES384", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = b64u_encode(json.dumps({"aud": AUDIENCE, "iss": DEFAULT_ISSUER, "sub": subject,
                                     "exp": int(now) + 7 * 86400}, separators=(",", ":")).encode())
    der = key.sign(f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    token = f"{header}.{claims}.{b64u_encode(r.to_bytes(48, 'big') + s.to_bytes(48, 'big'))}"
    return ApiKeyValidator(subject, public, None), token
