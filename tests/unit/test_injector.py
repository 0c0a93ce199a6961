"""The injector's pure judgements: pod phase, cluster version, container states."""

from __future__ import annotations

import pytest

from kubectl_dotnet_monitor.errors import ExitCode, NotReadyError
from kubectl_dotnet_monitor.inject.injector import check_cluster_version, check_pod_running, judge_container


def pod(phase: str, **extra) -> dict:
    meta = {"name": "web-1", "namespace": "shop", **extra.pop("meta", {})}
    return {"metadata": meta, "status": {"phase": phase, **extra}}


def test_running_pod_passes():
    check_pod_running(pod("Running"))


@pytest.mark.parametrize("phase, words", [
    ("Succeeded", ["has finished (Succeeded)", "no process left"]),
    ("Failed", ["has finished (Failed)", "no process left"]),
    ("Unknown", ["in phase Unknown"]),
])
def test_finished_or_unknown_pods_are_refused(phase, words):
    with pytest.raises(NotReadyError) as info:
        check_pod_running(pod(phase))
    assert info.value.exit_code == ExitCode.NOT_READY
    for word in words:
        assert word in info.value.message


def test_pending_pod_says_why():
    p = pod("Pending", containerStatuses=[{"name": "app", "state": {"waiting": {"reason": "ImagePullBackOff"}}}])
    with pytest.raises(NotReadyError, match=r"Pending \(app: ImagePullBackOff\)") as info:
        check_pod_running(p)
    assert "kubectl get pod web-1 -n shop -w" in info.value.hint


def test_terminating_pod_is_refused():
    with pytest.raises(NotReadyError, match="being deleted"):
        check_pod_running(pod("Running", meta={"deletionTimestamp": "2026-11-29T00:00:00Z"}))


@pytest.mark.parametrize("version, ok", [
    ({"major": "1", "minor": "24", "gitVersion": "v1.24.17"}, False),
    ({"major": "1", "minor": "25"}, True),
    ({"major": "1", "minor": "31+", "gitVersion": "v1.31.2-gke.1"}, True),
    ({"major": "", "minor": ""}, True),  # unknown: the API itself answers
])
def test_cluster_version(version, ok):
    if ok:
        check_cluster_version(version)
    else:
        with pytest.raises(NotReadyError, match="1.25 or newer"):
            check_cluster_version(version)


def with_monitor_state(state: dict) -> dict:
    p = pod("Running")
    p["status"]["ephemeralContainerStatuses"] = [{"name": "dotnet-monitor", "state": state}]
    return p


def test_running_monitor_is_judged_running():
    assert judge_container(with_monitor_state({"running": {}}), "dotnet-monitor") is True


def test_creating_monitor_is_not_yet_running():
    assert judge_container(with_monitor_state({"waiting": {"reason": "ContainerCreating"}}), "dotnet-monitor") is False


def test_terminated_monitor_points_at_its_log():
    state = {"terminated": {"reason": "Error", "exitCode": 1, "message": "bind failed"}}
    with pytest.raises(NotReadyError, match=r"terminated \(Error, exit code 1\): bind failed") as info:
        judge_container(with_monitor_state(state), "dotnet-monitor")
    assert "kubectl logs web-1 -n shop -c dotnet-monitor" in info.value.hint


def test_image_pull_backoff_names_the_image_flag():
    state = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
    with pytest.raises(NotReadyError, match="cannot start: ImagePullBackOff") as info:
        judge_container(with_monitor_state(state), "dotnet-monitor")
    assert "--image" in info.value.hint
