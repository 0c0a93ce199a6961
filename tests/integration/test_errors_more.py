"""Issue 10's remaining error cases, run as a user runs the plugin: API 401, a monitor 500, a pod
without .NET. Each: the documented exit code, `error:` with what to do, nothing on stdout, no
traceback, no file left."""

from __future__ import annotations

import pytest

from tests.integration.conftest import assert_no_artifacts, assert_user_error, pods_by_label, run_plugin


@pytest.fixture(scope="module")
def basic(sandbox_factory):
    return sandbox_factory("basic", fresh=True)


def test_api_rejects_the_token(basic, tmp_path):
    text = basic.kubeconfig.read_text()
    bad = tmp_path / "kubeconfig"
    bad.write_text("\n".join(
        (line.split("token:")[0] + "token: not-a-valid-token") if "token:" in line else line
        for line in text.splitlines()))
    name = pods_by_label(basic, "default", app="web")[0]
    run = run_plugin(basic, "gcdump", name, "--kubeconfig", str(bad), "-o", str(tmp_path / "out.gcdump"))
    assert_user_error(run, 5, "rejected the credentials", "401", "log in again")
    assert not (tmp_path / "out.gcdump").exists()


def test_monitor_500_when_its_dump_folder_is_not_shared(basic, tmp_path):
    # A --config that moves the monitor's shared path off the volume: the runtime writes the dump
    # where the monitor cannot read it, and dotnet-monitor answers an empty 500 (reference §6.3).
    config = tmp_path / "monitor.yaml"
    config.write_text("env:\n  - {name: DotnetMonitor_Storage__DefaultSharedPath, value: /tmp/not-shared}\n")
    out = tmp_path / "out"
    out.mkdir()
    name = pods_by_label(basic, "default", app="web")[1]
    run = run_plugin(basic, "dump", name, "--type", "Mini", "--config", str(config), "-o", str(out) + "/")
    assert_user_error(run, 8, "500", "kubectl logs")
    assert_no_artifacts(out)


def test_pod_without_dotnet(basic, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    run = run_plugin(basic, "gcdump", "nodotnet", "-o", str(out) + "/")
    assert_user_error(run, 7, "no .NET process", "DOTNET_DiagnosticPorts", "doctor")
    assert_no_artifacts(out)


@pytest.mark.parametrize("args", [
    ("processes", "POD", "-o", "json"),
    ("logs", "-l", "app=web", "--duration", "3s"),
])
def test_a_reader_that_stops_early_is_not_an_error(basic, args):
    # `kubectl dotnet-monitor logs -l app=web | head -1`: the pipe closes while pods still write.
    import subprocess

    from tests.integration.conftest import plugin_command, plugin_env

    pod = pods_by_label(basic, "default", app="web")[0]
    argv = plugin_command(*[pod if a == "POD" else a for a in args])
    producer = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=plugin_env(basic))
    producer.stdout.read(1)
    producer.stdout.close()  # what `head -c 1` does
    _, err = producer.communicate(timeout=60)
    assert producer.returncode == 0, err.decode()
    assert b"error:" not in err and b"Traceback" not in err


def test_dry_run_next_to_a_running_monitor_shows_the_next_name(basic):
    import yaml

    pod = pods_by_label(basic, "default", app="web")[0]
    assert run_plugin(basic, "inject", pod).rc == 0
    run = run_plugin(basic, "inject", pod, "--dry-run")
    assert run.rc == 0, str(run)
    assert yaml.safe_load(run.stdout)["name"] == "dotnet-monitor-2"
    assert "would reuse it" in run.stderr


def test_doctor_does_not_offer_prepare_for_a_pod_without_a_controller(basic):
    run = run_plugin(basic, "doctor", "unprepared")
    assert "prepare pod/unprepared" not in run.stdout + run.stderr, str(run)
    assert "belongs to no Deployment, StatefulSet or DaemonSet" in run.stdout, str(run)
