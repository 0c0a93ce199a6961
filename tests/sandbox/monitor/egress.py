"""Egress: an artifact request with ``egressProvider`` returns 202 and runs in the background.

Providers come from configuration (``Egress:FileSystem:<name>:DirectoryPath``,
``Egress:AzureBlobStorage:<name>:AccountUri``/``ContainerName``, ``Egress:S3Storage:<name>:Endpoint``/
``BucketName``). The bytes are hashed and counted; with the ``egress_root`` knob a FileSystem provider
really writes ``<egress_root>/<DirectoryPath>/<file>`` on the host, otherwise the bytes are discarded.
The operation ends ``Succeeded`` with ``resourceLocation`` (the file path inside the monitor
container, or the blob/object URL), or ``Failed`` with ``error``.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import threading
import time

from .server import Cancelled


class EgressSink:
    """Same interface as the HTTP BodyStream, for producers."""

    def __init__(self, stopping: threading.Event, host_file: str | None) -> None:
        self.stopping = stopping
        self.sent = 0
        self._h = hashlib.sha256()
        self._file = open(host_file, "wb") if host_file else None  # noqa: SIM115 - closed in close()
        self.fault_applied = None

    def start(self) -> None:
        pass

    def write(self, data) -> None:
        if self.stopping.is_set():
            raise Cancelled()
        self._h.update(data)
        self.sent += len(data)
        if self._file is not None:
            self._file.write(data)

    def pause(self, seconds: float, *events: threading.Event) -> bool:
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if self.stopping.is_set():
                raise Cancelled()
            if any(e.is_set() for e in events):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.02))

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def resource_location(provider, file_name: str) -> str:
    s = {k.lower(): v for k, v in provider.settings.items()}
    if provider.kind == "FileSystem":
        return posixpath.join(s.get("directorypath", "/"), file_name)
    if provider.kind == "AzureBlobStorage":
        prefix = s.get("blobprefix", "").strip("/")
        blob = f"{prefix}/{file_name}" if prefix else file_name
        return f"{s.get('accounturi', 'https://account.blob.core.windows.net').rstrip('/')}/{s.get('containername', '')}/{blob}"
    endpoint = s.get("endpoint", "https://s3.amazonaws.com").rstrip("/")
    return f"{endpoint}/{s.get('bucketname', '')}/{file_name}"


def provider_problem(provider, container: dict, pod: dict) -> str | None:
    """Why a provider cannot store anything (→ operation Failed), or None."""
    s = {k.lower(): v for k, v in provider.settings.items()}
    if provider.kind == "FileSystem":
        path = s.get("directorypath")
        if not path:
            return "The DirectoryPath field is required."
        sc = container.get("securityContext") or {}
        on_volume = any(path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")
                        for m in container.get("volumeMounts") or [])
        if sc.get("readOnlyRootFilesystem") and not on_volume:
            return f"Read-only file system : '{path}'"
    return None


class EgressRunner:
    def __init__(self, monitor) -> None:
        self.m = monitor

    def start(self, op, kind, proc, route, file_name, content_type, producer, delay, faults, dump_check) -> None:
        t = threading.Thread(target=self._run, name=f"egress-{op.operation_id[:8]}", daemon=True,
                             args=(op, kind, proc, route, file_name, content_type, producer, delay, faults, dump_check))
        t.start()

    def _host_file(self, provider, file_name: str) -> str | None:
        root = self.m.knobs.egress_root
        if not root or provider.kind != "FileSystem":
            return None
        s = {k.lower(): v for k, v in provider.settings.items()}
        target = os.path.join(root, s.get("directorypath", "").lstrip("/"))
        os.makedirs(target, exist_ok=True)
        return os.path.join(target, file_name)

    def _run(self, op, kind, proc, route, file_name, content_type, producer, delay, faults, dump_check) -> None:
        ops = self.m.ops
        provider = self.m.cfg.egress[op.egress_provider]
        sink = None
        outcome = "complete"
        try:
            sink = EgressSink(self.m.stopping, self._host_file(provider, file_name))
            if delay > 0 and sink.pause(delay, op.cancel_event):
                raise Cancelled()
            verdict = dump_check() if dump_check else None
            if verdict is not None:
                status, detail = verdict
                ops.set_status(op, "Failed", error={"code": "InvalidOperationException" if status == 400 else "FileNotFoundException",
                                                    "message": detail or "Could not find the dump file."})
                outcome = "failed"
                return
            ops.set_status(op, "Running")
            producer(sink, op)
            problem = provider_problem(provider, self.m.container, self.m.pod)
            if "egress_fail" in faults:
                problem = faults["egress_fail"].message
            if problem:
                ops.set_status(op, "Failed", error={"code": "EgressException", "message": problem})
                outcome = "failed"
            else:
                ops.set_status(op, "Succeeded", resource_location=resource_location(provider, file_name))
        except Cancelled:
            ops.set_status(op, "Cancelled")
            outcome = "cancelled"
        except Exception as exc:  # noqa: BLE001 - any other error fails the operation
            ops.set_status(op, "Failed", error={"code": type(exc).__name__, "message": str(exc)})
            outcome = "failed"
        finally:
            if sink is not None:
                sink.close()
                self.m.record({"route": route, "artifact": kind, "pid": proc.pid, "uid": proc.uid,
                               "process_container": proc.container, "bytes": sink.sent, "sha256": sink.hexdigest(),
                               "complete": outcome == "complete", "content_type": content_type,
                               "file_name": file_name, "operation_id": op.operation_id, "fault": None,
                               "outcome": outcome, "egress": op.egress_provider,
                               "rule": getattr(op, "rule", None), "query": getattr(op, "query", None),
                               "resource_location": op.resource_location})
