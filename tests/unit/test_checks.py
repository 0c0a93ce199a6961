"""doctor's checks, one function at a time, and the report's rendering and exit code."""

from __future__ import annotations

import json

import pytest

from kubectl_dotnet_monitor.errors import ExitCode, ForbiddenError, NotReadyError
from kubectl_dotnet_monitor.preflight.checks import (
    PERMISSIONS,
    DoctorReport,
    check_app_container,
    check_cluster_version,
    check_ephemeral_api,
    check_monitors,
    check_permission,
    check_pod_phase,
    check_pod_security,
    check_processes,
    check_user_ids,
    cluster_minor,
    render_human,
    suggested_prepare_target,
)


def pod(phase="Running", env=None, mounts=None, volumes=None, owner=None, labels=None, eph=None, eph_status=None):
    meta = {"name": "web-7d9f-abcde", "namespace": "shop", "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    spec = {"containers": [{"name": "app", "image": "web:1", "env": env or [], "volumeMounts": mounts or [],
                            "securityContext": {"runAsUser": 1654}}], "volumes": volumes or []}
    if eph:
        spec["ephemeralContainers"] = eph
    status = {"phase": phase}
    if eph_status:
        status["ephemeralContainerStatuses"] = eph_status
    return {"metadata": meta, "spec": spec, "status": status}


PREPARED = dict(env=[{"name": "DOTNET_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock,nosuspend"}],
                mounts=[{"name": "diagvol", "mountPath": "/diag"}], volumes=[{"name": "diagvol", "emptyDir": {}}])


@pytest.mark.parametrize("version,status", [
    ({"major": "1", "minor": "33", "gitVersion": "v1.33.1"}, "passed"),
    ({"major": "1", "minor": "25+", "gitVersion": "v1.25.3-eks"}, "passed"),
    ({"major": "1", "minor": "24", "gitVersion": "v1.24.17"}, "failed"),
    ({"major": "", "minor": ""}, "warning"),
])
def test_cluster_version(version, status):
    assert check_cluster_version(version).status == status


def test_cluster_minor():
    assert cluster_minor({"major": "1", "minor": "30+"}) == 30
    assert cluster_minor({"major": "2", "minor": "0"}) is None


def test_ephemeral_api_from_discovery():
    served = {"resources": [{"name": "pods"}, {"name": "pods/ephemeralcontainers", "verbs": ["get", "patch", "update"]}]}
    assert check_ephemeral_api(served).ok
    result = check_ephemeral_api({"resources": [{"name": "pods"}]})
    assert not result.ok and "disabled" in result.detail and "1.25" in result.fix


def permission(label):
    return next(p for p in PERMISSIONS if p.label == label)


def test_permission_review_body():
    body = permission("patch pods/ephemeralcontainers").review("shop", "web-1")
    assert body["spec"]["resourceAttributes"] == {"namespace": "shop", "verb": "patch", "resource": "pods",
                                                  "subresource": "ephemeralcontainers", "name": "web-1"}


def test_denied_patch_fails_with_the_rbac_fix():
    result = check_permission(permission("patch pods/ephemeralcontainers"), {"allowed": False}, "shop", 33)
    assert result.status == "failed" and result.exit_code == ExitCode.FORBIDDEN
    assert "kubectl dotnet-monitor rbac -n shop" in result.fix
    assert "kubectl auth can-i patch pods/ephemeralcontainers -n shop" in result.fix


def test_secrets_and_old_portforward_create_only_warn():
    secrets = check_permission(permission("create secrets"), {"allowed": False}, "shop", 33)
    assert secrets.status == "warning" and "local file" in secrets.detail
    old = check_permission(permission("create pods/portforward"), {"allowed": False}, "shop", 33)
    new = check_permission(permission("create pods/portforward"), {"allowed": False}, "shop", 35)
    assert old.status == "warning" and new.status == "failed"


def test_review_error_is_a_failure():
    result = check_permission(permission("get pods"), None, "shop", 33, error=ForbiddenError("nope", "hint"))
    assert result.status == "failed" and result.exit_code == ExitCode.FORBIDDEN


def test_pod_phase():
    assert check_pod_phase(pod()).ok
    pending = check_pod_phase(pod(phase="Pending"))
    assert not pending.ok and "Pending" in pending.detail and pending.exit_code == ExitCode.NOT_READY


