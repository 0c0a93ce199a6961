"""core/v1 Events, as the kubelet and the controllers record them (what `kubectl describe` shows).

``EventRecorder.emit(obj, type, reason, message, component=..., field_path=...)`` stores an Event
about ``obj`` in the object's namespace. Repeats of the same (object, reason, message, source)
are aggregated the way client-go's event correlator does: ``count`` goes up and
``lastTimestamp`` moves, the name stays (``<object>.<16 hex digits>``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from . import store as st


class EventRecorder:
    def __init__(self, store: st.Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._names: dict[tuple, str] = {}

    def emit(self, obj: dict, type_: str, reason: str, message: str, *,
             component: str = "kubelet", field_path: str | None = None,
             host: str | None = None) -> None:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        if host is None and component == "kubelet":
            host = (obj.get("spec") or {}).get("nodeName")
        involved = {"kind": obj.get("kind", "Pod"), "namespace": ns, "name": meta.get("name"),
                    "uid": meta.get("uid"), "apiVersion": obj.get("apiVersion", "v1"),
                    "resourceVersion": meta.get("resourceVersion", "")}
        if field_path:
            involved["fieldPath"] = field_path
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        key = (meta.get("uid"), field_path, reason, message, component)
        with self._lock:
            name = self._names.get(key)
            if name is not None:
                def bump(ev: dict) -> dict | None:
                    ev["count"] = int(ev.get("count", 1)) + 1
                    ev["lastTimestamp"] = now
                    return None

                if self.store.mutate("events", ns, name, bump) is not None:
                    return
            name = f"{meta.get('name')}.{os.urandom(8).hex()}"
            self._names[key] = name
        source: dict[str, Any] = {"component": component}
        if host:
            source["host"] = host
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": involved, "reason": reason, "message": message,
            "source": source, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "type": type_, "eventTime": None, "reportingComponent": component,
            "reportingInstance": host or "",
        }
        try:
            self.store.create("events", event)
        except st.StoreError:
            pass
