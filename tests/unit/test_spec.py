"""The ephemeral monitor container the plugin sends, and how it decides (pure, no cluster)."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import yaml

from kubectl_dotnet_monitor.errors import NotFoundError, NotReadyError, UsageError
from kubectl_dotnet_monitor.inject.spec import (
    DEFAULT_IMAGE,
    KEY_SECRET_ENV,
    PUBLIC_KEY_ENV,
    SUBJECT_ENV,
    DiagnosticPort,
    MonitorOptions,
    build_monitor_container,
    find_monitors,
    next_monitor_name,
    parse_diagnostic_ports,
    plan_injection,
)

SUBJECT = "6a1c0c6e-0000-4000-8000-000000000001"
PUBLIC = "eyJrdHkiOiJFQyJ9"
AUTH = MonitorOptions(api_key_subject=SUBJECT, api_key_public=PUBLIC, key_secret_name="web-0-dotnet-monitor-abcde")


def app_container(name="app", *, diag="/diag/dotnet-monitor.sock,nosuspend", mounts=None, sc=None, env=None, **extra):
    container = {"name": name, "image": "example/app:1"}
    env = list(env or [])
    if diag is not None:
        env.insert(0, {"name": "DOTNET_DiagnosticPorts", "value": diag})
    if env:
        container["env"] = env
    if mounts is None and diag is not None:
        mounts = [{"name": "diagvol", "mountPath": "/diag"}]
    if mounts:
        container["volumeMounts"] = mounts
    if sc is not None:
        container["securityContext"] = sc
    container.update(extra)
    return container


def make_pod(*containers, pod_sc=None, statuses=None, ephemeral=None, eph_statuses=None, annotations=None, **spec_extra):
    containers = list(containers) or [app_container(sc={"runAsUser": 1000, "runAsGroup": 3000})]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "shop", "uid": "1111-2222"},
        "spec": {
            "containers": containers,
            "volumes": [{"name": "diagvol", "emptyDir": {}}, {"name": "data", "emptyDir": {}}],
            **spec_extra,
        },
        "status": {"phase": "Running"},
    }
    if annotations:
        pod["metadata"]["annotations"] = annotations
    if pod_sc is not None:
        pod["spec"]["securityContext"] = pod_sc
    if statuses is not None:
        pod["status"]["containerStatuses"] = statuses
    if ephemeral is not None:
        pod["spec"]["ephemeralContainers"] = ephemeral
    if eph_statuses is not None:
        pod["status"]["ephemeralContainerStatuses"] = eph_statuses
    return pod


def env_of(container):
    return {e["name"]: e.get("value") for e in container["env"]}


RESTRICTED_BASE = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def assert_passes_restricted(sc: dict) -> None:
    """Pod Security 'restricted' checks that concern a container's own securityContext."""
    assert sc["runAsNonRoot"] is True
    assert sc.get("runAsUser") != 0
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")
    assert not sc.get("privileged")


# ------------------------------------------------------------------------------------------
# The prepared pod: Listen mode on the app's own socket


