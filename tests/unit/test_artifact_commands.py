"""Issue 5: the pure pieces of the artifact commands — PascalCase on the wire, query building,
bodies, feature-off explanations, and line rendering."""

from __future__ import annotations

import json

import pytest

from kubectl_dotnet_monitor.artifacts import render
from kubectl_dotnet_monitor.artifacts.requests import (
    DUMP_TYPES,
    dump_spec,
    duration_seconds,
    livemetrics_spec,
    liveness_risk,
    logs_spec,
    parameters_spec,
    parse_method,
    pascal_enum,
    pascal_flags,
    stacks_spec,
    trace_spec,
)
from kubectl_dotnet_monitor.artifacts.timed_progress import session_phase
from kubectl_dotnet_monitor.collect import feature_error
from kubectl_dotnet_monitor.errors import UsageError
from kubectl_dotnet_monitor.monitor.client import MonitorHttpError, monitor_error
from kubectl_dotnet_monitor.monitor.http import Headers


@pytest.mark.parametrize("typed, wire", [("withheap", "WithHeap"), ("FULL", "Full"), (" mini ", "Mini"),
                                         ("Triage", "Triage")])
def test_dump_type_pascal_case(typed, wire):
    assert pascal_enum(typed, DUMP_TYPES, "dump type") == wire
    assert dump_spec(typed).query == {"type": wire}


def test_unknown_enum_lists_choices():
    with pytest.raises(UsageError, match="Mini, Triage, WithHeap, Full"):
        pascal_enum("huge", DUMP_TYPES, "dump type")


def test_profile_flags_pascal_case_deduplicated():
    assert pascal_flags("cpu, HTTP,gccollect,cpu", ("Cpu", "Http", "Metrics", "GcCollect", "Logs"), "profile") \
        == "Cpu,Http,GcCollect"
    with pytest.raises(UsageError):
        pascal_flags(" , ", ("Cpu",), "profile")


@pytest.mark.parametrize("seconds, follow, wire", [(30.0, False, 30), (0.2, False, 1), (90.5, False, 91),
                                                   (None, False, 30), (5.0, True, -1)])
def test_duration_seconds(seconds, follow, wire):
    assert duration_seconds(seconds, follow=follow) == wire


def test_zero_duration_is_refused():
    with pytest.raises(UsageError, match="--follow"):
        duration_seconds(0.0)


def test_trace_query_and_progress_duration():
    spec = trace_spec("cpu,metrics", 60.0)
    assert spec.method == "GET" and spec.query == {"durationSeconds": 60, "profile": "Cpu,Metrics"}
    assert spec.stoppable and spec.duration == 60.0
    assert "profile" not in trace_spec(None, None).query  # the monitor's default profile


