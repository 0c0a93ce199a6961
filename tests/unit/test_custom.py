"""--config: kubectl debug --custom rules, refused before any API call, merged like kubectl."""

from __future__ import annotations

import copy
import json

import pytest

from kubectl_dotnet_monitor.errors import UsageError
from kubectl_dotnet_monitor.inject.custom import apply_custom, check_custom, load_custom_spec

from tests.reference import SAMPLE_CUSTOM as SAMPLE
SAMPLE_TEXT = """{
  "volumeMounts": [
    { "name": "diagvol", "mountPath": "/diag" },
  ],
  "env": [
    { "name": "DotnetMonitor_Urls", "value": "http://+:52323" },
    { "name": "DotnetMonitor_DiagnosticPort__ConnectionMode", "value": "Listen" },
    { "name": "DotnetMonitor_DiagnosticPort__EndpointName", "value": "/diag/dotnet-monitor.sock" },
    { "name": "DOTNETMONITOR_Storage__DefaultSharedPath", "value": "/diag" }
  ],
  args: [ "collect", "--no-auth" ]
}
"""

BASE = {
    "name": "dotnet-monitor",
    "image": "mcr.microsoft.com/dotnet/monitor:10.0",
    "env": [
        {"name": "DotnetMonitor_Urls", "value": "http://localhost:52323"},
        {"name": "DotnetMonitor_DiagnosticPort__ConnectionMode", "value": "Listen"},
        {"name": "DotnetMonitor_DiagnosticPort__EndpointName", "value": "/diag/dotnet-monitor.sock"},
        {"name": "DotnetMonitor_Storage__DefaultSharedPath", "value": "/diag"},
    ],
    "volumeMounts": [{"name": "diagvol", "mountPath": "/diag"}],
    "args": ["collect"],
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "terminationMessagePolicy": "File",
}


def write(tmp_path, text, name="custom.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize("source", ["shared-reference", "inline-copy"])
def test_upstream_sample_loads_and_merges(tmp_path, source):
    if source == "shared-reference":
        if not SAMPLE.exists():
            pytest.skip("shared reference not available")
        path = SAMPLE
    else:
        path = write(tmp_path, SAMPLE_TEXT)
    custom = load_custom_spec(path)
    assert custom["args"] == ["collect", "--no-auth"]
    warnings = check_custom(custom, str(path))
    assert any("--no-auth" in w for w in warnings)
    assert any("http://+:52323" in w and "beyond localhost" in w for w in warnings)
    merged = apply_custom(BASE, custom, str(path))
    env = {e["name"]: e["value"] for e in merged["env"]}
    assert env["DotnetMonitor_Urls"] == "http://+:52323"  # replaced by name, not duplicated
    assert [e["name"] for e in merged["env"]].count("DotnetMonitor_Urls") == 1
    # Different spelling, different env var (Kubernetes names are case-sensitive): appended.
    assert env["DOTNETMONITOR_Storage__DefaultSharedPath"] == "/diag"
    assert merged["volumeMounts"] == [{"name": "diagvol", "mountPath": "/diag"}]
    assert merged["args"] == ["collect", "--no-auth"]
    assert merged["securityContext"] == BASE["securityContext"]


def test_json_is_read_first(tmp_path):
    path = write(tmp_path, json.dumps({"env": [{"name": "A", "value": "1"}]}), "c.json")
    assert load_custom_spec(path) == {"env": [{"name": "A", "value": "1"}]}


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("- a\n- b\n", "does not contain a valid container spec"),
        ("env: [\n  {name: A,\n", "not valid JSON or YAML (line"),
    ],
    ids=["empty", "list", "broken"],
)
def test_unloadable_files_name_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as info:
        load_custom_spec(path)
    assert str(path) in info.value.message and message in info.value.message


