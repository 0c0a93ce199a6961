"""Issue 7: the many-pod runner — failures, exit codes, the summary, prefixing, bounds, Ctrl-C."""

from __future__ import annotations

import _thread
import io
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubectl_dotnet_monitor.errors import (
    BusyError,
    ExitCode,
    Interrupted,
    NotReadyError,
    UnavailableError,
    UsageError,
)
from kubectl_dotnet_monitor.fanout import (
    Cancellation,
    Console,
    LinePrefixer,
    PodOutcome,
    PodsFailed,
    PodsInterrupted,
    check_many_output,
    default_parallel,
    fanout_exit_code,
    run_many,
    run_on_pods,
    summary_table,
)


def console() -> Console:
    return Console(io.StringIO(), bars=False)


def run(pods, work, parallel=4, **kw):
    return run_on_pods(pods, work, namespace="ns", parallel=parallel, console=console(), **kw)


@dataclass
class Status:
    bytes: int
    elapsed: float = 0.1


@dataclass
class Result:  # shaped like collect.CollectResult
    path: Path | None
    process: dict = field(default_factory=lambda: {"pid": 1, "name": "Web"})
    status: Status = field(default_factory=lambda: Status(524288))


# -------------------------------------------------------------------------------- runner and codes

def test_one_failure_does_not_stop_the_others():
    def work(job):
        if job.pod == "b":
            raise UnavailableError("tunnel reset")
        return Result(Path(f"/out/{job.pod}.gcdump"))

    outcomes = run(["a", "b", "c"], work)
    assert [o.pod for o in outcomes] == ["a", "b", "c"]
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].exit_code == ExitCode.UNAVAILABLE
    assert fanout_exit_code(outcomes) == ExitCode.PARTIAL


def test_exit_codes():
    ok = PodOutcome("a", value=1)
    busy = PodOutcome("b", error=BusyError("busy"))
    busy2 = PodOutcome("c", error=BusyError("busy"))
    not_ready = PodOutcome("d", error=NotReadyError("x"))
    bug = PodOutcome("e", error=ValueError("oops"))
    assert fanout_exit_code([ok, ok]) == 0
    assert fanout_exit_code([ok, busy]) == ExitCode.PARTIAL
    assert fanout_exit_code([busy, busy2]) == ExitCode.BUSY
    assert fanout_exit_code([busy, not_ready]) == ExitCode.FAILURE
    assert fanout_exit_code([bug]) == ExitCode.FAILURE
    assert bug.message() == "unexpected ValueError: oops"


def test_parallelism_is_bounded():
    lock = threading.Lock()
    running, peak = [0], [0]

    def work(job):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    outcomes = run([f"p{i}" for i in range(12)], work, parallel=3)
    assert all(o.ok for o in outcomes)
    assert peak[0] == 3


def test_default_parallel():
    assert default_parallel(50) == 8
    assert default_parallel(3) == 3
    assert default_parallel(50, 20) == 20
    assert default_parallel(5, 20) == 5


def test_each_job_gets_its_pod_its_row_and_a_prefixed_say():
    out = io.StringIO()
    seen = {}

    def work(job):
        seen[job.pod] = job.index
        job.say("injecting")

    run_on_pods(["x", "y"], work, namespace="ns", parallel=2, console=Console(out, bars=False))
    assert seen == {"x": 0, "y": 1}
    assert sorted(out.getvalue().splitlines()) == ["[pod/x] injecting", "[pod/y] injecting"]


# ------------------------------------------------------------------------------------------- report

def test_summary_table_columns_and_results():
    outcomes = [PodOutcome("web-a", value=Result(Path("/d/web-a_1.gcdump")), started=0.0, finished=1.5),
                PodOutcome("web-b", error=UnavailableError("the stream stalled"), started=0.0, finished=2.0)]
    lines = summary_table(outcomes).splitlines()
    assert lines[0].split() == ["POD", "PROCESS", "FILE", "SIZE", "TIME", "RESULT"]
    assert lines[1].split() == ["web-a", "1", "(Web)", "/d/web-a_1.gcdump", "512.0", "KiB", "1.5s", "ok"]
    assert lines[2].split()[:2] == ["web-b", "-"] and lines[2].endswith("failed: the stream stalled")
    assert lines[0].index("FILE") == lines[1].index("/d/")  # aligned


