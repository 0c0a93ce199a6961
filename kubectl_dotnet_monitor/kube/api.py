"""KubeClient: a thin REST client for the Kubernetes API over urllib3, dicts in and dicts out.

One ``PoolManager`` per client, the TLS context and credentials of a :class:`ClusterConnection`,
kubectl-like behaviour: ``--request-timeout`` bounds connect and read, errors come back as typed
exceptions built from the API's ``Status`` body, and a 401 with exec-plugin credentials re-runs the
plugin once (client-go does the same).

Nothing here ever logs or prints request headers: tokens stay out of messages even at ``-v``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from kubectl_dotnet_monitor import user_agent
from kubectl_dotnet_monitor.errors import (
    ForbiddenError,
    NotFoundError,
    PluginError,
    UnavailableError,
    UsageError,
)

if TYPE_CHECKING:
    from kubectl_dotnet_monitor.kube.config import ClusterConnection

PATCH_CONTENT_TYPES = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}

_BODY_LIMIT = 500
_WATCH_GRACE = 1.0  # seconds past a watch's deadline before we stop waiting for the server


# --------------------------------------------------------------------------------------------------
# Errors


class ApiError(PluginError):
    """The API server answered with an error ``Status``.

    ``status`` is the HTTP code, ``reason`` the Status reason (``NotFound``, ``Forbidden``, ...),
    ``api_message`` the server's own message, ``details`` the Status details (name, kind, causes).
    """

    def __init__(self, message: str, hint: str | None = None, *, status: int = 0, reason: str | None = None,
                 api_message: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.reason = reason
        self.api_message = api_message
        self.details = details or {}

    @property
    def causes(self) -> list[dict[str, Any]]:
        """``details.causes`` (field errors of a 422), possibly empty."""
        causes = self.details.get("causes") if isinstance(self.details, dict) else None
        return list(causes) if isinstance(causes, list) else []

    def causes_text(self) -> str:
        """The causes as ``field: message; ...`` (only those with a message; ``""`` when none)."""
        return "; ".join(f"{c.get('field')}: {c.get('message')}" for c in self.causes if c.get("message"))


class ApiUnauthorized(ApiError, ForbiddenError):
    """401: the server did not accept the credentials."""


class ApiForbidden(ApiError, ForbiddenError):
    """403: authenticated, but RBAC (or an admission webhook) said no; the message names what."""


class ApiNotFound(ApiError, NotFoundError):
    """404: the object (or the API path) does not exist."""


class ApiConflict(ApiError, UsageError):
    """409: already exists, or changed since it was read."""


class ApiInvalid(ApiError, UsageError):
    """422 (or 400): the server rejected the object; ``causes`` says which fields."""


class ApiGone(ApiError, UnavailableError):
    """410: the resourceVersion is too old (watch expired); re-list and watch again."""


class ApiServerError(ApiError, UnavailableError):
    """5xx or 429: the server (or something in front of it) failed or is overloaded."""


class ApiUnreachable(UnavailableError):
    """The API server could not be reached or stopped answering (DNS, refused, timeout, reset)."""


class ApiTLSError(ApiUnreachable):
    """TLS with the API server failed (certificate not trusted, wrong name, client cert refused)."""


def _status_fields(body: bytes) -> tuple[dict[str, Any] | None, str]:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        doc = json.loads(text) if text else None
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        return doc, text
    return None, text


def error_from_status(status: int, body: bytes | dict | None, *, method: str = "GET", path: str = "",
                      conn: ClusterConnection | None = None) -> ApiError:
    """Map an HTTP status + ``Status`` body (bytes or an already-decoded dict) to a typed :class:`ApiError`."""
    if isinstance(body, dict):
        doc: dict[str, Any] | None = body if body.get("kind") == "Status" else None
        text = ""
    else:
        doc, text = _status_fields(body or b"")
    reason = (doc or {}).get("reason") or None
    api_message = (doc or {}).get("message") or None
    details = (doc or {}).get("details") or {}
    if status == 0 and doc is not None:
        status = int(doc.get("code") or 0)
    if api_message is None and text:
        api_message = text[:_BODY_LIMIT] + ("..." if len(text) > _BODY_LIMIT else "")
    where = f"{method} {path}" if path else method
    server_text = api_message or f"HTTP {status}"
    user = conn.user_name if conn is not None and conn.user_name else None
    kw = dict(status=status, reason=reason, api_message=api_message, details=details)

    if status == 401:
        who = f'user "{user}"' if user else "these credentials"
        return ApiUnauthorized(
            f"the API server rejected the credentials of {who} (401 Unauthorized)",
            hint="the credentials expired or are invalid: check the kubeconfig user, or log in again "
                 "(e.g. re-run your cloud CLI's get-credentials) and retry",
            **kw)
    if status == 403:
        return ApiForbidden(
            server_text,
            hint="ask a cluster admin for this permission (check with `kubectl auth can-i VERB RESOURCE -n NS`)",
            **kw)
    if status == 404:
        if doc is None or not api_message:
            return ApiNotFound(f"the server could not find {path or 'the requested resource'} (404)", **kw)
        return ApiNotFound(server_text, **kw)
    if status == 409:
        return ApiConflict(server_text, **kw)
    if status == 410:
        return ApiGone(server_text, hint="the resource version is too old: list again, then watch", **kw)
    if status in (400, 422):
        message = server_text
        causes = details.get("causes") if isinstance(details, dict) else None
        if isinstance(causes, list) and causes and api_message and "causes" not in message:
            extra = "; ".join(
                f"{c.get('field')}: {c.get('message')}" if c.get("field") else str(c.get("message"))
                for c in causes if isinstance(c, dict))
            if extra and extra not in message:
                message = f"{message} ({extra})"
        return ApiInvalid(message, **kw)
    if status == 429 or status >= 500:
        return ApiServerError(
            f"the API server failed the request {where}: {server_text}",
            hint="the cluster may be overloaded or unhealthy; retry in a moment",
            **kw)
    return ApiError(f"the API server refused {where}: {server_text}", **kw)


# --------------------------------------------------------------------------------------------------
# Client


class KubeClient:
    """Thin REST over urllib3 for one :class:`ClusterConnection`. Not shared across threads' writes."""

    def __init__(self, conn: ClusterConnection) -> None:
        self.conn = conn
        self._pool: Any = None

    # -- public API --------------------------------------------------------------------------------

    def get(self, path: str, query: dict | None = None) -> dict:
        """GET ``path`` (e.g. ``/api/v1/namespaces/ns/pods/p``) and return the JSON object."""
        return self._json("GET", path, query=query)

    def post(self, path: str, body: dict, query: dict | None = None) -> dict:
        """POST a JSON object."""
        return self._json("POST", path, query=query, body=body)

    def patch(self, path: str, body: dict | list, patch_type: str = "strategic", dry_run: bool = False) -> dict:
        """PATCH with ``strategic`` (default), ``merge`` or ``json`` patch; ``dry_run`` adds ``dryRun=All``."""
        try:
            content_type = PATCH_CONTENT_TYPES[patch_type]
        except KeyError:
            raise ValueError(f"unknown patch type {patch_type!r}") from None
        query = {"dryRun": "All"} if dry_run else None
        return self._json("PATCH", path, query=query, body=body, content_type=content_type)

    def delete(self, path: str) -> dict:
        """DELETE; returns the deleted object or a Status."""
        return self._json("DELETE", path)

    def version(self) -> dict:
        """``GET /version`` (``gitVersion``, ``major``, ``minor``, ...)."""
        return self._json("GET", "/version")

    def watch(self, path: str, query: dict, timeout: float) -> Iterator[tuple[str, dict]]:
        """Watch ``path`` for at most ``timeout`` seconds; yield ``(type, object)``.

        Types are ADDED, MODIFIED, DELETED and BOOKMARK. An ``ERROR`` event raises the matching
        :class:`ApiError` (410 -> :class:`ApiGone`, so the caller can list again). The generator ends
        normally when the server closes the stream or the timeout is reached.
        """
        import urllib3

        q = dict(query or {})
        q["watch"] = "true"
        q.setdefault("timeoutSeconds", max(1, int(math.ceil(timeout))))
        deadline = time.monotonic() + timeout
        connect = self.conn.request_timeout or 30.0
        # The server closes the stream after timeoutSeconds; our read timeout is a backstop that
        # follows the deadline (plus a little grace), so a silent server cannot hold us longer.
        resp = self._send("GET", path, q, None, None,
                          urllib3.Timeout(connect=connect, read=timeout + _WATCH_GRACE), stream=True)
        try:
            if resp.status >= 400:
                body = resp.read()
                raise error_from_status(resp.status, body, method="GET", path=path, conn=self.conn)
            buffer = b""
            try:
                for chunk in resp.stream(65536, decode_content=True):
                    _set_read_timeout(resp, deadline - time.monotonic() + _WATCH_GRACE)
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        event = self._watch_event(line, path)
                        if event is not None:
                            yield event
                    if time.monotonic() >= deadline:
                        return
                if buffer.strip():
                    event = self._watch_event(buffer, path)
                    if event is not None:
                        yield event
            except urllib3.exceptions.ReadTimeoutError:
                return  # nothing arrived until the deadline: the watch simply ends
            except (urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError) as exc:
                if time.monotonic() >= deadline:
                    return
                raise self._unreachable(exc, "watching " + path) from exc
        finally:
            resp.release_conn()

    def close(self) -> None:
        """Close pooled connections."""
        if self._pool is not None:
            self._pool.clear()
            self._pool = None

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------

    def _watch_event(self, line: bytes, path: str) -> tuple[str, dict] | None:
        line = line.strip()
        if not line:
            return None
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UnavailableError(f"the API server sent a malformed watch event for {path}",
                                   hint="a proxy between you and the cluster may be altering the stream") from exc
        etype = event.get("type")
        obj = event.get("object") or {}
        if etype == "ERROR":
            code = int(obj.get("code") or 0) if isinstance(obj, dict) else 0
            raise error_from_status(code, obj if isinstance(obj, dict) else None, method="WATCH", path=path,
                                    conn=self.conn)
        return str(etype), obj

    def _pool_manager(self) -> Any:
        if self._pool is None:
            import urllib3

            conn = self.conn
            kw: dict[str, Any] = {"maxsize": 4, "retries": False, "block": False}
            if conn.scheme == "https":
                kw["ssl_context"] = conn.ssl_context()
                if conn.tls.insecure_skip_tls_verify:
                    import warnings

                    # The kubeconfig asked for it explicitly; kubectl does not warn on every request either.
                    warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
                if conn.tls.tls_server_name:
                    kw["server_hostname"] = conn.tls.tls_server_name
                    kw["assert_hostname"] = conn.tls.tls_server_name
            proxy = conn.tls.proxy_url
            if proxy:
                if proxy.startswith("socks5"):
                    from kubectl_dotnet_monitor.errors import ConfigError

                    raise ConfigError(
                        f'cluster "{conn.cluster_name}" uses a socks5 proxy-url, which this plugin does not support',
                        hint="use an http(s) proxy-url, or reach the API server without a proxy")
                # urllib3 does not turn user:password@ in the proxy URL into credentials: the
                # tunnel sends them, so the REST calls must too, or an authenticating proxy says 407.
                url, proxy_headers = _split_proxy_credentials(proxy)
                self._pool = urllib3.ProxyManager(url, proxy_headers=proxy_headers, **kw)
            else:
                self._pool = urllib3.PoolManager(**kw)
        return self._pool

    def _url(self, path: str, query: dict | None) -> str:
        if not path.startswith("/"):
            path = "/" + path
        url = self.conn.server + path
        if query:
            pairs = []
            for key, value in query.items():
                if value is None:
                    continue
                if isinstance(value, bool):
                    value = "true" if value else "false"
                pairs.append((key, value))
            if pairs:
                url += ("&" if "?" in url else "?") + urlencode(pairs, doseq=True)
        return url

    def _timeout(self) -> Any:
        import urllib3

        t = self.conn.request_timeout
        return urllib3.Timeout(connect=t, read=t) if t else urllib3.Timeout(connect=None, read=None)

    def _send(self, method: str, path: str, query: dict | None, body: bytes | None, content_type: str | None,
              timeout: Any, stream: bool = False) -> Any:
        import urllib3

        log = logging.getLogger(__name__)
        url = self._url(path, query)
        for attempt in (1, 2):
            headers = {"Accept": "application/json", "User-Agent": user_agent()}
            if content_type:
                headers["Content-Type"] = content_type
            headers.update(self.conn.auth_headers())
            started = time.monotonic()
            try:
                resp = self._pool_manager().request(
                    method, url, body=body, headers=headers, timeout=timeout,
                    preload_content=not stream, redirect=False, retries=False)
            except urllib3.exceptions.HTTPError as exc:
                raise self._unreachable(exc, f"{method} {path}") from exc
            log.debug("%s %s -> %s in %.0f ms", method, url, resp.status, (time.monotonic() - started) * 1000)
            if resp.status == 401 and attempt == 1 and self.conn.refresh_credentials():
                # exec-plugin credentials may have been revoked early: run the plugin again, once.
                resp.release_conn()
                self.close()
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, method: str, path: str, query: dict | None = None, body: Any = None,
              content_type: str | None = None) -> dict:
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            content_type = content_type or "application/json"
        resp = self._send(method, path, query, data, content_type, self._timeout())
        raw = resp.data
        if resp.status >= 400:
            raise error_from_status(resp.status, raw, method=method, path=path, conn=self.conn)
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UnavailableError(
                f"the API server at {self.conn.server} answered {method} {path} with something that is not JSON",
                hint="check that the kubeconfig's server is the Kubernetes API (not a proxy or load balancer page)",
            ) from exc
        if not isinstance(doc, dict):
            raise UnavailableError(f"the API server answered {method} {path} with JSON that is not an object")
        return doc

    def _unreachable(self, exc: Exception, what: str) -> UnavailableError:
        import urllib3.exceptions as ux

        conn = self.conn
        cause: BaseException = exc
        if isinstance(exc, ux.MaxRetryError) and exc.reason is not None:
            cause = exc.reason
        if isinstance(cause, ux.ProxyError) and cause.original_error is not None:
            cause = cause.original_error
        detail = _describe(cause)
        where = conn.describe()
        if isinstance(cause, ux.SSLError) or "CERTIFICATE_VERIFY_FAILED" in detail:
            verify_failed = any(s in detail for s in ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed",
                                                      "doesn't match", "Hostname mismatch", "IP address mismatch"))
            if verify_failed:
                return ApiTLSError(
                    f"cannot verify the TLS certificate of the Kubernetes API at {conn.server}: {detail}",
                    hint=f"the server's certificate is not signed by the CA in the kubeconfig or does not name "
                         f'"{conn.server_hostname()}" ({where}): check certificate-authority(-data) and '
                         "tls-server-name of the cluster entry; insecure-skip-tls-verify: true turns the check "
                         "off (not recommended) - the plugin never skips it on its own",
                )
            return ApiTLSError(
                f"TLS handshake with the Kubernetes API at {conn.server} failed: {detail}",
                hint=f"check the client certificate of the kubeconfig user and the cluster's TLS settings ({where})",
            )
        if isinstance(cause, ux.ReadTimeoutError):
            timeout = conn.request_timeout
            return ApiUnreachable(
                f"the Kubernetes API at {conn.server} did not answer {what} within "
                f"{timeout:g} s" if timeout else f"the Kubernetes API at {conn.server} stopped answering {what}",
                hint="the cluster may be overloaded; retry, or raise --request-timeout",
            )
        return ApiUnreachable(
            f"cannot reach the Kubernetes API at {conn.server}: {detail}",
            hint=f"check that the cluster is up and the kubeconfig's server is right ({where})",
        )


