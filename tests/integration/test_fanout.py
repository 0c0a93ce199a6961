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


# ================================================================================================
# Every artifact command through the same many-pods path, on a small `shop` deployment (3 replicas,
# time 10x faster, a FileSystem egress provider `store` given at injection).

SHOP_SCENARIO = """
name: shop
description: deploy/shop with 3 replicas, for many-pod runs of every artifact command.
version: {gitVersion: v1.33.1}
nodes: [{name: sandbox-node-1}]
users:
  - name: admin
    groups: [system:masters, system:authenticated]
    rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
namespaces: [{name: default}]
objects:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: shop, namespace: default, labels: {app: shop}}
    spec:
      replicas: 3
      selector: {matchLabels: {app: shop}}
      template:
        metadata: {labels: {app: shop}}
        spec:
          containers:
            - name: app
              image: registry.example/shop/web:1.4
              env:
                - {name: DOTNET_DiagnosticPorts, value: "/diag/dotnet-monitor.sock,nosuspend"}
              volumeMounts: [{name: diagvol, mountPath: /diag}]
          volumes: [{name: diagvol, emptyDir: {}}]
sandbox:
  kubelet: {container_start_delay: 0.1}
  images:
    registry.example/shop/web:1.4:
      user: 1654
      processes: [{name: Web, commandLine: "dotnet Web.dll", runtime_version: "8.0.11"}]
    "mcr.microsoft.com/dotnet/monitor*": {user: 1654, monitor: true}
  monitor:
    time_scale: 0.1
    artifacts:
      dump: {size: 262144}
      gcdump: {size: 131072}
      trace: {size: 262144, rundown_size: 16384}
      logs: {interval: 1}
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    import subprocess
    import sys

    from tests.sandbox import SandboxHandle

    work = tmp_path_factory.mktemp("shop")
    scenario = work / "shop.yaml"
    scenario.write_text(SHOP_SCENARIO)
    state = work / "state"
    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    up = subprocess.run([sys.executable, "-m", "tests.sandbox", "up", "--scenario", str(scenario), "--state-dir",
                         str(state), "--detach"], cwd=repo, capture_output=True, text=True, timeout=60, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    handle = SandboxHandle(state)
    # Monitors with the egress provider, injected into the 3 pods in parallel.
    config = work / "egress.yaml"
    config.write_text('{"env": [{"name": "DotnetMonitor_Egress__FileSystem__store__DirectoryPath", '
                      '"value": "/diag/egress"}]}')
    run = run_plugin(handle, "inject", "deploy/shop", "--all", "--config", str(config), timeout=120)
    assert run.rc == 0, str(run)
    yield handle
    subprocess.run([sys.executable, "-m", "tests.sandbox", "down", "--state-dir", str(state)], cwd=repo, check=False,
                   capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def shop_pods(shop) -> list[str]:
    names = pods_by_label(shop, "default", app="shop")
    assert len(names) == 3, names
    return names


def newest(handle, route: str, since: int) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in sorted(handle.control.artifacts(), key=lambda r: r.get("seq", 0)):
        if r.get("route") == route and r.get("seq", 0) > since:
            out[r["pod"]] = r
    return out


def test_dump_of_every_pod_of_a_workload_into_per_pod_files(shop, shop_pods, tmp_path):
    since = last_seq(shop)
    run = run_plugin(shop, "dump", "deploy/shop", "--all", "--type", "Mini", "-o", f"{tmp_path}/")
    assert run.rc == 0, str(run)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 3 and temp_files(tmp_path) == []
    assert sorted(run.stdout.split()) == sorted(str(p) for p in files)
    records = newest(shop, "/dump", since)
    assert sorted(records) == shop_pods
    for path in files:
        pod = path.name.split("_1_")[0]
        assert path.suffix == ".dmp" and records[pod]["complete"] is True
        assert sha256_file(path) == records[pod]["sha256"], pod
    assert re.search(r"^POD\s+PROCESS\s+FILE\s+SIZE\s+TIME\s+RESULT$", run.stderr, re.MULTILINE)
    assert "3 pods: 3 succeeded" in run.stderr


def test_logs_of_every_pod_are_prefixed_per_line(shop, shop_pods):
    run = run_plugin(shop, "logs", "-l", "app=shop", "--duration", "2s", timeout=60)
    assert run.rc == 0, str(run)
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert lines and all(re.match(r"^\[pod/shop-\S+\] ", line) for line in lines), run.stdout[:2000]
    assert {line.split("]")[0][len("[pod/"):] for line in lines} == set(shop_pods)
    assert "3 pods: 3 succeeded" in run.stderr and "POD " not in run.stderr


def test_livemetrics_of_every_pod_are_prefixed_per_line(shop, shop_pods):
    run = run_plugin(shop, "livemetrics", "deploy/shop", "--all", "--duration", "12s", timeout=60)
    assert run.rc == 0, str(run)
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert lines and all(re.match(r"^\[pod/shop-\S+\] ", line) for line in lines), run.stdout[:2000]
    assert {line.split("]")[0][len("[pod/"):] for line in lines} == set(shop_pods)


def test_following_more_streams_than_parallel_is_refused(shop, shop_pods):
    run = run_plugin(shop, "logs", "-l", "app=shop", "-f", "--parallel", "2")
    assert_user_error(run, 2, "follow 3 streams", "--parallel 3")


def test_gcdump_egress_one_pod_and_every_pod(shop, shop_pods):
    since = last_seq(shop)
    run = run_plugin(shop, "gcdump", shop_pods[0], "--egress", "store")
    assert run.rc == 0, str(run)
    location = run.stdout.strip()
    assert location.startswith("/diag/egress/") and location.endswith(".gcdump")
    assert "sent to egress 'store'" in run.stderr
    run = run_plugin(shop, "gcdump", "deploy/shop", "--all", "--egress", "store")
    assert run.rc == 0, str(run)
    went = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    assert sorted(went) == [f"pod/{p}" for p in shop_pods]
    records = newest(shop, "/gcdump", since)
    for pod in shop_pods:
        assert records[pod]["egress"] == "store" and records[pod]["complete"]
        assert records[pod]["resource_location"] == went[f"pod/{pod}"]
        assert went[f"pod/{pod}"] in run.stderr  # the table shows where each went


def test_processes_of_every_pod_get_a_pod_column(shop, shop_pods):
    run = run_plugin(shop, "processes", "-l", "app=shop")
    assert run.rc == 0, str(run)
    header, *rows = run.stdout.splitlines()
    assert header.split()[:2] == ["POD", "PID"]
    assert sorted(row.split()[0] for row in rows) == shop_pods
    run = run_plugin(shop, "processes", "deploy/shop", "--all", "-o", "json")
    assert sorted(p["pod"] for p in __import__("json").loads(run.stdout)) == shop_pods


def test_single_pod_commands_refuse_a_workload(shop, shop_pods):
    run = run_plugin(shop, "info", "deploy/shop")
    assert_user_error(run, 2, "works on one pod", "deploy/shop")
    run = run_plugin(shop, "info", f"pod/{shop_pods[0]}")
    assert run.rc == 0, str(run)


def test_ctrl_c_stops_every_trace_gracefully_with_complete_files(shop, shop_pods, tmp_path):
    since = last_seq(shop)
    proc = start_plugin(shop, "trace", "-l", "app=shop", "--duration", "10m", "-o", f"{tmp_path}/")
    wait_for(lambda: len(temp_files(tmp_path)) == 3, timeout=30)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    run = finish(proc, timeout=60)
    assert run.rc == 130, str(run)
    assert "stopping: asking each pod's dotnet-monitor" in run.stderr and "Traceback" not in run.stderr
    files = sorted(tmp_path.iterdir())
    assert len(files) == 3 and temp_files(tmp_path) == [], run.stderr
    records = newest(shop, "/trace", since)
    for path in files:
        pod = path.name.split("_1_")[0]
        assert records[pod]["complete"] is True
        assert sha256_file(path) == records[pod]["sha256"], pod
    assert "stopped at your request" in run.stderr
