"""The dotnet-monitor HTTP API (reference §2) on top of :mod:`server`'s transport.

Order of checks per request, as in ASP.NET: route match (404/405) → host restriction (metrics port:
404) → authentication/authorization (401/403) → binding (400: empty in 10.x, ValidationProblemDetails
in 8/9) → Accept negotiation (406, /logs) → process selection and feature checks (400 ProblemDetails)
→ concurrency limit (429) → 200 stream or 202 egress.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid

from . import artifacts as art
from .operations import RateLimited
from .server import Cancelled, ClientGone, Request, Response, StreamResponse

JSON = "application/json; charset=utf-8"
PROBLEM = "application/problem+json; charset=utf-8"

DUMP_TYPES = ["Full", "Mini", "WithHeap", "Triage"]
DUMP_TYPE_VALUES = {"Full": 0, "Mini": 1, "WithHeap": 2, "Triage": 3}
TRACE_PROFILES = {"None": 0, "Cpu": 1, "Http": 2, "Logs": 4, "Metrics": 8, "GcCollect": 16}
LOG_LEVELS = {"Trace": 0, "Debug": 1, "Information": 2, "Warning": 3, "Error": 4, "Critical": 5, "None": 6}
EVENT_LEVELS = {"LogAlways": 0, "Critical": 1, "Error": 2, "Warning": 3, "Informational": 4, "Verbose": 5}
ACCEPT_ORDER = {
    "logs": ["text/plain", "application/x-ndjson", "application/json-seq"],
    "exceptions": ["text/plain", "application/x-ndjson", "application/json-seq"],
    "stacks": ["text/plain", "application/json", "application/speedscope+json"],
    "parameters": ["text/plain", "application/json-seq", "application/x-ndjson"],
}
ACCEPT_DEFAULT = {"logs": None, "exceptions": "text/plain", "stacks": "text/plain", "parameters": "application/json-seq"}
BODY_TYPES = ("application/json", "text/json")


class BindingError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Problem(Exception):
    """A handled error that becomes a ProblemDetails response (400 unless told)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class Empty(Exception):
    def __init__(self, status: int, headers: list | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers or []


def problem(status: int, detail: str) -> Response:
    title = {400: "Bad Request", 429: "Too Many Requests"}.get(status, "Error")
    typ = {400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
           429: "https://tools.ietf.org/html/rfc6585#section-4"}.get(status, "about:blank")
    body = {"type": typ, "title": title, "status": status, "detail": detail}
    return Response(status, [("Content-Type", PROBLEM)], json.dumps(body).encode())


def json_response(obj, status: int = 200) -> Response:
    return Response(status, [("Content-Type", JSON)], json.dumps(obj, separators=(",", ":")).encode())


class MonitorApi:
    """Routes and handlers. ``monitor`` is the owning SimulatedMonitor (config, knobs, state)."""

    def __init__(self, monitor) -> None:
        self.m = monitor
        self.seq = 0
        ex_post = monitor.cfg.exceptions_enabled
        # (method, pattern, handler, host_restricted, authenticated)
        self.routes = [
            ("GET", r"/", self.openapi, False, False),
            ("GET", r"/processes", self.processes, True, True),
            ("GET", r"/process", self.process, True, True),
            ("GET", r"/env", self.env, True, True),
            ("GET", r"/dump", self.dump, True, True),
            ("GET", r"/gcdump", self.gcdump, True, True),
            ("GET", r"/trace", self.trace, True, True),
            ("POST", r"/trace", self.trace, True, True),
            ("GET", r"/logs", self.logs, True, True),
            ("POST", r"/logs", self.logs, True, True),
            ("GET", r"/livemetrics", self.livemetrics, True, True),
            ("POST", r"/livemetrics", self.livemetrics, True, True),
            ("GET", r"/metrics", self.metrics, False, False),
            ("GET", r"/stacks", self.stacks, True, True),
            ("GET", r"/exceptions", self.exceptions, True, True),
            ("POST", r"/parameters", self.parameters, True, True),
            ("GET", r"/info", self.info, True, True),
            ("GET", r"/collectionrules", self.collectionrules, True, True),
            ("GET", r"/collectionrules/(?P<rule>[^/]+)", self.collectionrule, True, True),
            ("GET", r"/operations", self.operations, True, True),
            ("GET", r"/operations/(?P<op>[^/]+)", self.operation, True, True),
            ("DELETE", r"/operations/(?P<op>[^/]+)", self.delete_operation, True, True),
        ]
        if ex_post:
            self.routes.append(("POST", r"/exceptions", self.exceptions, True, True))

    # ---------------------------------------------------------------------------------------------
    # dispatch

    def handle(self, req: Request):
        path = req.path.rstrip("/") or "/"
        allowed = []
        match = None
        for method, pattern, handler, restricted, authed in self.routes:
            m = re.fullmatch(pattern, path, re.I)
            if m:
                allowed.append(method)
                if method == req.method or (req.method == "HEAD" and method == "GET" and False):
                    match = (handler, restricted, authed, m.groupdict())
        if match is None:
            if allowed:
                return Response(405, [("Allow", ", ".join(sorted(set(allowed))))])
            return Response(404)
        handler, restricted, authed, params = match
        if restricted and req.group == "metrics":
            return Response(404)
        if authed:
            decision = self.m.authorize(req.headers.get("authorization"))
            if not decision.allowed:
                headers = [("WWW-Authenticate", decision.challenge)] if decision.status == 401 else []
                return Response(decision.status, headers)
        try:
            return handler(req, **params)
        except BindingError as exc:
            return self.binding_failure(exc)
        except Problem as exc:
            return problem(exc.status, exc.detail)
        except RateLimited:
            return problem(429, "Rate limit reached.")
        except Empty as exc:
            return Response(exc.status, exc.headers)

    def binding_failure(self, exc: BindingError) -> Response:
        if self.m.knobs.minimal_api:
            return Response(400)
        body = {"type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
                "title": "One or more validation errors occurred.", "status": 400,
                "errors": {exc.field: [exc.message]},
                "traceId": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"}
        return Response(400, [("Content-Type", PROBLEM)], json.dumps(body).encode())

    # ---------------------------------------------------------------------------------------------
    # binding

    def _int(self, req: Request, name: str, default=None):
        v = req.q(name)
        if v is None or v == "":
            return default
        if not re.fullmatch(r"\s*[+-]?\d+\s*", v) or not (-2**31 <= int(v) < 2**31):
            raise BindingError(name, f"The value '{v}' is not valid.")
        return int(v)

    def _guid(self, req: Request, name: str):
        v = req.q(name)
        if v is None or v == "":
            return None
        return self._parse_guid(v, name)

    @staticmethod
    def _parse_guid(v: str, name: str) -> str:
        s = v.strip()
        if s.startswith("{") and s.endswith("}") or s.startswith("(") and s.endswith(")"):
            s = s[1:-1]
        if not (re.fullmatch(r"[0-9a-fA-F]{32}", s) or re.fullmatch(
                r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", s)):
            raise BindingError(name, f"The value '{v}' is not valid.")
        return str(uuid.UUID(s))

    def _enum(self, raw: str, names: dict[str, int], field: str, flags: bool = False) -> str:
        """Enum binding: names (case per version) or numbers; flags take a comma list."""
        parts = [p.strip() for p in raw.split(",")] if flags else [raw.strip()]
        out = []
        for p in parts:
            if re.fullmatch(r"[+-]?\d+", p):
                n = int(p)
                hit = [k for k, val in names.items() if val == n]
                if not hit and not flags:
                    out.append(str(n))
                    continue
                if flags:
                    out += [k for k, val in names.items() if val and n & val == val]
                    continue
                out.append(hit[0])
                continue
            hit = [k for k in names if (k == p if self.m.knobs.case_sensitive_enums else k.lower() == p.lower())]
            if not hit:
                raise BindingError(field, f"The value '{raw}' is not valid.")
            out.append(hit[0])
        return ",".join(out)

    def _duration(self, req: Request) -> float | None:
        """Seconds (scaled by time_scale); None = infinite."""
        d = self._int(req, "durationSeconds", 30)
        if d < 0:
            if not self.m.knobs.minimal_api and d < -1:
                raise BindingError("durationSeconds", "The field durationSeconds must be between -1 and 2147483647.")
            return None
        return d * self.m.knobs.time_scale

    def _tags(self, req: Request) -> list[str]:
        raw = req.q("tags") or ""
        seen = []
        for t in raw.split(","):
            t = t.strip()
            if t and t not in seen:
                seen.append(t)
        return seen

    def _body(self, req: Request, required: bool = True) -> dict | None:
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if not req.body:
            if required:
                raise BindingError("", "A non-empty request body is required.")
            return None
        if not (ctype in BODY_TYPES or re.fullmatch(r"application/[^/]*\+json", ctype)):
            raise Empty(415)
        try:
            obj = json.loads(req.body)
        except (ValueError, UnicodeDecodeError):
            raise BindingError("$", "The JSON value could not be converted.") from None
        if not isinstance(obj, dict):
            raise BindingError("$", "The JSON value could not be converted.")
        return _lower_keys(obj)

    def _select(self, req: Request):
        pid = self._int(req, "pid")
        uid = self._guid(req, "uid")
        name = req.q("name")
        proc, err = self.m.select_process(pid, uid, name)
        if proc is None:
            raise Problem(err)
        return proc

    def _accept(self, req: Request, kind: str) -> str:
        order = ACCEPT_ORDER[kind]
        accepts = [a.strip() for a in req.headers.get("accept", "").split(",") if a.strip()]
        for want in order:
            if want in accepts:
                return want
        for want in order:
            major = want.split("/")[0]
            if "*/*" in accepts or f"{major}/*" in accepts:
                return want
        default = ACCEPT_DEFAULT[kind]
        if default is None:
            raise Empty(406)
        return default

    # ---------------------------------------------------------------------------------------------
    # simple routes

    def openapi(self, req: Request) -> Response:
        doc = {"openapi": "3.0.4", "info": {"title": "Microsoft.Diagnostics.Monitoring.WebApi", "version": "1.0"},
               "paths": {p: {} for p in ["/processes", "/process", "/env", "/dump", "/gcdump", "/trace", "/logs",
                                         "/livemetrics", "/metrics", "/stacks", "/exceptions", "/parameters",
                                         "/info", "/collectionrules", "/operations"]}}
        if self.m.cfg.auth_mode != "none":
            doc["components"] = {"securitySchemes": {"Bearer": {"type": "http", "scheme": "Bearer"}}}
        return json_response(doc)

    def processes(self, req: Request) -> Response:
        procs = self.m.processes()
        default, _ = self.m.default_process(procs)
        return json_response([{**p.identifier(), "isDefault": default is not None and p is default} for p in procs])

    def process(self, req: Request) -> Response:
        p = self._select(req)
        info = {"pid": p.pid, "uid": p.uid, "name": p.name, "commandLine": p.command_line,
                "operatingSystem": p.operating_system, "processArchitecture": p.architecture}
        if self.m.knobs.major >= 10:
            info["managedEntryPointAssemblyName"] = p.entry_assembly
        return json_response(info)

    def env(self, req: Request) -> Response:
        p = self._select(req)
        return json_response(dict(p.env))

    def info(self, req: Request) -> Response:
        cfg = self.m.cfg
        body = {"version": self.m.version_string(), "runtimeVersion": self.m.runtime_version(),
                "diagnosticPortMode": cfg.connection_mode, "diagnosticPortName": cfg.endpoint_name}
        if self.m.knobs.major >= 10:
            body["capabilities"] = [
                {"name": "exceptions", "enabled": cfg.exceptions_enabled},
                {"name": "parameters", "enabled": cfg.parameters_enabled},
                {"name": "call_stacks", "enabled": cfg.call_stacks_enabled},
                {"name": "metrics", "enabled": cfg.metrics_enabled},
                {"name": "http_egress", "enabled": not cfg.no_http_egress}]
        return json_response(body)

    def metrics(self, req: Request) -> Response:
        if not self.m.cfg.metrics_enabled:
            raise Problem("Metrics was not enabled.")
        procs = self.m.processes()
        proc, _ = self.m.default_process(procs)
        self.seq += 1
        body = art.prometheus_text(proc.pid, self.seq) if proc is not None else b""
        return Response(200, [("Content-Type", "text/plain; version=0.0.4")], body)

    def collectionrules(self, req: Request) -> Response:
        proc = self._select(req)
        return json_response({name: st.description() for name, st in self.m.rules.for_process(proc).items()})

    def collectionrule(self, req: Request, rule: str) -> Response:
        proc = self._select(req)
        states = self.m.rules.for_process(proc)
        for name, st in states.items():
            if name.lower() == rule.lower():
                return json_response(st.detailed())
        raise Problem(f"Collection rule '{rule}' could not be found.")

    def operations(self, req: Request) -> Response:
        pid = self._int(req, "pid")
        uid = self._guid(req, "uid")
        name = req.q("name") or None
        tags = self._tags(req)
        out = []
        for op in self.m.ops.all():
            p = op.process
            if pid is not None and p.get("pid") != pid:
                continue
            if uid is not None and p.get("uid") != uid:
                continue
            if name is not None and (p.get("name") or "").lower() != name.lower():
                continue
            if any(t not in op.tags for t in tags):
                continue
            out.append(op.summary())
        return json_response(out)

    def _op(self, op_id: str):
        op_id = self._parse_guid(op_id, "operationId")
        op = self.m.ops.get(op_id)
        if op is None:
            raise Problem("Operation not found.")
        return op

    def operation(self, req: Request, op: str) -> Response:
        o = self._op(op)
        return json_response(o.status_body(), 201 if o.status == "Succeeded" else 200)

    def delete_operation(self, req: Request, op: str) -> Response:
        o = self._op(op)
        raw = req.q("stop")
        stop = False
        if raw not in (None, ""):
            if raw.lower() not in ("true", "false"):
                raise BindingError("stop", f"The value '{raw}' is not valid.")
            stop = raw.lower() == "true"
        if o.status not in ("Starting", "Running", "Stopping"):
            raise Problem("Operation is not running.")
        if stop:
            if not o.is_stoppable:
                raise Problem("Operation does not support being stopped.")
            self.m.ops.request_stop(o)
            return Response(202)
        self.m.ops.cancel(o)
        return Response(200)

    # ---------------------------------------------------------------------------------------------
    # artifact routes

    def _artifact(self, req: Request, kind: str, proc, file_name: str, content_type: str, producer,
                  attachment: bool = True, size_hint: int | None = None, dump_check=None):
        """Common path: egress or HTTP stream, operation bookkeeping, record, faults."""
        egress = req.q("egressProvider") or None
        tags = self._tags(req)
        if egress is not None:
            if egress not in self.m.cfg.egress:
                raise Problem(f"Egress provider '{egress}' does not exist.")
        elif self.m.cfg.no_http_egress:
            raise Problem("HTTP egress is not enabled.")
        op = self.m.ops.register(kind, proc.identifier(), egress, tags)
        # What the client asked for, exactly as it arrived (tests check the wire, e.g. enum case).
        op.query = {name: values[0] if len(values) == 1 else values for name, values in req.query.items()}
        location = f"{req.scheme}://{req.host}/operations/{op.operation_id}"
        knob = self.m.knobs.artifact(kind)
        faults = self.m.faults.take(kind)
        delay = knob.first_byte_delay * self.m.knobs.time_scale
        if "slow_first_byte" in faults:
            delay = max(delay, faults["slow_first_byte"].delay)
        route = req.path
        if egress is not None:
            self.m.egress.start(op, kind, proc, route, file_name, content_type, producer, delay, faults, dump_check)
            return Response(202, [("Location", location)])
        headers = [("Content-Type", content_type), ("Location", location)]
        if attachment:
            headers.append(("Content-Disposition", f"attachment; filename={file_name}; filename*=UTF-8''{file_name}"))

        if dump_check is not None:
            # The dump is written before any byte is sent: its failures are ordinary error responses.
            return self._dump_response(req, op, kind, proc, route, headers, producer, delay, faults, dump_check,
                                       content_type, file_name)

        def run(stream):
            self.m.ops.set_status(op, "Running")
            producer(stream, op)

        def done(stream, error):
            self._finish(op, kind, proc, route, stream, error, content_type, file_name)

        return StreamResponse(200, headers, run, done, faults, delay)

    def _dump_response(self, req, op, kind, proc, route, headers, producer, delay, faults, dump_check,
                       content_type, file_name):
        if delay > 0:
            # Wait for "the runtime writing the dump" before deciding the status line.
            try:
                _pause_plain(req.sock, delay, op, self.m.stopping)
            except (ClientGone, Cancelled):
                self.m.ops.set_status(op, "Cancelled")
                raise Empty(400) from None
        verdict = dump_check()
        if verdict is not None:
            status, detail = verdict
            self.m.ops.set_status(op, "Failed", error={"code": "InvalidOperationException", "message": detail or ""})
            if status == 500:
                raise Empty(500)
            raise Problem(detail)

        def run(stream):
            self.m.ops.set_status(op, "Running")
            producer(stream, op)

        def done(stream, error):
            self._finish(op, kind, proc, route, stream, error, content_type, file_name)

        return StreamResponse(200, headers, run, done, faults, 0.0)

    def _finish(self, op, kind, proc, route, stream, error, content_type, file_name) -> None:
        if error in (None, "truncate"):
            self.m.ops.set_status(op, "Succeeded")
        elif error in ("client_gone", "cancelled"):
            self.m.ops.set_status(op, "Cancelled")
        else:
            self.m.ops.set_status(op, "Failed", error={"code": "IOException", "message": "The connection was aborted."})
        self.m.record({"route": route, "artifact": kind, "pid": proc.pid, "uid": proc.uid,
                       "process_container": proc.container, "bytes": stream.sent,
                       "sha256": stream.hasher.hexdigest(), "complete": error is None,
                       "content_type": content_type, "file_name": file_name, "operation_id": op.operation_id,
                       "fault": stream.fault_applied, "outcome": error or "complete", "egress": None,
                       "query": getattr(op, "query", None)})

    def _seed(self, kind: str, proc) -> int:
        self.seq += 1
        return self.m.seed_base ^ (hash_text(f"{kind}:{proc.uid}:{self.seq}") & 0xFFFFFFFF)

    def dump(self, req: Request) -> Response:
        raw = req.q("type")
        dtype = self._enum(raw, DUMP_TYPE_VALUES, "type") if raw else "WithHeap"
        if dtype not in DUMP_TYPES:
            raise BindingError("type", f"The value '{raw}' is not valid.")
        proc = self._select(req)
        knob = self.m.knobs.artifact("dump")
        size = knob.sizes.get(dtype) or {"Full": knob.size * 2, "WithHeap": knob.size,
                                         "Mini": max(knob.size // 8, 1), "Triage": max(knob.size // 16, 1)}[dtype]
        now = time.time()
        name = f"core_{art.utc_stamp(now)}"
        seed = self._seed("dump", proc)
        folder = proc.dump_path_hint.rstrip("/")

        def check():
            if proc.dump_access == "missing":
                return 500, None
            if proc.dump_access == "not_writable":
                return 400, "Writing dump failed. HRESULT: 0x80004005"
            if proc.dump_access == "denied":
                return 400, f"Access to the path '{folder}/{uuid.uuid4().hex}' is denied."
            return None

        return self._artifact(req, "dump", proc, name, "application/octet-stream",
                              self._bulk_producer("dump", seed, size, knob.rate), dump_check=check)

    def gcdump(self, req: Request) -> Response:
        proc = self._select(req)
        knob = self.m.knobs.artifact("gcdump")
        name = f"{art.utc_stamp()}_{proc.pid}.gcdump"
        seed = self._seed("gcdump", proc)
        return self._artifact(req, "gcdump", proc, name, "application/octet-stream",
                              self._bulk_producer("gcdump", seed, knob.size, knob.rate))

    def _bulk_producer(self, kind: str, seed: int, size: int, rate: float | None):
        def produce(sink, op):
            start = time.monotonic()
            sent = 0
            for mv in art.bulk_chunks(kind, seed, size, chunk_size=(256 << 10) if rate else art.BLOCK):
                if op.cancel_event.is_set():
                    raise Cancelled()
                sink.write(mv)
                sent += len(mv)
                if rate:
                    ahead = sent / rate - (time.monotonic() - start)
                    if ahead > 0 and sink.pause(ahead, op.cancel_event):
                        raise Cancelled()
        return produce

    def trace(self, req: Request) -> Response:
        if req.method == "POST":
            body = self._body(req)
            self._validate_eventpipe(body)
        else:
            raw = req.q("profile")
            if raw:
                self._enum(raw, TRACE_PROFILES, "profile", flags=True)  # binding: 400 if not a profile
        duration = self._duration(req)
        proc = self._select(req)
        knob = self.m.knobs.artifact("trace")
        seed = self._seed("trace", proc)
        name = f"{art.utc_stamp()}_{proc.pid}.nettrace"

        def produce(sink, op):
            stream = art.ContentSource(seed)
            prefix, suffix = art.NETTRACE_PREFIX, art.NETTRACE_SUFFIX
            sink.write(memoryview(prefix))
            position = 0

            def emit(n):
                nonlocal position
                while n > 0:
                    i, off = divmod(position, art.BLOCK)
                    take = min(n, art.BLOCK - off)
                    sink.write(stream.chunk(i)[off:off + take])
                    position += take
                    n -= take

            total = max(knob.size - len(prefix) - len(suffix) - knob.rundown_size, 0)
            ticks = max(1, int(math.ceil((duration if duration is not None else 0) / 0.1)))
            per_tick = total // ticks if duration is not None else max(total // 300, 1024)
            step = (duration / ticks) if duration is not None else 0.1 * self.m.knobs.time_scale
            emitted = 0
            t = 0
            while duration is None or t < ticks:
                n = per_tick if duration is None else (total - emitted if t == ticks - 1 else per_tick)
                emit(n)
                emitted += n
                t += 1
                if duration is not None and t >= ticks:
                    break
                if sink.pause(step, op.stop_event, op.cancel_event):
                    if op.cancel_event.is_set():
                        raise Cancelled()
                    break
            emit(knob.rundown_size)  # rundown after the session ends (stop included)
            sink.write(memoryview(suffix))  # the last object's EndObject, then the end-of-stream tag

        return self._artifact(req, "trace", proc, name, "application/octet-stream", produce)

    def _validate_eventpipe(self, body: dict) -> None:
        providers = body.get("providers")
        if not isinstance(providers, list):
            if providers is None and self.m.knobs.minimal_api:
                raise BindingError("providers", "The Providers field is required.")
            raise BindingError("Providers", "The Providers field is required.")
        for p in providers:
            if not isinstance(p, dict):
                raise BindingError("Providers", "The JSON value could not be converted.")
            p = _lower_keys(p)
            lvl = p.get("eventlevel")
            if isinstance(lvl, str):
                if lvl.lower() not in [k.lower() for k in EVENT_LEVELS]:
                    raise BindingError("Providers", "The JSON value could not be converted.")
        if not self.m.knobs.minimal_api:
            if not providers:
                raise BindingError("Providers", "The field Providers must be a string or array type with a minimum length of '1'.")
            size = body.get("buffersizeinmb")
            if isinstance(size, int) and not (1 <= size <= 1024):
                raise BindingError("BufferSizeInMB", "The field BufferSizeInMB must be between 1 and 1024.")

    def _record_stream(self, req: Request, kind: str, proc, media: str, duration: float | None, interval: float,
                       make_records, attachment: bool, name: str, limit: int | None = None):
        def produce(sink, op):
            n = 0
            elapsed = 0.0
            sink.start()
            while True:
                for rec in make_records(n):
                    sink.write(memoryview(rec))
                n += 1
                if limit is not None and n >= limit:
                    return  # e.g. parameters' captureLimit: the session ends by itself
                if duration is not None and elapsed + interval > duration + 1e-9:
                    left = duration - elapsed
                    if left > 0 and sink.pause(left, op.stop_event, op.cancel_event) and op.cancel_event.is_set():
                        raise Cancelled()
                    return
                if sink.pause(interval, op.stop_event, op.cancel_event):
                    if op.cancel_event.is_set():
                        raise Cancelled()
                    return
                elapsed += interval

        return self._artifact(req, kind, proc, name, media, produce, attachment=attachment)

    def logs(self, req: Request) -> Response:
        if req.method == "POST":
            body = self._body(req)
            lvl = body.get("loglevel", "Warning")
            level = self._enum(str(lvl), LOG_LEVELS, "logLevel") if lvl is not None else "Warning"
        else:
            raw = req.q("level")
            level = self._enum(raw, LOG_LEVELS, "level") if raw else "Information"
        duration = self._duration(req)
        media = self._accept(req, "logs")
        proc = self._select(req)
        minimum = LOG_LEVELS.get(level, 2)
        interval = self.m.knobs.artifact("logs").interval * self.m.knobs.time_scale

        def records(n):
            rec = art.log_record(n)
            if LOG_LEVELS[rec["LogLevel"]] < minimum or minimum >= LOG_LEVELS["None"]:
                return []
            return [art.format_log(rec, media)]

        name = f"{art.utc_stamp()}_{proc.pid}.txt"
        return self._record_stream(req, "logs", proc, media, duration, interval, records,
                                   attachment=media != "text/plain", name=name)

    def livemetrics(self, req: Request) -> Response:
        providers = None
        include_default = True
        if req.method == "POST":
            body = self._body(req)
            include_default = bool(body.get("includedefaultproviders", True))
            providers = []
            for p in body.get("providers") or []:
                p = _lower_keys(p) if isinstance(p, dict) else {}
                providers.append((p.get("providername"), p.get("counternames")))
        duration = self._duration(req)
        proc = self._select(req)
        interval = max(self.m.cfg.counter_interval, 0.01) * self.m.knobs.time_scale

        def records(n):
            if n == 0:
                return []  # the first values arrive after one interval
            return [b"\x1e" + json.dumps(r, separators=(",", ":")).encode() + b"\n"
                    for r in art.livemetric_records(n, proc.pid, providers, include_default)]

        name = f"{art.utc_stamp()}_{proc.pid}.metrics.json"
        return self._record_stream(req, "livemetrics", proc, "application/json-seq", duration, interval,
                                   records, attachment=True, name=name)

    def stacks(self, req: Request) -> Response:
        media = self._accept(req, "stacks")
        proc = self._select(req)
        if not self.m.cfg.call_stacks_enabled:
            raise Problem("The 'CallStacks' feature is not enabled.")
        body = art.stacks_body(proc.pid, media)
        ext = "txt" if media == "text/plain" else "json"
        name = f"{art.utc_stamp()}_{proc.pid}.stacks.{ext}"

        def produce(sink, op):
            sink.write(memoryview(body))

        return self._artifact(req, "stacks", proc, name, media, produce, attachment=True)

    def exceptions(self, req: Request) -> Response:
        if req.method == "POST":
            self._body(req, required=False)
        media = self._accept(req, "exceptions")
        proc = self._select(req)
        if not self.m.cfg.exceptions_enabled:
            raise Problem("The 'Exceptions' feature is not enabled.")
        recs = art.exception_records(proc.pid)
        ext = "txt" if media == "text/plain" else "json"
        name = f"{art.utc_stamp()}_{proc.pid}.exceptions.{ext}"

        def produce(sink, op):
            sink.start()
            for r in recs:
                sink.write(memoryview(art.format_exception(r, media)))

        return self._artifact(req, "exceptions", proc, name, media, produce, attachment=media != "text/plain")

    def parameters(self, req: Request) -> Response:
        body = self._body(req)
        methods = body.get("methods")
        if not isinstance(methods, list):
            raise BindingError("methods", "The Methods field is required.")
        methods = [_lower_keys(m) for m in methods if isinstance(m, dict)]
        methods = [{"moduleName": m.get("modulename"), "typeName": m.get("typename"), "methodName": m.get("methodname")}
                   for m in methods]
        if not self.m.knobs.minimal_api and not methods:
            raise BindingError("Methods", "The field Methods must be a string or array type with a minimum length of '1'.")
        duration = self._duration(req)
        media = self._accept(req, "parameters")
        proc = self._select(req)
        if not self.m.cfg.parameters_enabled:
            raise Problem("The 'ParameterCapturing' feature is not enabled.")
        interval = self.m.knobs.artifact("parameters").interval * self.m.knobs.time_scale
        ext = "txt" if media == "text/plain" else "json"
        name = f"{art.utc_stamp()}_{proc.pid}.parameters.{ext}"
        limit = body.get("capturelimit")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise BindingError("CaptureLimit", "The field CaptureLimit must be between 1 and 2147483647.")
        return self._record_stream(req, "parameters", proc, media, duration, interval,
                                   lambda n: [art.format_parameter(art.parameter_record(n, methods), media)],
                                   attachment=media != "text/plain", name=name, limit=limit)


def hash_text(text: str) -> int:
    import zlib
    return zlib.crc32(text.encode())


def _lower_keys(obj: dict) -> dict:
    return {str(k).lower(): v for k, v in obj.items()}


def _pause_plain(sock, seconds: float, op, stopping) -> None:
    """Wait before any byte is sent, noticing a client that leaves and a cancelled operation."""
    import select
    import socket as _s
    deadline = time.monotonic() + seconds
    while True:
        if op.cancel_event.is_set() or stopping.is_set():
            raise Cancelled()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        r, _, _ = select.select([sock], [], [], min(left, 0.05))
        if r:
            if sock.recv(1, _s.MSG_PEEK) == b"":
                raise ClientGone()
            time.sleep(min(left, 0.05))
