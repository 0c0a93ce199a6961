"""Run one command on many pods at once: a bounded pool of workers, one per-pod function.

The per-pod function is the command's ordinary single-pod path (``open_session`` then
``collect_artifact``, ``stream_artifact``, …) called with a :class:`PodJob`: the pod's name, its
row for a progress bar, a ``say`` that prefixes ``[pod/NAME]``, a REST client of its own, and the
shared :class:`Cancellation`. This module knows nothing about artifacts:

* :func:`run_on_pods` — at most ``parallel`` pods at a time; one pod's failure never stops the
  others; returns one :class:`PodOutcome` per pod, in the order given.
* :func:`fanout_exit_code` — 0 when all succeeded, ``PARTIAL`` (11) when some did, the common code
  when all failed alike, else 1.
* :func:`summary_table` — POD, PROCESS, FILE, SIZE, TIME, RESULT.
* :class:`LinePrefixer` — whole lines, each prefixed ``[pod/NAME] ``, for streamed output
  (``kubectl logs --prefix``), safe to share one stdout between threads.

Ctrl-C arrives on the main thread only. When stoppable artifacts run (trace, logs, livemetrics,
parameters: their ``StopOnInterrupt`` was handed over with ``cancel.add_stopper``), the first Ctrl-C
asks each of them to end gracefully (``DELETE /operations/{id}?stop=true``), starts no queued pod,
and waits: the files and output are complete. Otherwise — and on the second Ctrl-C, or SIGTERM —
:func:`run_on_pods` sets the shared :class:`Cancellation`, which aborts every tunnel the workers
opened (sessions hand them over through ``open_session(tunnel_hook=cancel.adopt)``; their blocked
reads fail at once, so each worker unwinds through its ``ArtifactFile`` and removes its temporary
file), lets no queued pod start, waits a little for the workers, and raises :class:`PodsInterrupted`
(exit 130/143). Egress operations already started keep running in their monitors
(``operations list`` shows them).
"""

from __future__ import annotations

import io
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from kubectl_dotnet_monitor.errors import ExitCode, Interrupted, PluginError

Say = Callable[[str], None]

#: Without --parallel: this many pods at a time (each holds a tunnel and, while it injects, a watch).
DEFAULT_PARALLEL = 8
#: After Ctrl-C, how long the main thread waits for workers to remove their temporary files.
STOP_GRACE = 10.0


def default_parallel(pods: int, requested: int | None = None, fallback: int = DEFAULT_PARALLEL) -> int:
    """``--parallel`` if given (at least 1), else ``min(fallback, pods)``; never more than ``pods``."""
    wanted = requested if requested and requested > 0 else fallback
    return max(1, min(wanted, pods))


# --------------------------------------------------------------------------------------------
# Cancellation


class Cancellation:
    """A shared stop flag, the tunnels the workers opened (so a stop can cut them), and the graceful
    stoppers of stoppable artifacts (trace, logs, livemetrics, parameters).

    A worker's blocked ``recv`` cannot see a flag; :meth:`PodTunnel.abort` shuts its socket down so
    the read fails at once (the tunnel reports a closed connection) and the worker unwinds normally.
    Sessions hand their tunnels over through ``open_session(tunnel_hook=cancel.adopt)``.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._tunnels: weakref.WeakSet[Any] = weakref.WeakSet()
        self._stoppers: list[Any] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def stopping(self) -> bool:
        """A graceful stop was asked for (first Ctrl-C): no new pod starts, running ones finish."""
        return self._stopping.is_set() or self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Interrupted` once a stop was requested (call between steps)."""
        if self.stopping:
            raise Interrupted("interrupted")

    def cancel(self) -> None:
        """Stop everything: no new work, every open tunnel cut."""
        self._event.set()
        with self._lock:
            tunnels = list(self._tunnels)
        for tunnel in tunnels:
            abort_tunnel(tunnel)

    def adopt(self, tunnel: Any) -> None:
        """The ``tunnel_hook`` of a worker's session: keep ``tunnel`` so :meth:`cancel` can cut it.

        Raises :class:`Interrupted` (the session then closes the tunnel) when the stop came while
        it was being opened.
        """
        with self._lock:
            self._tunnels.add(tunnel)
        if self._event.is_set():
            abort_tunnel(tunnel)
            raise Interrupted("interrupted")

    def track(self, open_tunnel: Callable[[], Any]) -> Callable[[], Any]:
        """Wrap a tunnel factory so every tunnel it opens is :meth:`adopt`-ed."""

        def opened() -> Any:
            self.check()
            tunnel = open_tunnel()
            self.adopt(tunnel)
            return tunnel

        return opened

    def add_stopper(self, stopper: Any) -> None:
        """A stoppable artifact's ``StopOnInterrupt`` (``collect_artifact(on_stopper=…)``)."""
        with self._lock:
            self._stoppers.append(stopper)
            stopping = self._stopping.is_set()
        if stopping:  # the stop came before this pod's request went out: stop it too
            stopper.request_stop()

    def stop_gracefully(self) -> bool:
        """First Ctrl-C: ask every stoppable operation to end with a complete artifact; no new pod
        starts. ``False`` when nothing can be stopped that way (the caller then cancels)."""
        with self._lock:
            stoppers = list(self._stoppers)
            if self._stopping.is_set() or not stoppers:
                return False
            self._stopping.set()
        for stopper in stoppers:
            stopper.request_stop()
        return True


