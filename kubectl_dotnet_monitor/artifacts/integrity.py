"""Is a downloaded artifact complete? PURE checks over its first and last bytes and its size.

dotnet-monitor can end a chunked response *normally* after an error in the middle of the body
(reference dotnet-monitor-api.md §1.3): HTTP then cannot tell a cut artifact from a whole one. The
formats can. Each check reads only what :class:`BodyEnds` keeps as the bytes pass (the first few
KiB, the last few bytes, the count), so the byte loop stays constant-memory and nothing is re-read:

* gcdump — a FastSerialization stream (perfview ``FastSerialization.cs``, written by dotnet-monitor
  into a memory buffer, then sent): it ends with a trailer and a *suffix label*, the 4-byte stream
  offset of that trailer, which sits 8 bytes before the end. A cut body ends with other bytes.
* trace — nettrace V4/V5 (perfview ``EventPipeFormat.md``): the last object's ``EndObject`` tag
  (6), then the ``NullReference`` tag (1) that ends the stream.
* dump — a Linux core (``core_<ts>``): a valid ELF64 header and program headers; the body must reach
  the end of every segment's file extent (``p_offset + p_filesz``) and of the header tables.

Conservative by design: a check fails only when it recognises the format *and* the body is
definitely incomplete. Anything else — a Windows minidump, a nettrace V6 (not written by today's
runtimes), a 32-bit or big-endian core, an entry object other than ``GCHeapDump`` — passes unchecked.
A cut body that happens to end exactly like a complete one passes too: about 1 in 65536 for a
trace cut at a random byte, 1 in 2^32 for a gcdump; a core is checked exactly.
"""

from __future__ import annotations

import struct

from kubectl_dotnet_monitor.errors import UnavailableError

HEAD_BYTES = 4096  # enough for every header below, except a core's program-header table
TAIL_BYTES = 64
MAX_HEAD_BYTES = 4 << 20  # a core's program-header table: 65535 entries of 56 bytes fit

FAST_SERIALIZATION = struct.pack("<i", 20) + b"!FastSerialization.1"
NETTRACE_MAGIC = b"Nettrace"
ELF_MAGIC = b"\x7fELF"
_BEGIN_OBJECT, _NULL_REFERENCE, _END_OBJECT = 4, 1, 6
_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_ELF_PHDR = struct.Struct("<IIQQQQQQ")
_ET_CORE, _PN_XNUM = 4, 0xFFFF

#: What each artifact kind is called in messages.
NAMES = {"gcdump": "GC dump", "trace": "trace", "dump": "core dump"}

_WHY = ("dotnet-monitor ended the transfer early (a known dotnet-monitor behaviour after a "
        "collection error)")


class TruncatedArtifactError(UnavailableError):
    """The body ended cleanly over HTTP, but the artifact inside it is cut short."""

    def __init__(self, kind: str, problem: str, size: int, *, saved: str = "nothing was saved",
                 log_hint: str | None = None) -> None:
        self.kind = kind
        self.problem = problem
        self.size = size
        self.what = NAMES.get(kind, kind)
        logs = log_hint or "kubectl logs POD -c dotnet-monitor"
        super().__init__(
            f"the {self.what} is incomplete: {problem} after {size} bytes; {_WHY}; {saved}",
            f"try again, and check `{logs}`",
        )

    def in_context(self, *, saved: str, log_hint: str | None) -> TruncatedArtifactError:
        """The same finding, saying what happened to the bytes and where the monitor's log is."""
        return TruncatedArtifactError(self.kind, self.problem, self.size, saved=saved, log_hint=log_hint)


# --------------------------------------------------------------------------------------------
# The checks


def check_artifact(kind: str, head: bytes, tail: bytes, size: int) -> None:
    """Raise :class:`TruncatedArtifactError` when ``kind``'s body is recognisably incomplete.

    ``head`` is the body's first bytes (at least :func:`head_bytes_wanted` of them, or all of a
    shorter body), ``tail`` its last bytes (up to :data:`TAIL_BYTES`), ``size`` its length.
    """
    check = _CHECKS.get(kind)
    if check is None:
        return
    problem = check(bytes(head), bytes(tail), size)
    if problem is not None:
        raise TruncatedArtifactError(kind, problem, size)


