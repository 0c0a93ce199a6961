"""Collect artifacts from a pod's monitor: the one path every artifact, stream and operation takes.

Order matters for the user: the output is checked before anything is collected, the process
is chosen explicitly (its ``uid`` is always sent: the image's default-process rule must not
decide), the body streams into a 0600 temporary file that gets its final name only after the
verified end of the body, and any failure or interruption leaves nothing behind.

Three ways to receive an artifact, one request path (:func:`start_artifact`):

* :func:`collect_artifact` — the body into a file (or ``-o -``): dump, gcdump, trace, stacks;
* :func:`stream_artifact` — the body to a callback as it arrives: logs, livemetrics, exceptions,
  parameters (rendered to stdout by the CLI);
* :func:`egress_artifact` — ``egressProvider``: 202, then the operation is followed until it ends.

Ctrl-C on a stoppable artifact (trace, logs, livemetrics, parameters) first asks the monitor to
end the session gracefully (``DELETE /operations/{id}?stop=true`` on a second tunnel) and keeps
reading, so the file is complete; a second Ctrl-C aborts. Other artifacts abort at once.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kubectl_dotnet_monitor.artifacts.files import (
    ArtifactFile,
    OutputTarget,
    default_artifact_name,
    resolve_output,
)
from kubectl_dotnet_monitor.artifacts.progress import TransferStatus, make_reporter
from kubectl_dotnet_monitor.errors import BusyError, MonitorError

Say = Callable[[str], None]

#: What in-process features need (reference §2 "Feature flags", §6.1).
IN_PROCESS_HINT = (
    "stacks, exceptions and parameters are in-process features: they need the monitor in Listen mode "
    "(the app container prepared with DOTNET_DiagnosticPorts) and InProcessFeatures__Enabled=true "
    "(parameters also InProcessFeatures__ParameterCapturing__Enabled=true) when it is injected; pass "
    "--enable-in-process-features on the command that injects. A monitor already in the pod cannot be "
    "changed: restart the pod (kubectl rollout restart) and inject again with the flag"
)


@dataclass(frozen=True)
class ArtifactSpec:
    """One kind of artifact: its route, file extension, and what we wait for before bytes flow."""

    kind: str
    path: str
    extension: str
    accept: str = "application/octet-stream"
    query: dict = field(default_factory=dict)
    waiting: str = "waiting for dotnet-monitor"
    method: str = "GET"
    body: bytes | None = None  # POST body (JSON)
    duration: float | None = None  # session length in seconds (progress); None = untimed or endless
    stoppable: bool = False  # DELETE /operations/{id}?stop=true ends it with a complete artifact
    feature: str | None = None  # in-process feature name; its "not enabled" answers get a hint


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
    """One artifact received from one pod: where it went, how big, how long it took."""

    pod: str
    process: dict
    path: Path | None  # None for stdout
    status: TransferStatus
    operation_id: str | None = None
    stopped: bool = False  # ended early by Ctrl-C (gracefully: the artifact is complete)


@dataclass
class EgressResult:
    """One artifact sent to an egress provider by the monitor: its operation, and where it went."""

    pod: str
    process: dict
    operation_id: str
    operation: dict  # the final OperationStatus

    @property
    def resource_location(self) -> str | None:
        return self.operation.get("resourceLocation")


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


def process_target(monitor: object, selector: ProcessSelector) -> tuple[dict, dict]:
    """The chosen process and the query that names it explicitly."""
    from kubectl_dotnet_monitor.monitor.processes import process_query

    process = choose_process(monitor, selector)
    return process, process_query(process)


# --------------------------------------------------------------------------------------------
# Ctrl-C: stop gracefully, then abort


class StopOnInterrupt:
    """While active (a ``with`` block on the main thread), the first SIGINT asks the monitor to stop
    operation ``operation_id`` gracefully and lets the transfer finish; the second one raises
    ``KeyboardInterrupt``. For artifacts that cannot be stopped, SIGINT keeps its usual meaning.
    """

    def __init__(self, monitor: object, stoppable: bool, say: Say) -> None:
        self.monitor = monitor
        self.stoppable = stoppable
        self.say = say
        self.operation_id: str | None = None
        self.requested = False
        self.stop_error: Exception | None = None
        self._previous: object = None
        self._installed = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StopOnInterrupt:
        import signal

        if self.stoppable and threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handle)
                self._installed = True
            except ValueError:
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested or self.operation_id is None:
            raise KeyboardInterrupt
        self.request_stop()

    def request_stop(self) -> None:
        """Send ``DELETE /operations/{id}?stop=true`` on a second tunnel (in a thread)."""
        if self.requested or self.operation_id is None:
            return
        self.requested = True
        self.say("stopping: asking dotnet-monitor to end the session; the artifact will be complete "
                 "(Ctrl-C again to abort)")
        op = self.operation_id

        def send() -> None:
            try:
                self.monitor.delete_operation(op, stop=True)
            except Exception as exc:  # noqa: BLE001 - reported, the transfer decides the outcome
                self.stop_error = exc
                self.say(f"warning: could not stop the operation gracefully: {exc}")

        self._thread = threading.Thread(target=send, name="stop-operation", daemon=True)
        self._thread.start()


# --------------------------------------------------------------------------------------------
# The request


def start_artifact(monitor: object, spec: ArtifactSpec, query: dict, transfer: TransferOptions,
                   reporter: object, say: Say) -> object:
    """Send the artifact request; with ``--wait``, retry while another collection holds the slot.

    Feature-off answers of in-process features become an error that says how to enable them.
    """
    announced = False
    while True:
        reporter.waiting(spec.waiting)
        try:
            return monitor.open_stream(spec.method, spec.path, query, spec.accept, spec.body,
                                       timeout=transfer.first_byte_timeout)
        except BusyError:
            if not transfer.wait_when_busy:
                raise
            if not announced:
                say(f"another {spec.kind} collection is running in the pod; waiting for it to finish (--wait)")
                announced = True
            reporter.waiting("waiting for another collection to finish")
            time.sleep(transfer.busy_retry_interval)
        except MonitorError as exc:
            raise feature_error(spec, exc) from exc


def feature_error(spec: ArtifactSpec, exc: MonitorError) -> MonitorError:
    """PURE: ``exc`` unchanged, or, for an in-process feature that is off, an error saying so."""
    if spec.feature is None:
        return exc
    status = getattr(exc, "status", None)
    detail = (getattr(exc, "detail", None) or "").lower()
    if (status == 400 and "not enabled" in detail) or status == 404:
        return MonitorError(
            f"the monitor in this pod has the {spec.feature} feature turned off "
            f"({'404' if status == 404 else 'dotnet-monitor: ' + (getattr(exc, 'detail', '') or '')})",
            IN_PROCESS_HINT,
        )
    return exc


def _operation_id(response: object) -> str | None:
    from kubectl_dotnet_monitor.monitor.client import operation_id_from_location

    return operation_id_from_location(response.headers.get("location"))


# --------------------------------------------------------------------------------------------
# Into a file


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
    progress_position: int | None = None,
    on_stopper: Callable[[StopOnInterrupt], None] | None = None,
) -> CollectResult:
    """Collect ``spec`` from the selected process of ``session``'s pod into ``output``.

    ``progress_position``: the tqdm row of this transfer's bar (many pods at once).
    ``on_stopper``: receives the :class:`StopOnInterrupt` of a stoppable artifact, so a caller not on
    the main thread (a many-pod worker) can ask for the graceful stop itself.
    """
    from kubectl_dotnet_monitor.artifacts.download import copy_body
    from kubectl_dotnet_monitor.artifacts.integrity import BodyEnds

    pod = session.endpoint.pod
    resolve_output(output, "placeholder." + spec.extension, overwrite=overwrite)  # fail before collecting
    process, query = process_target(session.monitor, selector)
    pid = process.get("pid")
    target: OutputTarget = resolve_output(
        output, default_artifact_name(pod, pid, spec.extension), overwrite=overwrite
    )
    query = {**query, **spec.query}
    stream = progress_stream if progress_stream is not None else sys.stderr
    label = f"{spec.kind} {pod} (pid {pid})"
    reporter = _reporter(spec, label, stream, transfer.quiet, progress_position)
    stopper = StopOnInterrupt(session.monitor, spec.stoppable, say)
    if on_stopper is not None and spec.stoppable:
        on_stopper(stopper)
    try:
        with ArtifactFile(target, stdout=stdout) as sink, stopper:
            response = start_artifact(session.monitor, spec, query, transfer, reporter, say)
            with response:
                stopper.operation_id = _operation_id(response)
                response.settimeout(transfer.idle_timeout)
                ends = BodyEnds(sink, spec.kind)  # first/last bytes: is the artifact whole? (§1.3)
                status = copy_body(response, ends, reporter, TransferStatus())
            ends.check(to_stdout=target.is_stdout, log_hint=getattr(session.monitor, "log_hint", None))
            final = sink.commit()
    finally:
        reporter.close()
    return CollectResult(pod=pod, process=process, path=final, status=status,
                         operation_id=stopper.operation_id, stopped=stopper.requested)


def _reporter(spec: ArtifactSpec, label: str, stream: IO[str], quiet: bool, position: int | None = None) -> object:
    if spec.duration is not None and not quiet and getattr(stream, "isatty", lambda: False)() and position is None:
        from kubectl_dotnet_monitor.artifacts.timed_progress import TimedTqdmReporter

        return TimedTqdmReporter(label, stream, spec.duration)
    return make_reporter(label, stream, quiet=quiet, position=position)


# --------------------------------------------------------------------------------------------
# To a callback, as it arrives


def stream_artifact(
    session: object,
    spec: ArtifactSpec,
    selector: ProcessSelector,
    write: Callable[[bytes], None],
    *,
    transfer: TransferOptions = TransferOptions(),
    say: Say = lambda _: None,
    on_stopper: Callable[[StopOnInterrupt], None] | None = None,
) -> CollectResult:
    """Send ``spec``'s body to ``write`` piece by piece, as the monitor produces it.

    ``on_stopper`` as in :func:`collect_artifact`.

    A graceful stop (first Ctrl-C) ends with ``stopped=True`` after the monitor closed the stream;
    the caller decides the exit code. A second Ctrl-C raises ``KeyboardInterrupt``.
    """
    from kubectl_dotnet_monitor.artifacts.progress import SilentReporter

    process, query = process_target(session.monitor, selector)
    query = {**query, **spec.query}
    status = TransferStatus()
    stopper = StopOnInterrupt(session.monitor, spec.stoppable, say)
    if on_stopper is not None and spec.stoppable:
        on_stopper(stopper)
    with stopper:
        response = start_artifact(session.monitor, spec, query, transfer, SilentReporter(), say)
        with response:
            stopper.operation_id = _operation_id(response)
            # Streams may be quiet for long (logs at a high --level): only a dead tunnel should end them.
            response.settimeout(None if spec.duration is None else max(transfer.idle_timeout, spec.duration + 60))
            for piece in response.iter_chunks(64 * 1024):
                data = bytes(piece)
                status.add(len(data))
                write(data)
        status.finish()
    return CollectResult(pod=session.endpoint.pod, process=process, path=None, status=status,
                         operation_id=stopper.operation_id, stopped=stopper.requested)


def fetch_artifact(session: object, spec: ArtifactSpec, selector: ProcessSelector | None,
                   transfer: TransferOptions = TransferOptions(), say: Say = lambda _: None,
                   limit: int = 64 * 1024 * 1024) -> tuple[dict | None, bytes]:
    """A small artifact (stacks, exceptions snapshot, metrics) read whole: ``(process, body)``.

    ``selector=None`` sends no process (``/metrics`` always uses the default process).
    """
    from kubectl_dotnet_monitor.artifacts.progress import SilentReporter

    process, query = (None, {}) if selector is None else process_target(session.monitor, selector)
    response = start_artifact(session.monitor, spec, {**query, **spec.query}, transfer, SilentReporter(), say)
    with response:
        response.settimeout(transfer.idle_timeout)
        return process, response.read(limit)


# --------------------------------------------------------------------------------------------
# Egress


FINAL_STATES = ("Succeeded", "Failed", "Cancelled")


def egress_artifact(
    session: object,
    spec: ArtifactSpec,
    selector: ProcessSelector,
    provider: str,
    *,
    transfer: TransferOptions = TransferOptions(),
    say: Say = lambda _: None,
    progress_stream: IO[str] | None = None,
    poll_interval: float = 0.5,
) -> EgressResult:
    """Ask the monitor to send ``spec`` to egress ``provider`` and follow the operation to its end.

    Ctrl-C stops a stoppable operation gracefully (the egressed artifact stays valid) or cancels
    the others; the operation is still followed to its end. A second Ctrl-C leaves it running.
    Raises :class:`MonitorError` when the operation fails or is cancelled.
    """
    from kubectl_dotnet_monitor.artifacts.progress import SilentReporter
    from kubectl_dotnet_monitor.artifacts.timed_progress import Spinner
    from kubectl_dotnet_monitor.errors import Interrupted

    process, query = process_target(session.monitor, selector)
    query = {**query, **spec.query, "egressProvider": provider}
    response = start_artifact(session.monitor, spec, query, transfer, SilentReporter(), say)
    with response:
        status_code = response.status
        operation_id = _operation_id(response)
    if operation_id is None:
        raise MonitorError(
            f"dotnet-monitor answered the egress request with {status_code} but no operation "
            "(Location header missing)",
            "this dotnet-monitor may be older than 7.1; check the egress target yourself")
    stream = progress_stream if progress_stream is not None else sys.stderr
    spinner = Spinner(f"{spec.kind} to egress {provider!r}", stream, quiet=transfer.quiet)
    interrupted = False
    try:
        while True:
            try:
                operation = session.monitor.operation(operation_id)
                state = str(operation.get("status") or "")
                spinner.update(state)
                if state in FINAL_STATES:
                    break
                time.sleep(poll_interval)
            except KeyboardInterrupt:
                if interrupted:
                    raise Interrupted(
                        f"interrupted; operation {operation_id} may still run in the monitor",
                        f"follow it with: kubectl dotnet-monitor operations get {session.endpoint.pod} {operation_id}"
                    ) from None
                interrupted = True
                say("interrupted: " + ("stopping" if spec.stoppable else "cancelling")
                    + f" operation {operation_id} (Ctrl-C again to leave it running)")
                try:
                    session.monitor.delete_operation(operation_id, stop=spec.stoppable)
                except MonitorError as exc:  # already ended: the next poll tells
                    say(f"warning: {exc.message}")
    finally:
        spinner.close()
    if state == "Failed":
        error = operation.get("error") or {}
        message = error.get("message") or "no reason given"
        code = f" ({error['code']})" if error.get("code") else ""
        raise MonitorError(f"egress of the {spec.kind} to {provider!r} failed{code}: {message}",
                           f"see the operation: kubectl dotnet-monitor operations get {session.endpoint.pod} "
                           f"{operation_id}")
    if state == "Cancelled":
        if interrupted:
            raise Interrupted(f"operation {operation_id} was cancelled")
        raise MonitorError(f"the {spec.kind} egress operation {operation_id} was cancelled")
    return EgressResult(pod=session.endpoint.pod, process=process, operation_id=operation_id,
                        operation=operation)