def test_missing_file(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_custom_spec(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------------------------
# Refusals (before any API call)


@pytest.mark.parametrize(
    "custom, path_in_message, text",
    [
        ({"name": "x"}, "name", "not modifiable via custom profile"),
        ({"image": "busybox"}, "image", "not modifiable via custom profile"),
        ({"command": ["sh"]}, "command", "not modifiable via custom profile"),
        ({"lifecycle": {"preStop": {}}}, "lifecycle", "not modifiable via custom profile"),
        ({"volumeDevices": [{"name": "d", "devicePath": "/dev/x"}]}, "volumeDevices", "not modifiable"),
        ({"ports": [{"containerPort": 52323}]}, "ports", "cannot be set for an ephemeral container"),
        ({"resources": {"limits": {"memory": "256Mi"}}}, "resources", "cannot be set for an ephemeral"),
        ({"readinessProbe": {"httpGet": {"port": 52323}}}, "readinessProbe", "ephemeral"),
        ({"livenessProbe": {"exec": {}}}, "livenessProbe", "ephemeral"),
        ({"startupProbe": {"exec": {}}}, "startupProbe", "ephemeral"),
        ({"resizePolicy": [{"resourceName": "cpu"}]}, "resizePolicy", "ephemeral"),
        ({"restartPolicy": "Always"}, "restartPolicy", "ephemeral"),
        ({"volumeMounts": [{"name": "v", "mountPath": "/d", "subPath": "x"}]}, "volumeMounts[0].subPath", "ephemeral"),
        ({"volumeMounts": [{"name": "v", "mountPath": "/d", "subPathExpr": "$(X)"}]}, "volumeMounts[0].subPathExpr", "ephemeral"),
        ({"volumeMounts": [{"name": "v"}]}, "volumeMounts[0].mountPath", "required"),
        ({"volumeMounts": [{"name": "v", "mountPath": "d"}]}, "volumeMounts[0].mountPath", "absolute"),
        ({"targetContainerName": "app"}, "targetContainerName", "not a field"),
        ({"volumeMount": []}, "volumeMount", "not a field"),
        ({"env": [{"value": "x"}]}, "env[0].name", "needs a name"),
        ({"env": [{"name": "N", "value": 1}]}, "env[0].value", "must be a string"),
        ({"env": [{"name": "N", "value": "v", "valueFrom": {"secretKeyRef": {}}}]}, "env[0]", "not both"),
        ({"env": {"N": "v"}}, "env", "list of mappings"),
        ({"env": None}, "env", "null would delete"),
        ({"args": None}, "args", "null would delete"),
        ({"args": ["collect", 5]}, "args", "list of strings"),
        ({"stdin": "yes"}, "stdin", "true or false"),
        ({"imagePullPolicy": 3}, "imagePullPolicy", "must be a string"),
        ({"securityContext": {"capabilities": {"add": "SYS_PTRACE"}}}, "securityContext.capabilities.add", "list"),
        ({"$patch": "replace"}, "$patch", "directives"),
        ({"env": [{"name": "A", "$patch": "delete"}]}, "env[0].$patch", "directives"),
    ],
)
def test_refused_before_any_api_call(custom, path_in_message, text):
    with pytest.raises(UsageError) as info:
        apply_custom(BASE, custom, "my.yaml")
    message = info.value.message
    assert message.startswith(f"my.yaml: {path_in_message}"), message
    assert text in message


@pytest.mark.parametrize(
    "custom",
    [
        {"name": ""},
        {"resources": {}},
        {"resources": {"limits": {}, "requests": {}}},
        {"ports": []},
        {"command": None},
        {"volumeDevices": []},
    ],
)
def test_empty_values_of_refused_keys_are_fine_like_kubectl(custom):
    merged = apply_custom(BASE, custom)
    assert merged == BASE


# ------------------------------------------------------------------------------------------
# Merge rules


def test_env_merges_by_name_and_replaces_whole_entries():
    custom = {
        "env": [
            {"name": "DotnetMonitor_Storage__DefaultSharedPath", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
            {"name": "DotnetMonitor_Egress__FileSystem__out__DirectoryPath", "value": "/diag/out"},
        ]
    }
    merged = apply_custom(BASE, custom)
    assert merged["env"][3] == custom["env"][0]  # same place, no leftover "value"
    assert merged["env"][4] == custom["env"][1]
    assert len(merged["env"]) == 5


def test_volume_mounts_merge_by_mount_path():
    custom = {"volumeMounts": [{"name": "other", "mountPath": "/diag", "readOnly": False}, {"name": "data", "mountPath": "/data"}]}
    merged = apply_custom(BASE, custom)
    assert merged["volumeMounts"] == custom["volumeMounts"]


def test_security_context_merges_key_by_key():
    merged = apply_custom(BASE, {"securityContext": {"runAsUser": 2000, "runAsGroup": 2000, "seccompProfile": {"localhostProfile": "p.json"}}})
    sc = merged["securityContext"]
    assert sc["runAsUser"] == 2000 and sc["runAsGroup"] == 2000
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault", "localhostProfile": "p.json"}


def test_lists_without_merge_keys_replace():
    merged = apply_custom(BASE, {"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}})
    assert merged["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    merged = apply_custom(BASE, {"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}})
    assert merged["securityContext"]["capabilities"] == {"drop": ["NET_RAW"]}
    merged = apply_custom({**BASE, "envFrom": [{"configMapRef": {"name": "a"}}]}, {"envFrom": [{"secretRef": {"name": "b"}}]})
    assert merged["envFrom"] == [{"secretRef": {"name": "b"}}]
    assert apply_custom(BASE, {"args": ["collect", "--metrics", "false"]})["args"] == ["collect", "--metrics", "false"]


def test_null_deletes_a_key_like_strategic_merge():
    merged = apply_custom(BASE, {"securityContext": {"runAsUser": None}, "terminationMessagePolicy": None})
    assert "runAsUser" not in merged["securityContext"]
    assert "terminationMessagePolicy" not in merged
    assert any("removes securityContext.runAsUser" in w for w in check_custom({"securityContext": {"runAsUser": None}}))


def test_inputs_are_not_modified():
    base, custom = copy.deepcopy(BASE), {"env": [{"name": "X", "value": "1"}], "securityContext": {"runAsUser": 5}}
    snapshot = copy.deepcopy(custom)
    merged = apply_custom(base, custom)
    merged["env"].append({"name": "Y"})
    merged["securityContext"]["capabilities"]["drop"].append("X")
    assert base == BASE and custom == snapshot


# ------------------------------------------------------------------------------------------
# Accepted, but the user must be told


@pytest.mark.parametrize(
    "custom, text",
    [
        ({"args": ["collect", "--no-auth"]}, "authentication off"),
        ({"args": ["collect", "--temp-apikey"]}, "pod log"),
        ({"args": ["collect", "--urls", "http://*:52323"]}, "http://*:52323"),
        ({"args": ["collect", "--metricUrls=http://0.0.0.0:52325"]}, "0.0.0.0"),
        ({"env": [{"name": "DOTNETMONITOR_URLS", "value": "http://localhost:1;http://+:52323"}]}, "beyond localhost"),
        ({"env": [{"name": "DotnetMonitor_Metrics__Endpoints", "value": "http://[::]:52325"}]}, "beyond localhost"),
        ({"env": [{"name": "ASPNETCORE_URLS", "value": "http://10.0.0.5:80"}]}, "beyond localhost"),
        ({"env": [{"name": "DotnetMonitor_Authentication__MonitorApiKey__Subject", "value": "x"}]}, "tokens may be refused"),
        ({"securityContext": {"privileged": True}}, "privileged"),
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "privilege escalation"),
        ({"securityContext": {"runAsUser": 0}}, "as root"),
        ({"securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}}, "SYS_PTRACE"),
        ({"securityContext": {"capabilities": {"drop": []}}}, "drop: [ALL]"),
        ({"securityContext": None}, "removes the monitor's securityContext"),
    ],
)
def test_weakening_settings_are_accepted_with_a_warning(custom, text):
    warnings = check_custom(custom, "my.yaml")
    assert any(text in w for w in warnings), warnings
    assert all(w.startswith("my.yaml") for w in warnings)
    apply_custom(BASE, custom)  # accepted


@pytest.mark.parametrize(
    "custom",
    [
        {"env": [{"name": "DotnetMonitor_Urls", "value": "http://localhost:6000"}]},
        {"env": [{"name": "DotnetMonitor_Urls", "value": "http://127.0.0.1:6000;http://[::1]:6000"}]},
        {"args": ["collect", "--urls", "http://localhost:6000"]},
        {"securityContext": {"runAsUser": 1654, "runAsGroup": 1654}},
        {"env": [{"name": "DotnetMonitor_Egress__S3Storage__s3__SecretAccessKey", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}}]},
        {"workingDir": "/tmp", "tty": False, "stdin": False},
    ],
)
def test_safe_settings_give_no_warning(custom):
    assert check_custom(custom) == []
