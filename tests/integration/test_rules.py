"""Issue 11, end to end on the sandbox: collection rules and egress, as a user types them.

A rules file from `rules example` goes into a prepared pod with `inject --rules`; the pod read back
with real kubectl carries the rules in the monitor's env; `collectionrules list` shows the rule
Running; the sandbox fires its trigger (``SandboxControl.fire_rule``, the "scenario switch"); then
`operations` shows the egress operation Succeeded with where the artifact went, and
`collectionrules` the trigger count. The refusals come before anything is sent: a literal secret
(before any API call at all), a missing Secret (before injecting), an unprepared pod (Listen mode
is impossible there; the message names `prepare`). Many pods: `inject deploy/web --all --rules`.

Each module gets private `basic` sandboxes: monitors injected here stay in their pods for good.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import (
    assert_user_error,
    pod_json,
    pods_by_label,
    run_plugin,
    wait_for,
)

S3_RULES = """\
CollectionRules:
  ServerErrors:
    Trigger:
      Type: AspNetResponseStatus
      Settings:
        StatusCodes: ["500-599"]
        ResponseCount: 10
        SlidingWindowDuration: "00:01:00"
    Actions:
      - Type: CollectDump
        Settings:
          Type: WithHeap
          Egress: s3
    Limits:
      ActionCount: 1
Egress:
  S3Storage:
    s3:
      Endpoint: https://s3.eu-west-1.amazonaws.com
      BucketName: my-dumps
      RegionName: eu-west-1
      AccessKeyId: AKIAEXAMPLE
      SecretAccessKey:
        secretKeyRef: {name: s3-creds, key: secretAccessKey}
