"""Server side of `pods/{name}/portforward`: what the API server + kubelet + runtime put on the wire.

The API server (`tests/sandbox/apiserver.py`) authenticates, authorises and finds the pod, then
hands the raw connection to `serve`. Three protocols are told apart exactly as the API server does:

1. a websocket whose subprotocols contain `SPDY/3.1+...k8s.io` -> SPDY tunnelled in the websocket
   (kubectl 1.31+ first try; `tunnel.py`);
2. any other websocket -> proxied to the kubelet's `v4.channel.k8s.io` handler (the Python client,
   the plugin; `websocket.py`);
3. a non-websocket upgrade -> SPDY/3.1 (`kubectl port-forward` <= 1.30 and every later fallback;
   `spdy.py`); a request that is no upgrade at all gets the API server's 400
   `Upgrade request required`.

Every session runs on the calling thread until it ends; pod connections are copied by one extra
thread per forwarded connection. `dial(port)` stands for the runtime dialling `localhost:port` in
the pod's network namespace; when it raises, its message goes on the error channel/stream as
`error forwarding port P to pod SANDBOX_ID, uid : MESSAGE` (the runtime's streaming server passes
the pod sandbox id as pod name and an empty uid).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate

from . import spdy, tunnel, websocket

__all__ = ["ForwardOptions", "is_upgrade_request", "is_websocket_request", "parse_ports", "serve"]

SPDY_PROTOCOL = "portforward.k8s.io"


@dataclass(frozen=True)
class ForwardOptions:
    """Knobs of the simulated kubelet/runtime (defaults = a stock kubelet with containerd)."""

    #: bytes per read from the pod connection = payload of one data frame (Go's io.Copy: 32 KiB)
    frame_size: int = 32 * 1024
    #: containerd waits this long for the second direction after the first one ended
    grace: float = 1.0
    #: the streaming server's StreamCreationTimeout: how long half a SPDY stream pair may wait
    stream_creation_timeout: float = 30.0
    #: emulate Go's TLS dynamic record sizing in the websocket tunnel's message boundaries
    tunnel_dynamic_records: bool = True


def _get(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    return value if isinstance(value, str) else ""


def _get_all(headers: Mapping[str, str], name: str) -> list[str]:
    get_all = getattr(headers, "get_all", None)
    if callable(get_all):
        return list(get_all(name) or [])
    value = _get(headers, name)
    return [value] if value else []


def _tokens(headers: Mapping[str, str], name: str) -> list[str]:
    out: list[str] = []
    for value in _get_all(headers, name):
        out.extend(t.strip().lower() for t in value.split(","))
    return out


def is_websocket_request(headers: Mapping[str, str]) -> bool:
    """wsstream.IsWebSocketRequest: `Upgrade: websocket` and `upgrade` among the Connection tokens."""
    return (_get(headers, "Upgrade").strip().lower() == "websocket"
            and "upgrade" in _tokens(headers, "Connection"))


def is_upgrade_request(headers: Mapping[str, str]) -> bool:
    """httpstream.IsUpgradeRequest: any `Connection` value containing `upgrade`."""
    return any("upgrade" in v.lower() for v in _get_all(headers, "Connection"))


def _raw_response(sock: socket.socket, status: str, headers: list[tuple[str, str]],
                  body: bytes = b"") -> None:
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers]
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    except OSError:
        pass


def _go_http_error(sock: socket.socket, code: int, reason: str, text: str,
                   extra: list[tuple[str, str]] | None = None) -> None:
    """net/http's http.Error(): text/plain, nosniff, body + newline."""
    body = (text + "\n").encode()
    headers = sorted([("Content-Type", "text/plain; charset=utf-8"),
                      ("X-Content-Type-Options", "nosniff")] + (extra or []))
    headers += [("Date", formatdate(usegmt=True)), ("Content-Length", str(len(body)))]
    _raw_response(sock, f"{code} {reason}", headers, body)


