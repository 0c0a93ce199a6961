"""Collection rules in the simulated dotnet-monitor: templates, defaults, the state machine, and
the control endpoint's fire_rule -> an egress operation in /operations and an artifact record."""

from __future__ import annotations

import time

import pytest

from tests.sandbox import Sandbox
from tests.sandbox.monitor import rules as rl
from tests.sandbox.monitor.config import ConfigSource
from tests.sandbox.monitor.testing import request
from tests.sandbox_tests.test_workloads import Api, wait_for

MONITOR = "mcr.microsoft.com/dotnet/monitor:9"

RULES_ENV = {
    # egress: a FileSystem provider and a blob one whose key comes from a Secret
    "DotnetMonitor_Egress__FileSystem__files__DirectoryPath": "/diag/out",
    "DotnetMonitor_Egress__AzureBlobStorage__blob__AccountUri": "https://acct.blob.core.windows.net",
    "DotnetMonitor_Egress__AzureBlobStorage__blob__ContainerName": "dumps",
    # defaults
    "DotnetMonitor_CollectionRuleDefaults__Actions__Egress": "files",
    "DotnetMonitor_CollectionRuleDefaults__Limits__ActionCount": "2",
    # templates (names are case-insensitive)
    "DotnetMonitor_Templates__CollectionRuleTriggers__HighCpu__Type": "EventCounter",
    "DotnetMonitor_Templates__CollectionRuleTriggers__HighCpu__Settings__ProviderName": "System.Runtime",
    "DotnetMonitor_Templates__CollectionRuleTriggers__HighCpu__Settings__CounterName": "cpu-usage",
    "DotnetMonitor_Templates__CollectionRuleTriggers__HighCpu__Settings__GreaterThan": "80",
    "DotnetMonitor_Templates__CollectionRuleActions__Dump__Type": "CollectDump",
    "DotnetMonitor_Templates__CollectionRuleActions__Dump__Settings__Type": "Mini",
    "DotnetMonitor_Templates__CollectionRuleFilters__WebOnly__Key": "ProcessName",
    "DotnetMonitor_Templates__CollectionRuleFilters__WebOnly__Value": "Web",
    "DotnetMonitor_Templates__CollectionRuleLimits__Burst__ActionCount": "1",
    "DotnetMonitor_Templates__CollectionRuleLimits__Burst__ActionCountSlidingWindowDuration": "00:00:01",
    # rule 1: all templates, throttled by a sliding window
    "DotnetMonitor_CollectionRules__Cpu__Trigger": "highcpu",
    "DotnetMonitor_CollectionRules__Cpu__Actions__0": "DUMP",
    "DotnetMonitor_CollectionRules__Cpu__Filters__0": "WebOnly",
    "DotnetMonitor_CollectionRules__Cpu__Limits": "Burst",
    # rule 2: inline trigger, egress from the defaults, ActionCount 2 from the defaults
    "DotnetMonitor_CollectionRules__Leak__Trigger__Type": "GCHeapSize",
    "DotnetMonitor_CollectionRules__Leak__Trigger__Settings__HeapSizeThreshold": "1000",
    "DotnetMonitor_CollectionRules__Leak__Actions__0__Type": "CollectGCDump",
    # rule 3: explicit egress to blob, RuleDuration
    "DotnetMonitor_CollectionRules__Short__Trigger__Type": "AspNetResponseStatus",
    "DotnetMonitor_CollectionRules__Short__Trigger__Settings__StatusCodes__0": "500",
    "DotnetMonitor_CollectionRules__Short__Actions__0__Type": "CollectTrace",
    "DotnetMonitor_CollectionRules__Short__Actions__0__Settings__Egress": "blob",
    "DotnetMonitor_CollectionRules__Short__Limits__RuleDuration": "00:00:02",
    # rule 4: a template that does not exist
    "DotnetMonitor_CollectionRules__Broken__Trigger": "NoSuchTrigger",
    "DotnetMonitor_CollectionRules__Broken__Actions__0": "Dump",
}


@pytest.fixture(scope="module")
def sb(tmp_path_factory):
    sandbox = Sandbox("workloads", tmp_path_factory.mktemp("sandbox-rules")).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def port(sb):
    api = Api(sb)
    env = [{"name": k, "value": v} for k, v in RULES_ENV.items()]
    env += [
        {"name": "DotnetMonitor_Egress__AzureBlobStorage__blob__AccountKey",
         "valueFrom": {"secretKeyRef": {"name": "egress-keys", "key": "accountKey"}}},
        {"name": "DotnetMonitor_DiagnosticPort__ConnectionMode", "value": "Listen"},
        {"name": "DotnetMonitor_DiagnosticPort__EndpointName", "value": "/diag/dotnet-monitor.sock"},
        {"name": "DotnetMonitor_Storage__DefaultSharedPath", "value": "/diag"},
    ]
    container = {"name": "rules-monitor", "image": MONITOR, "terminationMessagePolicy": "File",
                 "args": ["collect", "--urls", "http://+:52323", "--no-auth"],
                 "env": env, "volumeMounts": [{"name": "diagvol", "mountPath": "/diag"}]}
    code, body, _ = api.call("PATCH", "/api/v1/namespaces/default/pods/envpod/ephemeralcontainers",
                             {"spec": {"ephemeralContainers": [container]}},
                             "application/strategic-merge-patch+json")
    assert code == 200, body
    handle = wait_for(lambda: (sb.kubelet.monitors("default", "envpod") or [None])[0],
                      what="the monitor to start")
    return handle.ports[52323]


