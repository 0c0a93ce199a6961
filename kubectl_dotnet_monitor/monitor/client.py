"""MonitorClient: dotnet-monitor's HTTP API through a pod tunnel, with errors a person can act on.

A request goes over a fresh tunnel (one ``v4.channel.k8s.io`` websocket = one TCP connection), or
over the tunnel the previous JSON exchange left open with keep-alive, and sends ``Authorization: Bearer <token>`` (when a token is given; it never appears in messages or
reprs) and an ``Accept`` header. Non-2xx answers become typed errors (reference §1.3, §1.6):

* 400 ProblemDetails -> :class:`MonitorError` with ``detail`` (process selection gets a hint),
  "Operation not found." -> :class:`NotFoundError`;
  10.x empty-bodied 400 -> "the request was malformed" (with what was sent);
  8/9 ValidationProblemDetails -> the ``errors`` map, listed
* 401 / 403 -> :class:`ForbiddenError` (key rejected / subject mismatch)
* 404 -> :class:`MonitorError` (route unknown to this version, or the feature is off)
* 406 -> :class:`MonitorError`; 429 -> :class:`BusyError`; 500 -> :class:`MonitorError`
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from kubectl_dotnet_monitor import user_agent
from kubectl_dotnet_monitor.errors import (
    BusyError,
    ForbiddenError,
    MonitorError,
    NotFoundError,
    PluginError,
)
from kubectl_dotnet_monitor.monitor.http import (
    DEFAULT_HOST,
    Headers,
    HttpProtocolError,
    HttpResponse,
    Tunnel,
    request,
)

JSON = "application/json"
_MAX_JSON = 16 * 1024 * 1024
_MAX_ERROR_BODY = 64 * 1024


class MonitorHttpError(MonitorError):
    """dotnet-monitor answered with an error status. ``status`` and ``detail`` are kept."""

    def __init__(self, message: str, status: int, detail: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.detail = detail


class MonitorBusyError(MonitorHttpError, BusyError):
    """429: the artifact's concurrency limit is reached."""


