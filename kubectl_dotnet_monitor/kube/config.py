"""Kubeconfig resolution with kubectl's rules (client-go ``tools/clientcmd``), not the Python client's.

Which files: ``--kubeconfig`` (must exist), else the ``KUBECONFIG`` list (OS path separator,
de-duplicated, missing files ignored), else ``~/.kube/config``. How they merge: the first file that
defines a named cluster, user or context wins, and ``current-context`` comes from the first file that
sets it. Relative paths inside a file are relative to that file. ``--context``, ``--cluster`` and
``--user`` override the current context's choices; the namespace is ``-n`` > the context's namespace
> the in-cluster namespace (``POD_NAMESPACE``, then the service-account file) > ``default``.
The in-cluster service-account config is used only when no kubeconfig selects a cluster.

The result is a :class:`ClusterConnection`: the server, the namespace and everything needed to dial
(TLS settings and credentials). Nothing here talks to the API server.
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubectl_dotnet_monitor.errors import ConfigError
from kubectl_dotnet_monitor.kube.credentials import (
    ClientCertificate,
    Credentials,
    credentials_from_user,
)

#: Where Kubernetes mounts a pod's service-account token, CA and namespace.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

_CONTEXTS_HINT = "list the contexts with `kubectl config get-contexts`; pick one with --context NAME"


@dataclass(frozen=True)
class KubeFlags:
    """The kubectl-compatible connection flags, as typed by the user."""

    kubeconfig: str | None = None
    context: str | None = None
    cluster: str | None = None
    user: str | None = None
    namespace: str | None = None
    request_timeout: float | None = None  # seconds; None or 0 = no timeout


@dataclass(frozen=True)
class TlsSettings:
    """How to verify the API server (from the kubeconfig cluster entry)."""

    insecure_skip_tls_verify: bool = False
    ca_file: str | None = None
    ca_data: bytes | None = None  # PEM, decoded from certificate-authority-data
    tls_server_name: str | None = None
    # May carry user:password (client-go honours userinfo in proxy-url): kept out of repr and messages.
    proxy_url: str | None = field(default=None, repr=False)


@dataclass
class ClusterConnection:
    """A resolved, ready-to-dial connection to one API server, as one user, in one namespace."""

    server: str  # "https://127.0.0.1:6443", no trailing slash
    namespace: str  # -n > context > in-cluster > "default"
    context_name: str | None
    cluster_name: str | None
    user_name: str | None
    request_timeout: float | None
    tls: TlsSettings = field(default_factory=TlsSettings)
    credentials: Credentials = field(default_factory=Credentials, repr=False)
    in_cluster: bool = False
    kubeconfig_files: tuple[str, ...] = ()
    _ssl_context: ssl.SSLContext | None = field(default=None, init=False, repr=False, compare=False)

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for the API server (TLS 1.2+, the cluster CA, the client certificate).

        Built once per connection and cached; :meth:`refresh_credentials` drops the cache.
        Raises :class:`ConfigError` when the CA or the client certificate cannot be loaded.
        """
        if self._ssl_context is None:
            self._ssl_context = build_ssl_context(self.tls, self.credentials.client_certificate(), self.cluster_name)
        return self._ssl_context

    def auth_headers(self) -> dict[str, str]:
        """HTTP headers that authenticate this user (may run an exec plugin, cached); raises ConfigError."""
        return self.credentials.headers()

    def refresh_credentials(self) -> bool:
        """Forget cached exec-plugin credentials after a 401; True when a retry can use new ones."""
        if self.credentials.invalidate():
            self._ssl_context = None
            return True
        return False

    def host_port(self) -> tuple[str, int]:
        """Host (without brackets) and port of the server."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.server)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return host, port

    def server_hostname(self) -> str:
        """The name the server's certificate must carry: ``tls-server-name`` or the server's host."""
        return self.tls.tls_server_name or self.host_port()[0]

    @property
    def scheme(self) -> str:
        """``https`` or ``http``."""
        return self.server.split("://", 1)[0].lower()

    def describe(self) -> str:
        """A short human description for messages: context, cluster and server."""
        if self.in_cluster:
            return f"in-cluster service account, server {self.server}"
        bits = []
        if self.context_name:
            bits.append(f'context "{self.context_name}"')
        if self.cluster_name:
            bits.append(f'cluster "{self.cluster_name}"')
        bits.append(f"server {self.server}")
        return ", ".join(bits)


# --------------------------------------------------------------------------------------------------
# Loading and merging


@dataclass
class _Entry:
    """One named cluster/user/context and the file that defined it."""

    body: dict[str, Any]
    origin: str


@dataclass
class MergedKubeconfig:
    """The merge of all kubeconfig files, kubectl-style."""

    files: list[str] = field(default_factory=list)  # files actually read, in order
    clusters: dict[str, _Entry] = field(default_factory=dict)
    users: dict[str, _Entry] = field(default_factory=dict)
    contexts: dict[str, _Entry] = field(default_factory=dict)
    current_context: str | None = None
    current_context_origin: str | None = None


def kubeconfig_paths(flags: KubeFlags, env: Mapping[str, str]) -> list[str]:
    """The kubeconfig files to read, in precedence order (missing ones already dropped).

    ``--kubeconfig`` must exist (ConfigError otherwise). ``KUBECONFIG`` entries that do not exist are
    skipped, duplicates removed. The default is ``$HOME/.kube/config`` when it exists.
    """
    if flags.kubeconfig:
        path = os.path.abspath(os.path.expanduser(flags.kubeconfig))
        if not os.path.exists(path):
            raise ConfigError(
                f"the kubeconfig file {flags.kubeconfig} given with --kubeconfig does not exist",
                hint="check the path, or leave --kubeconfig out to use KUBECONFIG or ~/.kube/config",
            )
        return [path]
    listed = env.get("KUBECONFIG", "")
    if listed:
        paths: list[str] = []
        for item in listed.split(os.pathsep):
            if not item:
                continue
            path = os.path.abspath(item)
            if path not in paths and os.path.exists(path):
                paths.append(path)
        return paths
    home = env.get("HOME") or env.get("USERPROFILE") or os.path.expanduser("~")
    default = os.path.join(home, ".kube", "config")
    return [default] if os.path.exists(default) else []


def _load_file(path: str) -> dict[str, Any]:
    import yaml  # lazy: --help must not pay for it

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read kubeconfig file {path}: {exc.strerror or exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"error loading kubeconfig file {path}: {exc}",
            hint="fix the YAML (`kubectl config view` shows the same error)",
        ) from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"error loading kubeconfig file {path}: expected a mapping at the top level")
    return doc


def _resolve_path(value: Any, base_dir: str) -> Any:
    if isinstance(value, str) and value and not os.path.isabs(value):
        return os.path.join(base_dir, value)
    return value


def _resolve_relative_paths(kind: str, body: dict[str, Any], base_dir: str) -> dict[str, Any]:
    """Make file references absolute against the defining file's directory (client-go ResolvePaths)."""
    body = dict(body)
    if kind == "cluster":
        body["certificate-authority"] = _resolve_path(body.get("certificate-authority"), base_dir)
    elif kind == "user":
        for key in ("client-certificate", "client-key", "tokenFile"):
            body[key] = _resolve_path(body.get(key), base_dir)
        exec_cfg = body.get("exec")
        if isinstance(exec_cfg, dict):
            command = exec_cfg.get("command")
            # A bare name is looked up on PATH; only a path with a separator is file-relative.
            if isinstance(command, str) and os.sep in command:
                exec_cfg = dict(exec_cfg)
                exec_cfg["command"] = _resolve_path(command, base_dir)
                body["exec"] = exec_cfg
    return {k: v for k, v in body.items() if v is not None}


