"""PURE: turning what dotnet-monitor sends into lines and tables for a terminal or a pipe.

Streams arrive in arbitrary pieces; :class:`JsonSeqDecoder` reassembles RFC 7464 records
(``0x1E`` + JSON + ``\\n``) and also accepts plain newline-delimited JSON, so renderers only see
whole records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

RS = b"\x1e"


class JsonSeqDecoder:
    """Feed bytes, get complete JSON records back (json-seq or ndjson); bad records are skipped."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[object]:
        self._buf += data
        out: list[object] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buf[:end]).strip(RS + b" \r\t")
            del self._buf[: end + 1]
            if not line:
                continue
            for part in line.split(RS):  # a record may lack its own newline before the next RS
                part = part.strip()
                if part:
                    try:
                        out.append(json.loads(part))
                    except ValueError:
                        continue
        return out

    def flush(self) -> list[object]:
        """Whatever complete record is left at the end of the stream."""
        if self._buf.strip(RS + b" \r\n\t"):
            self._buf += b"\n"
            return self.feed(b"")
        return []


def ndjson_line(record: object) -> str:
    """One record as one compact JSON line (no RS)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def livemetric_line(record: dict) -> str:
    """``12:00:05  System.Runtime  CPU Usage (%)  12.5`` — one counter value, readable."""
    stamp = str(record.get("timestamp") or "")
    clock = stamp[11:19] if len(stamp) >= 19 and stamp[10:11] == "T" else stamp
    name = record.get("displayName") or record.get("name") or "?"
    unit = record.get("unit")
    value = record.get("value")
    if isinstance(value, float):
        shown = f"{value:,.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    else:
        shown = str(value)
    label = f"{name} ({unit})" if unit else str(name)
    tags = record.get("tags") or record.get("metadata") or ""
    tail = f"  [{tags}]" if tags else ""
    return f"{clock:<8}  {record.get('provider') or ''!s:<30}  {label:<34}  {shown:>14}{tail}"


def table(headers: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    """A plain aligned table like kubectl's (three spaces between columns, no trailing blanks)."""
    head = [str(h) for h in headers]
    body = [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max([len(head[i])] + [len(r[i]) for r in body]) for i in range(len(head))]
    lines = ["   ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in [head] + body]
    return "\n".join(lines)


def process_rows(processes: list[dict]) -> Iterator[list[object]]:
    """Rows ``PID UID NAME DEFAULT COMMAND`` for the processes table."""
    for p in processes:
        yield [p.get("pid"), p.get("uid") or "-", p.get("name") or "-",
               "yes" if p.get("isDefault") else "no", p.get("commandLine") or "-"]


def info_lines(info: dict) -> list[str]:
    """``/info`` as ``Key: value`` lines; capabilities (10.0+) as ``name: on/off``."""
    lines = [
        f"Version:          {info.get('version') or '?'}",
        f"Runtime:          {info.get('runtimeVersion') or '?'}",
        f"Diagnostic port:  {info.get('diagnosticPortMode') or '?'}"
        + (f" ({info['diagnosticPortName']})" if info.get("diagnosticPortName") else ""),
    ]
    caps = info.get("capabilities")
    if isinstance(caps, list):
        lines.append("Capabilities:")
        for cap in caps:
            if isinstance(cap, dict):
                lines.append(f"  {cap.get('name')!s:<14} {'on' if cap.get('enabled') else 'off'}")
    else:
        lines.append("Capabilities:     (not reported by this dotnet-monitor version; 10.0+ lists them)")
    return lines


def env_lines(env: dict) -> list[str]:
    """``KEY=value`` lines, sorted by name."""
    return [f"{k}={v}" for k, v in sorted(env.items())]


def operation_rows(operations: list[dict]) -> Iterator[list[object]]:
    """Rows ``ID STATUS PID CREATED EGRESS STOPPABLE TAGS LOCATION``.

    LOCATION is where an egressed artifact went (or the error of a failed egress), when known.
    """
    for op in operations:
        proc = op.get("process") or {}
        error = op.get("error") if isinstance(op.get("error"), dict) else {}
        location = op.get("resourceLocation") or (error.get("message") and f"error: {error['message']}") or "-"
        yield [op.get("operationId"), op.get("status"), proc.get("pid", "-"), op.get("createdDateTime"),
               op.get("egressProviderName") or "-", "yes" if op.get("isStoppable") else "no",
               ",".join(op.get("tags") or []) or "-", location]


def operation_lines(op: dict) -> list[str]:
    """One operation's status, readable."""
    proc = op.get("process") or {}
    lines = [f"Operation:   {op.get('operationId')}", f"Status:      {op.get('status')}",
             f"Created:     {op.get('createdDateTime')}",
             f"Process:     pid {proc.get('pid')} uid {proc.get('uid')} {proc.get('name') or ''}".rstrip(),
             f"Egress:      {op.get('egressProviderName') or '(streamed over HTTP)'}",
             f"Stoppable:   {'yes' if op.get('isStoppable') else 'no'}"]
    if op.get("tags"):
        lines.append(f"Tags:        {', '.join(op['tags'])}")
    if op.get("resourceLocation"):
        lines.append(f"Location:    {op['resourceLocation']}")
    error = op.get("error")
    if isinstance(error, dict) and (error.get("message") or error.get("code")):
        lines.append(f"Error:       {error.get('code') or ''} {error.get('message') or ''}".rstrip())
    return lines