def _split_proxy_credentials(proxy: str) -> tuple[str, dict[str, str] | None]:
    """``http://user:pw@host:3128`` -> (``http://host:3128``, ``Proxy-Authorization`` headers)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(proxy)
    if not parts.username:
        return proxy, None
    import base64

    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    header = {"Proxy-Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), header


def _set_read_timeout(resp: Any, seconds: float) -> None:
    """Shrink the socket timeout of a streaming response to what is left of the deadline."""
    sock = getattr(getattr(resp, "connection", None), "sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(0.05, seconds))
        except OSError:
            pass


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a connection failure."""
    import urllib3.exceptions as ux

    if isinstance(exc, ux.NameResolutionError):
        return f"cannot resolve host {getattr(exc, 'host', '')!s}".rstrip()
    if isinstance(exc, ux.NewConnectionError):
        text = str(exc)
        if "refused" in text.lower():
            return "connection refused"
        return text.split(": ", 1)[-1] if ": " in text else text
    if isinstance(exc, ux.ConnectTimeoutError):
        return "timed out while connecting"
    if isinstance(exc, ux.ReadTimeoutError):
        return "timed out waiting for the answer"
    if isinstance(exc, ux.ProtocolError):
        inner = exc.args[1] if len(exc.args) > 1 else None
        return f"connection dropped ({inner or exc.args[0] if exc.args else 'protocol error'})"
    text = str(exc)
    if isinstance(exc, ux.SSLError) and exc.args:
        inner = exc.args[0]
        text = str(getattr(inner, "reason", None) and f"{inner.reason}: {inner}" or inner)
    return text or type(exc).__name__
