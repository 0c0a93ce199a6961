"""Issue 7: many pods at once, against the sandbox's `fanout` scenario (deploy/web, 50 prepared pods).

Run as a user runs it; every saved file is checked against the SHA-256 the simulated monitor recorded.
Tests share one sandbox and run in file order: the first one injects the monitors the others reuse.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.integration.conftest import (
    assert_user_error,
    finish,
    last_seq,
    pods_by_label,
    run_plugin,
    sha256_file,
    start_plugin,
    temp_files,
    wait_for,
)


@pytest.fixture(scope="module")
def fo(sandbox_factory):
    return sandbox_factory("fanout")


@pytest.fixture(scope="module")
def web(fo) -> list[str]:
    names = pods_by_label(fo, "default", app="web")
    assert len(names) == 50, names
    return names


@pytest.fixture(autouse=True)
def no_faults(fo):
    fo.control.clear_faults()
    yield
    fo.control.clear_faults()


def gcdump_records(handle, since: int) -> dict[str, dict]:
    """The newest complete /gcdump record per pod since ``since``."""
    out: dict[str, dict] = {}
    for r in sorted(handle.control.artifacts(), key=lambda r: r.get("seq", 0)):
        if r.get("route") == "/gcdump" and r.get("seq", 0) > since:
            out[r["pod"]] = r
    return out


def test_selector_all_pods_into_a_directory(fo, web, tmp_path):
    since = last_seq(fo)
    run = run_plugin(fo, "gcdump", "-l", "app=web", "--all", "-o", f"{tmp_path}/", timeout=240)
    assert run.rc == 0, str(run)
    saved = run.stdout.split()
    assert len(saved) == 50
    files = sorted(p for p in tmp_path.iterdir())
    assert len(files) == 50 and temp_files(tmp_path) == []
    records = gcdump_records(fo, since)
    assert sorted(records) == web
    for path in files:
        pod = next(p for p in web if path.name.startswith(p + "_1_"))
        assert records[pod]["complete"] is True
        assert sha256_file(path) == records[pod]["sha256"], pod
    # the summary table: a header, one row per pod, and the count
    assert re.search(r"^POD\s+PROCESS\s+FILE\s+SIZE\s+TIME\s+RESULT$", run.stderr, re.MULTILINE)
    assert sum(1 for line in run.stderr.splitlines() if line.startswith("web-") and line.endswith(" ok")) == 50
    assert "50 pods: 50 succeeded" in run.stderr
    assert "injecting dotnet-monitor" in run.stderr  # in parallel, prefixed per pod
    assert re.search(r"^\[pod/web-\S+\] injecting dotnet-monitor", run.stderr, re.MULTILINE)


def test_workload_all_reuses_monitors_and_one_failure_gives_exit_11(fo, web, tmp_path):
    fo.control.set_faults([{"artifact": "gcdump", "kind": "reset", "after": 4096, "times": 1}])
    since = last_seq(fo)
    run = run_plugin(fo, "gcdump", "deploy/web", "--all", "--parallel", "10", "-o", str(tmp_path), timeout=240)
    assert run.rc == 11, str(run)
    assert "injecting" not in run.stderr  # every monitor reused
    failed = [line for line in run.stderr.splitlines() if line.startswith("error: [pod/")]
    assert len(failed) == 1, run.stderr
    bad = failed[0].split("]")[0][len("error: [pod/"):]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 49 and not any(name.startswith(bad + "_") for name in files)
    assert temp_files(tmp_path) == []
    assert len(run.stdout.split()) == 49
    records = gcdump_records(fo, since)
    for name in files:
        pod = name.split("_1_")[0]
        assert sha256_file(tmp_path / name) == records[pod]["sha256"]
    assert "error: 1 of 50 pods failed" in run.stderr


def test_workload_alone_picks_one_pod(fo, web, tmp_path):
    run = run_plugin(fo, "gcdump", "deploy/web", cwd=tmp_path)
    assert run.rc == 0, str(run)
    note = re.search(r"^Found 50 pods, using pod/(\S+)$", run.stderr, re.MULTILINE)
    assert note, run.stderr
    [saved] = run.stdout.split()
    assert saved.startswith(f"{tmp_path}/{note.group(1)}_1_")
    assert [p.name for p in tmp_path.iterdir()] == [saved.rsplit("/", 1)[1]]
    assert "POD " not in run.stderr  # one pod: the single-pod output, no table


def test_unknown_workload_is_not_found_like_kubectl(fo, tmp_path):
    run = run_plugin(fo, "gcdump", "deploy/nope", cwd=tmp_path)
    assert_user_error(run, 4, 'deployments.apps "nope" not found in namespace "default"')
    run = run_plugin(fo, "gcdump", "-l", "app=nope", cwd=tmp_path)
    assert_user_error(run, 4, "no pods", "app=nope")


@pytest.mark.parametrize("output", ["-", "heap.gcdump"])
def test_one_output_for_many_pods_is_refused_before_anything_runs(fo, tmp_path, output):
    since = last_seq(fo)
    run = run_plugin(fo, "gcdump", "-l", "app=web", "-o", output, cwd=tmp_path)
    assert_user_error(run, 2, "50 pods")
    assert last_seq(fo) == since and list(tmp_path.iterdir()) == []


def test_target_and_selector_together_are_refused(fo, tmp_path):
    run = run_plugin(fo, "gcdump", "deploy/web", "-l", "app=web", cwd=tmp_path)
    assert_user_error(run, 2, "not both")


def test_ctrl_c_stops_every_pod_and_leaves_no_temp_file(fo, web, tmp_path):
    fo.control.set_faults([{"artifact": "gcdump", "kind": "stall", "after": 65536}])
    proc = start_plugin(fo, "gcdump", "-l", "app=web", "-o", f"{tmp_path}/")
    wait_for(lambda: len(temp_files(tmp_path)) >= 8, timeout=60)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    run = finish(proc, timeout=30)
    assert run.rc == 130, str(run)
    assert time.monotonic() - t0 < 10
    assert list(tmp_path.iterdir()) == []
    assert "interrupted" in run.stderr and "Traceback" not in run.stderr