def test_prepared_pod_gives_the_full_listen_mode_container():
    pod = make_pod()
    container = build_monitor_container(pod, AUTH)
    assert container == {
        "name": "dotnet-monitor",
        "image": DEFAULT_IMAGE,
        "env": [
            {"name": "DotnetMonitor_Urls", "value": "http://localhost:52323"},
            {"name": "DotnetMonitor_Metrics__Endpoints", "value": "http://localhost:52325"},
            {"name": "DotnetMonitor_DiagnosticPort__ConnectionMode", "value": "Listen"},
            {"name": "DotnetMonitor_DiagnosticPort__EndpointName", "value": "/diag/dotnet-monitor.sock"},
            {"name": "DotnetMonitor_Storage__DefaultSharedPath", "value": "/diag"},
            {"name": SUBJECT_ENV, "value": SUBJECT},
            {"name": PUBLIC_KEY_ENV, "value": PUBLIC},
            {"name": KEY_SECRET_ENV, "value": "web-0-dotnet-monitor-abcde"},
        ],
        "volumeMounts": [{"name": "diagvol", "mountPath": "/diag"}],
        "args": ["collect"],
        "securityContext": {**RESTRICTED_BASE, "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 3000},
        "terminationMessagePolicy": "File",
    }
    assert_passes_restricted(container["securityContext"])
    assert "SYS_PTRACE" not in repr(container)


def test_build_does_not_modify_the_pod():
    pod = make_pod()
    before = copy.deepcopy(pod)
    build_monitor_container(pod, AUTH)
    plan_injection(pod, AUTH)
    assert pod == before


def test_socket_on_a_nested_mount_uses_the_most_specific_volume():
    app = app_container(
        diag="/var/run/diag/sub/monitor.sock",
        mounts=[{"name": "data", "mountPath": "/var"}, {"name": "diagvol", "mountPath": "/var/run/diag/"}],
        sc={"runAsUser": 1000},
    )
    container = build_monitor_container(make_pod(app), AUTH)
    assert container["volumeMounts"] == [{"name": "diagvol", "mountPath": "/var/run/diag"}]
    env = env_of(container)
    assert env["DotnetMonitor_DiagnosticPort__EndpointName"] == "/var/run/diag/sub/monitor.sock"
    assert env["DotnetMonitor_Storage__DefaultSharedPath"] == "/var/run/diag"
    assert "subPath" not in repr(container)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("/diag/s.sock", [DiagnosticPort("/diag/s.sock", "connect", True)]),
        ("/diag/s.sock,nosuspend", [DiagnosticPort("/diag/s.sock", "connect", False)]),
        ("/diag/s.sock,connect,suspend", [DiagnosticPort("/diag/s.sock", "connect", True)]),
        ("/d/a.sock,listen ; /d/b.sock,NoSuspend", [DiagnosticPort("/d/a.sock", "listen", True), DiagnosticPort("/d/b.sock", "connect", False)]),
        ("/d/a.sock,unknowntag", [DiagnosticPort("/d/a.sock", "connect", True)]),
        (";;", []),
    ],
)
def test_parse_diagnostic_ports(value, expected):
    assert parse_diagnostic_ports(value) == expected


def test_second_port_is_used_when_the_first_is_a_listen_port():
    app = app_container(diag="/diag/rt.sock,listen;/diag/monitor.sock,nosuspend", sc={"runAsUser": 1000})
    env = env_of(build_monitor_container(make_pod(app), AUTH))
    assert env["DotnetMonitor_DiagnosticPort__EndpointName"] == "/diag/monitor.sock"


def test_legacy_complus_prefix_and_variable_references_are_understood():
    app = app_container(
        diag=None,
        mounts=[{"name": "diagvol", "mountPath": "/diag"}],
        env=[
            {"name": "DIAG_DIR", "value": "/diag"},
            {"name": "COMPlus_DiagnosticPorts", "value": "$(DIAG_DIR)/m.sock,nosuspend"},
        ],
        sc={"runAsUser": 1000},
    )
    env = env_of(build_monitor_container(make_pod(app), AUTH))
    assert env["DotnetMonitor_DiagnosticPort__EndpointName"] == "/diag/m.sock"


def test_suspend_port_still_works():
    plan = plan_injection(make_pod(app_container(diag="/diag/m.sock", sc={"runAsUser": 1000})), AUTH)
    assert plan.route.suspend is True and plan.action == "create"


def test_read_only_shared_mount_is_warned_about():
    app = app_container(mounts=[{"name": "diagvol", "mountPath": "/diag", "readOnly": True}], sc={"runAsUser": 1000})
    plan = plan_injection(make_pod(app), AUTH)
    assert any("read-only" in w for w in plan.warnings)


# ------------------------------------------------------------------------------------------
# Options: auth, once, extra env, pull policy, ports


def test_no_auth_sets_the_flag_and_no_key():
    container = build_monitor_container(make_pod(), MonitorOptions(no_auth=True))
    assert container["args"] == ["collect", "--no-auth"]
    env = env_of(container)
    assert SUBJECT_ENV not in env and PUBLIC_KEY_ENV not in env
    assert env[KEY_SECRET_ENV] == ""  # still marked as ours
    assert env["DotnetMonitor_Urls"] == "http://localhost:52323"  # still localhost only