def head_bytes_wanted(head: bytes) -> int:
    """How many leading bytes the checks need, judging from the first ones seen (>= 64 of them).

    :data:`HEAD_BYTES`, or for an ELF64 core the end of its program-header table (capped at
    :data:`MAX_HEAD_BYTES`).
    """
    header = _elf64_header(head)
    if header is None or header["e_phnum"] == _PN_XNUM:
        return HEAD_BYTES
    table_end = header["e_phoff"] + header["e_phnum"] * header["e_phentsize"]
    return max(HEAD_BYTES, min(table_end, MAX_HEAD_BYTES))


def _cut_inside(head: bytes, size: int, expected: bytes) -> bool:
    """The whole body (``size`` bytes) is a strict start of ``expected``."""
    return size < len(expected) and head[:size] == expected[:size]


def check_gcdump(head: bytes, tail: bytes, size: int) -> str | None:
    """The problem with a gcdump body, or None (complete, or not a gcdump we know)."""
    if _cut_inside(head, size, FAST_SERIALIZATION):
        return "it ends inside its FastSerialization header"
    if not head.startswith(FAST_SERIALIZATION):
        return None
    # The entry object: BeginObject, then its type object (BeginObject, NullReference, version,
    # minimum reader version, length-prefixed name, EndObject).
    at = len(FAST_SERIALIZATION)
    opening = bytes([_BEGIN_OBJECT, _BEGIN_OBJECT, _NULL_REFERENCE])
    name_at = at + len(opening) + 12
    if size <= name_at:
        seen = min(size, at + len(opening))
        return "it ends inside its first object" if head[at:seen] == opening[:seen - at] else None
    if head[at:at + len(opening)] != opening:
        return None
    (name_len,) = struct.unpack_from("<i", head, name_at - 4)
    if not 0 < name_len <= 1024:
        return None
    if size < name_at + name_len + 1:
        return "it ends inside its first object"
    if len(head) < name_at + name_len or head[name_at:name_at + name_len] != b"GCHeapDump":
        return None
    if _fast_serialization_trailer_ok(tail, size):
        return None
    return "it ends without its end-of-stream marker (the serializer's trailer)"


def _fast_serialization_trailer_ok(tail: bytes, size: int) -> bool:
    """The stream ends with its trailer: ``EndObject`` (the unbalanced one ending the object list),
    the forward-reference table (count, labels), the trailer (the table's label) and the suffix
    label (the trailer's offset). Labels are 4-byte stream offsets; 8-byte ones are accepted too.
    """
    for width, fmt in ((4, "<I"), (8, "<Q")):
        if len(tail) < 2 * width or size < 2 * width + 5:
            continue
        mask = (1 << (8 * width)) - 1
        (trailer,) = struct.unpack_from(fmt, tail, len(tail) - width)
        if trailer != (size - 2 * width) & mask:
            continue
        (table,) = struct.unpack_from(fmt, tail, len(tail) - 2 * width)
        if size >= mask:  # labels wrapped around: the low bits matched, that is all we can tell
            return True
        room = trailer - table - 4  # the count, then `count` labels
        if table < 5 or room < 0 or room % width:
            continue
        table_in_tail = table - (size - len(tail))
        if table_in_tail >= 1:  # the count and the EndObject before it are visible: check them too
            (count,) = struct.unpack_from("<i", tail, table_in_tail)
            if count * width != room or tail[table_in_tail - 1] != _END_OBJECT:
                continue
        return True
    return False


def check_nettrace(head: bytes, tail: bytes, size: int) -> str | None:
    """The problem with a nettrace body, or None (complete, or a version we do not check)."""
    header = NETTRACE_MAGIC + FAST_SERIALIZATION
    if _cut_inside(head, size, header):
        return "it ends inside its Nettrace header"
    if not head.startswith(header):
        return None  # another format, or nettrace V6 (its own stream header and end block)
    if tail.endswith(bytes([_END_OBJECT, _NULL_REFERENCE])):
        return None
    return "it ends without its end-of-stream marker (EndObject, NullReference)"


def _elf64_header(head: bytes) -> dict | None:
    """The ELF header fields of a little-endian ELF64 core, or None."""
    if len(head) < _ELF_HEADER.size or not head.startswith(ELF_MAGIC):
        return None
    fields = _ELF_HEADER.unpack_from(head)
    names = ("e_ident", "e_type", "e_machine", "e_version", "e_entry", "e_phoff", "e_shoff", "e_flags",
             "e_ehsize", "e_phentsize", "e_phnum", "e_shentsize", "e_shnum", "e_shstrndx")
    header = dict(zip(names, fields))
    ident = header["e_ident"]
    if ident[4] != 2 or ident[5] != 1 or header["e_type"] != _ET_CORE:
        return None  # not ELFCLASS64 / ELFDATA2LSB / ET_CORE
    if header["e_phentsize"] != _ELF_PHDR.size or header["e_phoff"] < _ELF_HEADER.size:
        return None
    return header