def load_kubeconfig(paths: list[str]) -> MergedKubeconfig:
    """Read and merge kubeconfig files: first definition of a name wins, first current-context wins."""
    merged = MergedKubeconfig()
    sections = (("clusters", "cluster", merged.clusters), ("users", "user", merged.users),
                ("contexts", "context", merged.contexts))
    for path in paths:
        doc = _load_file(path)
        merged.files.append(path)
        base_dir = os.path.dirname(path)
        for list_key, item_key, target in sections:
            items = doc.get(list_key) or []
            if not isinstance(items, list):
                raise ConfigError(f"error loading kubeconfig file {path}: {list_key} must be a list")
            seen: set[str] = set()
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    raise ConfigError(f"error loading kubeconfig file {path}: an entry of {list_key} has no name")
                name = item["name"]
                if name in seen:
                    raise ConfigError(f'error loading kubeconfig file {path}: duplicate name "{name}" in {list_key}')
                seen.add(name)
                body = item.get(item_key) or {}
                if not isinstance(body, dict):
                    raise ConfigError(f'error loading kubeconfig file {path}: {item_key} "{name}" must be a mapping')
                if name not in target:
                    target[name] = _Entry(_resolve_relative_paths(item_key, body, base_dir), path)
        current = doc.get("current-context")
        if current and merged.current_context is None:
            merged.current_context = str(current)
            merged.current_context_origin = path
    return merged