def test_trace_providers_file_becomes_post_body(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("providers:\n  - name: Microsoft-DotNETCore-SampleProfiler\nrequestRundown: false\n")
    spec = trace_spec(None, 10.0, str(f))
    assert spec.method == "POST" and "profile" not in spec.query
    assert json.loads(spec.body) == {"providers": [{"name": "Microsoft-DotNETCore-SampleProfiler"}],
                                     "requestRundown": False}
    with pytest.raises(UsageError, match="exclude"):
        trace_spec("cpu", 10.0, str(f))


@pytest.mark.parametrize("text", ["[1, 2]", "providers: []", "providers: [{keywords: '0x1'}]"])
def test_bad_providers_files(tmp_path, text):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(UsageError):
        trace_spec(None, 10.0, str(f))


def test_logs_always_has_an_explicit_accept():
    # dotnet-monitor answers /logs without an acceptable Accept with 406 (reference §1.4).
    assert logs_spec(None, 30.0, False, False).accept == "text/plain"
    assert logs_spec(None, 30.0, False, True).accept == "application/x-ndjson"
    spec = logs_spec("warn", None, True, False)
    assert spec.query == {"durationSeconds": -1, "level": "Warning"} and spec.stoppable
    assert logs_spec("CRITICAL", 5.0, False, False).query["level"] == "Critical"


def test_livemetrics_and_stacks_accept():
    assert livemetrics_spec(10.0).accept == "application/json-seq"
    assert stacks_spec("speedscope").accept == "application/speedscope+json"
    assert stacks_spec("json").feature == "call stacks"


def test_parameters_body():
    spec = parameters_spec(("App.dll!App.Orders.Service.Place",), 20.0, False, True, capture_limit=5)
    assert spec.method == "POST" and spec.accept == "application/x-ndjson"
    assert json.loads(spec.body) == {"methods": [{"moduleName": "App.dll", "typeName": "App.Orders.Service",
                                                  "methodName": "Place"}], "captureLimit": 5}
    with pytest.raises(UsageError):
        parse_method("App.dll!Place")
    with pytest.raises(UsageError):
        parameters_spec((), 20.0, False, False)


def test_liveness_risk():
    pod = {"spec": {"containers": [{"name": "app", "livenessProbe": {"httpGet": {"port": 8080}}},
                                   {"name": "side"}]}}
    assert liveness_risk(pod, "app") == "app"
    assert liveness_risk(pod, "side") is None
    assert liveness_risk({"spec": {"containers": [{"name": "app"}]}}, None) is None


def test_feature_error_explains_in_process_features():
    off = MonitorHttpError("x", 400, "The 'Exceptions' feature is not enabled.")
    err = feature_error(stacks_spec("text"), off)
    assert "call stacks feature turned off" in err.message and "--enable-in-process-features" in err.hint
    assert "404" in feature_error(stacks_spec("text"), MonitorHttpError("y", 404)).message
    other = MonitorHttpError("z", 400, "Unable to discover a target process.")
    assert feature_error(stacks_spec("text"), other) is other
    assert feature_error(dump_spec("mini"), off) is off


def test_406_reads_well():
    err = monitor_error(406, "Not Acceptable", Headers(), b"", method="GET", target="/logs?uid=x")
    assert "406" in err.message and err.status == 406


def test_json_seq_decoder_across_pieces():
    dec = render.JsonSeqDecoder()
    data = b'\x1e{"a":1}\n\x1e{"b":' + b'2}\n{"c":3}\n\x1e{"d"'
    assert dec.feed(data[:5]) == []
    assert dec.feed(data[5:]) == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert dec.feed(b":4}") == [] and dec.flush() == [{"d": 4}]


def test_livemetric_line():
    line = render.livemetric_line({"timestamp": "2026-11-29T01:12:10.5Z", "provider": "System.Runtime",
                                   "displayName": "CPU Usage", "unit": "%", "value": 12.5})
    assert line.startswith("01:12:10  System.Runtime") and "CPU Usage (%)" in line and line.endswith("12.5")
    assert render.livemetric_line({"name": "x", "value": 3.0}).rstrip().endswith("3")


def test_tables_and_lines():
    out = render.table(["PID", "NAME"], [[1, "Web"], [12, None]])
    assert out.splitlines() == ["PID   NAME", "1     Web", "12"]
    rows = list(render.process_rows([{"pid": 1, "uid": "u", "name": "Web", "isDefault": True,
                                      "commandLine": "dotnet Web.dll"}]))
    assert rows == [[1, "u", "Web", "yes", "dotnet Web.dll"]]
    assert render.env_lines({"B": "2", "A": "1"}) == ["A=1", "B=2"]
    lines = render.info_lines({"version": "8.0.5", "runtimeVersion": "8.0.11", "diagnosticPortMode": "Listen"})
    assert any("not reported" in line for line in lines)
    op = {"operationId": "id", "status": "Failed", "process": {"pid": 1}, "error": {"code": "E", "message": "m"}}
    assert "Error:       E m" in render.operation_lines(op)


def test_session_phase():
    assert session_phase(12.0, 30.0, 100, None) == "12.0s of 30.0s"
    assert session_phase(31.0, 30.0, 3 * 1024 * 1024, 1024 * 1024) == "rundown 2.0 MiB"
    assert session_phase(31.0, 30.0, 10, 10) == "rundown (finishing the trace)"