def _go_plain(sock: socket.socket, code: int, reason: str, text: str) -> None:
    """A Go handler that wrote a status and `fmt.Fprint`ed text (content type sniffed)."""
    body = text.encode()
    _raw_response(sock, f"{code} {reason}", [
        ("Content-Type", "text/plain; charset=utf-8"), ("Date", formatdate(usegmt=True)),
        ("Content-Length", str(len(body)))], body)


def _status_response(sock: socket.socket, code: int, reason: str, status_reason: str,
                     message: str, details: dict | None = None) -> None:
    """An API server `Status` body."""
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": message, "reason": status_reason}
    if details:
        status["details"] = details
    status["code"] = code
    body = json.dumps(status, separators=(",", ":")).encode()
    _raw_response(sock, f"{code} {reason}", [
        ("Cache-Control", "no-cache, private"), ("Content-Type", "application/json"),
        ("Date", formatdate(usegmt=True)), ("Content-Length", str(len(body)))], body)


def parse_ports(query: dict[str, list[str]]) -> list[int]:
    """The kubelet's NewV4Options: `ports` repeated and/or comma separated, each 1..65535."""
    values = query.get("ports") or query.get("port") or []
    if not values:
        raise ValueError('query parameter "port" is required')
    ports: list[int] = []
    for value in values:
        if not value:
            raise ValueError('query parameter "port" cannot be empty')
        for item in value.split(","):
            if not item.isdigit() or int(item) > 65535:
                why = "value out of range" if item.isdigit() else "invalid syntax"
                raise ValueError(f'unable to parse "{value}" as a port: strconv.ParseUint: '
                                 f'parsing "{item}": {why}')
            if int(item) < 1:
                raise ValueError(f'port "{value}" must be > 0')
            ports.append(int(item))
    return ports


def _websocket_handshake_error(sock: socket.socket, method: str,
                               headers: Mapping[str, str]) -> bool:
    """x/net/websocket's ReadHandshake checks; True when an error response was written."""
    if method != "GET":
        _raw_response(sock, "405 Method Not Allowed", [], b"bad method")
        return True
    if not _get(headers, "Sec-WebSocket-Key"):
        _raw_response(sock, "400 Bad Request", [], b"mismatch challenge/response")
        return True
    if _get(headers, "Sec-WebSocket-Version") not in ("13", "8"):   # x/net also takes hybi-08
        _raw_response(sock, "400 Bad Request", [("Sec-WebSocket-Version", "13")],
                      b"missing or bad WebSocket Version")
        return True
    return False


def _serve_v4(method, headers, query, rfile, sock, dial, pod_sandbox_id, options) -> None:
    try:
        ports = parse_ports(query)
    except ValueError as exc:
        _go_plain(sock, 400, "Bad Request", str(exc))
        return
    if _websocket_handshake_error(sock, method, headers):
        return
    protocol = websocket.negotiate(websocket.offered_protocols(headers))
    if protocol is None:
        _raw_response(sock, "403 Forbidden", [])
        return
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Accept: " + websocket.accept_key(_get(headers, "Sec-WebSocket-Key")),
        "Sec-WebSocket-Protocol: " + protocol,   # x/net writes the line even for ""
    ]
    writer = websocket.SocketWriter(sock)
    if not writer.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")):
        return
    session = websocket.ChannelSession(rfile, writer, ports, dial, protocol, pod_sandbox_id,
                                       frame_size=options.frame_size, grace=options.grace)
    session.run()


def _spdy_handshake(sock: socket.socket, headers: Mapping[str, str],
                    client_protocols: list[str]) -> bool:
    """httpstream.Handshake + the SPDY response upgrader's header checks (kubelet side)."""
    if not client_protocols:
        # Handshake returns an error without writing: the kubelet answers an empty 200, which the
        # API server's upgrade proxy turns into an internal error
        message = "invalid upgrade response: status code 200"
        _status_response(sock, 500, "Internal Server Error", "InternalError",
                         f"Internal error occurred: {message}",
                         {"causes": [{"message": message}]})
        return False
    if SPDY_PROTOCOL not in client_protocols:
        text = (f"unable to upgrade: unable to negotiate protocol: client supports "
                f"[{' '.join(client_protocols)}], server accepts [{SPDY_PROTOCOL}]")
        _go_http_error(sock, 403, "Forbidden", text,
                       [("X-Accepted-Stream-Protocol-Versions", SPDY_PROTOCOL)])
        return False
    return True


