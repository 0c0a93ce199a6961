"""Collect one artifact from a pod's monitor onto disk (or stdout): the shared artifact path.

Order matters for the user: the output is checked before anything is collected, the process
is chosen explicitly (its ``uid`` is always sent: the image's default-process rule must not
decide), the body streams into a 0600 temporary file that gets its final name only after the
verified end of the body, and any failure or interruption leaves nothing behind.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

from kubectl_dotnet_monitor.artifacts.files import ArtifactFile, OutputTarget, default_artifact_name, resolve_output
from kubectl_dotnet_monitor.artifacts.progress import TransferStatus, make_reporter
from kubectl_dotnet_monitor.errors import BusyError

Say = Callable[[str], None]


@dataclass(frozen=True)
class ArtifactSpec:
    """One kind of artifact: its route, file extension, and what we wait for before bytes flow."""

    kind: str
    path: str
    extension: str
    accept: str = "application/octet-stream"
    query: dict = field(default_factory=dict)
    waiting: str = "waiting for dotnet-monitor"


GCDUMP = ArtifactSpec(
    kind="gcdump",
    path="/gcdump",
    extension="gcdump",
    waiting="waiting for the GC heap walk (can take minutes on big heaps)",
)


@dataclass(frozen=True)
class ProcessSelector:
    """``--pid``, ``--uid``, ``--process-name``; all None = the only process."""

    pid: int | None = None
    uid: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class TransferOptions:
    """How patient to be, and how to show progress."""

    first_byte_timeout: float | None = None  # None: a dump may take as long as it takes
    idle_timeout: float = 120.0  # once bytes flow, a silence this long is a stall
    wait_when_busy: bool = False  # --wait: retry 429 until the other collection ends
    busy_retry_interval: float = 3.0
    quiet: bool = False


@dataclass
class CollectResult:
    pod: str
    process: dict
    path: Path | None  # None for stdout
    status: TransferStatus


def choose_process(monitor: object, selector: ProcessSelector) -> dict:
    """Ask the monitor for its processes and pick one (typed errors when none or several)."""
    from kubectl_dotnet_monitor.errors import NotReadyError
    from kubectl_dotnet_monitor.monitor.processes import select_process

    processes = monitor.processes()
    if not processes:
        raise NotReadyError(
            "dotnet-monitor sees no .NET process in the pod",
            "the app container needs DOTNET_DiagnosticPorts=<socket>,nosuspend and the socket's volume "
            "shared with the monitor, or the process-namespace route; `kubectl dotnet-monitor doctor POD` "
            "checks each prerequisite",
        )
    return select_process(processes, selector.pid, selector.uid, selector.name)


def collect_artifact(
    session: object,
    spec: ArtifactSpec,
    selector: ProcessSelector,
    output: str | None,
    *,
    overwrite: bool = False,
    transfer: TransferOptions = TransferOptions(),
    say: Say = lambda _: None,
    progress_stream: IO[str] | None = None,
    stdout: IO[bytes] | None = None,
) -> CollectResult:
    """Collect ``spec`` from the selected process of ``session``'s pod into ``output``."""
    from kubectl_dotnet_monitor.artifacts.download import copy_body
    from kubectl_dotnet_monitor.monitor.processes import process_query

    pod = session.endpoint.pod
    resolve_output(output, "placeholder." + spec.extension, overwrite=overwrite)  # fail before collecting
    process = choose_process(session.monitor, selector)
    pid = process.get("pid")
    target: OutputTarget = resolve_output(
        output, default_artifact_name(pod, pid, spec.extension), overwrite=overwrite
    )
    query = {**process_query(process), **spec.query}
    stream = progress_stream if progress_stream is not None else sys.stderr
    label = f"{spec.kind} {pod} (pid {pid})"
    reporter = make_reporter(label, stream, quiet=transfer.quiet)
    try:
        with ArtifactFile(target, stdout=stdout) as sink:
            response = _start(session.monitor, spec, query, transfer, reporter, say)
            with response:
                response.settimeout(transfer.idle_timeout)
                status = copy_body(response, sink, reporter, TransferStatus())
            final = sink.commit()
    finally:
        reporter.close()
    return CollectResult(pod=pod, process=process, path=final, status=status)


def _start(monitor: object, spec: ArtifactSpec, query: dict, transfer: TransferOptions, reporter: object, say: Say) -> object:
    """Send the artifact request; with ``--wait``, retry while another collection holds the slot."""
    announced = False
    while True:
        reporter.waiting(spec.waiting)
        try:
            return monitor.open_stream("GET", spec.path, query, spec.accept, timeout=transfer.first_byte_timeout)
        except BusyError:
            if not transfer.wait_when_busy:
                raise
            if not announced:
                say(f"another {spec.kind} collection is running in the pod; waiting for it to finish (--wait)")
                announced = True
            reporter.waiting("waiting for another collection to finish")
            time.sleep(transfer.busy_retry_interval)
