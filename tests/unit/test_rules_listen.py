"""Rules need Listen mode: which pods can give it, and what an unprepared pod is told (no cluster)."""

from __future__ import annotations

import pytest

from kubectl_dotnet_monitor.errors import NotReadyError
from kubectl_dotnet_monitor.rules.listen import check_listen_mode


def pod(env: list[dict] | None = None, mounts: list[dict] | None = None, volumes: list[dict] | None = None,
        owned: bool = True, **spec: object) -> dict:
    meta = {"name": "web-1", "namespace": "shop"}
    if owned:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": "web-7d4b9", "uid": "u1"}]
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "app", "image": "shop/web:1", "env": env or [],
                                 "volumeMounts": mounts or []}],
                 "volumes": volumes or [], **spec},
    }


PREPARED = pod(env=[{"name": "DOTNET_DiagnosticPorts", "value": "/diag/dotnet-monitor.sock,nosuspend"}],
               mounts=[{"name": "diagvol", "mountPath": "/diag"}], volumes=[{"name": "diagvol", "emptyDir": {}}])


def test_prepared_pod_passes():
    check_listen_mode(PREPARED)
    check_listen_mode(PREPARED, "app")


def test_unprepared_pod_of_a_workload_names_prepare():
    with pytest.raises(NotReadyError) as info:
        check_listen_mode(pod())
    err = info.value
    assert "collection rules (--rules) need dotnet-monitor's Listen mode" in err.message
    assert "pod shop/web-1" in err.message and "DOTNET_DiagnosticPorts is not set" in err.message
    assert "kubectl dotnet-monitor prepare pod/web-1 -n shop --apply" in err.hint


def test_process_namespace_route_is_not_enough():
    # Connect mode through a shared process namespace would inject fine, but runs no rules.
    with pytest.raises(NotReadyError) as info:
        check_listen_mode(pod(shareProcessNamespace=True))
    assert "run no rules" in info.value.message


def test_socket_not_on_a_volume_says_why():
    broken = pod(env=[{"name": "DOTNET_DiagnosticPorts", "value": "/tmp/dm.sock,nosuspend"}])
    with pytest.raises(NotReadyError) as info:
        check_listen_mode(broken)
    assert "/tmp/dm.sock is not on a volume" in info.value.message


def test_bare_pod_is_told_to_change_its_manifest():
    with pytest.raises(NotReadyError) as info:
        check_listen_mode(pod(owned=False), what="in-process features")
    err = info.value
    assert err.message.startswith("in-process features need dotnet-monitor's Listen mode")
    assert "belongs to no Deployment" in err.hint and "prepare" in err.hint
    assert "DOTNET_DiagnosticPorts" in err.hint and "nosuspend" in err.hint
