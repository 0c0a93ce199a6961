"""Issue 10 soak: 200 gcdumps in a row in one process and 20 at once, in-process through
`session.open_session` + `collect.collect_artifact`, with no leaked threads, file descriptors or
memory. Marked `slow`; it takes well under a minute on the sandbox."""

from __future__ import annotations

import gc
import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.conftest import last_seq, pods_by_label, sha256_file

pytestmark = pytest.mark.slow

SIZE = 1 << 20


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def soak_pods(sb) -> list[str]:
    names = pods_by_label(sb, "default", app="soak")
    assert len(names) == 20, names
    return names


def _session(sb, pod: str):
    from kubectl_dotnet_monitor.inject.injector import InjectRequest
    from kubectl_dotnet_monitor.kube.config import KubeFlags
    from kubectl_dotnet_monitor.session import open_session

    return open_session(KubeFlags(kubeconfig=str(sb.kubeconfig)), pod, InjectRequest())


def _collect(session, target) -> object:
    from kubectl_dotnet_monitor.collect import GCDUMP, ProcessSelector, TransferOptions, collect_artifact

    return collect_artifact(session, GCDUMP, ProcessSelector(), str(target),
                            transfer=TransferOptions(quiet=True, idle_timeout=30), progress_stream=io.StringIO())


def _settle(baseline_threads: int) -> None:
    deadline = time.monotonic() + 5
    while threading.active_count() > baseline_threads and time.monotonic() < deadline:
        time.sleep(0.05)
    gc.collect()


def test_200_in_a_row_in_one_process(sb, soak_pods, tmp_path):
    session = _session(sb, soak_pods[0])
    try:
        for i in range(10):                      # warm-up: imports, TLS contexts, caches
            _collect(session, tmp_path / "warm.gcdump").path.unlink()
        threads, fds, rss = threading.active_count(), _fds(), _rss()
        since = last_seq(sb)
        for i in range(200):
            result = _collect(session, tmp_path / "heap.gcdump")
            assert result.status.bytes == SIZE
            if i % 50 == 0:
                [record] = [r for r in sb.control.artifacts() if r["seq"] > since and r["pod"] == soak_pods[0]][-1:]
                assert sha256_file(result.path) == record["sha256"]
            result.path.unlink()
        _settle(threads)
        assert threading.active_count() == threads, threading.enumerate()
        assert _fds() <= fds, os.listdir("/proc/self/fd")
        grown = _rss() - rss
        assert grown < 16 << 20, f"RSS grew by {grown >> 20} MiB over 200 gcdumps"
        records = [r for r in sb.control.artifacts() if r["seq"] > since and r["pod"] == soak_pods[0]]
        assert len(records) == 200 and all(r["complete"] for r in records)
        assert os.listdir(tmp_path) == []
    finally:
        session.close()


def test_20_at_once(sb, soak_pods, tmp_path):
    # Warm-up (the first injection per pod happens here, in parallel as well).
    with ThreadPoolExecutor(max_workers=20) as pool:
        sessions = list(pool.map(lambda pod: _session(sb, pod), soak_pods))
    try:
        # One concurrent round before measuring: the allocator's per-thread arenas fill once and are
        # kept (not a leak); growth is measured over the rounds after it.
        with ThreadPoolExecutor(max_workers=20) as pool:
            list(pool.map(lambda i: _collect(sessions[i], tmp_path / f"warm-{i}.gcdump"), range(20)))
        gc.collect()
        threads, fds, rss = threading.active_count(), _fds(), _rss()
        since = last_seq(sb)
        for round_ in range(2):
            barrier = threading.Barrier(20)

            def one(index: int):
                barrier.wait()
                return _collect(sessions[index], tmp_path / f"{round_}-{index}.gcdump")

            with ThreadPoolExecutor(max_workers=20) as pool:
                results = list(pool.map(one, range(20)))
            assert all(r.path.stat().st_size == SIZE for r in results)
        records = {(r["pod"], r["sha256"]) for r in sb.control.artifacts() if r["seq"] > since and r["complete"]}
        for r in results:
            assert (r.pod, sha256_file(r.path)) in records
        _settle(threads)
        assert threading.active_count() == threads, threading.enumerate()
        assert _fds() <= fds
        assert _rss() - rss < 32 << 20
        assert len(os.listdir(tmp_path)) == 60
    finally:
        for s in sessions:
            s.close()