def check_core(head: bytes, tail: bytes, size: int) -> str | None:
    """The problem with a Linux core dump body, or None (complete, or not an ELF64 core)."""
    if _cut_inside(head, size, ELF_MAGIC):
        return "it ends inside its ELF header"
    if not head.startswith(ELF_MAGIC):
        return None  # e.g. a Windows minidump (MDMP)
    if size < _ELF_HEADER.size:
        ident = head[4:6]
        return "it ends inside its ELF header" if ident in (b"", b"\x02", b"\x02\x01") else None
    header = _elf64_header(head)
    if header is None or header["e_phnum"] == _PN_XNUM:
        return None  # 32-bit, big-endian, not a core, or >= 65535 segments: not checked
    table_end = header["e_phoff"] + header["e_phnum"] * _ELF_PHDR.size
    if size < table_end:
        return "it ends inside its program headers"
    if len(head) < table_end:
        return None  # more program headers than we kept: cannot tell
    needed = table_end
    if header["e_shoff"] and header["e_shnum"]:
        needed = max(needed, header["e_shoff"] + header["e_shnum"] * header["e_shentsize"])
    for i in range(header["e_phnum"]):
        fields = _ELF_PHDR.unpack_from(head, header["e_phoff"] + i * _ELF_PHDR.size)
        p_offset, p_filesz = fields[2], fields[5]
        if p_filesz:
            needed = max(needed, p_offset + p_filesz)
    if size < needed:
        return f"its segments need {needed} bytes but it ends"
    return None


_CHECKS = {"gcdump": check_gcdump, "trace": check_nettrace, "dump": check_core}


# --------------------------------------------------------------------------------------------
# Keeping the ends as the bytes pass


class BodyEnds:
    """A sink wrapper that remembers a body's first and last bytes and its size, in constant memory.

    ``write`` passes every piece on to ``sink`` first, then keeps up to :func:`head_bytes_wanted`
    leading bytes and the last :data:`TAIL_BYTES`; :meth:`check` then runs :func:`check_artifact`.
    Other attributes (``commit``, ``discard``, …) are the wrapped sink's.
    """

    def __init__(self, sink: object, kind: str) -> None:
        self.sink = sink
        self.kind = kind
        self.size = 0
        self._head = bytearray()
        self._head_limit = HEAD_BYTES if kind in _CHECKS else 0
        self._tail = b""

    def write(self, data: bytes | memoryview) -> None:
        self.sink.write(data)
        n = len(data)
        if not n:
            return
        self.size += n
        if self._head_limit == 0:
            return
        if len(self._head) < self._head_limit:
            take = self._head_limit - len(self._head)
            self._head += data[:take]
            if len(self._head) >= 64 and self._head_limit == HEAD_BYTES:
                self._head_limit = head_bytes_wanted(bytes(self._head[:64]))
                if len(self._head) < self._head_limit and n > take:
                    self._head += data[take:take + self._head_limit - len(self._head)]
        if n >= TAIL_BYTES:
            self._tail = bytes(data[n - TAIL_BYTES:])
        else:
            self._tail = (self._tail + bytes(data))[-TAIL_BYTES:]

    @property
    def head(self) -> bytes:
        return bytes(self._head)

    @property
    def tail(self) -> bytes:
        return self._tail

    def check(self, *, to_stdout: bool = False, log_hint: str | None = None) -> None:
        """Raise :class:`TruncatedArtifactError` if what passed is recognisably incomplete.

        The message says what became of the bytes: a file is not saved (the caller discards its
        temporary file); on standard output they are already gone, so the reader is told to drop
        them. ``log_hint`` is the command that shows the monitor's log.
        """
        try:
            check_artifact(self.kind, self._head, self._tail, self.size)
        except TruncatedArtifactError as exc:
            saved = ("its bytes already went to standard output: discard them" if to_stdout
                     else "nothing was saved")
            raise exc.in_context(saved=saved, log_hint=log_hint) from None

    def __getattr__(self, name: str) -> object:
        return getattr(self.sink, name)
