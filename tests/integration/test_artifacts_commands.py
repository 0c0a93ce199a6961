"""Issue 5: every artifact, stream and operation command, run as a user runs it, against the sandbox
(dotnet-monitor 10.0.4 behaviour; 8.x and 10.0.1 drift in test_artifacts_versions.py).

Files are compared with the SHA-256 the simulated monitor recorded for what it sent.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.artifact_helpers import (
    Cli,
    interrupt,
    last_record,
    leftovers,
    records,
    sha256,
    start_sandbox,
    stop_sandbox,
    wait_for_operation,
)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    state = tmp_path_factory.mktemp("artifacts-sb") / "state"
    handle = start_sandbox(state)
    yield handle
    stop_sandbox(state)


@pytest.fixture
def cli(sandbox, tmp_path) -> Cli:
    return Cli(sandbox, tmp_path)


@pytest.fixture(autouse=True)
def no_faults(sandbox):
    sandbox.control.clear_faults()
    yield
    sandbox.control.clear_faults()


@pytest.fixture(scope="module")
def full(sandbox, tmp_path_factory) -> str:
    """Pod `full`: monitor with in-process features and a FileSystem egress provider `store`."""
    work = tmp_path_factory.mktemp("full")
    config = work / "egress.yaml"
    config.write_text(yaml.safe_dump({"env": [
        {"name": "DotnetMonitor_Egress__FileSystem__store__DirectoryPath", "value": "/diag/egress"}]}))
    run = Cli(sandbox, work)("stacks", "full", "--enable-in-process-features", "--config", str(config))
    assert run.returncode == 0, run.stderr
    assert "injecting dotnet-monitor" in run.stderr
    return "full"


# ------------------------------------------------------------------------------------------------
# dump


def test_dump_mini_any_case_saved_whole(cli, sandbox, tmp_path):
    run = cli("dump", "plain", "--type", "mINi", "-o", "mini.dmp")
    assert run.returncode == 0, run.stderr
    saved = Path(run.stdout.strip())
    assert saved == tmp_path / "mini.dmp"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    record = last_record(sandbox, "plain", "dump")
    assert record["complete"] and record["bytes"] == 2097152 // 8
    assert sha256(saved) == record["sha256"]
    assert not leftovers(tmp_path)


def test_dump_with_heap_on_probed_pod_needs_yes_without_a_terminal(cli, sandbox, tmp_path):
    before = len(records(sandbox, "probed", "dump"))
    run = cli("dump", "probed")
    assert run.returncode == 2
    assert "livenessProbe" in run.stderr and "#673" in run.stderr and "--yes" in run.stderr
    assert len(records(sandbox, "probed", "dump")) == before
    assert not list(tmp_path.iterdir())
    # Mini does not freeze long enough to matter: no question asked.
    assert cli("dump", "probed", "--type", "Mini").returncode == 0
    run = cli("dump", "probed", "--type", "full", "--yes")
    assert run.returncode == 0, run.stderr
    record = last_record(sandbox, "probed", "dump")
    assert record["bytes"] == 2 * 2097152 and sha256(run.stdout.strip()) == record["sha256"]


def test_dump_bad_type_is_a_usage_error_before_any_injection(cli, sandbox):
    run = cli("dump", "plain", "--type", "huge")
    assert run.returncode == 2
    assert "Mini, Triage, WithHeap, Full" in run.stderr
    assert "injecting" not in run.stderr


# ------------------------------------------------------------------------------------------------
# trace


def test_trace_profile_pascal_case_and_complete_file(cli, sandbox, tmp_path):
    run = cli("trace", "plain", "--profile", "cpu,HTTP,gccollect", "--duration", "5s", "-o", str(tmp_path))
    assert run.returncode == 0, run.stderr
    saved = Path(run.stdout.strip())
    assert saved.suffix == ".nettrace"
    record = last_record(sandbox, "plain", "trace")
    assert record["complete"] and sha256(saved) == record["sha256"]
    assert record["query"]["profile"] == "Cpu,Http,GcCollect"  # PascalCase on the wire
    assert record["query"]["durationseconds"] == "5"
    assert saved.read_bytes().endswith(b"\x01")


def test_trace_bad_profile_is_a_usage_error(cli):
    run = cli("trace", "plain", "--profile", "cpu,disk")
    assert run.returncode == 2 and "Cpu, Http, Metrics, GcCollect, Logs" in run.stderr


def test_trace_ctrl_c_stops_gracefully_and_keeps_a_complete_file(cli, sandbox, tmp_path):
    proc = cli.start("trace", "plain", "--duration", "10m", "-o", "long.nettrace")
    op = wait_for_operation(cli, "plain", "/trace")
    interrupt(proc)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping" in err and "stopped early" in err
    saved = tmp_path / "long.nettrace"
    record = last_record(sandbox, "plain", "trace")
    assert record["operation_id"] == op["operationId"]
    assert record["complete"] and sha256(saved) == record["sha256"]
    assert saved.read_bytes().endswith(b"\x01")
    status = json.loads(cli("operations", "get", "plain", op["operationId"], "-o", "json").stdout)
    assert status["status"] == "Succeeded"


def test_trace_second_ctrl_c_aborts_without_a_file(cli, sandbox, tmp_path):
    # The stream stalls: the graceful stop cannot finish, the second Ctrl-C must abort.
    sandbox.control.add_fault({"artifact": "trace", "kind": "stall", "after": 4096, "times": 1})
    proc = cli.start("trace", "plain", "--duration", "10m", "-o", "aborted.nettrace")
    wait_for_operation(cli, "plain", "/trace")
    interrupt(proc, times=2, gap=1.0)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert not (tmp_path / "aborted.nettrace").exists()
    assert not leftovers(tmp_path)


def test_trace_providers_file_is_posted(cli, sandbox, tmp_path):
    (tmp_path / "providers.yaml").write_text(
        "providers:\n  - name: Microsoft-Windows-DotNETRuntime\n    eventLevel: Informational\n"
        "    keywords: '0x1'\nrequestRundown: false\n")
    run = cli("trace", "plain", "--providers", "providers.yaml", "--duration", "2s", "-o", "p.nettrace")
    assert run.returncode == 0, run.stderr
    assert sha256(tmp_path / "p.nettrace") == last_record(sandbox, "plain", "trace")["sha256"]


def test_trace_providers_rejected_by_monitor_10_empty_400(cli, tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"providers": [{"name": "X", "eventLevel": "Loud"}]}))
    run = cli("trace", "plain", "--providers", "bad.json", "-o", "bad.nettrace")
    assert run.returncode == 8
    assert "malformed (400 without details)" in run.stderr
    assert not (tmp_path / "bad.nettrace").exists() and not leftovers(tmp_path)


def test_trace_providers_file_checked_before_collecting(cli, tmp_path):
    (tmp_path / "empty.yaml").write_text("providers: []\n")
    run = cli("trace", "plain", "--providers", "empty.yaml")
    assert run.returncode == 2 and "non-empty 'providers'" in run.stderr


# ------------------------------------------------------------------------------------------------
# logs, livemetrics, metrics


def test_logs_readable_lines_with_level_any_case(cli, sandbox):
    run = cli("logs", "plain", "--level", "WARNING", "--duration", "30s")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines and all(line.startswith(("warn:", "fail:", "crit:", "      ")) for line in lines), lines
    assert last_record(sandbox, "plain", "logs")["content_type"] == "text/plain"


def test_logs_json_is_ndjson(cli):
    run = cli("logs", "plain", "-o", "json", "--duration", "20s")
    assert run.returncode == 0, run.stderr
    docs = [json.loads(line) for line in run.stdout.splitlines()]
    assert docs and all({"LogLevel", "Category", "Message"} <= set(d) for d in docs)


def test_logs_follow_ctrl_c_flushes_and_exits_130(cli, sandbox):
    proc = cli.start("logs", "plain", "-f")
    op = wait_for_operation(cli, "plain", "/logs")
    time.sleep(0.5)
    interrupt(proc)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "info:" in out or "warn:" in out
    assert "stopped at your request" in err
    record = last_record(sandbox, "plain", "logs")
    assert record["operation_id"] == op["operationId"] and record["complete"]


def test_livemetrics_readable_and_json(cli):
    run = cli("livemetrics", "plain", "--duration", "12s")
    assert run.returncode == 0, run.stderr
    assert "CPU Usage (%)" in run.stdout and "System.Runtime" in run.stdout
    run = cli("livemetrics", "plain", "--duration", "12s", "-o", "json")
    docs = [json.loads(line) for line in run.stdout.splitlines()]
    assert docs and all("\x1e" not in line for line in run.stdout.splitlines())
    assert {"provider", "name", "value"} <= set(docs[0])


def test_metrics_prometheus_snapshot(cli):
    run = cli("metrics", "plain")
    assert run.returncode == 0, run.stderr
    assert "# TYPE systemruntime_cpu_usage gauge" in run.stdout


# ------------------------------------------------------------------------------------------------
# in-process features


@pytest.mark.parametrize("args, feature", [
    (("stacks",), "call stacks"),
    (("exceptions",), "exceptions"),
    (("parameters", "--method", "Web.dll!Web.Orders.Place"), "parameter capturing"),
])
def test_in_process_features_off_say_how_to_enable(cli, args, feature):
    run = cli(args[0], "plain", *args[1:])
    assert run.returncode == 8, run.stderr
    assert f"{feature} feature turned off" in run.stderr
    assert "--enable-in-process-features" in run.stderr and "Listen mode" in run.stderr


def test_enabling_features_on_a_running_monitor_is_refused_clearly(cli):
    assert cli("info", "plain").returncode == 0  # a monitor without features runs
    run = cli("stacks", "plain", "--enable-in-process-features")
    assert run.returncode == 7 and "without the requested configuration" in run.stderr


@pytest.mark.parametrize("fmt, first", [("text", b"Thread: "), ("json", b"["), ("speedscope", b"{")])
def test_stacks_to_file_in_each_format(cli, sandbox, full, tmp_path, fmt, first):
    run = cli("stacks", full, "--format", fmt, "-o", f"s.{fmt}")
    assert run.returncode == 0, run.stderr
    body = (tmp_path / f"s.{fmt}").read_bytes()
    assert body.startswith(first)
    assert sha256(tmp_path / f"s.{fmt}") == last_record(sandbox, full, "stacks")["sha256"]


def test_stacks_to_stdout(cli, full):
    run = cli("stacks", full)
    assert run.returncode == 0 and "Thread: (0x" in run.stdout


def test_exceptions_text_and_json(cli, full):
    run = cli("exceptions", full)
    assert run.returncode == 0, run.stderr
    assert "First chance exception. System.InvalidOperationException" in run.stdout
    run = cli("exceptions", full, "-o", "json")
    assert next(json.loads(line)["typeName"] for line in run.stdout.splitlines()) == "System.InvalidOperationException"


def test_parameters_posts_methods(cli, sandbox, full):
    run = cli("parameters", full, "--method", "Web.dll!Web.Orders.OrderService.Place", "--duration", "30s",
              "-o", "json")
    assert run.returncode == 0, run.stderr
    docs = [json.loads(line) for line in run.stdout.splitlines()]
    assert docs and docs[0]["typeName"] == "Web.Orders.OrderService" and docs[0]["methodName"] == "Place"


def test_parameters_limit_ends_the_capture(cli, sandbox, full):
    run = cli("parameters", full, "--method", "Web.dll!Web.Orders.OrderService.Place", "--limit", "2", "-f",
              "-o", "json")
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 2


def test_parameters_bad_method_is_a_usage_error(cli):
    run = cli("parameters", "plain", "--method", "Place")
    assert run.returncode == 2 and "MODULE!NAMESPACE.TYPE.METHOD" in run.stderr


# ------------------------------------------------------------------------------------------------
# egress


@pytest.mark.parametrize("args, artifact, suffix", [
    (("dump", "--type", "triage"), "dump", ""),
    (("stacks", "--format", "json"), "stacks", ".json"),
    (("trace", "--duration", "3s"), "trace", ".nettrace"),
    (("logs", "--duration", "3s"), "logs", ".txt"),
])
def test_egress_prints_where_the_artifact_went(cli, sandbox, full, args, artifact, suffix):
    run = cli(args[0], full, *args[1:], "--egress", "store")
    assert run.returncode == 0, run.stderr
    location = run.stdout.strip()
    assert location.startswith("/diag/egress/") and location.endswith(suffix)
    record = last_record(sandbox, full, artifact)
    assert record["egress"] == "store" and record["resource_location"] == location and record["complete"]


def test_egress_unknown_provider(cli, full):
    run = cli("dump", full, "--type", "mini", "--egress", "nowhere")
    assert run.returncode == 8 and "Egress provider 'nowhere' does not exist" in run.stderr


def test_egress_failure_is_a_clear_error(cli, sandbox, full):
    sandbox.control.add_fault({"artifact": "trace", "kind": "egress_fail", "message": "bucket is full",
                               "times": 1})
    run = cli("trace", full, "--duration", "2s", "--egress", "store")
    assert run.returncode == 8
    assert "egress of the trace to 'store' failed" in run.stderr and "bucket is full" in run.stderr
    assert run.stdout == ""


def test_egress_and_output_exclude_each_other(cli, full):
    run = cli("trace", full, "--egress", "store", "-o", "x.nettrace")
    assert run.returncode == 2 and "exclude each other" in run.stderr


# ------------------------------------------------------------------------------------------------
# 429


def test_busy_429_then_wait(cli, sandbox, tmp_path):
    sandbox.control.add_fault({"artifact": "gcdump", "kind": "slow_first_byte", "delay": 3, "times": 1})
    first = cli.start("gcdump", "plain", "-o", "first.gcdump")
    time.sleep(1.0)  # the first one holds the only gcdump slot (its first byte is 3 s away)
    run = cli("gcdump", "plain", "-o", "second.gcdump")
    assert run.returncode == 9, run.stderr
    assert "another gcdump collection is running" in run.stderr and "--wait" in run.stderr
    waited = cli("gcdump", "plain", "-o", "third.gcdump", "--wait")
    assert waited.returncode == 0, waited.stderr
    assert "waiting for it to finish (--wait)" in waited.stderr
    first.communicate(timeout=30)
    assert first.returncode == 0
    assert not (tmp_path / "second.gcdump").exists()


# ------------------------------------------------------------------------------------------------
# processes, info, env, collectionrules, operations


def test_processes_table_and_json(cli):
    run = cli("processes", "plain")
    assert run.returncode == 0, run.stderr
    header, row = run.stdout.splitlines()
    assert header.split() == ["PID", "UID", "NAME", "DEFAULT", "COMMAND"]
    assert row.split()[2:] == ["Web", "yes", "dotnet", "Web.dll"]
    [proc] = json.loads(cli("processes", "plain", "-o", "json").stdout)
    assert proc["commandLine"] == "dotnet Web.dll" and proc["isDefault"] is True
    assert yaml.safe_load(cli("processes", "plain", "-o", "yaml").stdout)[0]["name"] == "Web"


def test_info_text_and_json(cli):
    run = cli("info", "plain")
    assert run.returncode == 0, run.stderr
    assert "Version:          10.0.4" in run.stdout and "Listen" in run.stdout
    assert "call_stacks    off" in run.stdout
    doc = json.loads(cli("info", "plain", "-o", "json").stdout)
    assert doc["diagnosticPortMode"] == "Listen"


def test_env_refuses_without_show_secrets(cli):
    run = cli("env", "plain")
    assert run.returncode == 2
    assert "secrets" in run.stderr and "--show-secrets" in run.stderr and run.stdout == ""
    run = cli("env", "plain", "--show-secrets")
    assert run.returncode == 0 and "ConnectionStrings__Db=Server=db;Password=hunter2" in run.stdout.splitlines()


def test_collectionrules_list_without_rules(cli):
    run = cli("collectionrules", "list", "plain")
    assert run.returncode == 0, run.stderr
    assert "no collection rules" in run.stderr
    assert json.loads(cli("collectionrules", "list", "plain", "-o", "json").stdout) == {}
    run = cli("collectionrules", "get", "plain", "Nope")
    assert run.returncode == 8 and "could not be found" in run.stderr


def test_operations_never_inject(cli, sandbox):
    run = cli("operations", "list", "nosuchpod")
    assert run.returncode == 4
    pod = next(p for p in sandbox.control.pods("default") if p["metadata"]["name"] == "full")
    if not (pod.get("status") or {}).get("ephemeralContainerStatuses"):
        run = cli("operations", "list", "full")
        assert run.returncode != 0 and "injecting" not in run.stderr


def test_operations_list_get_stop_cancel(cli, sandbox):
    proc = cli.start("logs", "plain", "-f")
    op = wait_for_operation(cli, "plain", "/logs")
    table = cli("operations", "list", "plain").stdout
    assert op["operationId"] in table and "Running" in table
    text = cli("operations", "get", "plain", op["operationId"]).stdout
    assert "Status:      Running" in text and "Stoppable:   yes" in text
    run = cli("operations", "stop", "plain", op["operationId"])
    assert run.returncode == 0, run.stderr
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err  # stopped by someone else: a normal end
    assert last_record(sandbox, "plain", "logs")["complete"]

    proc = cli.start("livemetrics", "plain", "-f")
    op = wait_for_operation(cli, "plain", "/livemetrics")
    assert cli("operations", "cancel", "plain", op["operationId"]).returncode == 0
    proc.communicate(timeout=30)
    status = json.loads(cli("operations", "get", "plain", op["operationId"], "-o", "json").stdout)
    assert status["status"] == "Cancelled"
    run = cli("operations", "stop", "plain", op["operationId"])
    assert run.returncode == 8 and "Operation is not running" in run.stderr


def test_operations_unknown_id(cli):
    cli("info", "plain")
    run = cli("operations", "get", "plain", "00000000-0000-0000-0000-000000000001")
    assert run.returncode == 4 and "no such operation" in run.stderr
