"""Deterministic artifact bodies and their SHA-256.

Bulk artifacts (dump, gcdump, trace) are ``prefix + filler [+ suffix]`` where the filler is built
from one 1 MiB pseudo-random block per seed: chunk *i* is the block rotated by a per-chunk offset,
taken as a zero-copy ``memoryview`` of the block stored twice. So any size costs one 1 MiB
``randbytes`` and no per-byte Python work; the same (kind, seed, size) always gives the same bytes,
and :func:`expected_sha256` recomputes them for tests.

Hashing choice: the SHA-256 is computed *as the bytes are sent* (it must cover exactly what was
sent when a fault cuts the body), on a helper thread fed with the same memoryviews (see
:class:`BackgroundHasher`); ``hashlib`` releases the GIL for large buffers, so sending and hashing
run on two cores and hashing (~1.6 GB/s with SHA-NI) is not on the sender's critical path.
"""

from __future__ import annotations

import hashlib
import json
import queue
import random
import threading
import time
from collections.abc import Iterator

BLOCK = 1 << 20
_STRIDE = 4099 * 64  # rotation step per chunk (co-prime-ish with BLOCK/64 → all offsets differ)

MAGIC = {
    # ELF core header start (dump), FastSerialization stream headers (gcdump, nettrace).
    "dump": b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x00\x3e\x00",
    "gcdump": b"\x14\x00\x00\x00!FastSerialization.1",
    "trace": b"Nettrace\x14\x00\x00\x00!FastSerialization.1",
}
SUFFIX = {"trace": b"\x01"}  # nettrace: NullReference tag = end of stream


class ContentSource:
    """The filler of one artifact: chunk *i* = the seed's block rotated by ``i * _STRIDE``."""

    def __init__(self, seed: int) -> None:
        block = random.Random(seed).randbytes(BLOCK)
        self._double = memoryview(block + block)

    def chunk(self, index: int) -> memoryview:
        r = (index * _STRIDE) % BLOCK
        return self._double[r:r + BLOCK]


def bulk_chunks(kind: str, seed: int, size: int, chunk_size: int = BLOCK) -> Iterator[memoryview]:
    """Exactly ``size`` bytes for a dump/gcdump/trace body, as memoryviews of at most ``chunk_size``."""
    prefix = MAGIC.get(kind, b"")[:size]
    suffix = SUFFIX.get(kind, b"")
    suffix = suffix[:max(0, size - len(prefix))]
    filler = size - len(prefix) - len(suffix)
    if prefix:
        yield memoryview(prefix)
    src = ContentSource(seed)
    i = 0
    chunk_size = max(1, min(chunk_size, BLOCK))
    while filler > 0:
        block = src.chunk(i)
        i += 1
        for off in range(0, BLOCK, chunk_size):
            take = min(chunk_size, filler)
            yield block[off:off + take]
            filler -= take
            if filler <= 0:
                break
    if suffix:
        yield memoryview(suffix)


def expected_sha256(kind: str, seed: int, size: int) -> str:
    """SHA-256 of the full body :func:`bulk_chunks` produces (for tests)."""
    h = hashlib.sha256()
    for mv in bulk_chunks(kind, seed, size):
        h.update(mv)
    return h.hexdigest()


def expected_bytes(kind: str, seed: int, size: int) -> bytes:
    return b"".join(bytes(mv) for mv in bulk_chunks(kind, seed, size))


class BackgroundHasher:
    """SHA-256 on a helper thread. ``update`` takes immutable buffers (memoryviews of bytes)."""

    _SMALL = 64 * 1024

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def update(self, data) -> None:
        if len(data) < self._SMALL and self._thread is None:
            self._h.update(data)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="monitor-sha256", daemon=True)
            self._thread.start()
        self._q.put(data)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            self._h.update(item)

    def hexdigest(self) -> str:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join()
            self._thread = None
        return self._h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Text artifacts: deterministic records


def utc_stamp(now: float | None = None) -> str:
    """``yyyyMMdd_HHmmss_fff`` (UTC) used in artifact file names."""
    now = time.time() if now is None else now
    return time.strftime("%Y%m%d_%H%M%S", time.gmtime(now)) + f"_{int(now * 1000) % 1000:03d}"


