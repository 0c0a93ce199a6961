"""Artifact bodies, SHA-256 records, faults, limits, operations and egress of the simulated monitor."""

from __future__ import annotations

import hashlib
import itertools
import socket
import struct
import threading
import time

import pytest

from tests.sandbox.monitor import start_monitor
from tests.sandbox.monitor.artifacts import bulk_chunks, expected_bytes, expected_sha256
from tests.sandbox.monitor.testing import FakeNetwork, ListRecorder, monitor_container, prepared_pod, request, scenario

NOAUTH = ["collect", "--no-auth", "--urls", "http://localhost:52323"]
EGRESS = {"DotnetMonitor_Egress__FileSystem__files__DirectoryPath": "/diag/out",
          "DotnetMonitor_CollectionRules__Leak__Trigger__Type": "EventCounter",
          "DotnetMonitor_CollectionRules__Leak__Actions__0__Type": "CollectGCDump",
          "DotnetMonitor_CollectionRules__Leak__Actions__0__Settings__Egress": "files",
          "DotnetMonitor_CollectionRules__Leak__Limits__ActionCount": "1"}


@pytest.fixture
def mon():
    rec = ListRecorder()
    sc = scenario(monitor={"artifacts": {"gcdump": {"size": "3MiB"}, "dump": {"size": "1MiB"},
                                         "trace": {"size": "512KiB", "rundown_size": "64KiB"}}})
    h = start_monitor(prepared_pod(), monitor_container(args=NOAUTH, env=EGRESS), sc, FakeNetwork(), rec)
    h.port = h.ports[52323]
    h.rec = rec
    yield h
    h.stop()


def _record(h, op_id):
    return h.rec.wait_for(lambda r: r["operation_id"] == op_id)


def _op_id(reply):
    return reply.header("Location").rsplit("/", 1)[1]


def test_gcdump_bytes_and_sha_recorded(mon):
    r = request(mon.port, "GET", "/gcdump")
    assert r.status == 200 and r.complete
    assert r.header("Transfer-Encoding") == "chunked" and r.header("Content-Length") is None
    assert r.header("Content-Disposition").startswith("attachment; filename=") and ".gcdump" in r.header("Content-Disposition")
    assert r.header("Location").startswith(f"http://localhost:{mon.port}/operations/")
    rec = _record(mon, _op_id(r))
    assert rec["bytes"] == len(r.body) == 3 << 20
    assert rec["sha256"] == hashlib.sha256(r.body).hexdigest() and rec["complete"] is True
    assert r.body.startswith(b"\x14\x00\x00\x00!FastSerialization.1")
    assert request(mon.port, "GET", f"/operations/{_op_id(r)}").status == 201


def test_content_is_deterministic_per_seed():
    a = b"".join(bytes(m) for m in bulk_chunks("dump", 7, 3_000_001, chunk_size=65536))
    assert len(a) == 3_000_001 and hashlib.sha256(a).hexdigest() == expected_sha256("dump", 7, 3_000_001)
    assert a[:1 << 20] != a[1 << 20:2 << 20]                  # chunks vary by offset
    assert expected_sha256("dump", 8, 3_000_001) != expected_sha256("dump", 7, 3_000_001)


def test_truncate_fault_looks_clean_but_is_recorded_incomplete(mon):
    mon.set_faults([{"artifact": "gcdump", "kind": "truncate", "after": 100_000, "times": 1}])
    r = request(mon.port, "GET", "/gcdump")
    assert r.status == 200 and r.complete and len(r.body) == 100_000
    rec = _record(mon, _op_id(r))
    assert (rec["complete"], rec["bytes"], rec["fault"]) == (False, 100_000, "truncate")
    assert rec["sha256"] == hashlib.sha256(r.body).hexdigest()
    assert request(mon.port, "GET", f"/operations/{_op_id(r)}").json()["status"] == "Succeeded"
    assert len(request(mon.port, "GET", "/gcdump").body) == 3 << 20    # times: 1