def test_run_many_prints_table_and_paths_then_raises_with_the_exit_code():
    @dataclass
    class Targets:
        pods: tuple = ("a", "b")
        namespace: str = "ns"
        described: str = "deploy/web"
        skipped: tuple = (("c", "phase Pending"),)

    err, printed = io.StringIO(), []

    def work(job):
        if job.pod == "b":
            raise NotReadyError("no .NET process")
        return Result(Path("/d/a.gcdump"))

    with pytest.raises(PodsFailed) as failed:
        run_many(Targets(), work, conn=None, parallel=None, stream=err, print_result=lambda o: printed.append(o.pod))
    assert failed.value.exit_code == ExitCode.PARTIAL
    assert failed.value.message == "1 of 2 pods failed (see the table above)"
    text = err.getvalue()
    assert "skipping pod/c: phase Pending" in text
    assert "error: [pod/b] no .NET process" in text
    assert "2 pods: 1 succeeded, 1 failed" in text
    assert printed == ["a"]


def test_all_failed_alike_keeps_that_code():
    @dataclass
    class Targets:
        pods: tuple = ("a", "b")
        namespace: str = "ns"
        described: str = "-l app=web"
        skipped: tuple = ()

    def work(job):
        raise BusyError("another gcdump is running")

    with pytest.raises(PodsFailed) as failed:
        run_many(Targets(), work, conn=None, parallel=2, stream=io.StringIO())
    assert failed.value.exit_code == ExitCode.BUSY


# -------------------------------------------------------------------------------------------- -o

def test_many_pods_need_a_directory(tmp_path):
    check_many_output(None, 5)
    check_many_output(str(tmp_path), 5)
    check_many_output("not-yet/", 5)  # its existence is checked by the ordinary output resolution
    check_many_output(str(tmp_path / "one.gcdump"), 1)
    with pytest.raises(UsageError, match="names one file"):
        check_many_output(str(tmp_path / "one.gcdump"), 2)
    with pytest.raises(UsageError, match="standard output"):
        check_many_output("-", 2)


# ------------------------------------------------------------------------------------- prefixing

def test_prefixer_writes_whole_lines_with_the_prefix():
    out = io.BytesIO()
    w = LinePrefixer.for_pod("web-a", out, threading.Lock())
    w.write(b"first li")
    assert out.getvalue() == b""
    w.write(b"ne\nsecond\nthi")
    assert out.getvalue() == b"[pod/web-a] first line\n[pod/web-a] second\n"
    w.close()
    assert out.getvalue().endswith(b"[pod/web-a] thi\n")


def test_prefixer_on_a_text_stream_accepts_str():
    out = io.StringIO()
    w = LinePrefixer.for_pod("p", out, threading.Lock())
    w.write("a\nb\n")
    assert out.getvalue() == "[pod/p] a\n[pod/p] b\n"


