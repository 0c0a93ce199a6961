"""The sandbox's control endpoint: a plain-HTTP loopback port for tests, never for the plugin.

Server side (`ControlServer`, started by `Sandbox`) and client side (`SandboxControl`, what tests
use). Every request needs ``Authorization: Bearer <control_token>`` from ``state.json``.

    GET    /artifacts                      -> {"artifacts": [record, ...]}
    DELETE /artifacts                      -> clears the records
    GET    /faults                         -> {"faults": [...]}
    PUT    /faults      {"faults": [...]}  -> replaces the runtime faults (monitor/faults.py shape)
    POST   /faults      {fault}            -> adds one fault
    DELETE /faults                         -> clears them
    GET    /pods[?namespace=NS]            -> {"pods": [pod, ...]}
    GET    /pods/NS/NAME                   -> pod (404 {"error": ...} when absent)
    DELETE /pods/NS/NAME[?grace=SECONDS]   -> deletes the pod as the API would (graceful)
    GET    /listeners                      -> {"listeners": [{namespace, pod, port, host_port, bind_all}]}
    POST   /rules/fire  {namespace, pod, rule, pid?, uid?} -> {"operations": [id, ...]}
                                           (404 when no monitor runs in that pod)
    GET    /scenario                       -> {"name", "version", "users", ...}
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


class ArtifactRecorder:
    """Append-only list of artifact records written by the simulated monitors. Thread-safe.

    A record is a dict such as ``{"namespace", "pod", "container", "route", "bytes", "sha256",
    "complete", ...}``; the recorder adds ``"seq"`` and ``"time"``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict] = []

    def record(self, record: dict | str | None = None, **fields: Any) -> None:
        """Append a record: ``record({...})`` or ``record("event-name", key=value, ...)``."""
        if isinstance(record, str):
            entry = {"event": record, **fields}
        else:
            entry = {**(record or {}), **fields}
        with self._lock:
            entry.setdefault("time", time.time())
            entry["seq"] = len(self._records) + 1
            self._records.append(entry)

    def records(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._records]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


class ControlServer:
    """Serves the control endpoint for one running sandbox."""

    def __init__(self, sandbox: Any, token: str) -> None:
        self.sandbox = sandbox
        self.token = token
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        control = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                control._handle(self, "GET")

            def do_PUT(self) -> None:
                control._handle(self, "PUT")

            def do_POST(self) -> None:
                control._handle(self, "POST")

            def do_DELETE(self) -> None:
                control._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="sandbox-control", daemon=True).start()
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        query = parse_qs(url.query)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return _reply(h, 401, {"error": "bad control token"})
        try:
            body = json.loads(raw) if raw else None
            code, out = self._route(method, url.path.rstrip("/"), query, body)
        except (ValueError, KeyError, TypeError) as exc:
            code, out = 400, {"error": str(exc)}
        _reply(h, code, out)

    def _route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any]:
        sb = self.sandbox
        parts = path.strip("/").split("/")
        if path == "/artifacts":
            if method == "GET":
                return 200, {"artifacts": sb.recorder.records()}
            if method == "DELETE":
                sb.recorder.clear()
                return 200, {}
        if path == "/faults":
            plan = sb.scenario.faults
            if plan is None:
                return 501, {"error": "the simulated monitor's fault plan is not available"}
            if method == "GET":
                return 200, {"faults": plan.list()}
            if method == "PUT":
                plan.set(list(body.get("faults", [])))
                return 200, {"faults": plan.list()}
            if method == "POST":
                plan.add(body)
                return 200, {"faults": plan.list()}
            if method == "DELETE":
                plan.clear()
                return 200, {"faults": []}
        if parts[0] == "pods":
            if len(parts) == 1 and method == "GET":
                ns = (query.get("namespace") or [None])[0]
                items, _ = sb.store.list("pods", ns)
                return 200, {"pods": items}
            if len(parts) == 3:
                ns, name = parts[1], parts[2]
                if method == "GET":
                    pod = sb.store.get("pods", ns, name)
                    return (200, pod) if pod else (404, {"error": f'pods "{name}" not found'})
                if method == "DELETE":
                    grace = query.get("grace")
                    try:
                        pod, finished = sb.store.delete("pods", ns, name,
                                                        grace_seconds=int(grace[0]) if grace else None)
                    except Exception as exc:
                        return 404, {"error": f'pods "{name}" not found ({type(exc).__name__})'}
                    if not finished and sb.kubelet is not None:
                        sb.kubelet.on_pod_changed(pod)
                    return 200, pod
        if path == "/rules/fire" and method == "POST":
            monitors = sb.kubelet.monitors(body["namespace"], body["pod"]) if sb.kubelet else []
            if not monitors:
                return 404, {"error": f'no running dotnet-monitor in pod {body["namespace"]}/'
                                      f'{body["pod"]}'}
            ids = []
            for handle in monitors:
                ids += handle.fire_rule(body["rule"], body.get("uid"), body.get("pid"))
            return 200, {"operations": ids}
        if path == "/listeners" and method == "GET":
            return 200, {"listeners": [asdict(l) for l in sb.network.listeners()]}
        if path == "/scenario" and method == "GET":
            s = sb.scenario
            return 200, {"name": s.name, "version": s.version, "features": s.features,
                         "users": [u.name for u in s.users]}
        return 404, {"error": f"no control route {method} {path}"}