def test_reset_fault(mon):
    mon.add_fault({"artifact": "*", "kind": "reset", "after": "1MiB"})
    r = request(mon.port, "GET", "/gcdump")
    assert r.status == 200 and not r.complete and r.error in ("reset", "eof")
    rec = mon.rec.wait_for(lambda x: x["fault"] == "reset")
    assert rec["bytes"] == 1 << 20 and rec["complete"] is False


def test_stall_fault_keeps_connection_open(mon):
    mon.set_faults([{"kind": "stall", "after": 4096}])
    r = request(mon.port, "GET", "/gcdump", timeout=1.0)
    assert r.status == 200 and r.error == "timeout" and len(r.body) == 4096
    rec = mon.rec.wait_for(lambda x: x["fault"] == "stall")     # client left → recorded, slot freed
    assert rec["outcome"] == "client_gone"
    mon.clear_faults()
    assert request(mon.port, "GET", "/gcdump").status == 200


def test_slow_first_byte_and_429_for_second_gcdump(mon):
    mon.set_faults([{"artifact": "gcdump", "kind": "slow_first_byte", "delay": 1.0, "times": 1}])
    results = {}
    t = threading.Thread(target=lambda: results.setdefault("first", request(mon.port, "GET", "/gcdump")))
    t0 = time.monotonic()
    t.start()
    time.sleep(0.3)
    second = request(mon.port, "GET", "/gcdump")
    assert second.status == 429 and second.json()["detail"] == "Rate limit reached."
    assert second.content_type.startswith("application/problem+json")
    t.join(10)
    assert results["first"].status == 200 and time.monotonic() - t0 >= 1.0


def test_logs_without_accept_is_406(mon):
    r = request(mon.port, "GET", "/logs?durationSeconds=1")
    assert (r.status, r.body) == (406, b"")
    r = request(mon.port, "GET", "/logs?durationSeconds=1", {"Accept": "*/*"})
    assert r.content_type == "text/plain" and r.header("Content-Disposition") is None


def _start_stream(port, path, headers=None):
    box, started = {}, threading.Event()

    def run():
        box["reply"] = request(port, "GET", path, headers,
                               on_headers=lambda rep: (box.setdefault("loc", rep.header("Location")), started.set()))
    t = threading.Thread(target=run)
    t.start()
    assert started.wait(10)
    return t, box


def test_stop_operation_ends_trace_cleanly(mon):
    t, box = _start_stream(mon.port, "/trace?durationSeconds=-1")
    op = box["loc"].rsplit("/", 1)[1]
    time.sleep(0.2)
    assert request(mon.port, "GET", f"/operations/{op}").json()["isStoppable"] is True
    assert request(mon.port, "DELETE", f"/operations/{op}?stop=true").status == 202
    t.join(10)
    r = box["reply"]
    assert r.complete and r.body.startswith(b"Nettrace") and r.body.endswith(b"\x01")
    rec = _record(mon, op)
    assert rec["complete"] is True and rec["sha256"] == hashlib.sha256(r.body).hexdigest()
    assert request(mon.port, "GET", f"/operations/{op}").status == 201


def test_stop_not_supported_for_gcdump_and_cancel_logs(mon):
    mon.set_faults([{"artifact": "gcdump", "kind": "slow_first_byte", "delay": 2.0, "times": 1}])
    t, box = _start_stream(mon.port, "/logs?durationSeconds=-1", {"Accept": "application/x-ndjson"})
    op = box["loc"].rsplit("/", 1)[1]
    assert request(mon.port, "DELETE", f"/operations/{op}").status == 200
    t.join(10)
    assert box["reply"].complete                     # cancellation ends the chunked body normally
    assert request(mon.port, "GET", f"/operations/{op}").json()["status"] == "Cancelled"
    r = request(mon.port, "GET", "/gcdump?egressProvider=files")
    gop = _op_id(r)
    d = request(mon.port, "DELETE", f"/operations/{gop}?stop=true")
    assert d.status == 400 and d.json()["detail"] == "Operation does not support being stopped."