def _serve_spdy(headers, rfile, sock, dial, pod_sandbox_id, options) -> None:
    if not _spdy_handshake(sock, headers, _get_all(headers, "X-Stream-Protocol-Version")):
        return
    if "spdy/3.1" not in _get(headers, "Upgrade").lower():
        _go_http_error(sock, 400, "Bad Request",
                       "unable to upgrade: missing upgrade headers in request: "
                       + repr({k: v for k, v in headers.items()}))
        return
    _raw_response(sock, "101 Switching Protocols", [
        ("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
        ("X-Stream-Protocol-Version", SPDY_PROTOCOL), ("Date", formatdate(usegmt=True))])
    session = spdy.SpdySession(spdy.DirectTransport(rfile, sock), dial, pod_sandbox_id,
                               frame_size=options.frame_size, grace=options.grace,
                               creation_timeout=options.stream_creation_timeout)
    session.run()


def _serve_tunnel(method, headers, rfile, sock, dial, pod_sandbox_id, options) -> None:
    offered = websocket.offered_protocols(headers)
    protocols = tunnel.tunnel_protocols(offered)
    # 1. the API server's SPDY upgrade towards the kubelet
    if not _spdy_handshake(sock, headers, protocols):
        return
    # 2. gorilla/websocket upgrades the client connection
    problem = None
    if "upgrade" not in _tokens(headers, "Connection") or "websocket" not in _tokens(headers, "Upgrade"):
        problem = (400, "Bad Request")
    elif method != "GET":
        problem = (405, "Method Not Allowed")
    elif "13" not in _tokens(headers, "Sec-WebSocket-Version") or not websocket.valid_key(_get(headers, "Sec-WebSocket-Key")):
        problem = (400, "Bad Request")
    if problem is not None:
        _go_http_error(sock, problem[0], problem[1], problem[1],
                       [("Sec-Websocket-Version", "13")])
        return
    chosen = tunnel.TUNNEL_PREFIX + SPDY_PROTOCOL
    subprotocol = chosen if chosen in offered else ""
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Accept: " + websocket.accept_key(_get(headers, "Sec-WebSocket-Key"))]
    if subprotocol:
        lines.append("Sec-WebSocket-Protocol: " + subprotocol)
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    except OSError:
        return
    transport = tunnel.TunnelTransport(rfile, sock, dynamic_records=options.tunnel_dynamic_records)
    session = spdy.SpdySession(transport, dial, pod_sandbox_id, frame_size=options.frame_size,
                               grace=options.grace,
                               creation_timeout=options.stream_creation_timeout)
    session.run()


def serve(method: str, headers: Mapping[str, str], query: dict[str, list[str]], rfile,
          sock: socket.socket, dial: Callable[[int], socket.socket], *,
          pod_sandbox_id: str | None = None, options: ForwardOptions | None = None) -> None:
    """Answer a portforward request on a connection whose request headers were just read.

    `rfile` is the buffered reader positioned after the headers, `sock` the socket to write to.
    Writes the 101 (or an error response exactly as the real chain would produce it) and runs the
    session until it ends; the caller closes the socket afterwards. `pod_sandbox_id` is the id the
    runtime names in error messages (pass `network.sandbox_id(ns, pod)`).
    """
    options = options or ForwardOptions()
    try:  # Go sets TCP_NODELAY on every TCP connection
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    if pod_sandbox_id is None:
        pod_sandbox_id = "0" * 64
    method = method.upper()
    if not is_upgrade_request(headers):
        _status_response(sock, 400, "Bad Request", "BadRequest", "Upgrade request required")
        return
    if is_websocket_request(headers):
        if tunnel.tunnel_protocols(websocket.offered_protocols(headers)):
            _serve_tunnel(method, headers, rfile, sock, dial, pod_sandbox_id, options)
        else:
            _serve_v4(method, headers, query, rfile, sock, dial, pod_sandbox_id, options)
        return
    _serve_spdy(headers, rfile, sock, dial, pod_sandbox_id, options)