def test_auth_needs_the_key_material():
    with pytest.raises(UsageError):
        build_monitor_container(make_pod(), MonitorOptions())
    with pytest.raises(UsageError):
        build_monitor_container(make_pod(), replace(AUTH, api_key_public="bad=padding"))


def test_key_outside_the_cluster_leaves_an_empty_marker():
    env = env_of(build_monitor_container(make_pod(), replace(AUTH, key_secret_name=None)))
    assert env[KEY_SECRET_ENV] == ""


def test_once_ties_the_monitor_to_stdin():
    container = build_monitor_container(make_pod(), replace(AUTH, once=True))
    assert container["args"] == ["collect", "--exit-on-stdin-disconnect"]
    assert container["stdin"] is True and container["stdinOnce"] is True
    assert "tty" not in container


def test_custom_port_name_image_and_pull_policy():
    options = replace(AUTH, port=8080, image="registry.local/dotnet/monitor:9", container_name="mon", image_pull_policy="IfNotPresent")
    container = build_monitor_container(make_pod(), options)
    assert container["name"] == "mon"
    assert container["image"] == "registry.local/dotnet/monitor:9"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert env_of(container)["DotnetMonitor_Urls"] == "http://localhost:8080"


def test_pull_policy_is_left_to_the_cluster_by_default():
    assert "imagePullPolicy" not in build_monitor_container(make_pod(), AUTH)


def test_extra_env_is_appended_and_cannot_override_ours():
    rules = ({"name": "DotnetMonitor_CollectionRules__HighCpu__Trigger__Type", "value": "EventCounter"},)
    container = build_monitor_container(make_pod(), replace(AUTH, extra_env=rules))
    assert container["env"][-1] == rules[0]
    with pytest.raises(UsageError, match="set by the plugin"):
        build_monitor_container(make_pod(), replace(AUTH, extra_env=({"name": "DOTNETMONITOR_URLS", "value": "http://+:1"},)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 0},
        {"port": 70000},
        {"port": 52325},
        {"image": " "},
        {"image_pull_policy": "Sometimes"},
        {"container_name": "Dotnet_Monitor"},
        {"container_name": "x" * 64},
    ],
)
def test_bad_options_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        MonitorOptions(**kwargs)


def test_port_declared_by_the_app_is_refused():
    app = app_container(sc={"runAsUser": 1000}, ports=[{"containerPort": 52323}])
    with pytest.raises(UsageError, match="declares port 52323"):
        build_monitor_container(make_pod(app), AUTH)
    assert build_monitor_container(make_pod(app), replace(AUTH, port=52400))


# ------------------------------------------------------------------------------------------
# Which container is the app


def test_two_app_containers_without_choice_are_listed():
    pod = make_pod(app_container("api"), app_container("worker"))
    with pytest.raises(UsageError) as info:
        plan_injection(pod, AUTH)
    assert "api, worker" in info.value.message and "-c" in info.value.hint


def test_two_containers_none_prepared_are_listed():
    pod = make_pod(app_container("api", diag=None), app_container("proxy", diag=None))
    with pytest.raises(UsageError, match="api, proxy"):
        plan_injection(pod, AUTH)


def test_the_container_with_a_diagnostic_port_is_chosen():
    pod = make_pod(app_container("proxy", diag=None), app_container("api", sc={"runAsUser": 1000}))
    assert plan_injection(pod, AUTH).app_container == "api"


def test_dash_c_chooses():
    pod = make_pod(app_container("api", sc={"runAsUser": 1}), app_container("worker", sc={"runAsUser": 2}))
    plan = plan_injection(pod, replace(AUTH, app_container="worker"))
    assert plan.app_container == "worker" and plan.user.uid == 2