def abort_tunnel(tunnel: Any) -> None:
    """Cut ``tunnel`` so a read blocked in another thread returns at once (``PodTunnel.abort``);
    objects without ``abort`` are closed. Best effort: never raises."""
    cut = getattr(tunnel, "abort", None) or getattr(tunnel, "close", None)
    if cut is None:
        return
    try:
        cut()
    except Exception:  # noqa: BLE001 - best effort while stopping
        pass


# --------------------------------------------------------------------------------------------
# Output shared between workers


class Console:
    """Messages for the person at the terminal from many threads: whole lines, never interleaved.

    While progress bars are drawn, lines go through ``tqdm.write`` so they do not tear the bars.
    """

    def __init__(self, stream: IO[str], bars: bool) -> None:
        self.stream = stream
        self.bars = bars
        self._lock = threading.Lock()

    def say(self, message: str) -> None:
        if self.bars:
            from tqdm import tqdm

            tqdm.write(message, file=self.stream)
            return
        with self._lock:
            self.stream.write(message + "\n")
            self.stream.flush()

    def for_pod(self, pod: str) -> Say:
        return lambda message: self.say(f"[pod/{pod}] {message}")


class LinePrefixer:
    """A writer for one pod's streamed output: each complete line goes out as ``PREFIX line``.

    Accepts ``bytes`` or ``str``; writes to ``out`` (a binary or text stream) under ``lock``, one whole
    line at a time, so lines from several pods never mix. A last line without a newline is written
    by :meth:`close`.
    """

    def __init__(self, prefix: str, out: IO[Any], lock: threading.Lock) -> None:
        self.prefix = prefix
        self.out = out
        self.lock = lock
        self._binary = not isinstance(out, io.TextIOBase)
        self._pending = b""

    @classmethod
    def for_pod(cls, pod: str, out: IO[Any], lock: threading.Lock) -> LinePrefixer:
        return cls(f"[pod/{pod}] ", out, lock)

    def write(self, data: bytes | str) -> None:
        chunk = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        buffered = self._pending + chunk
        cut = buffered.rfind(b"\n")
        if cut < 0:
            self._pending = buffered
            return
        complete, self._pending = buffered[: cut + 1], buffered[cut + 1:]
        self._emit(complete.splitlines(keepends=True))

    def close(self) -> None:
        if self._pending:
            rest, self._pending = self._pending, b""
            self._emit([rest + b"\n"])

    def _emit(self, lines: list[bytes]) -> None:
        prefix = self.prefix.encode("utf-8")
        text = b"".join(prefix + line for line in lines)
        with self.lock:
            if self._binary:
                self.out.write(text)
            else:
                self.out.write(text.decode("utf-8", "replace"))
            self.out.flush()


# --------------------------------------------------------------------------------------------
# The runner


@dataclass
class PodJob:
    """What the per-pod function gets."""

    pod: str
    namespace: str
    index: int  # 0-based, in the order given
    say: Say  # prefixed "[pod/NAME] "
    cancel: Cancellation
    conn: Any = None  # the shared ClusterConnection (resolved once: exec plugins run once)
    client: Any = None  # this worker thread's REST client (its connections are reused pod after pod)
    slot: int = 0  # the worker's number: the tqdm row of this pod's progress bar (rows are reused)

    def conn_and_client(self) -> tuple[Any, Any]:
        """For ``open_session(conn_and_client=…)``: the shared connection and this worker's client."""
        return self.conn, self.client


