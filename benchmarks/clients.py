"""The comparison clients, each run as its own process so its peak RSS is its own.

    python -m benchmarks.clients pyclient  --kubeconfig K --namespace NS --pod P --port 52323 \
        --path '/gcdump?uid=...' --token JWT --dest FILE
    python -m benchmarks.clients ceiling-ws  --server https://... --ca CA --bearer T --namespace NS \
        --pod P --port 52323 --path ... --token JWT --dest FILE|-
    python -m benchmarks.clients ceiling-tcp --host-port 127.0.0.1:N --path ... --token JWT --dest FILE|-

Each prints one JSON line on stdout: ``{"bytes": N, "first_byte": <time.time()>}``.

* ``pyclient`` is "the plain Python client way": ``kubernetes.stream.portforward`` for the tunnel,
  ``http.client`` on ``pf.socket(port)`` for HTTP, ``shutil.copyfileobj`` (1 MiB) into the file.
* ``ceiling-ws`` is the sandbox's fastest consumer on the plugin's path: TLS + websocket upgrade to the
  API server's ``pods/P/portforward`` (v4.channel.k8s.io), one masked frame with the HTTP request,
  then ``recv_into`` a 1 MiB buffer, writing every received byte (websocket and chunked framing
  included, +0.02 %) to the destination without parsing, until the received bytes end with the
  chunked terminator; then it sends a close frame and hangs up, as any HTTP client would (waiting
  for the server to hang up costs the runtime's 1 s grace for the other direction).
* ``ceiling-tcp`` bypasses the API server and port-forward entirely: a plain TCP connection to the
  simulated monitor's loopback port. It is the monitor's own speed, an upper bound for every path.

Standard library only, except ``pyclient`` (the ``kubernetes`` package is what it measures).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import ssl
import struct
import sys
import time

BUF = 1 << 20


def _http_request(path: str, token: str | None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Accept: application/octet-stream",
             "Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _open_dest(dest: str) -> int | None:
    if dest == "-":
        return None
    return os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)


def _write_all(fd: int | None, view: memoryview) -> None:
    if fd is None:
        return
    while len(view):
        view = view[os.write(fd, view):]


class _FirstByte:
    """Finds the first artifact byte in a raw stream: after the HTTP head and the first chunk line."""

    def __init__(self) -> None:
        self.seen = bytearray()
        self.at: float | None = None

    def feed(self, data: memoryview) -> None:
        if self.at is not None or len(self.seen) > 256 * 1024:
            return
        self.seen += data[: 64 * 1024]
        head = self.seen.find(b"\r\n\r\n")
        if head < 0:
            return
        status = self.seen[self.seen.find(b"HTTP/1.1 ") + 9:][:3]
        if status != b"200":
            raise SystemExit(f"monitor answered {bytes(status)!r}: {bytes(self.seen[:400])!r}")
        line = self.seen.find(b"\r\n", head + 4)
        if line >= 0 and len(self.seen) > line + 2:
            self.at = time.time()


def ceiling_tcp(args: argparse.Namespace) -> dict:
    host, port = args.host_port.rsplit(":", 1)
    fd = _open_dest(args.dest)
    sock = socket.create_connection((host, int(port)))
    sock.sendall(_http_request(args.path, args.token))
    buf = bytearray(BUF)
    view = memoryview(buf)
    total = 0
    first = _FirstByte()
    tail = b""
    while True:
        n = sock.recv_into(view)
        if not n:
            break
        first.feed(view[:n])
        _write_all(fd, view[:n])
        total += n
        tail = (tail + bytes(view[max(0, n - 16):n]))[-16:]
    sock.close()
    if fd is not None:
        os.close(fd)
    if not tail.endswith(b"0\r\n\r\n"):
        raise SystemExit(f"ceiling-tcp: stream did not end with the chunked terminator: {tail!r}")
    return {"bytes": total, "first_byte": first.at}


def ceiling_ws(args: argparse.Namespace) -> dict:
    from urllib.parse import urlsplit

    split = urlsplit(args.server)
    ctx = ssl.create_default_context(cafile=args.ca)
    raw = socket.create_connection((split.hostname, split.port or 443))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = ctx.wrap_socket(raw, server_hostname=split.hostname)
    key = base64.b64encode(os.urandom(16)).decode()
    target = f"/api/v1/namespaces/{args.namespace}/pods/{args.pod}/portforward?ports={args.port}"
    head = (f"GET {target} HTTP/1.1\r\nHost: {split.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: v4.channel.k8s.io\r\nAuthorization: Bearer {args.bearer}\r\n\r\n")
    sock.sendall(head.encode())
    got = bytearray()
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("ceiling-ws: connection closed during the upgrade")
        got += chunk
    end = got.find(b"\r\n\r\n")
    if not got.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"ceiling-ws: upgrade refused: {bytes(got[:200])!r}")
    rest = bytes(got[end + 4:])
    # one masked binary frame on channel 0 carrying the HTTP request
    payload = b"\x00" + _http_request(args.path, args.token)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    header = struct.pack("!BB", 0x82, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x82, 0x80 | 126, n)
    sock.sendall(header + mask + masked)

    fd = _open_dest(args.dest)
    buf = bytearray(BUF)
    view = memoryview(buf)
    first = _FirstByte()
    total = len(rest)
    tail = rest[-16:]
    if rest:
        first.feed(memoryview(rest))
        _write_all(fd, memoryview(rest))
    done = False
    while True:
        try:
            n = sock.recv_into(view)
        except (ssl.SSLEOFError, ConnectionResetError):
            n = 0
        if not n:
            break
        first.feed(view[:n])
        _write_all(fd, view[:n])
        total += n
        tail = (tail + bytes(view[max(0, n - 16):n]))[-16:]
        # The chunked terminator ends the body: close now, as any HTTP client does. (Waiting for
        # the server to close would add the runtime's 1 s grace for the other direction.)
        if tail.endswith((b"\x000\r\n\r\n", b"\r\n0\r\n\r\n")):
            done = True
            break
    if done:
        close_payload = struct.pack("!H", 1000)
        mask = os.urandom(4)
        sock.sendall(bytes((0x88, 0x80 | 2)) + mask + bytes(b ^ mask[i] for i, b in enumerate(close_payload)))
    sock.close()
    if fd is not None:
        os.close(fd)
    if not done:
        raise SystemExit(f"ceiling-ws: stream ended before the chunked terminator: {tail!r}")
    return {"bytes": total, "first_byte": first.at}


def pyclient(args: argparse.Namespace) -> dict:
    import http.client
    import shutil

    from kubernetes import client, config
    from kubernetes.stream import portforward

    config.load_kube_config(config_file=args.kubeconfig)
    api = client.CoreV1Api()
    pf = portforward(api.connect_get_namespaced_pod_portforward, args.pod, args.namespace,
                     ports=str(args.port))
    conn = http.client.HTTPConnection("localhost", args.port)
    conn.sock = pf.socket(args.port)
    conn.request("GET", args.path, headers={"Authorization": f"Bearer {args.token}",
                                            "Accept": "application/octet-stream"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"pyclient: monitor answered {resp.status}: {resp.read()[:300]!r}")
    class Counting:
        """The destination file, counting what is written (works for /dev/null too)."""

        def __init__(self, fh) -> None:
            self.fh = fh
            self.total = 0

        def write(self, data) -> int:
            self.total += len(data)
            return self.fh.write(data)

    with open(args.dest if args.dest != "-" else os.devnull, "wb") as fh:
        out = Counting(fh)
        out.write(resp.read(1))  # the first byte, for time-to-first-byte; then the plain copy
        first_at = time.time()
        shutil.copyfileobj(resp, out, BUF)
        total = out.total
    err = pf.error(args.port)
    pf.close()
    if err:
        raise SystemExit(f"pyclient: port-forward error: {err}")
    return {"bytes": total, "first_byte": first_at}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clients")
    parser.add_argument("mode", choices=["pyclient", "ceiling-ws", "ceiling-tcp"])
    parser.add_argument("--kubeconfig")
    parser.add_argument("--server")
    parser.add_argument("--ca")
    parser.add_argument("--bearer")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--pod")
    parser.add_argument("--port", type=int, default=52323)
    parser.add_argument("--host-port")
    parser.add_argument("--path", required=True)
    parser.add_argument("--token")
    parser.add_argument("--dest", default="-")
    args = parser.parse_args(argv)
    fn = {"pyclient": pyclient, "ceiling-ws": ceiling_ws, "ceiling-tcp": ceiling_tcp}[args.mode]
    print(json.dumps(fn(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