def test_default_container_annotation_chooses():
    pod = make_pod(
        app_container("api", sc={"runAsUser": 1}),
        app_container("worker", sc={"runAsUser": 2}),
        annotations={"kubectl.kubernetes.io/default-container": "worker"},
    )
    assert plan_injection(pod, AUTH).app_container == "worker"


def test_annotation_naming_a_missing_container_is_ignored_with_a_warning():
    pod = make_pod(app_container(sc={"runAsUser": 1}), annotations={"kubectl.kubernetes.io/default-container": "gone"})
    plan = plan_injection(pod, AUTH)
    assert plan.app_container == "app"
    assert any("'gone'" in w for w in plan.warnings)


def test_unknown_dash_c_is_not_found():
    with pytest.raises(NotFoundError, match="has no container 'nope'; it has: app"):
        plan_injection(make_pod(), replace(AUTH, app_container="nope"))


def test_dash_c_naming_an_init_container_is_refused():
    pod = make_pod(initContainers=[{"name": "migrate", "image": "x"}])
    with pytest.raises(UsageError, match="init container"):
        plan_injection(pod, replace(AUTH, app_container="migrate"))


# ------------------------------------------------------------------------------------------
# Identity: whose user the monitor runs as


@pytest.mark.parametrize(
    "container_sc, pod_sc, statuses, expected_user, expected_group",
    [
        ({"runAsUser": 1000, "runAsGroup": 3000}, None, None, 1000, 3000),
        (None, {"runAsUser": 2000, "runAsGroup": 2001}, None, 2000, 2001),
        ({"runAsUser": 1000}, {"runAsUser": 2000, "runAsGroup": 2001}, None, 1000, 2001),
        (None, None, [{"name": "app", "user": {"linux": {"uid": 1654, "gid": 1654}}}], 1654, 1654),
        ({"runAsUser": 5000}, None, [{"name": "app", "user": {"linux": {"uid": 5000, "gid": 0}}}], 5000, 0),
        (None, None, [{"name": "other", "user": {"linux": {"uid": 7, "gid": 7}}}], None, None),
    ],
    ids=["container", "pod", "container-over-pod", "status", "status-gid", "status-other-container"],
)
def test_monitor_runs_as_the_apps_effective_user(container_sc, pod_sc, statuses, expected_user, expected_group):
    pod = make_pod(app_container(sc=container_sc), pod_sc=pod_sc, statuses=statuses)
    sc = build_monitor_container(pod, AUTH)["securityContext"]
    assert sc.get("runAsUser") == expected_user
    assert sc.get("runAsGroup") == expected_group
    assert_passes_restricted(sc)


def test_unknown_user_keeps_the_image_user_and_warns():
    pod = make_pod(app_container())
    plan = plan_injection(pod, AUTH)
    assert plan.user.uid is None
    assert any("not known" in w and "1654" in w for w in plan.warnings)
    sc = build_monitor_container(pod, AUTH)["securityContext"]
    assert "runAsUser" not in sc
    assert_passes_restricted(sc)


def test_root_app_gets_a_root_monitor_without_run_as_non_root():
    pod = make_pod(app_container(sc={"runAsUser": 0}))
    sc = build_monitor_container(pod, AUTH)["securityContext"]
    assert sc == {**RESTRICTED_BASE, "runAsUser": 0}
    assert "runAsNonRoot" not in sc


