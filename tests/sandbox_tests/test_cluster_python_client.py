"""The official Python client against the sandbox (the same calls the fidelity tests rely on)."""

from __future__ import annotations

import pytest

from tests.sandbox import SandboxHandle


@pytest.fixture
def core(sandbox: SandboxHandle):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    yield client.CoreV1Api(api_client)
    api_client.close()


def test_read_and_list_pods(core) -> None:
    from kubernetes import client

    pods = core.list_namespaced_pod("default", label_selector="app=web").items
    assert len(pods) == 2
    pod = core.read_namespaced_pod(pods[0].metadata.name, "default")
    assert pod.status.phase == "Running"
    assert pod.spec.containers[0].env[0].name == "DOTNET_DiagnosticPorts"
    running = core.list_pod_for_all_namespaces(field_selector="status.phase=Pending").items
    assert [p.metadata.name for p in running] == ["pending"]
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod("nope", "default")
    assert err.value.status == 404


def test_secret_owned_by_a_pod_is_collected_with_it(sandbox_factory) -> None:
    import time

    from kubernetes import client, config

    sb = sandbox_factory("basic", fresh=True)
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(sb.kubeconfig)))
    pod = api.read_namespaced_pod("unprepared", "default")
    api.create_namespaced_secret("default", {
        "metadata": {"name": "owned", "ownerReferences": [
            {"apiVersion": "v1", "kind": "Pod", "name": "unprepared", "uid": pod.metadata.uid}]},
        "stringData": {"subject": "x"}})
    assert api.read_namespaced_secret("owned", "default").data == {"subject": "eA=="}
    with pytest.raises(client.ApiException) as err:
        api.create_namespaced_secret("default", {"metadata": {"name": "owned"}})
    assert err.value.status == 409
    api.delete_namespaced_pod("unprepared", "default")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            api.read_namespaced_secret("owned", "default")
        except client.ApiException as exc:
            assert exc.status == 404
            break
        time.sleep(0.1)
    else:
        pytest.fail("the owned secret outlived its pod")


def test_self_subject_access_review(sandbox: SandboxHandle) -> None:
    from kubernetes import client
    from kubernetes.client import Configuration

    def allowed(user: str, verb: str, sub: str) -> bool:
        cfg = Configuration()
        cfg.host = sandbox.server
        cfg.ssl_ca_cert = str(sandbox.state_dir / "ca.crt")
        cfg.api_key = {"authorization": "Bearer " + sandbox.token(user)}
        with client.ApiClient(cfg) as api_client:
            review = client.AuthorizationV1Api(api_client).create_self_subject_access_review({
                "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"namespace": "default", "verb": verb,
                                                "resource": "pods", "subresource": sub}}})
        return review.status.allowed

    assert allowed("admin", "patch", "ephemeralcontainers")
    assert not allowed("no-patch", "patch", "ephemeralcontainers")
    assert not allowed("no-portforward", "get", "portforward")
    assert allowed("no-patch", "create", "portforward")