def _reply(h: BaseHTTPRequestHandler, code: int, body: Any) -> None:
    data = json.dumps(body).encode()
    h.send_response(code)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


class ControlError(RuntimeError):
    """The control endpoint answered with an error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class SandboxControl:
    """Client of a running sandbox's control endpoint, found through its state directory."""

    def __init__(self, state_dir: str | Path) -> None:
        state = json.loads((Path(state_dir) / "state.json").read_text())
        self.url = state["control"]
        self.token = state["control_token"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import http.client

        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Authorization": f"Bearer {self.token}"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            out = json.loads(resp.read() or b"null")
        finally:
            conn.close()
        if resp.status >= 400:
            raise ControlError(resp.status, (out or {}).get("error", ""))
        return out

    def artifacts(self) -> list[dict]:
        """Artifact records so far (oldest first)."""
        return self._call("GET", "/artifacts")["artifacts"]

    def clear_artifacts(self) -> None:
        self._call("DELETE", "/artifacts")

    def faults(self) -> list[dict]:
        return self._call("GET", "/faults")["faults"]

    def set_faults(self, faults: list[dict]) -> list[dict]:
        """Replace the runtime faults (see monitor/faults.py for the shape)."""
        return self._call("PUT", "/faults", {"faults": faults})["faults"]

    def add_fault(self, fault: dict) -> list[dict]:
        return self._call("POST", "/faults", fault)["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def pods(self, namespace: str | None = None) -> list[dict]:
        suffix = f"?namespace={namespace}" if namespace else ""
        return self._call("GET", "/pods" + suffix)["pods"]

    def pod(self, namespace: str, name: str) -> dict | None:
        try:
            return self._call("GET", f"/pods/{namespace}/{name}")
        except ControlError as exc:
            if exc.code == 404:
                return None
            raise

    def delete_pod(self, namespace: str, name: str, grace: int | None = None) -> dict:
        """Delete a pod as `kubectl delete pod` would (graceful unless grace=0)."""
        suffix = f"?grace={grace}" if grace is not None else ""
        return self._call("DELETE", f"/pods/{namespace}/{name}{suffix}")

    def fire_rule(self, namespace: str, pod: str, rule: str, pid: int | None = None,
                  uid: str | None = None) -> list[str]:
        """The trigger of collection rule `rule` fires in the pod's monitor(s) (for every process
        the rule applies to, or the one with `pid`/`uid`); returns the ids of the operations its
        actions started (empty when the rule is throttled, finished or executing)."""
        body: dict[str, Any] = {"namespace": namespace, "pod": pod, "rule": rule}
        if pid is not None:
            body["pid"] = pid
        if uid is not None:
            body["uid"] = uid
        return self._call("POST", "/rules/fire", body)["operations"]

    def listeners(self) -> list[dict]:
        return self._call("GET", "/listeners")["listeners"]

    def scenario(self) -> dict:
        return self._call("GET", "/scenario")