def test_root_app_overriding_a_non_root_pod_is_matched_explicitly():
    pod = make_pod(
        app_container(sc={"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False}),
        pod_sc={"runAsNonRoot": True, "runAsUser": 1000},
    )
    sc = build_monitor_container(pod, AUTH)["securityContext"]
    assert sc["runAsNonRoot"] is False and sc["runAsUser"] == 0 and sc["runAsGroup"] == 0
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_root_reported_by_status_is_root():
    pod = make_pod(app_container(), statuses=[{"name": "app", "user": {"linux": {"uid": 0, "gid": 0}}}])
    sc = build_monitor_container(pod, AUTH)["securityContext"]
    assert sc["runAsUser"] == 0 and "runAsNonRoot" not in sc


# ------------------------------------------------------------------------------------------
# Pods that are not prepared


def unprepared(sc=None, **kwargs):
    return make_pod(app_container(diag=None, sc=sc, mounts=[]), **kwargs)


def test_unprepared_pod_with_known_user_joins_the_process_namespace():
    pod = unprepared(sc={"runAsUser": 1000, "runAsGroup": 1000})
    plan = plan_injection(pod, AUTH)
    assert plan.action == "create" and plan.route.mode == "process-namespace"
    assert any("Connect mode" in w for w in plan.warnings)
    container = build_monitor_container(pod, AUTH)
    assert container["targetContainerName"] == "app"
    assert "volumeMounts" not in container
    env = env_of(container)
    assert env["DotnetMonitor_DiagnosticPort__ConnectionMode"] == "Connect"
    assert env["TMPDIR"] == "/proc/1/root/tmp"
    assert env["DotnetMonitor_Storage__DumpTempFolder"] == "/proc/1/root/tmp"
    assert "DotnetMonitor_DiagnosticPort__EndpointName" not in env
    assert_passes_restricted(container["securityContext"])
    assert container["securityContext"]["runAsUser"] == 1000


def test_process_route_follows_the_apps_tmpdir_and_warns_about_an_unknown_group():
    pod = make_pod(
        app_container(diag=None, mounts=[], env=[{"name": "TMPDIR", "value": "/var/tmp/app/"}]),
        statuses=[{"name": "app", "user": {"linux": {"uid": 1000}}}],
    )
    plan = plan_injection(pod, AUTH)
    assert plan.route.proc_tmp == "/proc/1/root/var/tmp/app"
    assert any("group id" in w for w in plan.warnings)


def test_process_route_for_a_root_app_keeps_the_apps_capabilities():
    pod = unprepared(sc={"runAsUser": 0, "capabilities": {"drop": ["NET_RAW"]}})
    sc = build_monitor_container(pod, AUTH)["securityContext"]
    assert sc["runAsUser"] == 0
    assert sc["capabilities"] == {"drop": ["NET_RAW"]}
    assert "add" not in sc["capabilities"]
    sc = build_monitor_container(unprepared(sc={"runAsUser": 0}), AUTH)["securityContext"]
    assert "capabilities" not in sc and sc["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize(
    "pod, reason",
    [
        (unprepared(), "user id is unknown"),
        (unprepared(sc={"runAsUser": 1000}, shareProcessNamespace=True), "shareProcessNamespace"),
        (unprepared(sc={"runAsUser": 0, "capabilities": {"add": ["SYS_PTRACE"]}}), "added capabilities"),
        (unprepared(sc={"runAsUser": 0, "privileged": True}), "privileged"),
    ],
    ids=["unknown-user", "shared-pid-namespace", "root-with-added-caps", "privileged"],
)
def test_unprepared_pod_without_a_route_says_what_to_change(pod, reason):
    with pytest.raises(NotReadyError) as info:
        plan_injection(pod, AUTH)
    error = info.value
    assert "DOTNET_DiagnosticPorts is not set" in error.message
    assert reason in error.message
    snippet = error.hint.split("\n\n")[1]
    parsed = yaml.safe_load(snippet)
    container = parsed["spec"]["containers"][0]
    assert container["name"] == "app"
    assert container["env"][0] == {"name": "DOTNET_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock,nosuspend"}
    assert container["volumeMounts"] == [{"name": "dotnet-diag", "mountPath": "/diag"}]  # diagvol is taken
    assert parsed["spec"]["volumes"] == [{"name": "dotnet-diag", "emptyDir": {}}]
    assert "nosuspend" in error.hint


def test_subpath_mount_cannot_be_shared():
    app = app_container(mounts=[{"name": "diagvol", "mountPath": "/diag", "subPath": "app"}])
    with pytest.raises(NotReadyError) as info:
        plan_injection(make_pod(app), AUTH)
    assert "subPath" in info.value.message and "mount the volume without subPath" in info.value.message


def test_subpath_mount_falls_back_to_the_process_namespace_when_possible():
    app = app_container(mounts=[{"name": "diagvol", "mountPath": "/diag", "subPath": "app"}], sc={"runAsUser": 1000})
    plan = plan_injection(make_pod(app), AUTH)
    assert plan.route.mode == "process-namespace"
    assert any("subPath" in w for w in plan.warnings)


@pytest.mark.parametrize(
    "app, text",
    [
        (app_container(diag="/tmp/m.sock", mounts=[]), "not on a volume"),
        (app_container(diag="m.sock"), "not an absolute socket path"),
        (app_container(diag="/diag/m.sock,listen"), "listen port"),
        (
            app_container(diag=None, env=[{"name": "DOTNET_DiagnosticPorts", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "ports"}}}]),
            "valueFrom.configMapKeyRef (cfg/ports)",
        ),
        (app_container(diag=None, envFrom=[{"configMapRef": {"name": "app-env"}}]), "configMap app-env"),
        (app_container(mounts=[{"name": "missing", "mountPath": "/diag"}]), "not declared"),
    ],
    ids=["not-on-volume", "relative", "listen", "valueFrom", "envFrom", "volume-missing"],
)
def test_unusable_diagnostic_ports_are_explained(app, text):
    with pytest.raises(NotReadyError) as info:
        plan_injection(make_pod(app), AUTH)
    assert text in info.value.message


