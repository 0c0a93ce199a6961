"""Issue 4: `kubectl dotnet-monitor gcdump POD`, run as a user runs it, against the sandbox.

Every saved file is compared with the SHA-256 the simulated monitor recorded for what it sent.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time

import pytest

from tests.integration.conftest import (
    assert_no_artifacts,
    assert_user_error,
    finish,
    last_seq,
    pods_by_label,
    records_for,
    run_plugin,
    sha256_file,
    start_plugin,
    temp_files,
)


@pytest.fixture(scope="module")
def pods(sb) -> list[str]:
    names = pods_by_label(sb, "default", app="dump")
    assert len(names) == 4, names
    return names  # [0]: test_kubectl_dispatch; [1], [2]: here; [3]: never gets a monitor


@pytest.fixture(autouse=True)
def no_faults(sb):
    sb.control.clear_faults()
    yield
    sb.control.clear_faults()


def only_record(sb, pod: str, since: int) -> dict:
    [record] = records_for(sb, pod, since)
    assert record["complete"] is True, record
    return record


def test_default_name_in_cwd_sha_and_mode(sb, pods, tmp_path):
    pod = pods[1]
    since = last_seq(sb)
    run = run_plugin(sb, "gcdump", pod, cwd=tmp_path)
    assert run.rc == 0, str(run)
    saved = run.stdout.strip()
    assert re.fullmatch(rf"{re.escape(str(tmp_path))}/{re.escape(pod)}_1_\d{{8}}_\d{{6}}\.gcdump", saved), saved
    path = tmp_path / os.path.basename(saved)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = only_record(sb, pod, since)
    assert path.stat().st_size == record["bytes"] == 1 << 20
    assert sha256_file(path) == record["sha256"]
    assert os.listdir(tmp_path) == [path.name]          # no temp file left
    assert "injecting dotnet-monitor" in run.stderr     # said on stderr, not stdout
    assert "gcdump of pod" in run.stderr
    assert "Traceback" not in run.stderr


def test_output_file(sb, pods, tmp_path):
    pod = pods[1]
    since = last_seq(sb)
    run = run_plugin(sb, "gcdump", pod, "-o", str(tmp_path / "heap.gcdump"))
    assert run.rc == 0, str(run)
    assert run.stdout.strip() == str(tmp_path / "heap.gcdump")
    assert sha256_file(tmp_path / "heap.gcdump") == only_record(sb, pod, since)["sha256"]
    assert stat.S_IMODE((tmp_path / "heap.gcdump").stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["heap.gcdump"]


def test_output_dir(sb, pods, tmp_path):
    pod = pods[1]
    (tmp_path / "dumps").mkdir()
    since = last_seq(sb)
    run = run_plugin(sb, "gcdump", pod, "-o", "dumps/", cwd=tmp_path)
    assert run.rc == 0, str(run)
    [name] = os.listdir(tmp_path / "dumps")
    assert name.startswith(f"{pod}_1_") and name.endswith(".gcdump")
    assert run.stdout.strip().endswith(f"dumps/{name}")
    assert sha256_file(tmp_path / "dumps" / name) == only_record(sb, pod, since)["sha256"]


def test_stdout_bytes_are_exact(sb, pods, tmp_path):
    pod = pods[1]
    since = last_seq(sb)
    run = run_plugin(sb, "gcdump", pod, "-o", "-", cwd=tmp_path, binary=True)
    assert run.rc == 0, run.stderr
    record = only_record(sb, pod, since)
    assert len(run.stdout_bytes) == record["bytes"]
    assert hashlib.sha256(run.stdout_bytes).hexdigest() == record["sha256"]
    assert os.listdir(tmp_path) == []
    assert "Traceback" not in run.stderr


def test_no_inject_refuses_on_a_pod_without_monitor(sb, pods, tmp_path):
    pod = pods[3]
    run = run_plugin(sb, "gcdump", pod, "--no-inject", cwd=tmp_path)
    assert_user_error(run, 7, "no dotnet-monitor runs", "inject")
    assert_no_artifacts(tmp_path)
    pod_obj = sb.control.pod("default", pod)
    assert not pod_obj["spec"].get("ephemeralContainers")


def test_several_processes_list_and_fail(sb, tmp_path):
    run = run_plugin(sb, "gcdump", "twoproc", cwd=tmp_path)
    assert_user_error(run, 2, "2 .NET processes", "Worker", "Scheduler", "--pid")
    assert_no_artifacts(tmp_path)


def test_pid_picks_the_process(sb, tmp_path):
    since = last_seq(sb)
    run = run_plugin(sb, "gcdump", "twoproc", "--process-name", "Scheduler", "-o", str(tmp_path / "s.gcdump"))
    assert run.rc == 0, str(run)
    pid = only_record(sb, "twoproc", since)["pid"]
    since = last_seq(sb)
    run = run_plugin(sb, "gcdump", "twoproc", "--pid", str(pid), "-o", str(tmp_path / "p.gcdump"))
    assert run.rc == 0, str(run)
    record = only_record(sb, "twoproc", since)
    assert record["pid"] == pid != 1          # not the first process: --pid decided
    assert sha256_file(tmp_path / "p.gcdump") == record["sha256"]


def test_busy_429_and_wait(sb, pods, tmp_path):
    pod = pods[2]
    warm = run_plugin(sb, "inject", pod)                      # no injection time in the race below
    assert warm.rc == 0, str(warm)
    sb.control.set_faults([{"artifact": "gcdump", "kind": "slow_first_byte", "delay": 3, "times": 1}])
    since = last_seq(sb)
    first = start_plugin(sb, "gcdump", pod, "-o", str(tmp_path / "first.gcdump"))
    try:
        # The slow collection holds dotnet-monitor's single gcdump slot.
        time.sleep(1.0)
        busy = run_plugin(sb, "gcdump", pod, "-o", str(tmp_path / "busy.gcdump"))
        assert_user_error(busy, 9, "another", "--wait")
        waited = run_plugin(sb, "gcdump", pod, "--wait", "-o", str(tmp_path / "waited.gcdump"))
        assert waited.rc == 0, str(waited)
        assert "waiting" in waited.stderr
    finally:
        done = finish(first, ("gcdump", pod))
    assert done.rc == 0, str(done)
    assert sorted(os.listdir(tmp_path)) == ["first.gcdump", "waited.gcdump"]
    shas = {r["sha256"] for r in records_for(sb, pod, since) if r.get("complete")}
    assert {sha256_file(tmp_path / "first.gcdump"), sha256_file(tmp_path / "waited.gcdump")} <= shas


def test_existing_file_is_refused_then_overwritten(sb, pods, tmp_path):
    pod = pods[2]
    target = tmp_path / "heap.gcdump"
    target.write_bytes(b"precious")
    run = run_plugin(sb, "gcdump", pod, "-o", str(target))
    assert_user_error(run, 10, "already exists", "--overwrite")
    assert target.read_bytes() == b"precious"
    assert temp_files(tmp_path) == []
    since = last_seq(sb)
    run = run_plugin(sb, "gcdump", pod, "-o", str(target), "--overwrite")
    assert run.rc == 0, str(run)
    assert sha256_file(target) == only_record(sb, pod, since)["sha256"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["heap.gcdump"]


def test_output_dir_missing(sb, pods, tmp_path):
    since = last_seq(sb)
    run = run_plugin(sb, "gcdump", pods[2], "-o", str(tmp_path / "nope" / "heap.gcdump"))
    assert_user_error(run, 10, "does not exist")
    run = run_plugin(sb, "gcdump", pods[2], "-o", str(tmp_path / "nope") + "/")
    assert_user_error(run, 10, "does not exist")
    assert records_for(sb, pods[2], since) == []            # nothing was collected
    assert_no_artifacts(tmp_path)