def test_egress_succeeds_and_fails(mon):
    r = request(mon.port, "GET", "/gcdump?egressProvider=files&tags=nightly")
    assert r.status == 202 and r.body == b""
    rec = _record(mon, _op_id(r))
    status = request(mon.port, "GET", f"/operations/{_op_id(r)}")
    assert status.status == 201 and status.json()["resourceLocation"].startswith("/diag/out/")
    assert rec["egress"] == "files" and rec["bytes"] == 3 << 20
    assert [o["operationId"] for o in request(mon.port, "GET", "/operations?tags=nightly").json()] == [_op_id(r)]
    mon.add_fault({"kind": "egress_fail", "message": "disk full", "times": 1})
    r2 = request(mon.port, "GET", "/gcdump?egressProvider=files")
    _record(mon, _op_id(r2))
    body = request(mon.port, "GET", f"/operations/{_op_id(r2)}").json()
    assert body["status"] == "Failed" and body["error"]["message"] == "disk full"


def test_collection_rule_fires_into_egress(mon):
    assert request(mon.port, "GET", "/collectionrules").json() == {
        "Leak": {"state": "Running", "stateReason": "This collection rule is active and waiting for its triggering conditions to be satisfied."}}
    [op] = mon.fire_rule("Leak")
    _record(mon, op)
    detail = request(mon.port, "GET", "/collectionrules/Leak").json()
    assert detail["lifetimeOccurrences"] == 1 and detail["state"] == "Finished"
    assert request(mon.port, "GET", f"/operations/{op}").status == 201


# ------------------------------------------------- bodies are structurally the real formats
# Small readers written from the format documents (perfview FastSerialization.cs and
# EventPipeFormat.md, the ELF64 core layout): they read what the plugin's integrity check reads.

FS_HEADER = struct.pack("<i", 20) + b"!FastSerialization.1"


def _read_type(body: bytes, at: int, begin: int) -> tuple[str, int, int, int]:
    """A FastSerialization type object at ``at``: (name, version, min reader version, end)."""
    assert body[at:at + 2] == bytes([begin, 1])                       # begin tag, null type-of-type
    version, min_reader, n = struct.unpack_from("<iii", body, at + 2)
    name = body[at + 14:at + 14 + n].decode()
    assert body[at + 14 + n] == 6                                     # EndObject
    return name, version, min_reader, at + 15 + n


def parse_gcdump(body: bytes) -> dict:
    assert body.startswith(FS_HEADER) and body[24] == 4              # entry object: BeginObject
    name, version, _, _ = _read_type(body, 25, 4)
    (suffix_label,) = struct.unpack_from("<I", body, len(body) - 4)
    (table,) = struct.unpack_from("<I", body, suffix_label)          # the trailer: the table's label
    (count,) = struct.unpack_from("<i", body, table)
    assert suffix_label == len(body) - 8 and table + 4 + 4 * count == suffix_label
    assert body[table - 2:table] == b"\x06\x06"                       # entry EndObject, end of objects
    return {"type": name, "version": version, "forward_refs": count}


def parse_nettrace(body: bytes) -> dict:
    assert body.startswith(b"Nettrace" + FS_HEADER) and body[32] == 5
    name, version, min_reader, at = _read_type(body, 33, 5)
    fields = struct.unpack_from("<8hqqiiii", body, at)
    assert body[at + 48] == 6                                         # end of the Trace object
    assert body.endswith(b"\x06\x01")                                 # EndObject, NullReference
    return {"type": name, "version": version, "min_reader": min_reader, "pointer_size": fields[10]}


def parse_core(body: bytes) -> list[tuple[int, int, int]]:
    ident, e_type, machine, _, _, phoff, shoff, _, ehsize, phentsize, phnum, _, shnum, _ = \
        struct.unpack_from("<16sHHIQQQIHHHHHH", body)
    assert ident[:7] == b"\x7fELF\x02\x01\x01" and (e_type, machine, ehsize, phentsize) == (4, 0x3E, 64, 56)
    assert phoff == 64 and (shoff, shnum) == (0, 0)
    segments = [struct.unpack_from("<IIQQQQQQ", body, phoff + i * 56) for i in range(phnum)]
    extents = [(p[0], p[2], p[5]) for p in segments]                  # type, offset, file size
    assert extents[0][0] == 4 and {t for t, _, _ in extents[1:]} == {1}   # PT_NOTE, then PT_LOAD
    assert extents[0][1] == 64 + 56 * phnum
    for (_, off, size), (_, nxt, _) in itertools.pairwise(extents):
        assert off + size == nxt                                      # segments tile the body
    assert max(off + size for _, off, size in extents) == len(body)
    return extents