def test_disabled_diagnostics_cannot_be_worked_around():
    app = app_container(sc={"runAsUser": 1000}, env=[{"name": "DOTNET_EnableDiagnostics", "value": "0"}])
    with pytest.raises(NotReadyError, match="DOTNET_EnableDiagnostics=0"):
        plan_injection(make_pod(app), AUTH)


def test_rules_need_listen_mode():
    pod = unprepared(sc={"runAsUser": 1000})
    with pytest.raises(NotReadyError, match="need Listen mode"):
        plan_injection(pod, replace(AUTH, needs_listen_mode=True))
    assert plan_injection(make_pod(), replace(AUTH, needs_listen_mode=True)).route.mode == "listen"


# ------------------------------------------------------------------------------------------
# Monitors already in the pod


def monitor(name="dotnet-monitor", *, image=DEFAULT_IMAGE, env=None, args=("collect",), **extra):
    container = {"name": name, "image": image, "args": list(args), "terminationMessagePolicy": "File"}
    container["env"] = env if env is not None else [
        {"name": "DotnetMonitor_Urls", "value": "http://localhost:52323"},
        {"name": "DotnetMonitor_DiagnosticPort__ConnectionMode", "value": "Listen"},
        {"name": "DotnetMonitor_DiagnosticPort__EndpointName", "value": "/diag/dotnet-monitor.sock"},
        {"name": SUBJECT_ENV, "value": "s-1"},
        {"name": KEY_SECRET_ENV, "value": "web-0-dotnet-monitor-xyz12"},
    ]
    container.update(extra)
    return container


RUNNING = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}


def waiting(reason):
    return {"waiting": {"reason": reason, "message": f"{reason} happened"}}


def terminated(reason, code):
    return {"terminated": {"reason": reason, "exitCode": code}}


@pytest.mark.parametrize(
    "state, expected",
    [
        (RUNNING, ("running", None, None, "running")),
        (waiting("ImagePullBackOff"), ("waiting", "ImagePullBackOff", None, "waiting (ImagePullBackOff)")),
        (terminated("Error", 1), ("terminated", "Error", 1, "terminated (Error, exit code 1)")),
        (None, ("unknown", None, None, "unknown")),
    ],
)
def test_find_monitors_reads_each_state(state, expected):
    statuses = [{"name": "dotnet-monitor", "state": state}] if state else []
    pod = make_pod(ephemeral=[monitor()], eph_statuses=statuses)
    (found,) = find_monitors(pod)
    assert (found.state, found.reason, found.exit_code, found.describe_state()) == expected
    assert found.port == 52323 and found.metrics_ports == (52325,)
    assert found.endpoint == "/diag/dotnet-monitor.sock"
    assert found.key_secret == "web-0-dotnet-monitor-xyz12" and found.subject == "s-1"
    assert found.managed and not found.no_auth and not found.all_interfaces