def test_suggested_prepare_target():
    assert suggested_prepare_target(pod(owner=("ReplicaSet", "web-7d9f"), labels={"pod-template-hash": "7d9f"})) == "deploy/web"
    assert suggested_prepare_target(pod(owner=("StatefulSet", "db"))) == "sts/db"
    assert suggested_prepare_target(pod(owner=("DaemonSet", "agent"))) == "ds/agent"
    assert suggested_prepare_target(pod()) == "pod/web-7d9f-abcde"


def plan_for(p):
    from kubectl_dotnet_monitor.inject.spec import MonitorOptions, plan_injection

    return plan_injection(p, MonitorOptions(no_auth=True))


def test_app_container_prepared():
    p = pod(**PREPARED)
    assert check_app_container(p, plan_for(p)).status == "passed"
    assert check_user_ids(p, plan_for(p)).status == "passed"


def test_app_container_suspend_warns():
    p = pod(**{**PREPARED, "env": [{"name": "DOTNET_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock"}]})
    result = check_app_container(p, plan_for(p))
    assert result.status == "warning" and "prepare" in result.fix


def test_app_container_not_prepared_names_prepare():
    p = pod(owner=("ReplicaSet", "web-7d9f"), labels={"pod-template-hash": "7d9f"})
    p["spec"]["shareProcessNamespace"] = True
    with pytest.raises(NotReadyError) as err:
        plan_for(p)
    result = check_app_container(p, None, err.value)
    assert result.status == "failed"
    assert "kubectl dotnet-monitor prepare deploy/web -n shop" in result.fix


def test_pod_security_outcomes():
    assert check_pod_security(None).status == "passed"
    refused = check_pod_security(ForbiddenError('violates PodSecurity "restricted:latest"', "run as non-root"))
    assert refused.status == "failed" and refused.exit_code == ExitCode.FORBIDDEN
    assert check_pod_security(None, reason_skipped="no").status == "skipped"


def monitor(name="dotnet-monitor"):
    return {"name": name, "image": "mcr.microsoft.com/dotnet/monitor:10.0", "env": []}


def test_monitors():
    assert check_monitors(pod()).status == "passed"
    running = pod(eph=[monitor()], eph_status=[{"name": "dotnet-monitor", "state": {"running": {}}}])
    assert check_monitors(running).detail == "dotnet-monitor (running)"
    stuck = pod(eph=[monitor()], eph_status=[{"name": "dotnet-monitor", "state": {
        "waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling"}}}])
    result = check_monitors(stuck)
    assert result.status == "failed" and "Back-off pulling" in result.detail
    done = pod(eph=[monitor()], eph_status=[{"name": "dotnet-monitor", "state": {"terminated": {"reason": "Error", "exitCode": 1}}}])
    assert check_monitors(done).status == "warning"


def test_processes():
    assert check_processes([{"pid": 1, "name": "Web"}], None, "m").detail == "Web (pid 1)"
    empty = check_processes([], None, "m")
    assert empty.status == "failed" and "same user" in empty.fix


def test_report_exit_code_is_the_first_failure_and_renders():
    report = DoctorReport("shop", "web")
    report.results += [
        check_cluster_version({"major": "1", "minor": "33", "gitVersion": "v1.33.1"}),
        check_permission(permission("patch pods/ephemeralcontainers"), {"allowed": False}, "shop", 33),
        check_pod_phase(pod(phase="Pending")),
        check_pod_security(None, reason_skipped="the pod is not running"),
    ]
    assert report.exit_code == ExitCode.FORBIDDEN and not report.ok
    text = render_human(report)
    assert "✔ cluster version" in text and "✘ permission: patch pods/ephemeralcontainers" in text
    assert "\n    fix: " in text and "- pod security: the pod is not running" in text
    assert text.rstrip().endswith("pod shop/web: 2 checks failed")
    assert "[FAIL]" in render_human(report, unicode=False)
    doc = json.loads(json.dumps(report.to_dict()))
    assert [c["status"] for c in doc["checks"]] == ["passed", "failed", "failed", "skipped"]
    assert "fix" not in doc["checks"][0] and "fix" in doc["checks"][1]
    assert DoctorReport("shop", "web", [check_pod_phase(pod())]).exit_code == ExitCode.OK
