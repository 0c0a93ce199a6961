"""Deterministic artifact bodies and their SHA-256.

Bulk artifacts (dump, gcdump, trace) are ``prefix + filler + suffix``: the prefix and suffix are the
real format's structure, so the plugin's integrity check has something true to check, and a
truncation fault (the clean-looking early end, reference §1.3) cuts inside that structure as a real
mid-stream failure would. They carry exactly what that check reads and no more:

* gcdump — a FastSerialization stream as dotnet-monitor's ``Serializer`` writes it into its memory
  buffer: the ``!FastSerialization.1`` header, the entry object (``BeginObject``, its type object
  ``GCHeapDump``), the object's data (filler), its ``EndObject``, the unbalanced ``EndObject`` that
  ends the object list, an empty forward-reference table, the trailer (label of that table) and the
  suffix label pointing at the trailer (labels are 4-byte stream offsets).
* trace — a nettrace (V4/V5): ``Nettrace`` magic, the ``!FastSerialization.1`` header, a complete
  ``Trace`` object, then the event data (filler) ending with the last object's ``EndObject`` tag and
  the ``NullReference`` tag that ends the stream (EventPipeFormat.md, "Ending the stream").
* dump (``core_<ts>``) — an ELF64 little-endian x86-64 core: the ELF header, one ``PT_NOTE`` and up
  to 16 ``PT_LOAD`` program headers whose file extents tile the rest of the body, the last one
  ending exactly at the body size; segment contents are filler. Below 176 bytes (header + two
  program headers) no valid core fits: the body is then the start of the header, cut.

The filler is built from one 1 MiB pseudo-random block per seed: chunk *i* is the block rotated by a
per-chunk offset, taken as a zero-copy ``memoryview`` of the block stored twice. So any size costs one
1 MiB ``randbytes`` and no per-byte Python work; the same (kind, seed, size) always gives the same
bytes, and :func:`expected_sha256` recomputes them for tests. The block holds no ``0x01`` byte, so a
trace cut inside its filler never happens to end like a complete one (``EndObject``,
``NullReference``) — a 1-in-65536 coincidence that would make fault tests flaky.

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
import struct
import threading
import time
from collections.abc import Iterator

BLOCK = 1 << 20
_STRIDE = 4099 * 64  # rotation step per chunk (co-prime-ish with BLOCK/64 → all offsets differ)
_NO_ONES = bytes(range(256)).replace(b"\x01", b"\x02")  # translate table: 0x01 -> 0x02

# FastSerialization tags (perfview FastSerialization.cs; EventPipeFormat.md).
NULL_REFERENCE, BEGIN_OBJECT, BEGIN_PRIVATE_OBJECT, END_OBJECT = 1, 4, 5, 6
FAST_SERIALIZATION = struct.pack("<i", 20) + b"!FastSerialization.1"


def _fs_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<i", len(data)) + data


def _type_object(begin: int, name: str, version: int, min_reader: int) -> bytes:
    """A FastSerialization type object: begin tag, null type-of-type, version, reader version, name."""
    return bytes([begin, NULL_REFERENCE]) + struct.pack("<ii", version, min_reader) + _fs_string(name) + bytes([END_OBJECT])


# gcdump: header, BeginObject of the entry object, its type (version 10, readers from 8).
GCDUMP_PREFIX = FAST_SERIALIZATION + bytes([BEGIN_OBJECT]) + _type_object(BEGIN_OBJECT, "GCHeapDump", 10, 8)
GCDUMP_TRAILER_SIZE = 2 + 12  # EndObject (entry), EndObject (end of objects), count, 2 labels


def gcdump_suffix(size: int) -> bytes:
    """The end of a ``size``-byte gcdump: end tags, empty forward-reference table, trailer, suffix label."""
    table = size - 12                      # label of the forward-reference table (its count field)
    trailer = size - 8                     # label of the trailer
    return bytes([END_OBJECT, END_OBJECT]) + struct.pack("<iII", 0, table & 0xFFFFFFFF, trailer & 0xFFFFFFFF)


def _trace_object() -> bytes:
    sync_time = struct.pack("<8h", 2025, 1, 3, 15, 12, 0, 0, 0)   # SYSTEMTIME: y, m, dow, d, h, m, s, ms
    fields = sync_time + struct.pack("<qqiiii", 1_000_000, 1_000_000_000, 8, 1, 2, 1000)
    return bytes([BEGIN_PRIVATE_OBJECT]) + _type_object(BEGIN_PRIVATE_OBJECT, "Trace", 4, 4) + fields + bytes([END_OBJECT])


NETTRACE_PREFIX = b"Nettrace" + FAST_SERIALIZATION + _trace_object()
NETTRACE_SUFFIX = bytes([END_OBJECT, NULL_REFERENCE])  # last object's EndObject, then end of stream

# ELF64 core (x86-64, little endian).
ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
ELF_PHDR = struct.Struct("<IIQQQQQQ")
PT_LOAD, PT_NOTE, ET_CORE, EM_X86_64 = 1, 4, 4, 0x3E
ELF_IDENT = b"\x7fELF\x02\x01\x01" + bytes(9)   # ELFCLASS64, ELFDATA2LSB, EV_CURRENT, SysV ABI
MIN_CORE = ELF_HEADER.size + 2 * ELF_PHDR.size


def core_header(size: int) -> bytes:
    """ELF header + program headers of a ``size``-byte core whose segments tile the rest of the body."""
    if size < MIN_CORE:
        return (ELF_IDENT + struct.pack("<HH", ET_CORE, EM_X86_64))[:size]
    loads = max(1, min(16, size // (256 << 10)))
    while ELF_HEADER.size + (1 + loads) * ELF_PHDR.size > size:
        loads -= 1
    start = ELF_HEADER.size + (1 + loads) * ELF_PHDR.size
    rest = size - start
    note = min(2048, rest // (loads + 1))
    each = (rest - note) // loads
    ehdr = ELF_HEADER.pack(ELF_IDENT, ET_CORE, EM_X86_64, 1, 0, ELF_HEADER.size, 0, 0, ELF_HEADER.size,
                           ELF_PHDR.size, 1 + loads, 0, 0, 0)
    phdrs = [ELF_PHDR.pack(PT_NOTE, 0, start, 0, 0, note, 0, 0)]
    offset = start + note
    for i in range(loads):
        length = each if i < loads - 1 else size - offset
        vaddr = 0x7F0000000000 + i * 0x10000000 + offset % 4096   # congruent to the offset mod p_align
        phdrs.append(ELF_PHDR.pack(PT_LOAD, 6, offset, vaddr, 0, length, length, 4096))
        offset += length
    assert offset == size
    return ehdr + b"".join(phdrs)


MAGIC = {
    # The first bytes of each bulk body (kept for readers of the old constants).
    "dump": ELF_IDENT + struct.pack("<HH", ET_CORE, EM_X86_64),
    "gcdump": FAST_SERIALIZATION,
    "trace": b"Nettrace" + FAST_SERIALIZATION,
}


def body_frame(kind: str, size: int) -> tuple[bytes, bytes]:
    """``(prefix, suffix)`` of a ``size``-byte bulk body of ``kind``; filler fills the middle.

    When ``size`` is too small for the whole structure, the body is its start, cut at ``size``.
    """
    if kind == "dump":
        prefix, suffix = core_header(size), b""
    elif kind == "gcdump":
        prefix, suffix = GCDUMP_PREFIX, gcdump_suffix(size)
    elif kind == "trace":
        prefix, suffix = NETTRACE_PREFIX, NETTRACE_SUFFIX
    else:
        return b"", b""
    if len(prefix) + len(suffix) > size:
        return (prefix + suffix)[:size], b""
    return prefix, suffix


class ContentSource:
    """The filler of one artifact: chunk *i* = the seed's block rotated by ``i * _STRIDE``."""

    def __init__(self, seed: int) -> None:
        block = random.Random(seed).randbytes(BLOCK).translate(_NO_ONES)
        self._double = memoryview(block + block)

    def chunk(self, index: int) -> memoryview:
        r = (index * _STRIDE) % BLOCK
        return self._double[r:r + BLOCK]


def bulk_chunks(kind: str, seed: int, size: int, chunk_size: int = BLOCK) -> Iterator[memoryview]:
    """Exactly ``size`` bytes for a dump/gcdump/trace body, as memoryviews of at most ``chunk_size``."""
    prefix, suffix = body_frame(kind, size)
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
