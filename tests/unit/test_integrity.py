"""Integrity of downloaded artifacts: complete bodies pass, cut ones fail, unknown formats pass.

The bodies here are built from the format documents (perfview FastSerialization / EventPipeFormat.md,
the ELF64 core layout), independently of the sandbox's generator.
"""

from __future__ import annotations

import random
import struct

import pytest

from kubectl_dotnet_monitor.artifacts.integrity import (
    HEAD_BYTES,
    TAIL_BYTES,
    BodyEnds,
    TruncatedArtifactError,
    check_artifact,
    head_bytes_wanted,
)
from kubectl_dotnet_monitor.errors import ExitCode, UnavailableError

FS = struct.pack("<i", 20) + b"!FastSerialization.1"


def _type(begin: int, name: bytes, version: int = 1) -> bytes:
    return bytes([begin, 1]) + struct.pack("<iii", version, version, len(name)) + name + b"\x06"


def _filler(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n).replace(b"\x01", b"\x02")


def gcdump(payload: int = 5000, forward_refs: int = 0, label_width: int = 4, name: bytes = b"GCHeapDump") -> bytes:
    body = FS + b"\x04" + _type(4, name, 9) + _filler(payload) + b"\x06\x06"
    fmt = "<I" if label_width == 4 else "<Q"
    table = len(body)
    body += struct.pack("<i", forward_refs) + b"".join(struct.pack(fmt, 100 + i) for i in range(forward_refs))
    trailer = len(body)
    return body + struct.pack(fmt, table) + struct.pack(fmt, trailer)


def nettrace(payload: int = 5000) -> bytes:
    trace = b"\x05" + _type(5, b"Trace", 4) + bytes(48) + b"\x06"
    block = b"\x05" + _type(5, b"EventBlock", 2) + _filler(payload) + b"\x06"
    return b"Nettrace" + FS + trace + block + b"\x01"


def core(segments: int = 4, each: int = 3000, trailing: int = 0) -> bytes:
    start = 64 + 56 * (1 + segments)
    phdrs = [struct.pack("<IIQQQQQQ", 4, 0, start, 0, 0, 500, 0, 0)]
    offset = start + 500
    for i in range(segments):
        phdrs.append(struct.pack("<IIQQQQQQ", 1, 6, offset, 0x7F0000000000 + i * 0x100000, 0, each, each, 4096))
        offset += each
    phdrs.append(struct.pack("<IIQQQQQQ", 1, 4, 0, 0x10000, 0, 0, 4096, 4096))  # no file bytes
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 4, 0x3E, 1, 0, 64, 0, 0, 64, 56,
                       len(phdrs), 0, 0, 0)
    body = ehdr + b"".join(phdrs)
    return body + _filler(offset - len(body)) + _filler(trailing, 2)


def ends(body: bytes, kind: str, chunk: int = 1 << 20) -> BodyEnds:
    class Sink:
        written = 0

        def write(self, data):
            Sink.written += len(data)

    probe = BodyEnds(Sink(), kind)
    view = memoryview(body)
    for i in range(0, len(body), chunk):
        probe.write(view[i:i + chunk])
    assert probe.size == Sink.written == len(body)
    return probe


def verdict(kind: str, body: bytes, chunk: int = 1 << 20) -> str | None:
    try:
        ends(body, kind, chunk).check()
    except TruncatedArtifactError as exc:
        return str(exc)
    return None


COMPLETE = {
    "gcdump": [gcdump(), gcdump(10), gcdump(forward_refs=3), gcdump(forward_refs=40), gcdump(label_width=8)],
    "trace": [nettrace(), nettrace(0)],
    "dump": [core(), core(1, 0), core(16, 5000)],
}


@pytest.mark.parametrize("kind,body", [(k, b) for k, bodies in COMPLETE.items() for b in bodies])
@pytest.mark.parametrize("chunk", [1, 13, 4096, 1 << 20])
def test_complete_bodies_pass(kind, body, chunk):
    assert verdict(kind, body, chunk) is None


@pytest.mark.parametrize("kind,body", [(k, b) for k, bodies in COMPLETE.items() for b in bodies])
def test_cut_anywhere_fails(kind, body):
    cuts = set(range(min(len(body), 400))) | set(range(max(0, len(body) - 200), len(body)))
    cuts |= set(random.Random(len(body)).sample(range(len(body)), min(len(body), 300)))
    missed = [cut for cut in sorted(cuts) if verdict(kind, body[:cut], chunk=random.Random(cut).choice([5, 64, 4096])) is None]
    assert missed == []


