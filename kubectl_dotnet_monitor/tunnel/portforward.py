"""PodTunnel: one TCP connection to a pod port over the API server's ``v4.channel.k8s.io`` websocket.

``GET /api/v1/namespaces/NS/pods/POD/portforward?ports=PORT`` upgraded to a websocket. Every
binary message starts with a channel byte: 0 carries the pod connection's data (both ways), 1 carries
the kubelet's error text (server to client). The first message on each channel is the 3-byte
prefix ``channel + port (uint16 little-endian)``. One websocket is one TCP connection into the pod:
when the pod side closes, the websocket closes. There is no half-close.

Everything that can go wrong surfaces as a typed error: a refused upgrade keeps its HTTP status and
the API server's message (403 names the missing permission), kubelet error text is raised when it
arrives, and a reset, TLS error or EOF without a close frame is an error, never a clean end.

Proxies: the kubeconfig's ``proxy-url`` is honoured when it is ``http://`` (HTTP ``CONNECT``);
https/socks proxies and the ``HTTPS_PROXY`` environment variable are not (like the REST layer).
"""

from __future__ import annotations

import json
import re
import struct
import urllib.parse
from typing import TYPE_CHECKING

from kubectl_dotnet_monitor import user_agent
from kubectl_dotnet_monitor.errors import ForbiddenError, NotFoundError, NotReadyError
from kubectl_dotnet_monitor.tunnel.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    TunnelClosedError,
    TunnelError,
    TunnelProtocolError,
    TunnelStalledError,
    TunnelUnavailableError,
    UpgradeRefused,
    WebSocket,
    connect,
)

if TYPE_CHECKING:
    from kubectl_dotnet_monitor.kube.config import ClusterConnection

SUBPROTOCOL = "v4.channel.k8s.io"
DATA_CHANNEL = 0
ERROR_CHANNEL = 1
#: Keep-alive ping interval while waiting for data (load balancers cut idle connections).
DEFAULT_KEEPALIVE = 30.0
_MAX_ERROR_TEXT = 64 * 1024

__all__ = [
    "PodPortError",
    "PodTunnel",
    "TunnelClosedError",
    "TunnelError",
    "TunnelForbiddenError",
    "TunnelNotFoundError",
    "TunnelNotReadyError",
    "TunnelProtocolError",
    "TunnelStalledError",
    "TunnelUnavailableError",
    "error_channel_hint",
    "upgrade_error",
]


class TunnelForbiddenError(TunnelError, ForbiddenError):
    """The API server refused the port-forward (401/403)."""


class TunnelNotFoundError(TunnelError, NotFoundError):
    """The pod (or namespace) does not exist (404)."""


class TunnelNotReadyError(TunnelError, NotReadyError):
    """The pod cannot be port-forwarded yet (not scheduled, not running)."""


class PodPortError(TunnelUnavailableError):
    """The kubelet reported an error on the port's error channel (e.g. nothing listens there)."""