class WorkerClient:
    """One worker thread's ``KubeClient``, lent to each pod's session.

    A session closes its client when it ends; the worker keeps its connection pool across pods
    (fewer TLS handshakes) and closes it only when the thread is done (:meth:`shutdown`).
    """

    def __init__(self, conn: Any) -> None:
        from kubectl_dotnet_monitor.kube.api import KubeClient

        self._client = KubeClient(conn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def close(self) -> None:
        """Kept open for the next pod of this worker."""

    def shutdown(self) -> None:
        self._client.close()


@dataclass
class PodOutcome:
    """How it went in one pod."""

    pod: str
    value: Any = None  # what the per-pod function returned (e.g. a CollectResult)
    error: BaseException | None = None
    started: float | None = None
    finished: float | None = None
    ran: bool = True  # False: never started (stopped before its turn)

    @property
    def ok(self) -> bool:
        return self.ran and self.error is None

    @property
    def exit_code(self) -> int:
        if self.ok:
            return int(ExitCode.OK)
        if not self.ran or isinstance(self.error, KeyboardInterrupt):
            return int(ExitCode.INTERRUPTED)
        if isinstance(self.error, PluginError):
            return int(self.error.exit_code)
        return int(ExitCode.FAILURE)

    @property
    def elapsed(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def message(self) -> str:
        """``ok``, or the error in one line."""
        if self.ok:
            return "ok (stopped early; complete)" if getattr(self.value, "stopped", False) else "ok"
        if not self.ran:
            return "not started (interrupted)"
        err = self.error
        if isinstance(err, KeyboardInterrupt) or (isinstance(err, Interrupted) and err.message == "interrupted"):
            return "interrupted"
        if isinstance(err, PluginError):
            return err.message
        return f"unexpected {type(err).__name__}: {err}"


def run_on_pods(pods: Sequence[str], work: Callable[[PodJob], Any], *, namespace: str, parallel: int,
                console: Console, conn: Any = None, cancel: Cancellation | None = None,
                on_done: Callable[[PodOutcome], None] | None = None,
                poll: float = 0.2, grace: float = STOP_GRACE) -> list[PodOutcome]:
    """Call ``work(job)`` for each pod, at most ``parallel`` at once; outcomes in ``pods`` order.

    Exceptions from ``work`` are caught per pod (reported through ``on_done``, kept in the outcome).
    ``KeyboardInterrupt`` (or SIGTERM's ``Interrupted``) on the calling thread cancels everything (see
    the module docstring); :class:`PodsInterrupted` follows once the workers had ``grace`` seconds to
    clean up.
    """
    cancel = cancel if cancel is not None else Cancellation()
    outcomes = [PodOutcome(pod=p, ran=False) for p in pods]
    lock = threading.Lock()
    next_index = [0]

    def take() -> int | None:
        with lock:
            if cancel.stopping or next_index[0] >= len(pods):
                return None
            i = next_index[0]
            next_index[0] += 1
            return i

    def worker(finished: threading.Event, slot: int) -> None:
        client = WorkerClient(conn) if conn is not None else None
        try:
            work_loop(client, slot)
        finally:
            if client is not None:
                client.shutdown()
            finished.set()

    def work_loop(client: Any, slot: int) -> None:
        while True:
            i = take()
            if i is None:
                return
            outcome = outcomes[i]
            outcome.ran = True
            outcome.started = time.monotonic()
            job = PodJob(pod=pods[i], namespace=namespace, index=i, say=console.for_pod(pods[i]),
                         cancel=cancel, conn=conn, client=client, slot=slot)
            try:
                outcome.value = work(job)
            except BrokenPipeError as exc:
                # Whoever read our stdout is gone (`| head`): no pod's output can go anywhere, stop all.
                outcome.error = exc
                cancel.cancel()
            except BaseException as exc:  # noqa: BLE001 - one pod's failure is reported, not fatal
                outcome.error = Interrupted("interrupted") if cancel.cancelled else exc
            finally:
                outcome.finished = time.monotonic()
            if on_done is not None and not (cancel.cancelled and not outcome.ok):
                try:
                    on_done(outcome)
                except Exception:  # noqa: BLE001 - reporting must not kill the worker
                    pass

    # Daemon threads: a worker stuck in an API call (e.g. waiting for an injected monitor) must not
    # keep the process alive after Ctrl-C; workers inside a download are cut via their tunnels.
    # (Events, not Thread.join: a join interrupted by Ctrl-C can leave the thread looking finished.)
    finished = [threading.Event() for _ in range(default_parallel(len(pods), parallel))]
    for n, event in enumerate(finished):
        threading.Thread(target=worker, args=(event, n), name=f"pod-worker-{n}", daemon=True).start()
    try:
        while True:
            try:
                for event in finished:
                    while not event.wait(poll):
                        pass
                break
            except KeyboardInterrupt:
                # First Ctrl-C with stoppable artifacts running: end them gracefully, keep waiting.
                if not cancel.stop_gracefully():
                    raise
                console.say("stopping: asking each pod's dotnet-monitor to end its session; the artifacts "
                            "will be complete (Ctrl-C again to abort)")
    except (KeyboardInterrupt, Interrupted) as exc:  # Ctrl-C, or SIGTERM (the CLI raises Interrupted)
        cancel.cancel()
        deadline = time.monotonic() + grace
        for event in finished:
            event.wait(max(0.0, deadline - time.monotonic()))
        signum = 15 if getattr(exc, "exit_code", None) == ExitCode.TERMINATED else 2
        raise PodsInterrupted(outcomes, signum) from None
    return outcomes


class PodsFailed(PluginError):
    """Some or all pods failed (each was reported, and the table shows which); carries the exit code."""

    def __init__(self, outcomes: Sequence[PodOutcome]) -> None:
        failed = sum(1 for o in outcomes if not o.ok)
        what = f"all {len(outcomes)} pods" if failed == len(outcomes) else f"{failed} of {len(outcomes)} pods"
        super().__init__(f"{what} failed (see the table above)")
        self.exit_code = ExitCode(fanout_exit_code(outcomes))
        self.outcomes = list(outcomes)


class PodsInterrupted(Interrupted):
    """Ctrl-C (or SIGTERM) during a many-pod run; ``outcomes`` says what had finished."""

    def __init__(self, outcomes: list[PodOutcome], signum: int = 2) -> None:
        super().__init__("interrupted", signum=signum)
        self.outcomes = outcomes


def fanout_exit_code(outcomes: Sequence[PodOutcome]) -> int:
    """0 if all succeeded; ``PARTIAL`` if some did; the shared code if all failed alike; else 1."""
    if not outcomes:
        return int(ExitCode.OK)
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return int(ExitCode.OK)
    if len(failed) < len(outcomes):
        return int(ExitCode.PARTIAL)
    codes = {o.exit_code for o in failed}
    return codes.pop() if len(codes) == 1 else int(ExitCode.FAILURE)


# --------------------------------------------------------------------------------------------
# The summary


def _row_of(value: Any) -> tuple[str, str, int | None]:
    """PROCESS, FILE, SIZE from a per-pod result (``CollectResult``-like, duck-typed)."""
    process = getattr(value, "process", None) or {}
    pid = process.get("pid") if isinstance(process, dict) else None
    name = process.get("name") if isinstance(process, dict) else None
    proc = f"{pid} ({name})" if pid is not None and name else (str(pid) if pid is not None else "-")
    path = getattr(value, "path", None)
    location = getattr(value, "resource_location", None)
    file = str(path) if path is not None else (str(location) if location else "-")
    status = getattr(value, "status", None)
    size = getattr(status, "bytes", None)
    return proc, file, size


def summary_rows(outcomes: Sequence[PodOutcome]) -> list[list[str]]:
    """The table's rows (header first): POD, PROCESS, FILE, SIZE, TIME, RESULT."""
    from kubectl_dotnet_monitor.artifacts.progress import format_duration, format_size

    rows = [["POD", "PROCESS", "FILE", "SIZE", "TIME", "RESULT"]]
    for o in outcomes:
        proc, file, size = _row_of(o.value) if o.ok else ("-", "-", None)
        elapsed = o.elapsed
        rows.append([
            o.pod, proc, file,
            format_size(size) if size is not None else "-",
            format_duration(elapsed) if elapsed is not None else "-",
            o.message() if o.ok or o.exit_code == ExitCode.INTERRUPTED else f"failed: {o.message()}",
        ])
    return rows


def summary_table(outcomes: Sequence[PodOutcome]) -> str:
    """Aligned columns like ``kubectl get``; the RESULT column is last and never padded."""
    from kubectl_dotnet_monitor.artifacts.render import table

    header, *rows = summary_rows(outcomes)
    return table(header, rows)


def summary_line(outcomes: Sequence[PodOutcome], wall: float) -> str:
    """``50 pods: 49 succeeded, 1 failed in 3.2s``."""
    from kubectl_dotnet_monitor.artifacts.progress import format_duration

    ok = sum(1 for o in outcomes if o.ok)
    stopped = sum(1 for o in outcomes if not o.ok and o.exit_code == ExitCode.INTERRUPTED)
    failed = len(outcomes) - ok - stopped
    text = f"{len(outcomes)} pod{'s' if len(outcomes) != 1 else ''}: {ok} succeeded"
    if failed:
        text += f", {failed} failed"
    if stopped:
        text += f", {stopped} interrupted"
    return text + f" in {format_duration(wall)}"


def check_many_output(output: str | None, pods: int) -> None:
    """With several pods, ``-o`` must be a directory (or absent): a FILE or ``-`` is a usage error.

    A directory is an existing one or a path ending in ``/``; whether it exists is checked by the
    command's ordinary output resolution.
    """
    import os
    from pathlib import Path

    from kubectl_dotnet_monitor.errors import UsageError

    if pods <= 1 or output is None:
        return
    if output == "-":
        raise UsageError(f"-o - (standard output) cannot take the artifacts of {pods} pods",
                         hint="give a directory (-o DIR/) or leave -o out: each pod gets its own file")
    if output.endswith(("/", os.sep)) or Path(output).expanduser().is_dir():
        return
    raise UsageError(f"-o {output} names one file, but {pods} pods were selected",
                     hint="give a directory (-o DIR/) or leave -o out: each pod's file is named after it")


# --------------------------------------------------------------------------------------------
# The whole many-pod run, as a command does it


def run_many(targets: Any, work: Callable[[PodJob], Any], *, conn: Any, parallel: int | None,
             stream: IO[str], quiet: bool = False, kind: str = "collection",
             print_result: Callable[[PodOutcome], None] | None = None,
             parallel_fallback: int = DEFAULT_PARALLEL, table: bool = True) -> list[PodOutcome]:
    """Run ``work`` on every pod of ``targets`` (a ``PodTargets``) and report like kubectl would.

    Notes on skipped pods first; each failure as soon as it happens (``error: [pod/NAME] …``); at the
    end the summary table and a count on ``stream``, and ``print_result`` for each success in pod
    order (e.g. the saved path on stdout). Returns the outcomes when every pod succeeded, else raises
    :class:`PodsFailed` whose exit code is :func:`fanout_exit_code`.
    Ctrl-C: the table of what finished is still printed, then :class:`Interrupted` is raised. With
    stoppable artifacts (``job.cancel.add_stopper``) the first Ctrl-C stops them gracefully (complete
    files, the output so far) and the run ends with :class:`Interrupted` once they are done.

    ``parallel_fallback``: the width without ``--parallel`` (streams run every pod at once).
    ``table=False``: no summary table on success (streams: the output is the data); failures and the
    count are still reported.
    """
    pods = list(targets.pods)
    bars = not quiet and bool(getattr(stream, "isatty", lambda: False)())
    console = Console(stream, bars)
    for pod, why in targets.skipped:
        console.say(f"skipping pod/{pod}: {why}")
    width = default_parallel(len(pods), parallel, parallel_fallback)
    if not quiet:
        console.say(f"{kind} of {len(pods)} pod{'s' if len(pods) != 1 else ''} of {targets.described} "
                    f"in namespace {targets.namespace}, {width} at a time")

    def done(outcome: PodOutcome) -> None:
        if not outcome.ok and not isinstance(outcome.error, BrokenPipeError):
            console.say(f"error: [pod/{outcome.pod}] {outcome.message()}")

    started = time.monotonic()
    cancel = Cancellation()
    try:
        outcomes = run_on_pods(pods, work, namespace=targets.namespace, parallel=width, console=console,
                               conn=conn, on_done=done, cancel=cancel)
    except PodsInterrupted as exc:
        _report(exc.outcomes, time.monotonic() - started, stream, print_result, True)
        raise Interrupted("interrupted: the pods still collecting were stopped and their temporary files "
                          "removed; the files listed above are complete", signum=15 if
                          exc.exit_code == ExitCode.TERMINATED else 2) from None
    if any(isinstance(o.error, BrokenPipeError) for o in outcomes):
        raise BrokenPipeError("standard output was closed")  # the CLI ends quietly, as for one pod
    failed = fanout_exit_code(outcomes)
    _report(outcomes, time.monotonic() - started, stream, print_result, table or bool(failed) or cancel.stopping)
    if cancel.stopping:
        raise Interrupted("stopped at your request: every running session was ended gracefully; the "
                          "files and output above are complete")
    if failed:
        raise PodsFailed(outcomes)
    return outcomes


def _report(outcomes: list[PodOutcome], wall: float, stream: IO[str],
            print_result: Callable[[PodOutcome], None] | None, table: bool = True) -> None:
    if table:
        stream.write(summary_table(outcomes) + "\n")
    stream.write(summary_line(outcomes, wall) + "\n")
    stream.flush()
    if print_result is not None:
        for outcome in outcomes:
            if outcome.ok:
                print_result(outcome)