def iso_time(now: float | None = None) -> str:
    now = time.time() if now is None else now
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1e6) % 1000000:06d}Z"


LOG_LEVELS = ["Trace", "Debug", "Information", "Warning", "Error", "Critical", "None"]
_LOG_CYCLE = [("Information", "Microsoft.Hosting.Lifetime", 14, "Request finished in {elapsed} ms"),
              ("Debug", "App.Worker", 3, "Processed item {n}"),
              ("Warning", "App.Worker", 7, "Queue length {n} above threshold"),
              ("Error", "App.Controllers.OrdersController", 42, "Order {n} failed"),
              ("Trace", "App.Cache", 1, "Cache probe {n}"),
              ("Critical", "App.Health", 99, "Health check {n} failed repeatedly")]


def log_record(n: int, now: float | None = None) -> dict:
    level, category, event_id, fmt = _LOG_CYCLE[n % len(_LOG_CYCLE)]
    args = {"n": n, "elapsed": 10 + n % 90}
    message = fmt.format(**args)
    state = {"Message": message, **{k: str(v) for k, v in args.items() if "{" + k + "}" in fmt},
             "{OriginalFormat}": fmt}
    return {"Timestamp": iso_time(now), "LogLevel": level, "EventId": event_id,
            "EventName": None, "Category": category, "Message": message, "State": state}


def format_log(record: dict, media_type: str) -> bytes:
    if media_type == "text/plain":
        short = {"Trace": "trce", "Debug": "dbug", "Information": "info", "Warning": "warn",
                 "Error": "fail", "Critical": "crit"}[record["LogLevel"]]
        return f"{short}: {record['Category']}[{record['EventId']}]\n      {record['Message']}\n".encode()
    body = json.dumps(record, separators=(",", ":")).encode()
    return (b"\x1e" + body + b"\n") if media_type == "application/json-seq" else body + b"\n"


DEFAULT_COUNTERS = [
    ("System.Runtime", "cpu-usage", "CPU Usage", "%", "Metric"),
    ("System.Runtime", "working-set", "Working Set", "MB", "Metric"),
    ("System.Runtime", "gc-heap-size", "GC Heap Size", "MB", "Metric"),
    ("System.Runtime", "gen-0-gc-count", "Gen 0 GC Count", "count", "Rate"),
    ("System.Runtime", "threadpool-thread-count", "ThreadPool Thread Count", None, "Metric"),
    ("Microsoft.AspNetCore.Hosting", "requests-per-second", "Request Rate", "count", "Rate"),
    ("Microsoft.AspNetCore.Hosting", "total-requests", "Total Requests", None, "Metric"),
]


def metric_value(provider: str, name: str, n: int, pid: int) -> float:
    r = random.Random(f"{provider}/{name}/{n}/{pid}")
    return round(r.uniform(0, 100), 3)


def livemetric_records(n: int, pid: int, providers: list[tuple[str, list[str] | None]] | None,
                       include_default: bool = True, now: float | None = None) -> list[dict]:
    out = []
    for provider, name, display, unit, ctype in DEFAULT_COUNTERS:
        wanted = include_default
        if providers is not None:
            for pname, counters in providers:
                if pname == provider and (not counters or name in counters):
                    wanted = True
        if not wanted:
            continue
        out.append({"timestamp": iso_time(now), "provider": provider, "name": name, "displayName": display,
                    "unit": unit, "counterType": ctype, "tags": "", "value": metric_value(provider, name, n, pid),
                    "meterTags": "", "instrumentTags": ""})
    return out


def prometheus_text(pid: int, n: int, now: float | None = None) -> bytes:
    ts = int((time.time() if now is None else now) * 1000)
    lines = []
    for provider, name, display, unit, ctype in DEFAULT_COUNTERS:
        metric = provider.replace(".", "").lower() + "_" + name.replace("-", "_")
        if unit == "MB":
            metric += "_bytes"
        elif ctype == "Rate":
            metric += "_total" if not metric.endswith("_count") else ""
        kind = "counter" if ctype == "Rate" else "gauge"
        lines.append(f"# HELP {metric} {display}")
        lines.append(f"# TYPE {metric} {kind}")
        lines.append(f"{metric} {metric_value(provider, name, n, pid)} {ts}")
    return ("\n".join(lines) + "\n").encode()


