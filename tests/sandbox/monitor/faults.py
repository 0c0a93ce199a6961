"""Fault switches for artifact responses, settable from the scenario or at runtime.

A fault is a dict (or :class:`Fault`)::

    {"artifact": "gcdump" | "*", "kind": "reset" | "truncate" | "stall" | "slow_first_byte" | "egress_fail",
     "after": bytes (reset/truncate/stall; default 0), "delay": seconds (slow_first_byte),
     "times": how many responses it applies to (default: all), "message": text (egress_fail)}

* ``reset``: after ``after`` body bytes the connection is closed with an RST (SO_LINGER 0).
* ``truncate``: after ``after`` bytes the chunked body ends with a proper terminator — the
  clean-looking early end dotnet-monitor itself produces (reference §1.3); recorded complete=False
  while the operation still ends Succeeded.
* ``stall``: after ``after`` bytes nothing more is sent; the connection stays open until the client
  leaves or the monitor stops.
* ``slow_first_byte``: the response (headers included) starts only after ``delay`` seconds.
* ``egress_fail``: an egressed operation ends Failed with ``message``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .knobs import parse_size

KINDS = ("reset", "truncate", "stall", "slow_first_byte", "egress_fail")


@dataclass
class Fault:
    kind: str
    artifact: str = "*"
    after: int = 0
    delay: float = 0.0
    times: int | None = None
    message: str = "Egress failed: the simulated provider rejected the upload."

    @classmethod
    def from_dict(cls, d: dict) -> "Fault":
        kind = str(d["kind"])
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(KINDS)}")
        return cls(kind=kind, artifact=str(d.get("artifact", "*")), after=parse_size(d.get("after", 0)),
                   delay=float(d.get("delay", 0) or 0), times=d.get("times"),
                   message=str(d.get("message", cls.message)))

    def as_dict(self) -> dict:
        return {"kind": self.kind, "artifact": self.artifact, "after": self.after, "delay": self.delay,
                "times": self.times, "message": self.message}


class FaultPlan:
    """Thread-safe list of active faults. ``take`` consumes one use of each matching fault."""

    def __init__(self, faults: list[dict] | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = [Fault.from_dict(f) for f in faults or []]

    def set(self, faults: list[dict]) -> None:
        parsed = [f if isinstance(f, Fault) else Fault.from_dict(f) for f in faults]
        with self._lock:
            self._faults = parsed

    def add(self, fault: dict) -> None:
        f = Fault.from_dict(fault)
        with self._lock:
            self._faults.append(f)

    def clear(self) -> None:
        self.set([])

    def list(self) -> list[dict]:
        with self._lock:
            return [f.as_dict() for f in self._faults]

    def take(self, artifact: str) -> dict[str, Fault]:
        """Faults that apply to the next ``artifact`` response, by kind (at most one per kind)."""
        out: dict[str, Fault] = {}
        with self._lock:
            keep = []
            for f in self._faults:
                if (f.artifact in ("*", artifact)) and f.kind not in out:
                    out[f.kind] = f
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            continue
                keep.append(f)
            self._faults = keep
        return out
