"""Who we are to the API server: token, token file, basic auth, client certificate, exec plugin.

Built from one kubeconfig ``users[].user`` entry (paths already absolute). Precedence follows
client-go: a static token (``token``, else ``tokenFile``) or basic auth gives the Authorization
header; a client certificate goes into the TLS context; an ``exec`` plugin is used only when none of
those is present; ``auth-provider: oidc`` uses its ``id-token``; other auth-providers are refused
with what to use instead.

Exec plugins (``client.authentication.k8s.io/v1`` and ``v1beta1``) are run with
``KUBERNETES_EXEC_INFO``, their configured env and kubectl's ``interactiveMode`` rules; the result is
cached until its ``expirationTimestamp`` (or a 401). **A plugin that fails is a ConfigError** carrying
its stderr and ``installHint`` - never an anonymous request.

Secrets never reach messages, logs or ``repr``.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubectl_dotnet_monitor.errors import ConfigError

EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
_INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")
_STDERR_LIMIT = 2000


@dataclass(frozen=True)
class ClientCertificate:
    """A client certificate and key, as files or PEM bytes."""

    cert_file: str | None = None
    key_file: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None

    def __repr__(self) -> str:  # never show key material
        return f"ClientCertificate(cert_file={self.cert_file!r}, key_file={self.key_file!r}, in_memory={self.cert_pem is not None})"

    def load_into(self, ctx: ssl.SSLContext) -> None:
        """``load_cert_chain`` from files, or from memory through a private temporary directory."""
        import shutil
        import tempfile

        tmpdir = None
        try:
            cert_file, key_file = self.cert_file, self.key_file
            if self.cert_pem is not None or self.key_pem is not None:
                tmpdir = tempfile.mkdtemp(prefix="kdm-tls-")  # mode 0700
                if self.cert_pem is not None:
                    cert_file = _write_private(os.path.join(tmpdir, "client.crt"), self.cert_pem)
                if self.key_pem is not None:
                    key_file = _write_private(os.path.join(tmpdir, "client.key"), self.key_pem)
            if not cert_file or not key_file:
                raise ConfigError("a client certificate needs both a certificate and a key",
                                  hint="set client-key or client-key-data next to client-certificate(-data)")
            ctx.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"cannot load the client certificate/key: {exc}",
                              hint="check client-certificate(-data) and client-key(-data) in the kubeconfig user "
                                   "(PEM, matching pair)") from exc
        finally:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)


def _write_private(path: str, data: bytes) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


@dataclass(frozen=True)
class ExecConfig:
    """The ``exec`` section of a kubeconfig user."""

    command: str
    # Plugins are often given keys or tokens through args and env: kept out of repr.
    args: tuple[str, ...] = field(default=(), repr=False)
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    api_version: str = "client.authentication.k8s.io/v1"
    install_hint: str | None = None
    provide_cluster_info: bool = False
    interactive_mode: str = "IfAvailable"


@dataclass
class ExecResult:
    """What an exec plugin returned (secrets: never print)."""

    token: str | None
    cert_pem: bytes | None
    key_pem: bytes | None
    expires_at: float | None  # epoch seconds

    def __repr__(self) -> str:
        return f"ExecResult(token={'***' if self.token else None}, cert={self.cert_pem is not None}, expires_at={self.expires_at})"


def _parse_timestamp(value: str) -> float:
    from datetime import datetime, timezone

    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python < 3.11 accepts at most 6 fractional digits.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        tail = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{tail}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


class ExecPlugin:
    """Runs one kubeconfig exec credential plugin and caches its answer until it expires."""

    def __init__(
        self,
        config: ExecConfig,
        user_name: str,
        env: Mapping[str, str],
        cluster_info: dict[str, Any] | None = None,
        stdin_is_tty: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.user_name = user_name
        self._env = dict(env)
        self._cluster_info = cluster_info
        self._stdin_is_tty = stdin_is_tty or _stdin_is_tty
        self._clock = clock
        self._cached: ExecResult | None = None
        self._lock = threading.Lock()  # several pods in parallel: run the plugin once, not once per thread
        self.runs = 0  # how many times the plugin was started (tests, -v)

    def __repr__(self) -> str:
        return f"ExecPlugin(command={self.config.command!r}, user={self.user_name!r})"

    def credential(self) -> ExecResult:
        """The cached credential, or a fresh one when none is cached or it expired."""
        with self._lock:
            cached = self._cached
            if cached is not None and (cached.expires_at is None or self._clock() < cached.expires_at):
                return cached
            self._cached = self._run()
            return self._cached

    def invalidate(self) -> None:
        """Drop the cache (the server said 401)."""
        with self._lock:
            self._cached = None

    # -- running -----------------------------------------------------------------------------------

    def _interactive(self) -> bool:
        mode = self.config.interactive_mode
        if mode == "Never":
            return False
        tty = self._stdin_is_tty()
        if mode == "Always" and not tty:
            raise ConfigError(
                f'the exec credential plugin "{self.config.command}" of user "{self.user_name}" needs an '
                "interactive terminal (interactiveMode: Always), but standard input is not a terminal",
                hint="run the command from a terminal, or log in once with the plugin so it has cached credentials",
            )
        return tty

    def _hint(self, default: str) -> str:
        return self.config.install_hint.strip() if self.config.install_hint else default

    def _run(self) -> ExecResult:
        import shutil
        import subprocess

        cfg = self.config
        interactive = self._interactive()
        exec_info: dict[str, Any] = {
            "apiVersion": cfg.api_version,
            "kind": "ExecCredential",
            "spec": {"interactive": interactive},
        }
        if cfg.provide_cluster_info and self._cluster_info is not None:
            exec_info["spec"]["cluster"] = self._cluster_info
        env = dict(self._env)
        for name, value in cfg.env:
            env[name] = value
        env["KUBERNETES_EXEC_INFO"] = json.dumps(exec_info)

        command = cfg.command
        if os.sep not in command and (os.altsep is None or os.altsep not in command):
            found = shutil.which(command, path=env.get("PATH", os.defpath))
            if found is None:
                raise ConfigError(
                    f'exec credential plugin "{command}" of user "{self.user_name}" was not found on PATH',
                    hint=self._hint("install the plugin named in the kubeconfig's `exec.command`, "
                                    "or fix the kubeconfig"),
                )
            command = found
        self.runs += 1
        try:
            proc = subprocess.run(
                [command, *cfg.args],
                env=env,
                stdin=None if interactive else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=None if interactive else subprocess.PIPE,
                check=False,
            )
        except FileNotFoundError as exc:
            raise ConfigError(
                f'exec credential plugin "{cfg.command}" of user "{self.user_name}" was not found',
                hint=self._hint("install the plugin, or fix `exec.command` in the kubeconfig"),
            ) from exc
        except OSError as exc:
            raise ConfigError(
                f'cannot run the exec credential plugin "{cfg.command}" of user "{self.user_name}": {exc.strerror or exc}',
                hint=self._hint("check that the plugin is executable"),
            ) from exc
        stderr = (proc.stderr or b"").decode("utf-8", errors="replace").strip()
        if proc.returncode != 0:
            detail = stderr[-_STDERR_LIMIT:] if stderr else ("(its output is above)" if interactive else "(no output on stderr)")
            raise ConfigError(
                f'the exec credential plugin "{cfg.command}" of user "{self.user_name}" failed '
                f"with exit code {proc.returncode}: {detail}",
                hint=self._hint("fix the plugin's problem above (often: log in again with your cloud CLI), "
                                "then retry; the plugin never sends a request without credentials"),
            )
        if stderr:
            # kubectl shows a plugin's stderr to the user; so do we (it carries warnings, not secrets).
            sys.stderr.write(stderr + "\n")
        return self._parse(proc.stdout)

    def _parse(self, stdout: bytes) -> ExecResult:
        cfg = self.config
        what = f'the exec credential plugin "{cfg.command}" of user "{self.user_name}"'
        try:
            doc = json.loads(stdout.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            # Never echo stdout: it may hold a token.
            raise ConfigError(f"{what} printed something that is not an ExecCredential JSON document "
                              f"({type(exc).__name__} at position {getattr(exc, 'pos', '?')})",
                              hint=self._hint("check the plugin's version and arguments")) from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{what} printed JSON that is not an ExecCredential object")
        if doc.get("kind") not in (None, "ExecCredential"):
            raise ConfigError(f'{what} returned kind "{doc.get("kind")}", expected ExecCredential')
        if doc.get("apiVersion") != cfg.api_version:
            raise ConfigError(
                f'{what} is configured to use API version {cfg.api_version}, but it returned version '
                f'{doc.get("apiVersion")}',
                hint="set `exec.apiVersion` in the kubeconfig to the version the plugin speaks",
            )
        status = doc.get("status")
        if not isinstance(status, dict):
            raise ConfigError(f"{what} did not return a status field")
        token = status.get("token") or None
        cert = status.get("clientCertificateData") or None
        key = status.get("clientKeyData") or None
        if bool(cert) != bool(key):
            raise ConfigError(f"{what} returned only a certificate or a key, not both")
        if not token and not cert:
            raise ConfigError(f"{what} returned neither a token nor a certificate/key pair")
        expires_at = None
        stamp = status.get("expirationTimestamp")
        if stamp:
            try:
                expires_at = _parse_timestamp(str(stamp))
            except ValueError as exc:
                raise ConfigError(f'{what} returned an invalid expirationTimestamp "{stamp}"') from exc
        return ExecResult(
            token=str(token) if token else None,
            cert_pem=str(cert).encode("utf-8") if cert else None,
            key_pem=str(key).encode("utf-8") if key else None,
            expires_at=expires_at,
        )


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


def _jwt_expiry(token: str) -> float | None:
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        exp = json.loads(base64.urlsafe_b64decode(payload)).get("exp")
        return float(exp) if exp is not None else None
    except (IndexError, ValueError, TypeError, AttributeError):
        return None


@dataclass
class Credentials:
    """How one kubeconfig user authenticates. ``repr`` never shows secrets."""

    user_name: str | None = None
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_cert: ClientCertificate | None = None
    exec_plugin: ExecPlugin | None = None
    impersonate: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        kinds = [k for k, v in (("token", self.token), ("tokenFile", self.token_file),
                                ("basic", self.username), ("cert", self.client_cert),
                                ("exec", self.exec_plugin)) if v]
        return f"Credentials(user={self.user_name!r}, kinds={kinds})"

    @property
    def kind(self) -> str:
        """A name for the method in use: token, tokenFile, basic, client-certificate, exec or anonymous."""
        if self.token:
            return "token"
        if self.token_file:
            return "tokenFile"
        if self.username is not None:
            return "basic"
        if self.client_cert is not None:
            return "client-certificate"
        if self.exec_plugin is not None:
            return "exec"
        return "anonymous"

    def _static(self) -> bool:
        return bool(self.token or self.token_file or self.username is not None or self.client_cert is not None)

    def headers(self) -> dict[str, str]:
        """The Authorization (and impersonation) headers; runs the exec plugin if that is the method."""
        headers: dict[str, str] = {}
        token = self.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif self.username is not None:
            raw = f"{self.username}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        headers.update(self.impersonate)
        return headers

    def bearer_token(self) -> str | None:
        """The bearer token to send, if the method uses one (reads tokenFile each time: it may rotate)."""
        if self.token:
            return self.token
        if self.token_file:
            try:
                with open(self.token_file, encoding="utf-8") as fh:
                    value = fh.read().strip()
            except OSError as exc:
                raise ConfigError(
                    f'cannot read the tokenFile {self.token_file} of user "{self.user_name}": {exc.strerror or exc}',
                    hint="fix `tokenFile` in the kubeconfig (relative paths are relative to the kubeconfig file)",
                ) from exc
            return value or None
        if self.exec_plugin is not None and not self._static():
            return self.exec_plugin.credential().token
        return None

    def client_certificate(self) -> ClientCertificate | None:
        """The TLS client certificate: from the kubeconfig, or from the exec plugin."""
        if self.client_cert is not None:
            return self.client_cert
        if self.exec_plugin is not None and not self._static():
            result = self.exec_plugin.credential()
            if result.cert_pem and result.key_pem:
                return ClientCertificate(cert_pem=result.cert_pem, key_pem=result.key_pem)
        return None

    def invalidate(self) -> bool:
        """After a 401: drop exec-plugin credentials; True when a retry may get different ones."""
        if self.exec_plugin is not None and not self._static():
            self.exec_plugin.invalidate()
            return True
        return False


def _data(value: Any, what: str, user_name: str) -> bytes:
    try:
        return base64.b64decode(str(value))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f'{what} of user "{user_name}" is not valid base64') from exc


def _exec_config(raw: Any, user_name: str) -> ExecConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f'the exec section of user "{user_name}" must be a mapping')
    command = raw.get("command")
    if not command:
        raise ConfigError(f'command must be specified for user "{user_name}" to use an exec credential plugin')
    api_version = raw.get("apiVersion")
    if not api_version:
        raise ConfigError(f'apiVersion must be specified for user "{user_name}" to use an exec credential plugin')
    if api_version not in EXEC_API_VERSIONS:
        raise ConfigError(
            f'the exec credential plugin of user "{user_name}" uses apiVersion {api_version}, '
            f"which is not supported (supported: {', '.join(EXEC_API_VERSIONS)})",
            hint="client.authentication.k8s.io/v1alpha1 was removed in Kubernetes 1.24: update the plugin "
                 "and its kubeconfig entry",
        )
    mode = raw.get("interactiveMode")
    if not mode:
        if api_version.endswith("/v1"):
            raise ConfigError(
                f'interactiveMode must be specified for user "{user_name}" to use an exec credential plugin '
                "with client.authentication.k8s.io/v1",
                hint="add `interactiveMode: IfAvailable` (or Never/Always) to the exec section",
            )
        mode = "IfAvailable"
    if mode not in _INTERACTIVE_MODES:
        raise ConfigError(f'invalid interactiveMode "{mode}" for user "{user_name}"',
                          hint=f"use one of {', '.join(_INTERACTIVE_MODES)}")
    env_pairs: list[tuple[str, str]] = []
    for item in raw.get("env") or []:
        if not isinstance(item, dict) or not item.get("name"):
            raise ConfigError(f'env variable name must be specified for user "{user_name}" to use an exec credential plugin')
        env_pairs.append((str(item["name"]), str(item.get("value", ""))))
    return ExecConfig(
        command=str(command),
        args=tuple(str(a) for a in raw.get("args") or []),
        env=tuple(env_pairs),
        api_version=api_version,
        install_hint=raw.get("installHint") or None,
        provide_cluster_info=bool(raw.get("provideClusterInfo", False)),
        interactive_mode=mode,
    )


def _auth_provider_token(provider: Any, user_name: str, clock: Callable[[], float]) -> str:
    if not isinstance(provider, dict):
        raise ConfigError(f'the auth-provider of user "{user_name}" must be a mapping')
    name = provider.get("name")
    config = provider.get("config") or {}
    if name == "oidc":
        token = config.get("id-token")
        if not token:
            raise ConfigError(
                f'user "{user_name}" uses the oidc auth-provider but has no id-token yet; this plugin does not '
                "run the OIDC login or refresh flow",
                hint="run any kubectl command once (kubectl refreshes and saves the id-token), or switch the "
                     "user to an exec plugin such as kubelogin (`kubectl oidc-login`)",
            )
        exp = _jwt_expiry(str(token))
        if exp is not None and clock() >= exp:
            raise ConfigError(
                f'the oidc id-token of user "{user_name}" has expired; this plugin does not refresh OIDC tokens',
                hint="run any kubectl command once (e.g. `kubectl get ns`) so kubectl refreshes the token in the "
                     "kubeconfig, or switch the user to an exec plugin such as kubelogin",
            )
        return str(token)
    if name == "gcp":
        hint = ("install gke-gcloud-auth-plugin and run `gcloud container clusters get-credentials CLUSTER` "
                "to rewrite the kubeconfig user as an exec plugin")
    elif name == "azure":
        hint = "install kubelogin and run `kubelogin convert-kubeconfig` to switch the user to an exec plugin"
    else:
        hint = "switch the kubeconfig user to an exec credential plugin, a token or a client certificate"
    raise ConfigError(
        f'user "{user_name}" uses the "{name}" auth-provider, which kubectl removed in 1.26 and this plugin '
        "does not support",
        hint=hint,
    )


def credentials_from_user(
    user_name: str | None,
    user: Mapping[str, Any],
    env: Mapping[str, str],
    cluster_info: dict[str, Any] | None = None,
    stdin_is_tty: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.time,
) -> Credentials:
    """Build :class:`Credentials` from a kubeconfig ``user`` mapping (paths already absolute).

    Validates like client-go (one of token/basic auth; a certificate needs a key; exec and
    auth-provider are exclusive) and raises :class:`ConfigError` with the user's name.
    """
    name = user_name or "(none)"
    creds = Credentials(user_name=user_name)
    token = user.get("token") or None
    token_file = user.get("tokenFile") or None
    username = user.get("username")
    password = user.get("password")
    if (token or token_file) and (username or password):
        raise ConfigError(f'more than one authentication method found for user "{name}": token and basic auth',
                          hint="keep only one of token/tokenFile and username/password in the kubeconfig user")
    if token:
        creds.token = str(token)
    elif token_file:
        creds.token_file = str(token_file)
    if username or password:
        creds.username = str(username or "")
        creds.password = str(password or "")

    cert_file, cert_data = user.get("client-certificate"), user.get("client-certificate-data")
    key_file, key_data = user.get("client-key"), user.get("client-key-data")
    if cert_file or cert_data:
        if not (key_file or key_data):
            raise ConfigError(
                f'client-key-data or client-key must be specified for user "{name}" to use the clientCert '
                "authentication method")
        for path, what in ((None if cert_data else cert_file, "client-certificate"),
                           (None if key_data else key_file, "client-key")):
            if path and not os.path.exists(path):
                raise ConfigError(f'unable to read {what} {path} for user "{name}": no such file',
                                  hint="fix the path (relative paths are relative to the kubeconfig file)")
        creds.client_cert = ClientCertificate(
            cert_file=None if cert_data else str(cert_file),
            key_file=None if key_data else str(key_file),
            cert_pem=_data(cert_data, "client-certificate-data", name) if cert_data else None,
            key_pem=_data(key_data, "client-key-data", name) if key_data else None,
        )

    exec_raw = user.get("exec")
    provider = user.get("auth-provider")
    if exec_raw and provider:
        raise ConfigError(f'authProvider cannot be provided in combination with an exec plugin for user "{name}"')
    if exec_raw:
        creds.exec_plugin = ExecPlugin(_exec_config(exec_raw, name), name, env, cluster_info,
                                       stdin_is_tty=stdin_is_tty, clock=clock)
    elif provider and not creds.token and not creds.token_file and creds.username is None:
        creds.token = _auth_provider_token(provider, name, clock)

    impersonate: dict[str, str] = {}
    if user.get("as"):
        impersonate["Impersonate-User"] = str(user["as"])
    if user.get("as-uid"):
        impersonate["Impersonate-Uid"] = str(user["as-uid"])
    groups = user.get("as-groups") or []
    if groups and not impersonate.get("Impersonate-User"):
        raise ConfigError(f'user "{name}" requests impersonation groups without impersonating a user (as:)')
    if len(groups) > 1:
        raise ConfigError(f'user "{name}" impersonates more than one group; this plugin supports at most one',
                          hint="keep one entry in as-groups, or use a kubeconfig user without impersonation")
    if groups:
        impersonate["Impersonate-Group"] = str(groups[0])
    for key, values in (user.get("as-user-extra") or {}).items():
        values = values if isinstance(values, list) else [values]
        if len(values) != 1:
            raise ConfigError(f'user "{name}" impersonates extra "{key}" with several values; at most one is supported')
        from urllib.parse import quote

        impersonate[f"Impersonate-Extra-{quote(str(key), safe='')}"] = str(values[0])
    creds.impersonate = impersonate
    return creds