_FRAMES = [("System.Private.CoreLib.dll", "System.Threading.Monitor", "Wait"),
           ("System.Private.CoreLib.dll", "System.Threading.SemaphoreSlim", "Wait"),
           ("App.dll", "App.Worker", "ExecuteAsync"),
           ("App.dll", "App.Program", "Main")]


def stacks_body(pid: int, media_type: str) -> bytes:
    threads = [(1000 + t, _FRAMES[t % 2:]) for t in range(3)]
    if media_type == "text/plain":
        out = []
        for tid, frames in threads:
            out.append(f"Thread: (0x{tid:X})")
            out.extend(f"  {m}!{t}.{f}" for m, t, f in frames)
            out.append("")
        return "\n".join(out).encode()
    if media_type == "application/speedscope+json":
        names = [f"{m}!{t}.{f}" for m, t, f in _FRAMES]
        profiles = [{"type": "sampled", "name": f"Thread (0x{tid:X})", "unit": "none", "startValue": 0,
                     "endValue": 1, "samples": [[names.index(f"{m}!{t}.{f}") for m, t, f in reversed(frames)]],
                     "weights": [1]} for tid, frames in threads]
        return json.dumps({"$schema": "https://www.speedscope.app/file-format-schema.json",
                           "shared": {"frames": [{"name": n} for n in names]},
                           "profiles": profiles, "name": f"{pid}", "exporter": "dotnet-monitor"}).encode()
    stacks = [{"threadId": tid, "threadName": None,
               "frames": [{"methodName": f, "methodToken": 100663297 + i, "parameterTypes": [],
                           "typeName": t, "moduleName": m, "moduleVersionId": "00000000-0000-0000-0000-000000000000"}
                          for i, (m, t, f) in enumerate(frames)]} for tid, frames in threads]
    return json.dumps(stacks).encode()


def exception_records(pid: int, count: int = 3, now: float | None = None) -> list[dict]:
    out = []
    for i in range(count):
        out.append({"id": i + 1, "timestamp": iso_time(now), "typeName": "System.InvalidOperationException",
                    "moduleName": "System.Private.CoreLib.dll", "message": f"Operation {i} is not valid.",
                    "innerExceptions": [],
                    "stack": {"threadId": 1000, "threadName": None,
                              "frames": [{"methodName": "ExecuteAsync", "typeName": "App.Worker",
                                          "moduleName": "App.dll", "methodToken": 100663300 + i,
                                          "parameterTypes": []}]}})
    return out


def format_exception(rec: dict, media_type: str) -> bytes:
    if media_type == "text/plain":
        return (f"{rec['timestamp']}\nFirst chance exception. {rec['typeName']}: {rec['message']}\n"
                f"   at App.Worker.ExecuteAsync()\n\n").encode()
    body = json.dumps(rec, separators=(",", ":")).encode()
    return (b"\x1e" + body + b"\n") if media_type == "application/json-seq" else body + b"\n"


def parameter_record(n: int, methods: list[dict], now: float | None = None) -> dict:
    m = methods[n % len(methods)] if methods else {"moduleName": "App.dll", "typeName": "App.Worker", "methodName": "Run"}
    return {"activityId": f"00-{n:032x}-{n:016x}-01", "activityIdType": "W3C", "threadId": 1000 + n % 4,
            "timestamp": iso_time(now), "moduleName": m.get("moduleName"), "typeName": m.get("typeName"),
            "methodName": m.get("methodName"),
            "parameters": [{"parameterType": "System.Int32", "moduleName": "System.Private.CoreLib.dll",
                            "name": "value", "value": str(n), "evalFailReason": "None"}]}


def format_parameter(rec: dict, media_type: str) -> bytes:
    if media_type == "text/plain":
        args = ", ".join(f"{p['name']}: {p['value']}" for p in rec["parameters"])
        return f"{rec['typeName']}.{rec['methodName']}({args})\n".encode()
    body = json.dumps(rec, separators=(",", ":")).encode()
    return (b"\x1e" + body + b"\n") if media_type == "application/json-seq" else body + b"\n"