def test_find_monitors_recognises_image_or_marker_and_ignores_other_debuggers():
    pod = make_pod(
        ephemeral=[
            {"name": "debugger-abcde", "image": "busybox"},
            monitor("by-marker", image="internal/monitor-fork:1"),
            {"name": "by-image", "image": "mcr.microsoft.com/dotnet/monitor/base:9"},
            {"name": "lookalike", "image": "example.com/dotnet/monitoring-agent:1"},
        ]
    )
    names = [m.name for m in find_monitors(pod)]
    assert names == ["by-marker", "by-image"]


def test_upstream_sample_monitor_is_understood():
    sample = {
        "name": "debugger",
        "image": DEFAULT_IMAGE,
        "args": ["collect", "--no-auth"],
        "env": [
            {"name": "DotnetMonitor_Urls", "value": "http://+:52323"},
            {"name": "DotnetMonitor_DiagnosticPort__ConnectionMode", "value": "Listen"},
            {"name": "DOTNETMONITOR_Storage__DefaultSharedPath", "value": "/diag"},
        ],
    }
    (found,) = find_monitors(make_pod(ephemeral=[sample]))
    assert found.no_auth and found.all_interfaces and not found.managed
    assert found.key_secret is None
    assert found.endpoint == "/diag/dotnet-monitor.sock"  # default under DefaultSharedPath
    assert found.ports == (52323,) and found.metrics_ports == (52325,)


def test_image_defaults_are_assumed_without_args():
    (found,) = find_monitors(make_pod(ephemeral=[{"name": "m", "image": DEFAULT_IMAGE}]))
    assert found.ports == (52323,) and found.all_interfaces


@pytest.mark.parametrize(
    "existing, expected",
    [
        ([], "dotnet-monitor"),
        (["dotnet-monitor"], "dotnet-monitor-2"),
        (["dotnet-monitor", "dotnet-monitor-2", "dotnet-monitor-4"], "dotnet-monitor-3"),
    ],
)
def test_next_monitor_name(existing, expected):
    pod = make_pod(ephemeral=[{"name": n, "image": "busybox"} for n in existing])
    assert next_monitor_name(pod) == expected


def test_name_used_by_a_regular_container_is_not_reused():
    pod = make_pod(app_container("dotnet-monitor", sc={"runAsUser": 1}))
    assert next_monitor_name(pod) == "dotnet-monitor-2"


@pytest.mark.parametrize(
    "state, action, name",
    [
        (RUNNING, "reuse", "dotnet-monitor"),
        (waiting("ContainerCreating"), "wait", "dotnet-monitor"),
        (waiting("ImagePullBackOff"), "wait", "dotnet-monitor"),
        (None, "wait", "dotnet-monitor"),
        (terminated("Error", 1), "create", "dotnet-monitor-2"),
        (terminated("Completed", 0), "create", "dotnet-monitor-2"),
        (waiting("InvalidImageName"), "create", "dotnet-monitor-2"),
    ],
    ids=["running", "creating", "pull-backoff", "no-status-yet", "crashed", "exited", "never-starts"],
)
def test_existing_monitor_decides_the_action(state, action, name):
    statuses = [{"name": "dotnet-monitor", "state": state}] if state else []
    pod = make_pod(app_container(sc={"runAsUser": 1000}), ephemeral=[monitor()], eph_statuses=statuses)
    plan = plan_injection(pod, AUTH)
    assert (plan.action, plan.container_name) == (action, name)
    if action != "create":
        assert plan.existing.name == "dotnet-monitor" and plan.port == 52323
        assert plan.warnings == ()  # reuse of a matching monitor is announced by the caller, not warned about