def test_a_core_with_bytes_after_its_segments_passes_and_is_checked_up_to_them():
    body = core(trailing=7)        # more than the segments need is not a truncation
    assert verdict("dump", body) is None
    assert verdict("dump", body[:-7]) is None
    assert verdict("dump", body[:-8]) is not None


def test_the_message_says_what_and_what_next():
    with pytest.raises(TruncatedArtifactError) as info:
        check_artifact("gcdump", gcdump()[:3000], gcdump()[2936:3000], 3000)
    err = info.value
    assert isinstance(err, UnavailableError) and err.exit_code == ExitCode.UNAVAILABLE == 6
    text = str(err)
    assert "the GC dump is incomplete" in text and "end-of-stream marker" in text and "after 3000 bytes" in text
    assert "dotnet-monitor ended the transfer early" in text and "nothing was saved" in text
    assert "try again, and check `kubectl logs POD -c dotnet-monitor`" in text


def test_context_for_stdout_and_the_monitor_log():
    probe = ends(nettrace()[:-1], "trace")
    with pytest.raises(TruncatedArtifactError) as info:
        probe.check(to_stdout=True, log_hint="kubectl logs -n ns app-0 -c dotnet-monitor-2")
    text = str(info.value)
    assert "the trace is incomplete" in text and "standard output" in text and "nothing was saved" not in text
    assert "`kubectl logs -n ns app-0 -c dotnet-monitor-2`" in text


@pytest.mark.parametrize("kind,body", [
    ("dump", b"MDMP\x93\xa7" + _filler(5000)),                          # Windows minidump
    ("dump", b"\x7fELF\x01\x01\x01" + bytes(9) + _filler(5000)),         # 32-bit ELF: not checked
    ("dump", core()[:16] + struct.pack("<H", 2) + core()[18:200]),       # ET_EXEC, not a core
    ("dump", b"garbage"),
    ("trace", b"Nettrace" + struct.pack("<III", 0, 6, 0) + _filler(300)),  # nettrace V6: not checked
    ("trace", b"{\"some\": \"json\"}"),
    ("trace", b"!FastSerialization.1"[:5]),
    ("gcdump", FS + b"\x04" + _type(4, b"SomethingElse") + _filler(300)),  # another entry object
    ("gcdump", b"\x00" * 100),
    ("stacks", b"Thread: (0x1)\n"),                                        # kinds without a format check
    ("logs", b""),
    ("exceptions", b"x"),
])
def test_unknown_formats_pass(kind, body):
    assert verdict(kind, body) is None
    assert verdict(kind, body[: len(body) // 2]) is None


@pytest.mark.parametrize("kind", ["gcdump", "trace", "dump"])
def test_tiny_and_empty_bodies_of_known_formats_fail(kind):
    full = COMPLETE[kind][0]
    for size in range(40):
        assert verdict(kind, full[:size]) is not None, size


def test_a_core_with_many_program_headers_keeps_its_whole_table():
    body = core(segments=200, each=10)
    assert 64 + 56 * 202 > HEAD_BYTES
    assert head_bytes_wanted(body[:64]) == 64 + 56 * 202
    probe = ends(body, "dump", chunk=1000)
    assert len(probe.head) == 64 + 56 * 202 and len(probe.tail) == TAIL_BYTES
    probe.check()
    with pytest.raises(TruncatedArtifactError, match="segments need"):
        ends(body[:-1], "dump", chunk=1000).check()
    with pytest.raises(TruncatedArtifactError, match="program headers"):
        ends(body[:5000], "dump", chunk=333).check()


def test_memory_stays_flat():
    probe = ends(gcdump(payload=3 << 20), "gcdump", chunk=1 << 16)
    assert len(probe.head) == HEAD_BYTES and len(probe.tail) == TAIL_BYTES
    probe.check()
    other = ends(b"x" * 100_000, "stacks")
    assert other.head == b"" and other.size == 100_000


def test_gcdump_labels_past_4_gib_are_compared_modulo_2_32():
    size = (5 << 30) + 123
    head = gcdump()[:200]
    tail = b"\x06\x06" + struct.pack("<iII", 0, (size - 12) & 0xFFFFFFFF, (size - 8) & 0xFFFFFFFF)
    check_artifact("gcdump", head, tail, size)
    with pytest.raises(TruncatedArtifactError):
        check_artifact("gcdump", head, tail, size - 1)