def get(port: int, path: str):
    r = request(port, "GET", path)
    assert r.status == 200, (path, r.status, r.body)
    return r.json()


def test_states_with_templates_defaults_and_a_broken_rule(sb, port):
    states = get(port, "/collectionrules")
    assert set(states) == {"Cpu", "Leak", "Short", "Broken"}
    assert states["Cpu"] == {"state": "Running", "stateReason": rl.RUNNING}
    assert states["Broken"]["state"] == "Finished"
    assert "NoSuchTrigger" in states["Broken"]["stateReason"]
    cpu = get(port, "/collectionrules/cpu")
    assert cpu["actionCountLimit"] == 1 and cpu["actionCountSlidingWindowDurationLimit"] == "00:00:01"
    assert cpu["lifetimeOccurrences"] == 0 and cpu["slidingWindowDurationCountdown"] is None
    leak = get(port, "/collectionrules/Leak")
    assert leak["actionCountLimit"] == 2 and leak["actionCountSlidingWindowDurationLimit"] is None
    short = get(port, "/collectionrules/Short")
    assert short["ruleFinishedCountdown"] is not None and short["ruleFinishedCountdown"] <= "00:00:02"
    assert request(port, "GET", "/collectionrules/Nope").status == 400


def test_fire_rule_egresses_and_counts_to_finished(sb, port):
    control = sb.handle().control
    control.clear_artifacts()
    [op] = control.fire_rule("default", "envpod", "Leak")
    rec = wait_for(lambda: next((r for r in control.artifacts() if r.get("operation_id") == op), None),
                   what="the egress record")
    assert rec["egress"] == "files" and rec["artifact"] == "gcdump" and rec["rule"] == "Leak"
    assert rec["complete"] and rec["resource_location"].startswith("/diag/out/")
    ops = {o["operationId"]: o for o in get(port, "/operations")}
    assert ops[op]["egressProviderName"] == "files" and ops[op]["status"] == "Succeeded"
    detail = get(port, "/collectionrules/Leak")
    assert detail["state"] == "Running" and detail["lifetimeOccurrences"] == 1
    [op2] = control.fire_rule("default", "envpod", "leak")
    wait_for(lambda: any(r.get("operation_id") == op2 for r in control.artifacts()), what="record 2")
    detail = get(port, "/collectionrules/Leak")
    assert detail == {**detail, "state": "Finished", "stateReason": rl.FINISHED_COUNT,
                      "lifetimeOccurrences": 2, "slidingWindowOccurrences": 2}
    assert control.fire_rule("default", "envpod", "Leak") == []


def test_sliding_window_throttles_then_recovers(sb, port):
    control = sb.handle().control
    [op] = control.fire_rule("default", "envpod", "Cpu")
    wait_for(lambda: any(r.get("operation_id") == op for r in control.artifacts()), what="dump")
    rec = next(r for r in control.artifacts() if r.get("operation_id") == op)
    assert rec["artifact"] == "dump" and rec["egress"] == "files"
    assert control.fire_rule("default", "envpod", "Cpu") == []
    detail = get(port, "/collectionrules/Cpu")
    assert detail["state"] == "Throttled" and detail["stateReason"] == rl.THROTTLED
    assert detail["slidingWindowOccurrences"] == 1 and detail["slidingWindowDurationCountdown"]
    time.sleep(1.1)
    assert get(port, "/collectionrules/Cpu")["state"] == "Running"
    assert len(control.fire_rule("default", "envpod", "Cpu")) == 1
    assert get(port, "/collectionrules/Cpu")["lifetimeOccurrences"] == 2


def test_rule_duration_finishes_the_rule(sb, port):
    control = sb.handle().control
    [op] = control.fire_rule("default", "envpod", "Short")
    rec = wait_for(lambda: next((r for r in control.artifacts() if r.get("operation_id") == op), None),
                   what="the trace record")
    assert rec["resource_location"].startswith("https://acct.blob.core.windows.net/dumps/")
    wait_for(lambda: get(port, "/collectionrules/Short")["state"] == "Finished", timeout=5,
             what="RuleDuration")
    assert get(port, "/collectionrules/Short")["stateReason"] == rl.FINISHED_DURATION
    assert control.fire_rule("default", "envpod", "Short") == []


def test_fire_rule_without_a_monitor_is_a_404(sb):
    from tests.sandbox.control import ControlError

    with pytest.raises(ControlError) as err:
        sb.handle().control.fire_rule("default", "missing-key", "Leak")
    assert err.value.code == 404


def test_resolve_rule_units():
    raw = ConfigSource({k.split("_", 1)[1].replace("__", ":"): v for k, v in RULES_ENV.items()})
    cpu = rl.resolve_rule(raw, "cpu", {"files", "blob"})
    assert cpu["trigger:type"] == "EventCounter" and cpu["actions:0:settings:egress"] == "files"
    assert cpu["filters:0:key"] == "ProcessName" and cpu["limits:actioncount"] == "1"
    with pytest.raises(rl.RuleConfigError, match="Egress provider 'files' does not exist"):
        rl.resolve_rule(raw, "Leak", {"blob"})
    assert rl.parse_timespan("1.02:03:04.5") == 93784.5
    assert rl.format_timespan(93784.5) == "1.02:03:04.5000000"
    assert rl.format_timespan(30) == "00:00:30"
