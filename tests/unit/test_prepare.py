"""prepare: the pure pod-template patch, its idempotence, and target parsing (kube/workloads)."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from kubectl_dotnet_monitor.errors import NotReadyError, UsageError
from kubectl_dotnet_monitor.inject.spec import parse_diagnostic_ports
from kubectl_dotnet_monitor.kube.workloads import (
    DAEMONSET,
    DEPLOYMENT,
    POD,
    REPLICASET,
    STATEFULSET,
    controller_of,
    parse_target,
    resolve_workload,
)
from kubectl_dotnet_monitor.preflight.prepare import (
    PrepareOptions,
    apply_strategic,
    plan_prepare,
    render_patch,
)


def deployment(containers=None, volumes=None, annotations=None, pod_sc=None) -> dict:
    spec: dict = {"containers": containers if containers is not None else [{"name": "app", "image": "web:1"}]}
    if volumes is not None:
        spec["volumes"] = volumes
    if pod_sc is not None:
        spec["securityContext"] = pod_sc
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}, "annotations": annotations or {}}, "spec": spec}},
    }


def app_of(workload: dict, name: str = "app") -> dict:
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def env_value(container: dict, name: str = "DOTNET_DiagnosticPorts") -> str | None:
    return next((e.get("value") for e in container.get("env") or [] if e["name"] == name), None)


def prepared_twice(workload: dict, options: PrepareOptions | None = None):
    first = plan_prepare(workload, options)
    assert first.patch is not None
    after = apply_strategic(workload, first.patch)
    second = plan_prepare(after, options)
    return first, after, second


# ---------------------------------------------------------------------------------------------
# The patch for an unprepared workload


def test_unprepared_gets_volume_mount_and_port_with_nosuspend():
    plan = plan_prepare(deployment())
    assert plan.patch == {"spec": {"template": {"spec": {
        "containers": [{
            "name": "app",
            "env": [{"name": "DOTNET_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock,nosuspend"}],
            "volumeMounts": [{"name": "diagvol", "mountPath": "/diag"}],
        }],
        "volumes": [{"name": "diagvol", "emptyDir": {}}],
    }}}}
    assert plan.socket_path == "/diag/dotnet-monitor.sock"
    assert plan.app_container == "app"
    assert not plan.already_prepared
    assert len(plan.changes) == 3


def test_second_run_changes_nothing():
    first, after, second = prepared_twice(deployment())
    assert second.already_prepared and second.patch is None and second.changes == ()
    app = app_of(after)
    assert env_value(app) == "/diag/dotnet-monitor.sock,nosuspend"
    assert {"name": "diagvol", "mountPath": "/diag"} in app["volumeMounts"]


def test_options_mount_path_and_volume_name():
    options = PrepareOptions(mount_path="/var/run/diag/", volume_name="monitor-sock")
    first, after, second = prepared_twice(deployment(), options)
    assert env_value(app_of(after)) == "/var/run/diag/dotnet-monitor.sock,nosuspend"
    assert {"name": "monitor-sock", "emptyDir": {}} in after["spec"]["template"]["spec"]["volumes"]
    assert second.already_prepared


def test_the_inject_module_sees_the_result_as_prepared():
    from kubectl_dotnet_monitor.inject.spec import app_user, resolve_route

    _, after, _ = prepared_twice(deployment(pod_sc={"runAsUser": 1654}))
    pod = {"metadata": {"name": "web-1", "namespace": "shop"}, "spec": after["spec"]["template"]["spec"]}
    app = app_of(after)
    route, _ = resolve_route(pod, app, app_user(pod, app))
    assert route.mode == "listen" and route.suspend is False and route.volume_name == "diagvol"


@pytest.mark.parametrize("value", [
    "/diag/dotnet-monitor.sock",
    "/diag/dotnet-monitor.sock,suspend",
    "/diag/dotnet-monitor.sock,connect,suspend",
    "/diag/dotnet-monitor.sock , SUSPEND",
])
def test_existing_port_without_nosuspend_only_gets_nosuspend(value):
    workload = deployment(
        containers=[{"name": "app", "image": "web:1",
                     "env": [{"name": "DOTNET_DiagnosticPorts", "value": value}],
                     "volumeMounts": [{"name": "diagvol", "mountPath": "/diag"}]}],
        volumes=[{"name": "diagvol", "emptyDir": {}}],
    )
    first, after, second = prepared_twice(workload)
    tspec = first.patch["spec"]["template"]["spec"]
    assert "volumes" not in tspec and "volumeMounts" not in tspec["containers"][0]
    new_value = tspec["containers"][0]["env"][0]["value"]
    assert [p.suspend for p in parse_diagnostic_ports(new_value)] == [False]
    assert "nosuspend" in first.changes[0] and "hangs" in first.changes[0]
    assert second.already_prepared


def test_other_entries_are_kept_when_fixing_nosuspend():
    workload = deployment(
        containers=[{"name": "app", "image": "web:1",
                     "env": [{"name": "DOTNET_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock;/other/x.sock,nosuspend"}],
                     "volumeMounts": [{"name": "diagvol", "mountPath": "/diag"}]}],
        volumes=[{"name": "diagvol", "emptyDir": {}}],
    )
    plan = plan_prepare(workload)
    assert plan.patch["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == \
        "/diag/dotnet-monitor.sock,nosuspend;/other/x.sock,nosuspend"


def test_already_prepared_workload_needs_nothing():
    workload = deployment(
        containers=[{"name": "app", "image": "web:1",
                     "env": [{"name": "DOTNET_DiagnosticPorts", "value": "/sock/monitor.sock,nosuspend"}],
                     "volumeMounts": [{"name": "sockets", "mountPath": "/sock"}]}],
        volumes=[{"name": "sockets", "emptyDir": {"medium": "Memory"}}],
    )
    plan = plan_prepare(workload)
    assert plan.already_prepared and plan.socket_path == "/sock/monitor.sock"
    assert render_patch(plan) == ""


def test_legacy_complus_name_is_the_one_patched():
    workload = deployment(containers=[{"name": "app", "image": "web:1",
                                       "env": [{"name": "COMPlus_DiagnosticPorts", "value": "/nowhere/x.sock"}]}])
    first, after, second = prepared_twice(workload)
    env = first.patch["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["name"] == "COMPlus_DiagnosticPorts"
    assert env[0]["value"] == "/nowhere/x.sock;/diag/dotnet-monitor.sock,nosuspend"
    assert any("suspend start-up" in w for w in first.warnings)  # the kept entry suspends
    assert second.already_prepared


def test_unusable_entry_for_the_same_path_is_replaced():
    workload = deployment(containers=[{"name": "app", "image": "web:1",
                                       "env": [{"name": "DOTNET_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock"}]}])
    plan = plan_prepare(workload)
    env = plan.patch["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "DOTNET_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock,nosuspend"}]
    assert not plan.warnings or all("suspend" not in w for w in plan.warnings)


def test_value_from_configmap_is_refused_with_the_value_to_set():
    workload = deployment(containers=[{"name": "app", "image": "web:1", "env": [
        {"name": "DOTNET_DiagnosticPorts", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "ports"}}}]}])
    with pytest.raises(UsageError) as err:
        plan_prepare(workload)
    assert "configMapKeyRef" in err.value.message
    assert "/diag/dotnet-monitor.sock,nosuspend" in err.value.hint


def test_disabled_diagnostics_are_not_overridden():
    workload = deployment(containers=[{"name": "app", "image": "web:1",
                                       "env": [{"name": "DOTNET_EnableDiagnostics", "value": "0"}]}])
    with pytest.raises(NotReadyError) as err:
        plan_prepare(workload)
    assert "DOTNET_EnableDiagnostics=0" in err.value.message


# ---------------------------------------------------------------------------------------------
# Names and paths already in use


def test_default_volume_name_taken_by_another_kind_picks_a_free_name():
    workload = deployment(volumes=[{"name": "diagvol", "hostPath": {"path": "/var/log"}}])
    first, after, second = prepared_twice(workload)
    assert first.patch["spec"]["template"]["spec"]["volumes"] == [{"name": "dotnet-diag", "emptyDir": {}}]
    assert second.already_prepared


def test_explicit_volume_name_taken_is_an_error():
    workload = deployment(volumes=[{"name": "cache", "configMap": {"name": "c"}}])
    with pytest.raises(UsageError) as err:
        plan_prepare(workload, PrepareOptions(volume_name="cache"))
    assert "configMap" in err.value.message and "--volume-name" in err.value.hint


def test_declared_but_unused_empty_dir_is_mounted_not_redeclared():
    workload = deployment(volumes=[{"name": "diagvol", "emptyDir": {}}])
    plan = plan_prepare(workload)
    tspec = plan.patch["spec"]["template"]["spec"]
    assert "volumes" not in tspec
    assert tspec["containers"][0]["volumeMounts"] == [{"name": "diagvol", "mountPath": "/diag"}]


def test_empty_dir_already_at_the_mount_path_is_reused():
    workload = deployment(containers=[{"name": "app", "image": "web:1",
                                       "volumeMounts": [{"name": "scratch", "mountPath": "/diag"}]}],
                          volumes=[{"name": "scratch", "emptyDir": {}}])
    plan = plan_prepare(workload)
    tspec = plan.patch["spec"]["template"]["spec"]
    assert "volumes" not in tspec and "volumeMounts" not in tspec["containers"][0]
    assert plan.socket_path == "/diag/dotnet-monitor.sock"


def test_mount_path_used_by_another_volume_kind_is_an_error():
    workload = deployment(containers=[{"name": "app", "image": "web:1",
                                       "volumeMounts": [{"name": "cfg", "mountPath": "/diag"}]}],
                          volumes=[{"name": "cfg", "configMap": {"name": "c"}}])
    with pytest.raises(UsageError) as err:
        plan_prepare(workload)
    assert "--mount-path" in err.value.hint


@pytest.mark.parametrize("path", ["diag", "/", "", "C:/diag"])
def test_bad_mount_paths(path):
    with pytest.raises(UsageError):
        PrepareOptions(mount_path=path)


def test_bad_volume_name():
    with pytest.raises(UsageError):
        PrepareOptions(volume_name="Diag_Vol")


# ---------------------------------------------------------------------------------------------
# Which container


def test_several_containers_need_c():
    workload = deployment(containers=[{"name": "app", "image": "web:1"}, {"name": "proxy", "image": "envoy"}])
    with pytest.raises(UsageError) as err:
        plan_prepare(workload)
    assert "-c" in err.value.hint
    plan = plan_prepare(workload, PrepareOptions(container="app"))
    assert plan.patch["spec"]["template"]["spec"]["containers"][0]["name"] == "app"


def test_default_container_annotation_is_honoured():
    workload = deployment(containers=[{"name": "proxy", "image": "envoy"}, {"name": "app", "image": "web:1"}],
                          annotations={"kubectl.kubernetes.io/default-container": "app"})
    assert plan_prepare(workload).app_container == "app"


def test_unknown_user_is_a_warning():
    assert any("runAsUser" in w for w in plan_prepare(deployment()).warnings)
    assert not any("runAsUser" in w for w in plan_prepare(deployment(pod_sc={"runAsUser": 1000})).warnings)


# ---------------------------------------------------------------------------------------------
# Rendering, and the invariant


def test_yaml_and_json_render_the_same_patch():
    plan = plan_prepare(deployment())
    assert yaml.safe_load(render_patch(plan)) == plan.patch
    assert json.loads(render_patch(plan, "json")) == plan.patch


@pytest.mark.parametrize("env", [
    [],
    [{"name": "DOTNET_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock"}],
    [{"name": "DOTNET_DiagnosticPorts", "value": "/tmp/x.sock,suspend"}],
    [{"name": "DOTNET_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock,listen"}],
    [{"name": "COMPlus_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock,suspend"}],
])
def test_our_socket_never_goes_without_nosuspend(env):
    workload = deployment(containers=[{"name": "app", "image": "web:1", "env": env}])
    plan = plan_prepare(workload)
    value = plan.patch["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"]
    ours = [p for p in parse_diagnostic_ports(value) if p.address == plan.socket_path]
    assert ours and all(not p.suspend for p in ours)


def test_input_is_not_modified():
    workload = deployment()
    before = copy.deepcopy(workload)
    prepared_twice(workload)
    assert workload == before


# ---------------------------------------------------------------------------------------------
# kube/workloads: targets and owners


@pytest.mark.parametrize("text,kind,name", [
    ("deploy/web", DEPLOYMENT, "web"),
    ("deployment/web", DEPLOYMENT, "web"),
    ("deployments.apps/web", DEPLOYMENT, "web"),
    ("sts/db", STATEFULSET, "db"),
    ("statefulset.apps/db", STATEFULSET, "db"),
    ("ds/agent", DAEMONSET, "agent"),
    ("daemonsets/agent", DAEMONSET, "agent"),
    ("rs/web-1a2b", REPLICASET, "web-1a2b"),
    ("pod/web-0", POD, "web-0"),
    ("po/web-0", POD, "web-0"),
    ("web-0", POD, "web-0"),
])
def test_parse_target(text, kind, name):
    ref = parse_target(text)
    assert ref.kind is kind and ref.name == name


@pytest.mark.parametrize("text", ["job/x", "deploy/", "deploy/a/b", "", "svc/web"])
def test_parse_target_rejects(text):
    with pytest.raises(UsageError):
        parse_target(text)


def test_paths():
    assert parse_target("deploy/web").path("shop") == "/apis/apps/v1/namespaces/shop/deployments/web"
    assert parse_target("web-0").path("shop") == "/api/v1/namespaces/shop/pods/web-0"


class FakeClient:
    def __init__(self, objects: dict[str, dict]):
        self.objects = objects
        self.patches: list = []

    def get(self, path, query=None):
        from kubectl_dotnet_monitor.kube.api import ApiNotFound

        if path not in self.objects:
            raise ApiNotFound("not found", status=404)
        return copy.deepcopy(self.objects[path])

    def patch(self, path, body, patch_type="strategic", dry_run=False):
        self.patches.append((path, body, patch_type, dry_run))
        result = apply_strategic(self.objects[path], body)
        if not dry_run:
            self.objects[path] = result
        return copy.deepcopy(result)


def owned(kind: str, name: str) -> list[dict]:
    return [{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": True}]


def cluster_with_deployment() -> FakeClient:
    dep = deployment()
    return FakeClient({
        "/api/v1/namespaces/shop/pods/web-7d9f-abcde": {"metadata": {"name": "web-7d9f-abcde", "ownerReferences": owned("ReplicaSet", "web-7d9f")}},
        "/apis/apps/v1/namespaces/shop/replicasets/web-7d9f": {"metadata": {"name": "web-7d9f", "ownerReferences": owned("Deployment", "web")}},
        "/apis/apps/v1/namespaces/shop/deployments/web": dep,
        "/api/v1/namespaces/shop/pods/bare": {"metadata": {"name": "bare"}},
        "/api/v1/namespaces/shop/pods/job-x": {"metadata": {"name": "job-x", "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "Job", "name": "nightly", "uid": "u", "controller": True}]}},
    })


def test_pod_resolves_to_its_deployment():
    client = cluster_with_deployment()
    ref, obj = resolve_workload(client, "shop", parse_target("web-7d9f-abcde"))
    assert str(ref) == "deploy/web" and obj["kind"] == "Deployment"


def test_bare_pod_and_job_pod_are_explained():
    client = cluster_with_deployment()
    with pytest.raises(NotReadyError) as err:
        resolve_workload(client, "shop", parse_target("bare"))
    assert "not managed" in err.value.message
    with pytest.raises(NotReadyError) as err:
        resolve_workload(client, "shop", parse_target("job-x"))
    assert "Job" in err.value.message


def test_missing_workload_is_not_found():
    from kubectl_dotnet_monitor.errors import NotFoundError

    with pytest.raises(NotFoundError) as err:
        resolve_workload(cluster_with_deployment(), "shop", parse_target("deploy/nope"))
    assert 'deployment "nope" not found in namespace "shop"' in err.value.message


def test_controller_of():
    assert controller_of({"metadata": {"ownerReferences": owned("ReplicaSet", "x")}}) == ("ReplicaSet", "x")
    assert controller_of({"metadata": {}}) is None


# ---------------------------------------------------------------------------------------------
# --apply: dry run, then the patch; idempotent


def test_apply_dry_runs_first_and_is_idempotent():
    from kubectl_dotnet_monitor.preflight.apply import apply_plan, plan_target

    client = cluster_with_deployment()
    options = PrepareOptions()
    target = plan_target(client, "shop", parse_target("web-7d9f-abcde"), options)
    assert target.followed_owner and str(target.workload) == "deploy/web"
    assert apply_plan(client, "shop", target, options) is not None
    assert [p[3] for p in client.patches] == [True, False]
    again = plan_target(client, "shop", parse_target("deploy/web"), options)
    assert again.plan.already_prepared
    assert apply_plan(client, "shop", again, options) is None
    assert len(client.patches) == 2


def test_apply_forbidden_says_which_permission():
    from kubectl_dotnet_monitor.errors import ForbiddenError
    from kubectl_dotnet_monitor.kube.api import ApiForbidden
    from kubectl_dotnet_monitor.preflight.apply import apply_plan, plan_target

    client = cluster_with_deployment()

    def refuse(*a, **kw):
        raise ApiForbidden('deployments.apps "web" is forbidden', status=403,
                           api_message='deployments.apps "web" is forbidden: User "x" cannot patch')

    client.patch = refuse
    target = plan_target(client, "shop", parse_target("deploy/web"), PrepareOptions())
    with pytest.raises(ForbiddenError) as err:
        apply_plan(client, "shop", target, PrepareOptions())
    assert "patch" in err.value.hint and "deployments.apps" in err.value.hint