def test_prefixed_lines_from_many_threads_never_mix():
    out = io.BytesIO()
    lock = threading.Lock()

    def pump(pod: str) -> None:
        w = LinePrefixer.for_pod(pod, out, lock)
        for i in range(300):
            w.write(f"line {i} of {pod} ".encode() + b"x" * 50)  # split mid-line on purpose
            w.write(b"\n")
        w.close()

    threads = [threading.Thread(target=pump, args=(f"pod{n}",)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().decode().splitlines()
    assert len(lines) == 6 * 300
    for line in lines:
        prefix, rest = line.split("] ", 1)
        pod = prefix[len("[pod/"):]
        assert rest.startswith("line ") and rest.split()[3] == pod and rest.endswith("x" * 50)


# ------------------------------------------------------------------------------------ interruption

class SocketTunnel:
    """Shaped like PodTunnel for Cancellation (``abort()``); reads block on a socketpair."""

    def __init__(self) -> None:
        self.ours, self.peer = socket.socketpair()

    def abort(self) -> None:
        socket.socket.shutdown(self.ours, socket.SHUT_RDWR)

    def read(self) -> bytes:
        return self.ours.recv(1024)


def test_ctrl_c_cuts_blocked_tunnels_cleans_up_and_starts_nothing_new(tmp_path):
    cancel = Cancellation()
    started, cleaned = [], []
    blocked = threading.Barrier(3)  # 2 workers + the test

    def work(job):
        started.append(job.pod)
        temp = tmp_path / f".{job.pod}.partial"
        temp.write_bytes(b"")
        try:
            tunnel = cancel.track(SocketTunnel)()
            blocked.wait(timeout=5)
            data = tunnel.read()  # blocks until the tunnel is cut
            if not data:
                raise UnavailableError("connection closed")
        finally:
            temp.unlink()
            cleaned.append(job.pod)

    def interrupt_when_blocked():
        blocked.wait(timeout=5)
        time.sleep(0.1)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_blocked, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(PodsInterrupted) as stopped:
        run_on_pods([f"p{i}" for i in range(10)], work, namespace="ns", parallel=2, console=console(),
                    cancel=cancel, grace=5)
    assert time.monotonic() - t0 < 3
    assert sorted(started) == sorted(cleaned) and len(started) == 2  # nothing new started
    assert list(tmp_path.iterdir()) == []
    outcomes = stopped.value.outcomes
    assert sum(o.ran for o in outcomes) == 2
    assert all(o.exit_code == ExitCode.INTERRUPTED for o in outcomes)
    assert stopped.value.exit_code == ExitCode.INTERRUPTED


def test_a_tunnel_opened_after_the_stop_is_cut_at_once():
    cancel = Cancellation()
    cancel.cancel()
    with pytest.raises(Interrupted):
        cancel.track(SocketTunnel)()
    with pytest.raises(Interrupted):
        cancel.check()


def test_adopt_is_the_sessions_tunnel_hook():
    cancel = Cancellation()
    tunnel = SocketTunnel()
    cancel.adopt(tunnel)
    cancel.cancel()
    assert tunnel.read() == b""  # aborted: the blocked read would have returned at once
    with pytest.raises(Interrupted):
        cancel.adopt(SocketTunnel())  # the stop came while it was being opened


def test_the_real_pod_tunnel_abort_wakes_a_blocked_reader():
    from kubectl_dotnet_monitor.tunnel.portforward import PodTunnel
    from kubectl_dotnet_monitor.tunnel.websocket import TunnelError, WebSocket

    ours, peer = socket.socketpair()
    tunnel = PodTunnel(WebSocket(ours, describe="test"), "ns", "pod", 52323)
    got: list = []

    def read():
        try:
            got.append(tunnel.recv_into(bytearray(16)))
        except TunnelError as exc:
            got.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.2)
    assert reader.is_alive()
    tunnel.abort()
    tunnel.abort()  # idempotent
    reader.join(timeout=2)
    assert not reader.is_alive() and got and got[0] != 16
    tunnel.close()
    peer.close()


class Stopper:
    """Shaped like collect.StopOnInterrupt: ``request_stop`` ends the pod's session gracefully."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def request_stop(self) -> None:
        self.stop.set()


def test_first_ctrl_c_stops_streams_gracefully_and_starts_nothing_new():
    cancel = Cancellation()
    running = threading.Barrier(3)
    stopped_ok: list[str] = []

    def work(job):
        stopper = Stopper()
        job.cancel.add_stopper(stopper)
        running.wait(timeout=5)
        assert stopper.stop.wait(timeout=5)  # the monitor ends the session; the artifact is complete
        stopped_ok.append(job.pod)
        return Result(None)

    def interrupt_when_running():
        running.wait(timeout=5)
        time.sleep(0.1)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_running, daemon=True).start()
    c = console()
    outcomes = run_on_pods(["a", "b", "c", "d"], work, namespace="ns", parallel=2, console=c, cancel=cancel)
    assert cancel.stopping and not cancel.cancelled
    assert sorted(stopped_ok) == ["a", "b"]
    assert [o.ok for o in outcomes] == [True, True, False, False]
    assert not outcomes[2].ran and outcomes[2].exit_code == ExitCode.INTERRUPTED
    assert "stopping: asking each pod" in c.stream.getvalue()


def test_a_stopper_registered_after_the_stop_is_stopped_at_once():
    cancel = Cancellation()
    cancel.add_stopper(Stopper())
    assert cancel.stop_gracefully() and not cancel.stop_gracefully()  # only the first Ctrl-C
    late = Stopper()
    cancel.add_stopper(late)
    assert late.stop.is_set()
    with pytest.raises(Interrupted):
        cancel.check()  # no new pod starts


def test_without_stoppers_ctrl_c_is_not_graceful():
    assert Cancellation().stop_gracefully() is False


def test_workers_get_their_slot_for_the_progress_bar_row():
    slots: dict[str, int] = {}
    lock = threading.Lock()

    def work(job):
        with lock:
            slots[job.pod] = job.slot
        time.sleep(0.01)

    run([f"p{i}" for i in range(9)], work, parallel=3)
    assert set(slots.values()) == {0, 1, 2}


def test_streams_run_every_pod_at_once_and_skip_the_table_on_success():
    active, peak = [0], [0]
    lock = threading.Lock()

    def work(job):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1
        return Result(None)

    out = io.StringIO()
    @dataclass
    class Targets:
        pods: tuple
        namespace: str = "ns"
        described: str = "-l app=web"
        skipped: tuple = ()

    run_many(Targets(tuple(f"p{i}" for i in range(12))), work, conn=None, parallel=None, stream=out,
             parallel_fallback=12, table=False)
    assert peak[0] == 12
    assert "POD " not in out.getvalue() and "12 pods: 12 succeeded" in out.getvalue()