def _api_status_message(body: bytes) -> str | None:
    """``message`` of a Kubernetes ``Status`` body, or the body's text when it is not one."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return doc["message"]
    return text[:300]


def upgrade_error(status: int, reason: str, body: bytes, namespace: str, pod: str, port: int,
                  endpoint: str) -> TunnelError:
    """PURE: the typed error for a port-forward upgrade answered with ``status`` instead of 101."""
    message = _api_status_message(body)
    said = f": {message}" if message else ""
    target = f"pod {namespace}/{pod}"
    err: TunnelError
    if status == 401:
        err = TunnelForbiddenError(
            f"the API server rejected our credentials (401 Unauthorized){said}",
            hint="log in again or refresh the kubeconfig credentials (does `kubectl get pods` work?)",
        )
    elif status == 403:
        verbs = re.findall(r'cannot (\w+) resource "pods/portforward"', message or "")
        missing = " and ".join(f"`{v}`" for v in dict.fromkeys(verbs)) or "`get` and `create`"
        err = TunnelForbiddenError(
            f"not allowed to port-forward to {target}: missing {missing} on `pods/portforward` "
            f"in namespace {namespace}{said}",
            hint=(f"ask for a Role granting get and create on pods/portforward in {namespace} "
                  "(Kubernetes 1.35+ checks both for websocket port-forwarding); "
                  f"check with `kubectl auth can-i create pods/portforward -n {namespace}`"),
        )
    elif status == 404:
        err = TunnelNotFoundError(f"{target} not found{said}" if message is None
                                  else f"cannot port-forward to {target}{said}",
                                  hint="check the pod name and namespace (-n)")
    elif status == 400 and message and ("does not have a host assigned" in message
                                        or "not running" in message):
        err = TunnelNotReadyError(f"cannot port-forward to {target} yet{said}",
                                  hint="wait until the pod is scheduled and running")
    elif status == 400:
        err = TunnelUnavailableError(f"the API server refused the port-forward to {target} "
                                     f"(400 {reason or 'Bad Request'}){said}")
    elif status >= 500:
        err = TunnelUnavailableError(
            f"the API server could not port-forward to {target} ({status} {reason}){said}".rstrip(),
            hint="the node or the API server may be unhealthy; try again",
        )
    elif 200 <= status < 300:
        err = TunnelUnavailableError(
            f"{endpoint} answered the port-forward with {status} {reason} instead of upgrading "
            "to a websocket",
            hint="a proxy in front of the API server may not support websockets",
        )
    else:
        err = TunnelUnavailableError(f"the API server refused the port-forward to {target} "
                                     f"({status} {reason}){said}".rstrip())
    err.status = status
    err.api_message = message
    return err


def error_channel_hint(text: str, port: int) -> str | None:
    """PURE: what to do about a kubelet error-channel message."""
    low = text.lower()
    if "connection refused" in low or "failed to connect to localhost" in low:
        return (f"nothing listens on port {port} in the pod: is dotnet-monitor running "
                "and bound to localhost or a wildcard address?")
    if "timeout" in low or "timed out" in low:
        return f"the pod did not accept a connection on port {port} in time; try again"
    return None


class PodTunnel:
    """Exactly one TCP connection to ``pod:port``, carried by a ``v4.channel.k8s.io`` websocket.

    Socket-like and single-threaded: :meth:`sendall` writes, :meth:`recv_into` reads (0 = clean end,
    i.e. the websocket was closed with a close frame). Not thread-safe.
    """

    def __init__(self, ws: WebSocket, namespace: str, pod: str, port: int) -> None:
        self._ws = ws
        self.namespace = namespace
        self.pod = pod
        self.port = port
        self._data_left = 0          # data-channel payload bytes left in the current frame
        self._msg_channel = -1       # channel of the message the current frame belongs to
        self._prefixed = [False, False]
        self._error_text = bytearray()
        self._eof = False
        self._failure: TunnelError | None = None
        self._closed = False
        #: Payload bytes delivered to the caller so far.
        self.bytes_received = 0

    @classmethod
    def open(cls, conn: ClusterConnection, namespace: str, pod: str, port: int,
             connect_timeout: float = 15.0, *, keepalive: float | None = DEFAULT_KEEPALIVE) -> PodTunnel:
        """Port-forward to ``namespace/pod:port`` through the API server of ``conn``.

        ``connect_timeout`` bounds TCP, TLS and the websocket upgrade. Afterwards there is no idle
        timeout until :meth:`settimeout` is called; keep-alive pings go out every ``keepalive`` idle
        seconds. Raises a :class:`TunnelError` subclass (Forbidden/NotFound/NotReady/Unavailable).
        """
        split = urllib.parse.urlsplit(conn.server)
        https = split.scheme.lower() == "https"
        host, server_port = conn.host_port()
        base = split.path.rstrip("/")
        target = (f"{base}/api/v1/namespaces/{urllib.parse.quote(namespace, safe='')}"
                  f"/pods/{urllib.parse.quote(pod, safe='')}/portforward?ports={int(port)}")
        describe = f"pod {namespace}/{pod} port {port}"
        endpoint = f"the API server at {conn.server}"
        tls = getattr(conn, "tls", None)
        proxy = getattr(tls, "proxy_url", None)
        for attempt in (1, 2):
            headers = {"User-Agent": user_agent(), **conn.auth_headers()}
            try:
                ws = connect(host=host, port=server_port, target=target, headers=headers,
                             subprotocol=SUBPROTOCOL,
                             ssl_context=conn.ssl_context() if https else None,
                             server_hostname=conn.server_hostname() if https else None,
                             timeout=connect_timeout, describe=describe, endpoint=endpoint, proxy=proxy)
                break
            except UpgradeRefused as refused:
                refresh = getattr(conn, "refresh_credentials", None)
                if refused.status == 401 and attempt == 1 and refresh is not None and refresh():
                    continue  # exec-plugin credentials expired: one retry with fresh ones
                raise upgrade_error(refused.status, refused.reason, refused.body, namespace, pod, port,
                                    endpoint) from refused
        ws.set_keepalive(keepalive)
        return cls(ws, namespace, pod, port)

    # -- socket-like API -----------------------------------------------------------------------

    def settimeout(self, seconds: float | None) -> None:
        """Idle timeout for reads: :class:`TunnelStalledError` after this many seconds without a byte."""
        self._ws.settimeout(seconds)

    def set_keepalive(self, seconds: float | None) -> None:
        """Ping interval while waiting for data (``None`` = no pings)."""
        self._ws.set_keepalive(seconds)

    def ping(self) -> None:
        """Send one websocket ping now."""
        self._ws.ping()

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` to the pod (data channel)."""
        if self._closed:
            raise TunnelClosedError(f"the tunnel to pod {self.namespace}/{self.pod} is closed")
        view = memoryview(data)
        if not len(view):
            return
        self._ws.send_binary(b"\x00" + bytes(view))

    def recv_into(self, buf: memoryview | bytearray) -> int:
        """Read pod data into ``buf``; return the count, 0 on a clean end (websocket close frame).

        Raises :class:`PodPortError` when the kubelet reports an error (even after data),
        :class:`TunnelStalledError` on idle timeout, :class:`TunnelClosedError` on a reset/EOF.
        """
        if not len(buf):
            return 0
        while not self._data_left:
            if self._failure is not None:
                raise self._failure
            if self._eof:
                return 0
            try:
                self._next_data()
            except TunnelStalledError:
                raise  # nothing was consumed: the caller may wait again
            except TunnelError as exc:
                self._failure = exc
                raise
        view = buf if isinstance(buf, memoryview) else memoryview(buf)
        if len(view) > self._data_left:
            view = view[: self._data_left]
        got = self._ws.read_payload_into(view)
        self._data_left -= got
        self.bytes_received += got
        return got

    def data_ready(self) -> bool:
        """True when :meth:`recv_into` would return without waiting (used to batch reads)."""
        return self._failure is None and not self._eof and self._ws.data_ready()

    def close(self) -> None:
        """Close the websocket (and so the connection into the pod). Idempotent."""
        if not self._closed:
            self._closed = True
            self._ws.close()

    def abort(self) -> None:
        """Cut the connection now, from any thread: a read blocked in another thread fails at once.

        ``close()`` alone does not wake a thread blocked in ``recv`` on Linux; shutting the socket down
        does. The raw socket's ``shutdown`` is used (a TLS socket's own would drop the SSL object under
        the reading thread), so the reader sees the connection end and raises
        :class:`TunnelClosedError`; that thread still calls :meth:`close`. Idempotent, never raises.
        """
        import socket

        sock = getattr(self._ws, "_sock", None)
        if sock is None:
            return
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass  # already closed

    def __enter__(self) -> PodTunnel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- v4 channel protocol ----------------------------------------------------------------------

    def _next_data(self) -> None:
        """Advance to the next frame carrying data-channel bytes, handling everything else."""
        ws = self._ws
        while True:
            opcode, fin, length = ws.next_frame()
            if opcode == OP_CLOSE:
                self._eof = True
                self._check_error_pending()
                return
            if opcode == OP_CONTINUATION:
                channel = self._msg_channel
                if channel < 0:
                    raise TunnelProtocolError(f"{ws.describe}: continuation frame outside a message")
                payload_len = length
            elif opcode == OP_BINARY:
                if self._msg_channel >= 0:
                    raise TunnelProtocolError(f"{ws.describe}: new message inside a fragmented one")
                if length == 0:
                    raise TunnelProtocolError(f"{ws.describe}: empty message (no channel byte)")
                channel = ws.read_bytes(1)[0]
                payload_len = length - 1
                if channel > ERROR_CHANNEL:
                    raise TunnelProtocolError(f"{ws.describe}: message on unknown channel {channel}")
                if not self._prefixed[channel]:
                    self._read_port_prefix(channel, payload_len)
                    payload_len -= 2
            else:
                raise TunnelProtocolError(f"{ws.describe}: text frame on a binary channel protocol")
            self._msg_channel = -1 if fin else channel
            if channel == DATA_CHANNEL:
                if payload_len:
                    self._data_left = payload_len
                    return
                continue
            if len(self._error_text) + payload_len > _MAX_ERROR_TEXT:
                raise TunnelProtocolError(f"{ws.describe}: oversized error message")
            self._error_text += ws.read_bytes(payload_len)
            if fin:
                self._check_error_pending()

    def _read_port_prefix(self, channel: int, payload_len: int) -> None:
        ws = self._ws
        if payload_len < 2:
            raise TunnelProtocolError(f"{ws.describe}: channel {channel} did not start with the port")
        (port,) = struct.unpack("<H", ws.read_bytes(2))
        if port != self.port:
            raise TunnelProtocolError(f"{ws.describe}: channel {channel} is for port {port}, "
                                      f"not {self.port}")
        self._prefixed[channel] = True

    def _check_error_pending(self) -> None:
        text = bytes(self._error_text).decode("utf-8", "replace").strip()
        if not text:
            return
        self._error_text.clear()
        self._eof = True
        err = PodPortError(f"port-forward to pod {self.namespace}/{self.pod} port {self.port} failed: {text}",
                           hint=error_channel_hint(text, self.port))
        err.api_message = text
        raise err