class MonitorForbiddenError(ForbiddenError):
    """401/403 from dotnet-monitor."""

    def __init__(self, message: str, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class MonitorNotFoundError(NotFoundError):
    """An object dotnet-monitor was asked about does not exist (e.g. an operation id)."""

    def __init__(self, message: str, status: int, detail: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.detail = detail


def encode_query(query: Mapping[str, Any] | None) -> str:
    """PURE: ``?a=1&b=true`` from a dict (``None`` values dropped, bools lower-case), or ``""``."""
    if not query:
        return ""
    pairs = []
    for key, value in query.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        pairs.append((key, str(value)))
    return "?" + urllib.parse.urlencode(pairs) if pairs else ""


def artifact_name(path: str) -> str:
    """PURE: "gcdump" for "/gcdump", "operations" for "/operations/ID"."""
    return path.strip("/").split("/", 1)[0].split("?", 1)[0] or "/"


def _problem(body: bytes) -> dict | None:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _validation_errors(errors: object) -> list[str]:
    out = []
    if isinstance(errors, dict):
        for field, messages in errors.items():
            if isinstance(messages, list):
                messages = "; ".join(str(m) for m in messages)
            out.append(f"{field or '(body)'}: {messages}")
    return out


def monitor_error(status: int, reason: str, headers: Headers, body: bytes, *, method: str, target: str,
                  log_hint: str | None = None) -> PluginError:
    """PURE: the typed error for a non-2xx answer from dotnet-monitor to ``method target``."""
    sent = f"{method} {target}"
    name = artifact_name(target)
    doc = _problem(body) if body.strip() else None
    detail = doc.get("detail") if doc and isinstance(doc.get("detail"), str) else None
    see_log = f"see the monitor's log: {log_hint}" if log_hint else "see the monitor's log"

    if status == 400:
        if detail:
            low = detail.lower()
            if "unable to discover a target process" in low:
                return MonitorHttpError(
                    f"dotnet-monitor cannot find the target process: {detail}", status, detail,
                    hint=("the process may have exited, or the app was not prepared for diagnostics "
                          "(dotnet-monitor must share the app's diagnostic port: a shared /tmp or "
                          "DOTNET_DiagnosticPorts in listen mode); list what it sees with the "
                          "plugin's processes command"))
            if "multiple target processes" in low or "no default process" in low:
                return MonitorHttpError(
                    f"dotnet-monitor cannot pick a process on its own: {detail}", status, detail,
                    hint="pass --pid, --uid or --process-name")
            if "operation not found" in low:
                return MonitorNotFoundError(f"dotnet-monitor knows no such operation ({sent}): {detail}",
                                            status, detail)
            return MonitorHttpError(f"dotnet-monitor refused {sent}: {detail}", status, detail)
        listed = _validation_errors(doc.get("errors")) if doc else []
        if listed:
            title = doc.get("title") if doc and isinstance(doc.get("title"), str) else "invalid request"
            return MonitorHttpError(
                f"dotnet-monitor rejected {sent}: {title}\n  " + "\n  ".join(listed), status,
                hint="check the values passed on the command line")
        return MonitorHttpError(
            f"dotnet-monitor rejected the request as malformed (400 without details): {sent}", status,
            hint=("a value may be spelled in a way this dotnet-monitor version does not accept "
                  "(10.0.0-10.0.1 want PascalCase enum values); check the flags, or report this"))
    if status == 401:
        challenge = headers.get("www-authenticate") or ""
        found = re.search(r'error_description="([^"]*)"', challenge)
        why = f": {found.group(1)}" if found else ""
        return MonitorForbiddenError(
            f"the monitor rejected our API key (401){why}", status,
            hint="the key may not match this monitor's (re-inject?)")
    if status == 403:
        return MonitorForbiddenError(
            "the monitor accepted our API key but not its subject (403)", status,
            hint="the key's subject does not match the monitor's configured Subject (re-inject?)")
    if status == 404:
        return MonitorHttpError(
            f"dotnet-monitor does not serve {method} /{name} (404): this dotnet-monitor version does "
            f"not support {name}, or the feature is not enabled", status, detail,
            hint="use a newer dotnet-monitor image, or enable the feature in its configuration")
    if status == 406:
        return MonitorHttpError(
            f"dotnet-monitor cannot produce the requested format for /{name} (406 Not Acceptable)",
            status, detail, hint="choose another --format")
    if status == 429:
        return MonitorBusyError(
            f"another {name} collection is running in this pod", status, detail,
            hint="wait for it or use --wait")
    if status == 500:
        extra = f": {detail}" if detail else ""
        return MonitorHttpError(f"dotnet-monitor failed {sent} (500 Internal Server Error){extra}",
                                status, detail, hint=see_log)
    extra = f": {detail}" if detail else ""
    return MonitorHttpError(f"dotnet-monitor answered {sent} with {status} {reason}{extra}".rstrip(),
                            status, detail, hint=see_log if status >= 500 else None)


class MonitorClient:
    """Client of one dotnet-monitor, reached through ``open_tunnel()`` (a fresh tunnel per request,
    except that a JSON exchange hands its kept-alive tunnel to the next request).

    ``timeout`` is the idle timeout for JSON requests; artifact streams choose their own.
    ``log_hint`` (e.g. ``kubectl logs -n ns pod -c dotnet-monitor``) is suggested on server errors.
    """

    def __init__(self, open_tunnel: Callable[[], Tunnel], token: str | None, *, host: str = DEFAULT_HOST,
                 timeout: float | None = 30.0, log_hint: str | None = None) -> None:
        self._open_tunnel = open_tunnel
        self._token = token
        self._host = host
        self._timeout = timeout
        self.log_hint = log_hint
        # A tunnel whose last JSON exchange ended cleanly with keep-alive: the next request uses it
        # instead of a new port-forward (one stream through the API server and kubelet less).
        self._idle: Tunnel | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the kept-alive tunnel, if any."""
        with self._lock:
            idle, self._idle = self._idle, None
        if idle is not None:
            idle.close()

    def __repr__(self) -> str:
        return f"MonitorClient(host={self._host!r}, token={'<set>' if self._token else None})"

    # -- generic ------------------------------------------------------------------------------

    def send(self, method: str, path: str, query: Mapping[str, Any] | None, accept: str,
             body: bytes | None = None, content_type: str | None = None,
             timeout: float | None = None, keep_alive: bool = False) -> HttpResponse:
        """Send one request; return the response whatever its status (the caller owns it).

        A kept-alive tunnel is used when there is one; if the monitor closed it meanwhile (before
        any response byte), the request goes once more over a fresh tunnel.
        """
        target = path + encode_query(query)
        headers = [("Accept", accept), ("User-Agent", user_agent()),
                   ("Connection", "keep-alive" if keep_alive else "close")]
        if self._token:
            headers.append(("Authorization", f"Bearer {self._token}"))
        if body is not None:
            headers.append(("Content-Type", content_type or JSON))
        with self._lock:
            tunnel, self._idle = self._idle, None
        if tunnel is not None:
            try:
                tunnel.settimeout(timeout)
                return request(tunnel, method, target, headers, body, host=self._host)
            except (PluginError, OSError):
                tunnel.close()  # closed by the monitor while idle: start over on a new tunnel
            except BaseException:
                tunnel.close()
                raise
        tunnel = self._open_tunnel()
        try:
            tunnel.settimeout(timeout)
            return request(tunnel, method, target, headers, body, host=self._host)
        except BaseException:
            tunnel.close()
            raise

    def _park(self, resp: HttpResponse) -> None:
        """Keep ``resp``'s tunnel for the next request when HTTP allows it; close it otherwise."""
        if not resp.reusable():
            resp.close()
            return
        tunnel = resp.detach()
        with self._lock:
            previous, self._idle = self._idle, tunnel
        if previous is not None:
            previous.close()

    def open_stream(self, method: str, path: str, query: Mapping[str, Any] | None, accept: str,
                    body: bytes | None = None, *, timeout: float | None = None,
                    content_type: str | None = None) -> HttpResponse:
        """Start an artifact request; return the 2xx response with its body unread.

        ``timeout`` bounds the wait for the response head (``None``: wait as long as it takes, e.g.
        a dump; keep-alive pings keep the tunnel up) and stays the body's idle timeout until
        ``resp.settimeout()`` changes it. Non-2xx answers raise typed errors (the tunnel is closed).
        """
        resp = self.send(method, path, query, accept, body, content_type, timeout)
        if 200 <= resp.status < 300:
            return resp
        raise self._error(resp, method, path + encode_query(query))

    def request_json(self, method: str, path: str, query: Mapping[str, Any] | None = None,
                     body: Any = None) -> Any:
        """A JSON request/response exchange; ``None`` for an empty 2xx body."""
        payload = None if body is None else json.dumps(body).encode("utf-8")
        resp = self.send(method, path, query, JSON, payload, JSON, self._timeout, keep_alive=True)
        target = path + encode_query(query)
        try:
            if not 200 <= resp.status < 300:
                raise self._error(resp, method, target)
            data = resp.read(_MAX_JSON)
        except BaseException:
            resp.close()
            raise
        self._park(resp)
        if not data.strip():
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise MonitorHttpError(f"dotnet-monitor answered {method} {target} with invalid JSON",
                                   resp.status) from exc

    def _error(self, resp: HttpResponse, method: str, target: str) -> PluginError:
        with resp:
            try:
                resp.settimeout(10.0)
                body = resp.read(_MAX_ERROR_BODY)
            except (PluginError, OSError):
                body = b""
        return monitor_error(resp.status, resp.reason, resp.headers, body, method=method, target=target,
                             log_hint=self.log_hint)

    # -- routes -------------------------------------------------------------------------------

    def processes(self) -> list[dict]:
        """``GET /processes``: ``[{pid, uid, name, isDefault}]``."""
        doc = self.request_json("GET", "/processes")
        if not isinstance(doc, list) or not all(isinstance(p, dict) for p in doc):
            raise HttpProtocolError("dotnet-monitor's /processes answer is not a list of processes")
        return doc

    def info(self) -> dict:
        """``GET /info``: version, runtime version, diagnostic port mode, capabilities (10.0+)."""
        doc = self.request_json("GET", "/info")
        if not isinstance(doc, dict):
            raise HttpProtocolError("dotnet-monitor's /info answer is not an object")
        return doc

    def operation(self, operation_id: str) -> dict:
        """``GET /operations/{id}``: the operation's status."""
        doc = self.request_json("GET", f"/operations/{urllib.parse.quote(operation_id, safe='')}")
        if not isinstance(doc, dict):
            raise HttpProtocolError("dotnet-monitor's operation answer is not an object")
        return doc

    def delete_operation(self, operation_id: str, stop: bool = False) -> None:
        """``DELETE /operations/{id}`` (``stop=True``: end gracefully, keeping a valid artifact)."""
        self.request_json("DELETE", f"/operations/{urllib.parse.quote(operation_id, safe='')}",
                          {"stop": True} if stop else None)


def operation_id_from_location(location: str | None) -> str | None:
    """PURE: the operation id at the end of a ``Location: …/operations/<id>`` header."""
    if not location:
        return None
    path = urllib.parse.urlsplit(location).path.rstrip("/")
    head, _, last = path.rpartition("/")
    return last if head.endswith("/operations") and last else None

