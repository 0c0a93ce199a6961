"""The byte loop: an HTTP body into a sink, in constant memory, knowing nothing of terminals."""

from __future__ import annotations

from typing import Protocol

from kubectl_dotnet_monitor.artifacts.progress import ProgressReporter, TransferStatus

CHUNK = 1 << 20  # 1 MiB: large enough that per-call overhead vanishes, small enough to stay flat


class Body(Protocol):
    """An HTTP response body that fills a buffer (``monitor.http.HttpResponse``)."""

    def read_into(self, buf: memoryview) -> int: ...


class Sink(Protocol):
    def write(self, data: memoryview) -> None: ...


def copy_body(body: Body, sink: Sink, reporter: ProgressReporter, status: TransferStatus | None = None) -> TransferStatus:
    """Copy ``body`` to ``sink`` until a verified end; errors from either side propagate.

    The body reader raises on truncation, resets and stalls, so returning means every byte
    of a complete response has been written.
    """
    status = status or TransferStatus()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = body.read_into(view)
        if n == 0:
            break
        sink.write(view[:n])
        status.add(n)
        reporter.update(n)
    status.finish()
    return status