@pytest.mark.parametrize("size", [64 << 10, 3_000_001, (1 << 20) + 7])
def test_bulk_bodies_parse_as_their_formats(size):
    assert parse_gcdump(expected_bytes("gcdump", 3, size)) == {"type": "GCHeapDump", "version": 10, "forward_refs": 0}
    assert parse_nettrace(expected_bytes("trace", 3, size))["type"] == "Trace"
    assert len(parse_core(expected_bytes("dump", 3, size))) >= 2


@pytest.mark.parametrize("size", [0, 1, 23, 60, 175, 176, 177, 300])
def test_tiny_bodies_have_exactly_their_size(size):
    for kind in ("gcdump", "trace", "dump", "logs"):
        assert len(expected_bytes(kind, 1, size)) == size
    if size >= 176:
        parse_core(expected_bytes("dump", 1, size))


def test_served_bodies_parse_and_a_truncation_cuts_their_structure(mon):
    assert parse_gcdump(request(mon.port, "GET", "/gcdump").body)["type"] == "GCHeapDump"
    trace = request(mon.port, "GET", "/trace?durationSeconds=1")
    assert trace.complete and parse_nettrace(trace.body)["version"] == 4
    dump = request(mon.port, "GET", "/dump?type=Mini")
    assert dump.complete and len(dump.body) == (1 << 20) // 8 and parse_core(dump.body)
    mon.set_faults([{"artifact": "*", "kind": "truncate", "after": 100_000, "times": 3}])
    for path, parse in (("/gcdump", parse_gcdump), ("/trace?durationSeconds=1", parse_nettrace),
                        ("/dump", parse_core)):
        cut = request(mon.port, "GET", path)
        assert cut.complete and len(cut.body) == 100_000       # a clean chunked end ...
        with pytest.raises((AssertionError, struct.error)):     # ... inside the format's structure
            parse(cut.body)


def test_binding_errors_empty_in_10_and_validation_in_8():
    for version, expect_body in (("10.0.4", False), ("8.1.0", True)):
        h = start_monitor(prepared_pod(), monitor_container(args=NOAUTH), scenario(monitor={"version": version}),
                          FakeNetwork(), ListRecorder())
        try:
            r = request(h.ports[52323], "GET", "/gcdump?pid=abc")
            assert r.status == 400 and bool(r.body) is expect_body
            if expect_body:
                assert "pid" in r.json()["errors"]
        finally:
            h.stop()


def test_enum_case_sensitivity_by_version():
    for version, status in (("10.0.1", 400), ("10.0.2", 200), ("9.0.0", 200)):
        h = start_monitor(prepared_pod(), monitor_container(args=NOAUTH),
                          scenario(monitor={"version": version, "artifacts": {"dump": {"size": 1024}}}),
                          FakeNetwork(), ListRecorder())
        try:
            assert request(h.ports[52323], "GET", "/dump?type=mini").status == status
        finally:
            h.stop()


@pytest.mark.slow
def test_throughput_smoke(capsys):
    size = 512 << 20
    rec = ListRecorder()
    h = start_monitor(prepared_pod(), monitor_container(args=NOAUTH), scenario(monitor={"artifacts": {"gcdump": {"size": size}}}),
                      FakeNetwork(), rec)
    try:
        s = socket.create_connection(("127.0.0.1", h.ports[52323]))
        s.sendall(b"GET /gcdump HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = bytearray(4 << 20)
        total = 0
        t0 = time.perf_counter()
        while True:
            n = s.recv_into(buf)
            if not n:
                break
            total += n
        dt = time.perf_counter() - t0
        s.close()
        rec.wait_for(lambda r: r["artifact"] == "gcdump", timeout=30)
        with capsys.disabled():
            print(f"\nsimulated monitor raw loopback: {total / dt / 1e6:.0f} MB/s ({total >> 20} MiB in {dt:.2f}s)")
        assert total > size
    finally:
        h.stop()