# --------------------------------------------------------------------------------------------------
# In-cluster


def in_cluster_possible(env: Mapping[str, str], sa_dir: str) -> bool:
    """client-go's rule: both service env variables set and the token file present."""
    return bool(env.get("KUBERNETES_SERVICE_HOST")) and bool(env.get("KUBERNETES_SERVICE_PORT")) and os.path.isfile(
        os.path.join(sa_dir, "token"))


def in_cluster_namespace(env: Mapping[str, str], sa_dir: str) -> str | None:
    """``POD_NAMESPACE``, else the service-account namespace file, else None."""
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        with open(os.path.join(sa_dir, "namespace"), encoding="utf-8") as fh:
            value = fh.read().strip()
    except OSError:
        return None
    return value or None


def _in_cluster_connection(flags: KubeFlags, env: Mapping[str, str], sa_dir: str) -> ClusterConnection:
    host = env["KUBERNETES_SERVICE_HOST"]
    port = env["KUBERNETES_SERVICE_PORT"]
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    ca_file = os.path.join(sa_dir, "ca.crt")
    return ClusterConnection(
        server=f"https://{host}:{port}",
        namespace=flags.namespace or in_cluster_namespace(env, sa_dir) or "default",
        context_name=None,
        cluster_name=None,
        user_name=None,
        request_timeout=flags.request_timeout or None,
        tls=TlsSettings(ca_file=ca_file if os.path.exists(ca_file) else None),
        credentials=Credentials(token_file=os.path.join(sa_dir, "token"), user_name="in-cluster service account"),
        in_cluster=True,
    )


# --------------------------------------------------------------------------------------------------
# Resolution


def _decode_data(value: Any, what: str, owner: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=False)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} of {owner} is not valid base64: {exc}") from exc