"""


@pytest.fixture(scope="module")
def sb(sandbox_factory):
    return sandbox_factory("basic", fresh=True)


@pytest.fixture(scope="module")
def web(sb) -> list[str]:
    names = pods_by_label(sb, "default", app="web")
    assert len(names) == 2, names
    return names


@pytest.fixture(scope="module")
def high_cpu(sb, tmp_path_factory) -> Path:
    """The `high-cpu` template, saved to a file the way the README says."""
    run = run_plugin(sb, "rules", "example", "high-cpu")
    assert run.rc == 0, str(run)
    path = tmp_path_factory.mktemp("rules") / "high-cpu.yaml"
    path.write_text(run.stdout)
    return path


def monitor_container(sb, namespace: str, pod: str) -> dict | None:
    containers = pod_json(sb, namespace, pod)["spec"].get("ephemeralContainers") or []
    return next((c for c in containers if c["name"].startswith("dotnet-monitor")), None)


def env_entries(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env") or []}


def operations(sb, pod: str) -> list[dict]:
    run = run_plugin(sb, "operations", "list", pod, "-o", "json")
    assert run.rc == 0, str(run)
    return json.loads(run.stdout)


def rule_states(sb, pod: str) -> dict[str, dict]:
    run = run_plugin(sb, "collectionrules", "list", pod, "-o", "json")
    assert run.rc == 0, str(run)
    return json.loads(run.stdout)


# ----------------------------------------------------------------------------------------------------


def test_rules_from_a_template_collect_and_egress_when_the_trigger_fires(sb, web, high_cpu):
    pod = web[0]
    assert run_plugin(sb, "rules", "validate", str(high_cpu)).rc == 0

    run = run_plugin(sb, "inject", pod, "--rules", str(high_cpu))
    assert run.rc == 0, str(run)
    assert run.stdout.strip() == "dotnet-monitor", str(run)
    assert "listen mode" in run.stderr, str(run)

    # What the API server stored: the rules as the monitor's env, in Listen mode.
    env = env_entries(monitor_container(sb, "default", pod))
    values = {name: entry.get("value") for name, entry in env.items()}
    assert values["DotnetMonitor_CollectionRules__HighCpu__Trigger__Type"] == "CPUUsage"
    assert values["DotnetMonitor_CollectionRules__HighCpu__Actions__0__Type"] == "CollectTrace"
    assert values["DotnetMonitor_CollectionRules__HighCpu__Actions__0__Settings__Egress"] == "artifacts"
    assert values["DotnetMonitor_CollectionRules__HighCpu__Limits__ActionCount"] == "2"
    assert values["DotnetMonitor_Egress__FileSystem__artifacts__DirectoryPath"] == "/diag/artifacts"
    assert values["DotnetMonitor_DiagnosticPort__ConnectionMode"] == "Listen"

    # The monitor reports the rule, Running, not triggered yet.
    run = run_plugin(sb, "collectionrules", "list", pod)
    assert run.rc == 0, str(run)
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["RULE", "STATE", "TRIGGERED", "REASON"], str(run)
    assert lines[1].startswith("HighCpu") and "Running" in lines[1], str(run)
    assert "0 (0 of 2 per 01:00:00)" in lines[1], str(run)

    # CPU stays high: the trigger fires; the trace goes to the FileSystem egress.
    fired = sb.control.fire_rule("default", pod, "HighCpu")
    assert len(fired) == 1, fired
    op_id = fired[0]
    op = wait_for(lambda: next((o for o in operations(sb, pod)
                                if o["operationId"] == op_id and o["status"] == "Succeeded"), None))
    assert op["egressProviderName"] == "artifacts"

    run = run_plugin(sb, "operations", "list", pod)
    assert run.rc == 0, str(run)
    row = next(line for line in run.stdout.splitlines() if line.startswith(op_id))
    assert row.split()[1:2] == ["Succeeded"] and " artifacts " in row, str(run)

    run = run_plugin(sb, "operations", "get", pod, op_id)
    assert run.rc == 0, str(run)
    location = next(line.split(":", 1)[1].strip() for line in run.stdout.splitlines() if line.startswith("Location:"))
    assert location.startswith("/diag/artifacts/") and location.endswith(".nettrace"), str(run)
    record = next(r for r in sb.control.artifacts() if r.get("operation_id") == op_id)
    assert record["rule"] == "HighCpu" and record["egress"] == "artifacts" and record["complete"]
    assert record["resource_location"] == location
    # The list shows where each rule's artifact went, too.
    listed = run_plugin(sb, "operations", "list", pod)
    row = next(line for line in listed.stdout.splitlines() if line.startswith(op_id))
    assert row.split()[-1] == location, str(listed)

    run = run_plugin(sb, "collectionrules", "list", pod)
    assert "1 (1 of 2 per 01:00:00)" in run.stdout, str(run)
    state = rule_states(sb, pod)["HighCpu"]
    assert state["lifetimeOccurrences"] == 1 and state["state"] in ("Running", "ActionExecuting")

    # The limit (2 per hour) holds: a second trace, then the rule is throttled.
    assert len(sb.control.fire_rule("default", pod, "HighCpu")) == 1
    wait_for(lambda: all(o["status"] == "Succeeded" for o in operations(sb, pod)))
    assert sb.control.fire_rule("default", pod, "HighCpu") == []
    run = run_plugin(sb, "collectionrules", "list", pod)
    assert "Throttled" in run.stdout and "2 (2 of 2 per 01:00:00)" in run.stdout, str(run)


def test_literal_secret_refused_before_any_api_call(sb, tmp_path):
    rules = tmp_path / "literal.yaml"
    rules.write_text(S3_RULES.replace("\n        secretKeyRef: {name: s3-creds, key: secretAccessKey}", "")
                     .replace("SecretAccessKey:", "SecretAccessKey: wJalrXUtnFEMIEXAMPLEKEY"))
    # A kubeconfig whose server does not answer: any API call would fail with exit 6, not 2.
    config = yaml.safe_load(Path(sb.kubeconfig).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:9"
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    for target in (["web-anything"], ["deploy/web", "--all"]):
        run = run_plugin(sb, "inject", *target, "--rules", str(rules), "--kubeconfig", str(dead))
        assert_user_error(run, 2, "literal secret is refused", "secretKeyRef", "kubectl create secret",
                          "literal.yaml:")
        assert "wJalrXUtnFEMIEXAMPLEKEY" not in run.stderr


def test_missing_secret_refused_before_injecting_then_s3_egress_with_the_secret(sb, web, tmp_path):
    pod = web[1]
    rules = tmp_path / "s3.yaml"
    rules.write_text(S3_RULES)
    run = run_plugin(sb, "inject", pod, "--rules", str(rules))
    assert_user_error(run, 7, "Secret default/s3-creds", "does not exist", "kubectl create secret generic s3-creds")
    assert monitor_container(sb, "default", pod) is None  # nothing was injected

    # `kubectl create secret generic` sends protobuf, which the sandbox's API server does not read;
    # the same Secret as a manifest (JSON body; --validate=false: the sandbox serves no OpenAPI).
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds", "namespace": "default"},
              "stringData": {"secretAccessKey": "wJalrXUtnFEMIEXAMPLEKEY"}}
    created = sb.kubectl("create", "--validate=false", "-f", "-", input=json.dumps(secret))
    assert created.returncode == 0, created.stderr
    run = run_plugin(sb, "inject", pod, "--rules", str(rules))
    assert run.rc == 0, str(run)

    # The secret is a reference in the pod spec, never a value.
    container = monitor_container(sb, "default", pod)
    assert "wJalrXUtnFEMIEXAMPLEKEY" not in json.dumps(container)
    entry = env_entries(container)["DotnetMonitor_Egress__S3Storage__s3__SecretAccessKey"]
    assert entry.get("value") is None
    assert entry["valueFrom"]["secretKeyRef"] == {"name": "s3-creds", "key": "secretAccessKey"}

    assert rule_states(sb, pod)["ServerErrors"]["state"] == "Running"
    (op_id,) = sb.control.fire_rule("default", pod, "ServerErrors")
    wait_for(lambda: any(o["operationId"] == op_id and o["status"] == "Succeeded" for o in operations(sb, pod)))
    run = run_plugin(sb, "operations", "get", pod, op_id)
    assert "Egress:      s3" in run.stdout and "Location:    https://" in run.stdout, str(run)
    assert "my-dumps" in run.stdout, str(run)
    # ActionCount 1 without a window: the rule is done after one dump.
    assert rule_states(sb, pod)["ServerErrors"]["state"] == "Finished"
    run = run_plugin(sb, "collectionrules", "list", pod)
    assert "Finished" in run.stdout and "1 (1 of 1 in total)" in run.stdout, str(run)


def test_unprepared_pod_is_refused_with_prepare_named(sb, high_cpu):
    for extra in ([], ["--dry-run"]):
        run = run_plugin(sb, "inject", "unprepared", "--rules", str(high_cpu), *extra)
        assert_user_error(run, 7, "Listen mode", "DOTNET_DiagnosticPorts is not set", "prepare", "run no rules")
        assert "kubectl dotnet-monitor prepare" in run.stderr, str(run)
    # Every command that injects refuses the same way, before sending anything.
    run = run_plugin(sb, "gcdump", "unprepared", "--rules", str(high_cpu), "-o", "-")
    assert_user_error(run, 7, "Listen mode", "prepare", "run no rules")
    assert monitor_container(sb, "default", "unprepared") is None
    # Without rules the same pod is fine (Connect mode through its process namespace) — only rules need Listen.
    run = run_plugin(sb, "inject", "unprepared", "--dry-run")
    assert run.rc == 0, str(run)


def test_the_same_rules_into_every_pod_of_a_deployment(sandbox_factory, tmp_path):
    fleet = sandbox_factory("basic", fresh=True)
    pods = pods_by_label(fleet, "default", app="web")
    rules = tmp_path / "memory-leak.yaml"
    run = run_plugin(fleet, "rules", "example", "memory-leak")
    assert run.rc == 0, str(run)
    rules.write_text(run.stdout)

    run = run_plugin(fleet, "inject", "deploy/web", "--all", "--rules", str(rules), "--parallel", "2")
    assert run.rc == 0, str(run)
    assert sorted(run.stdout.splitlines()) == [f"pod/{p} dotnet-monitor" for p in pods], str(run)
    assert "injection of 2 pods of deploy/web" in run.stderr, str(run)
    assert "POD" in run.stderr and "RESULT" in run.stderr and "2 pods: 2 succeeded" in run.stderr, str(run)

    envs = []
    for pod in pods:
        env = {e["name"]: e.get("value") for e in monitor_container(fleet, "default", pod)["env"]
               if e["name"].startswith(("DotnetMonitor_CollectionRules__", "DotnetMonitor_Egress__"))}
        assert env, pod
        envs.append(env)
        (name,) = rule_states(fleet, pod)
        assert rule_states(fleet, pod)[name]["state"] == "Running"
    assert envs[0] == envs[1]  # the same rules everywhere

    # Again: every monitor is reused (same rules), nothing new is sent.
    run = run_plugin(fleet, "inject", "-l", "app=web", "--rules", str(rules))
    assert run.rc == 0, str(run)
    assert run.stderr.count("already running") == 2, str(run)

    # Other rules cannot go into monitors that already run: each pod says so, exit 7 for all.
    other = tmp_path / "high-cpu.yaml"
    other.write_text(run_plugin(fleet, "rules", "example", "high-cpu").stdout)
    run = run_plugin(fleet, "inject", "deploy/web", "--all", "--rules", str(other))
    assert run.rc == 7, str(run)
    assert run.stderr.count("without the requested configuration") >= 2, str(run)
    assert "2 pods: 0 succeeded, 2 failed" in run.stderr, str(run)
