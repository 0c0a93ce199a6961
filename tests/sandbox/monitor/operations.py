"""Operations: every artifact request (streamed or egressed) registers one (reference §3).

Concurrency limits (§1.5) are global per monitor and counted over operations that have not ended;
the slot is taken at registration and freed when the operation reaches a final state.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

LIMITS = {"dump": 1, "gcdump": 1, "trace": 3, "logs": 3, "livemetrics": 3, "stacks": 1,
          "exceptions": 1, "parameters": 1}
STOPPABLE = {"trace", "logs", "livemetrics", "parameters"}
ACTIVE = ("Starting", "Running", "Stopping")
FINAL = ("Succeeded", "Failed", "Cancelled")


class RateLimited(Exception):
    """The artifact's concurrency limit is reached (→ 429)."""


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e7) % 10000000:07d}+00:00"


@dataclass
class Operation:
    kind: str
    process: dict                      # {pid, uid, name}
    egress_provider: str | None
    tags: list[str]
    counted: bool = True               # collection-rule actions do not count against limits
    operation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: float = field(default_factory=time.time)
    status: str = "Starting"
    resource_location: str | None = None
    error: dict | None = None
    query: dict | None = None          # the request's query, as received (artifact records carry it)
    stop_event: threading.Event = field(default_factory=threading.Event)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    done_event: threading.Event = field(default_factory=threading.Event)

    @property
    def is_stoppable(self) -> bool:
        return self.kind in STOPPABLE

    def summary(self) -> dict:
        return {"operationId": self.operation_id, "createdDateTime": _iso(self.created), "status": self.status,
                "process": dict(self.process), "egressProviderName": self.egress_provider,
                "isStoppable": self.is_stoppable and self.status in ("Starting", "Running"),
                "tags": list(self.tags)}

    def status_body(self) -> dict:
        body = {"resourceLocation": self.resource_location, "error": self.error}
        body.update(self.summary())
        return body


class OperationRegistry:
    """Thread-safe operation history (never pruned, like dotnet-monitor's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: dict[str, Operation] = {}

    def register(self, kind: str, process: dict, egress_provider: str | None, tags: list[str],
                 counted: bool = True) -> Operation:
        with self._lock:
            if counted:
                active = sum(1 for o in self._ops.values() if o.kind == kind and o.counted and o.status in ACTIVE)
                if active >= LIMITS.get(kind, 1):
                    raise RateLimited(kind)
            op = Operation(kind=kind, process=process, egress_provider=egress_provider, tags=tags, counted=counted)
            self._ops[op.operation_id] = op
            return op

    def get(self, operation_id: str) -> Operation | None:
        with self._lock:
            return self._ops.get(operation_id.lower())

    def all(self) -> list[Operation]:
        with self._lock:
            return sorted(self._ops.values(), key=lambda o: o.created)

    def set_status(self, op: Operation, status: str, **fields) -> None:
        with self._lock:
            if op.status in FINAL:
                return
            if status == "Running" and op.status == "Stopping":
                return
            op.status = status
            for k, v in fields.items():
                setattr(op, k, v)
        if status in FINAL:
            op.done_event.set()

    def request_stop(self, op: Operation) -> None:
        with self._lock:
            if op.status in ("Starting", "Running"):
                op.status = "Stopping"
        op.stop_event.set()

    def cancel(self, op: Operation) -> None:
        op.cancel_event.set()
        self.set_status(op, "Cancelled")