def _normalize_server(server: str, has_tls_settings: bool, cluster_name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    raw = server.strip()
    parts = urlsplit(raw)
    if not parts.scheme or not parts.netloc:
        # client-go: a bare host[:port] gets https when TLS is configured, else http.
        parts = urlsplit(("https://" if has_tls_settings else "http://") + raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f'server "{server}" of cluster "{cluster_name}" is not an http(s) URL',
            hint="fix `server:` in the kubeconfig cluster entry (e.g. https://host:6443)",
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigError(f'server "{server}" of cluster "{cluster_name}" has an invalid port') from exc
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _tls_settings(cluster: dict[str, Any], cluster_name: str) -> TlsSettings:
    insecure = bool(cluster.get("insecure-skip-tls-verify", False))
    ca_file = cluster.get("certificate-authority") or None
    ca_data_raw = cluster.get("certificate-authority-data") or None
    ca_data = _decode_data(ca_data_raw, "certificate-authority-data", f'cluster "{cluster_name}"') if ca_data_raw else None
    if ca_data is not None:
        ca_file = None  # client-go: data overrides the file
    elif ca_file and not os.path.exists(ca_file):
        raise ConfigError(
            f'unable to read certificate-authority {ca_file} for cluster "{cluster_name}": no such file',
            hint="fix the path in the kubeconfig (relative paths are relative to the kubeconfig file)",
        )
    if insecure and (ca_file or ca_data):
        raise ConfigError(
            f'cluster "{cluster_name}" sets both insecure-skip-tls-verify and a certificate-authority',
            hint="kubectl refuses this too: remove one of them from the kubeconfig",
        )
    proxy_url = cluster.get("proxy-url") or None
    if proxy_url:
        from urllib.parse import urlsplit

        scheme = urlsplit(proxy_url).scheme
        if scheme not in ("http", "https", "socks5"):
            raise ConfigError(
                f'invalid proxy-url "{_redact_url(proxy_url)}" for cluster "{cluster_name}": '
                "scheme must be http, https or socks5",
                hint="fix `proxy-url` in the kubeconfig cluster entry (e.g. http://proxy:3128)",
            )
    return TlsSettings(
        insecure_skip_tls_verify=insecure,
        ca_file=ca_file,
        ca_data=ca_data,
        tls_server_name=cluster.get("tls-server-name") or None,
        proxy_url=proxy_url,
    )


def resolve_connection(
    flags: KubeFlags,
    env: Mapping[str, str] | None = None,
    *,
    service_account_dir: str = SERVICE_ACCOUNT_DIR,
) -> ClusterConnection:
    """Resolve flags + kubeconfig files (+ in-cluster) into a :class:`ClusterConnection`, like kubectl.

    ``env`` defaults to ``os.environ`` (``KUBECONFIG``, ``HOME``, ``KUBERNETES_SERVICE_*``,
    ``POD_NAMESPACE`` and the exec plugins' environment come from it); ``service_account_dir`` is
    injectable for tests. Raises :class:`ConfigError` with a hint when nothing usable is selected.
    """
    env = dict(os.environ) if env is None else dict(env)
    paths = kubeconfig_paths(flags, env)
    merged = load_kubeconfig(paths)
    in_cluster = in_cluster_possible(env, service_account_dir)

    context_name = flags.context or merged.current_context
    context: dict[str, Any] = {}
    if context_name:
        entry = merged.contexts.get(context_name)
        if entry is None:
            where = ", ".join(merged.files) or "no kubeconfig file"
            if flags.context:
                message = f'context "{context_name}" does not exist in the kubeconfig ({where})'
            else:
                message = (f'the current-context "{context_name}" (set in {merged.current_context_origin}) '
                           "does not exist in the kubeconfig")
            known = ", ".join(sorted(merged.contexts)) or "none"
            raise ConfigError(message, hint=f"known contexts: {known}; {_CONTEXTS_HINT}")
        context = entry.body

    cluster_name = flags.cluster or context.get("cluster") or None
    if not cluster_name:
        if in_cluster and not flags.context and not flags.user:
            return _in_cluster_connection(flags, env, service_account_dir)
        if not merged.files:
            raise ConfigError(
                "no kubeconfig found: --kubeconfig is not set, KUBECONFIG names no existing file and "
                f"{os.path.join(env.get('HOME', '~'), '.kube', 'config')} does not exist",
                hint="point KUBECONFIG or --kubeconfig at your cluster's kubeconfig "
                     "(e.g. from your cloud CLI's get-credentials), or run inside a pod with a service account",
            )
        if context_name:
            raise ConfigError(f'context "{context_name}" names no cluster',
                              hint="add `cluster:` to the context in the kubeconfig, or pass --cluster NAME")
        known = ", ".join(sorted(merged.contexts)) or "none"
        raise ConfigError(
            f"no context is selected: no current-context in {', '.join(merged.files)} and no --context",
            hint=f"known contexts: {known}; use --context NAME or `kubectl config use-context NAME`",
        )
    cluster = _named_entry(merged.clusters, "cluster", cluster_name, bool(flags.cluster), context_name)
    user_name = flags.user or context.get("user") or None
    user: dict[str, Any] = (
        _named_entry(merged.users, "user", user_name, bool(flags.user), context_name) if user_name else {}
    )

    server = cluster.get("server")
    if not server:
        raise ConfigError(f'no server found for cluster "{cluster_name}"',
                          hint="add `server: https://HOST:PORT` to the cluster entry of the kubeconfig")
    tls = _tls_settings(cluster, cluster_name)
    has_tls = bool(tls.ca_file or tls.ca_data or tls.insecure_skip_tls_verify
                   or user.get("client-certificate") or user.get("client-certificate-data"))
    server_url = _normalize_server(str(server), has_tls, cluster_name)

    namespace = flags.namespace or context.get("namespace") or None
    if not namespace and in_cluster:
        namespace = in_cluster_namespace(env, service_account_dir)

    credentials = credentials_from_user(
        user_name,
        user,
        env=env,
        cluster_info=_exec_cluster_info(server_url, cluster, tls) if user.get("exec") else None,
    )
    if not server_url.startswith("https://"):
        # client-go reads the user's credentials only for TLS servers: kubectl never sends a token,
        # a password or a client certificate to a plain-http server (impersonation headers still go).
        credentials = Credentials(user_name=user_name, impersonate=credentials.impersonate)
    return ClusterConnection(
        server=server_url,
        namespace=namespace or "default",
        context_name=context_name or None,
        cluster_name=cluster_name,
        user_name=user_name,
        request_timeout=flags.request_timeout or None,
        tls=tls,
        credentials=credentials,
        kubeconfig_files=tuple(merged.files),
    )


def _named_entry(entries: Mapping[str, _Entry], kind: str, name: str, from_flag: bool,
                 context_name: str | None) -> dict[str, Any]:
    """The body of the ``kind`` (cluster or user) called ``name``, or the ConfigError kubectl would give."""
    entry = entries.get(name)
    if entry is not None:
        return entry.body
    known = ", ".join(sorted(entries)) or "none"
    if from_flag:
        message = f'{kind} "{name}" given with --{kind} does not exist in the kubeconfig'
    else:
        message = f'context "{context_name}" refers to {kind} "{name}", which is not in the kubeconfig'
    raise ConfigError(message, hint=f"known {kind}s: {known}; fix the context or pass --{kind} NAME")


def _exec_cluster_info(server: str, cluster: dict[str, Any], tls: TlsSettings) -> dict[str, Any]:
    """The ``spec.cluster`` an exec plugin gets with ``provideClusterInfo: true``."""
    info: dict[str, Any] = {"server": server}
    if tls.tls_server_name:
        info["tls-server-name"] = tls.tls_server_name
    if tls.insecure_skip_tls_verify:
        info["insecure-skip-tls-verify"] = True
    ca = tls.ca_data
    if ca is None and tls.ca_file:
        try:
            with open(tls.ca_file, "rb") as fh:
                ca = fh.read()
        except OSError:
            ca = None
    if ca:
        info["certificate-authority-data"] = base64.b64encode(ca).decode("ascii")
    if tls.proxy_url:
        info["proxy-url"] = tls.proxy_url
    if cluster.get("disable-compression"):
        info["disable-compression"] = True
    for ext in cluster.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == "client.authentication.k8s.io/exec":
            info["config"] = ext.get("extension")
    return info


# --------------------------------------------------------------------------------------------------
# TLS


def build_ssl_context(tls: TlsSettings, client_cert: ClientCertificate | None,
                      cluster_name: str | None = None) -> ssl.SSLContext:
    """An ``SSLContext`` for the API server: TLS 1.2+, the cluster CA (or the system roots), client cert.

    ``insecure-skip-tls-verify`` is honoured only because the kubeconfig asks for it explicitly.
    In-memory client certificates are loaded from a private temporary directory (0700, files 0600)
    that is removed right after loading.
    """
    owner = f'cluster "{cluster_name}"' if cluster_name else "the cluster"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.insecure_skip_tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            if tls.ca_data is not None:
                ctx.load_verify_locations(cadata=tls.ca_data.decode("ascii", errors="replace"))
            elif tls.ca_file:
                ctx.load_verify_locations(cafile=tls.ca_file)
            else:
                ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        except (ssl.SSLError, OSError, ValueError) as exc:
            source = "certificate-authority-data" if tls.ca_data is not None else f"certificate-authority {tls.ca_file}"
            raise ConfigError(f"cannot load the {source} of {owner}: {exc}",
                              hint="the CA must be PEM-encoded certificates") from exc
    if client_cert is not None:
        client_cert.load_into(ctx)
    return ctx


__all__ = [
    "SERVICE_ACCOUNT_DIR",
    "ClusterConnection",
    "KubeFlags",
    "MergedKubeconfig",
    "TlsSettings",
    "build_ssl_context",
    "in_cluster_namespace",
    "in_cluster_possible",
    "kubeconfig_paths",
    "load_kubeconfig",
    "resolve_connection",
]