def test_running_monitor_on_the_same_socket_but_another_port_is_reused():
    other_port = monitor(env=[
        {"name": "DotnetMonitor_Urls", "value": "http://localhost:6000"},
        {"name": "DotnetMonitor_Metrics__Endpoints", "value": "http://localhost:6001"},
        {"name": "DotnetMonitor_DiagnosticPort__EndpointName", "value": "/diag/dotnet-monitor.sock"},
    ])
    pod = make_pod(app_container(sc={"runAsUser": 1000}), ephemeral=[other_port], eph_statuses=[{"name": "dotnet-monitor", "state": RUNNING}])
    plan = plan_injection(pod, AUTH)
    assert plan.action == "reuse" and plan.port == 6000


def test_running_monitor_elsewhere_does_not_block_a_new_one():
    elsewhere = monitor("other", env=[
        {"name": "DotnetMonitor_Urls", "value": "http://localhost:6000"},
        {"name": "DotnetMonitor_Metrics__Endpoints", "value": "http://localhost:6001"},
        {"name": "DotnetMonitor_DiagnosticPort__EndpointName", "value": "/other/m.sock"},
    ])
    pod = make_pod(app_container(sc={"runAsUser": 1000}), ephemeral=[elsewhere], eph_statuses=[{"name": "other", "state": RUNNING}])
    plan = plan_injection(pod, AUTH)
    assert (plan.action, plan.container_name) == ("create", "dotnet-monitor")


def test_running_upstream_sample_monitor_is_reused_with_warnings():
    sample = monitor("debugger", args=("collect", "--no-auth"), env=[{"name": "DotnetMonitor_Urls", "value": "http://+:52323"}])
    pod = make_pod(app_container(sc={"runAsUser": 1000}), ephemeral=[sample], eph_statuses=[{"name": "debugger", "state": RUNNING}])
    plan = plan_injection(pod, AUTH)
    assert plan.action == "reuse" and plan.container_name == "debugger"
    text = " ".join(plan.warnings)
    assert "without authentication" in text and "all interfaces" in text


def test_running_monitor_is_reused_even_when_the_pod_is_not_prepared():
    pod = make_pod(app_container(diag=None, mounts=[]), ephemeral=[monitor()], eph_statuses=[{"name": "dotnet-monitor", "state": RUNNING}])
    plan = plan_injection(pod, AUTH)
    assert plan.action == "reuse"


def test_terminated_monitor_on_an_unprepared_pod_still_reports_what_is_missing():
    pod = make_pod(app_container(diag=None, mounts=[]), ephemeral=[monitor()], eph_statuses=[{"name": "dotnet-monitor", "state": terminated("Error", 1)}])
    with pytest.raises(NotReadyError, match="not prepared"):
        plan_injection(pod, AUTH)


def test_running_monitor_without_the_requested_rules_cannot_be_changed():
    rules = ({"name": "DotnetMonitor_CollectionRules__R__Trigger__Type", "value": "EventCounter"},)
    pod = make_pod(app_container(sc={"runAsUser": 1000}), ephemeral=[monitor()], eph_statuses=[{"name": "dotnet-monitor", "state": RUNNING}])
    with pytest.raises(NotReadyError, match="can never be changed"):
        plan_injection(pod, replace(AUTH, extra_env=rules))
    with_rules = monitor(env=monitor()["env"] + list(rules))
    pod["spec"]["ephemeralContainers"] = [with_rules]
    assert plan_injection(pod, replace(AUTH, extra_env=rules)).action == "reuse"


def test_sidecar_monitor_on_the_same_port_blocks_injection():
    sidecar = {
        "name": "monitor",
        "image": "mcr.microsoft.com/dotnet/monitor:8",
        "args": ["collect", "--no-auth"],
        "env": [{"name": "DotnetMonitor_Urls", "value": "http://localhost:52323"}],
    }
    pod = make_pod(app_container(sc={"runAsUser": 1000}), sidecar)
    with pytest.raises(NotReadyError, match="its container 'monitor'"):
        plan_injection(pod, replace(AUTH, app_container="app"))


def test_requested_name_that_is_taken_is_refused():
    pod = make_pod(ephemeral=[monitor("mon")], eph_statuses=[{"name": "mon", "state": terminated("Error", 1)}])
    with pytest.raises(UsageError, match="never be reused"):
        plan_injection(pod, replace(AUTH, container_name="mon"))
