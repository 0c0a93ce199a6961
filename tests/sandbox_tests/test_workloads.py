"""apps/v1 writes and the controllers behind them; the kubelet owning every pod (env from Secrets,
ConfigMaps and the downward API, CreateContainerConfigError); Events."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox import Sandbox

MONITOR = "mcr.microsoft.com/dotnet/monitor:9"


class Api:
    """Minimal REST client of the in-process sandbox (a token per user)."""

    def __init__(self, sb: Sandbox, user: str = "admin") -> None:
        self.sb = sb
        self.token = sb.tokens[user]
        host, port = sb.server.replace("https://", "").split(":")
        self.host, self.port = host, int(port)
        self.ctx = ssl.create_default_context(cafile=str(Path(sb.state_dir) / "ca.crt"))

    def call(self, method: str, path: str, body: Any = None,
             ctype: str = "application/json") -> tuple[int, Any, dict]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=20)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = ctype
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw or b"null"), dict(resp.getheaders())
        finally:
            conn.close()


def wait_for(fn: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def sb(tmp_path_factory):
    sandbox = Sandbox("workloads", tmp_path_factory.mktemp("sandbox-workloads")).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def api(sb):
    return Api(sb)


def pods_of(sb: Sandbox, prefix: str, ns: str = "default") -> list[dict]:
    items, _ = sb.store.list("pods", ns)
    return [p for p in items if p["metadata"]["name"].startswith(prefix)]


def ready(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


DEP = "/apis/apps/v1/namespaces/default/deployments/shop"


def test_patch_deployment_rolls_a_new_replicaset(sb, api):
    before = {p["metadata"]["name"] for p in pods_of(sb, "shop-")}
    old_rs = {r["metadata"]["name"] for r in sb.store.list("replicasets", "default")[0]}
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "DOTNET_DiagnosticPorts", "value": "/diag/x.sock"}]}]}}}}
    code, dry, _ = api.call("PATCH", DEP + "?dryRun=All", patch,
                            "application/strategic-merge-patch+json")
    assert code == 200, dry
    assert dry["metadata"]["generation"] == 2
    assert dry["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "/diag/x.sock"
    assert sb.store.get("deployments", "default", "shop")["metadata"]["generation"] == 1
    code, out, _ = api.call("PATCH", DEP, patch, "application/strategic-merge-patch+json")
    assert code == 200, out
    assert out["metadata"]["generation"] == 2
    # The container kept its image (merged by name) and got its defaults.
    c = out["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example/shop/web:1.4" and c["terminationMessagePolicy"] == "File"

    def rolled():
        dep = sb.store.get("deployments", "default", "shop")
        st = dep.get("status") or {}
        pods = pods_of(sb, "shop-")
        return (st.get("observedGeneration") == 2 and st.get("updatedReplicas") == 2
                and st.get("readyReplicas") == 2 and len(pods) == 2
                and all(ready(p) for p in pods)
                and not ({p["metadata"]["name"] for p in pods} & before)) and dep
    dep = wait_for(rolled, what="the rollout")
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    rss = {r["metadata"]["name"]: r for r in sb.store.list("replicasets", "default")[0]}
    new = [n for n in rss if n not in old_rs and n.startswith("shop-")]
    assert len(new) == 1 and rss[new[0]]["spec"]["replicas"] == 2
    assert all(rss[n]["spec"]["replicas"] == 0 for n in old_rs if n.startswith("shop-"))
    for p in pods_of(sb, "shop-"):
        assert p["metadata"]["name"].startswith(new[0] + "-")
        assert p["spec"]["containers"][0]["env"][0]["value"] == "/diag/x.sock"
    # The same patch again changes nothing.
    code, again, _ = api.call("PATCH", DEP, patch, "application/strategic-merge-patch+json")
    assert code == 200 and again["metadata"]["generation"] == 2
    events, _ = sb.store.list("events", "default")
    assert any(e["reason"] == "ScalingReplicaSet" and new[0] in e["message"] for e in events)


def test_replicaset_replaces_a_deleted_pod(sb, api):
    wait_for(lambda: len([p for p in pods_of(sb, "shop-") if ready(p)]) == 2, what="2 ready")
    victim = pods_of(sb, "shop-")[0]["metadata"]["name"]
    code, _, _ = api.call("DELETE", f"/api/v1/namespaces/default/pods/{victim}")
    assert code == 200

    def replaced():
        pods = pods_of(sb, "shop-")
        names = {p["metadata"]["name"] for p in pods}
        return victim not in names and len(pods) == 2 and all(ready(p) for p in pods)
    wait_for(replaced, what="a replacement pod")


def test_statefulset_merge_patch_replaces_pods_in_order(sb, api):
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(sb, "db-")}
    patch = {"spec": {"template": {"metadata": {"annotations": {"restarted": "1"}}}}}
    code, out, _ = api.call("PATCH", "/apis/apps/v1/namespaces/default/statefulsets/db", patch,
                            "application/merge-patch+json")
    assert code == 200 and out["metadata"]["generation"] == 2
    # merge patch replaces lists: the containers were not touched, so they are still there
    assert out["spec"]["template"]["spec"]["containers"][0]["name"] == "app"

    def done():
        sts = sb.store.get("statefulsets", "default", "db")
        pods = pods_of(sb, "db-")
        return (sts["status"].get("observedGeneration") == 2
                and sts["status"].get("updatedReplicas") == 2 and len(pods) == 2
                and all(ready(p) and p["metadata"]["uid"] != uids[p["metadata"]["name"]]
                        and p["metadata"]["annotations"].get("restarted") == "1" for p in pods))
    wait_for(done, what="the statefulset rollout")
    assert sorted(p["metadata"]["name"] for p in pods_of(sb, "db-")) == ["db-0", "db-1"]


def test_daemonset_put_and_json_patch(sb, api):
    path = "/apis/apps/v1/namespaces/default/daemonsets/agent"
    code, ds, _ = api.call("GET", path)
    old = {p["metadata"]["uid"] for p in pods_of(sb, "agent-")}
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/infra/agent:1.0"
    stale = dict(ds, metadata=dict(ds["metadata"], resourceVersion="1"))
    code, body, _ = api.call("PUT", path, stale)
    assert code == 409 and body["reason"] == "Conflict"
    code, body, _ = api.call("PUT", path, ds)
    assert code == 200 and body["metadata"]["generation"] == 2

    def done():
        pods = pods_of(sb, "agent-")
        return len(pods) == 2 and all(
            ready(p) and p["metadata"]["uid"] not in old
            and p["spec"]["containers"][0]["image"].endswith(":1.0") for p in pods)
    wait_for(done, what="the daemonset rollout")
    ops = [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
            "value": "registry.example/infra/agent:0.9"}]
    code, body, _ = api.call("PATCH", path + "?dryRun=All", ops, "application/json-patch+json")
    assert code == 200 and body["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.9")
    assert sb.store.get("daemonsets", "default", "agent")["metadata"]["generation"] == 2


def test_workload_writes_are_authorised_and_validated(sb, api):
    reader = Api(sb, "apps-reader")
    code, body, _ = reader.call("PATCH", DEP, {"metadata": {"labels": {"x": "y"}}},
                                "application/strategic-merge-patch+json")
    assert code == 403
    assert body["message"] == ('deployments.apps "shop" is forbidden: User "apps-reader" cannot '
                               'patch resource "deployments" in API group "apps" in the namespace '
                               '"default"')
    code, body, _ = api.call("PATCH", DEP, {"spec": {"selector": {"matchLabels": {"app": "x"}}}},
                             "application/merge-patch+json")
    assert code == 422 and "field is immutable" in body["message"]
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "volumeMounts": [{"name": "diag", "mountPath": "/diag"}]}]}}}}
    code, body, _ = api.call("PATCH", DEP, patch, "application/strategic-merge-patch+json")
    assert code == 422
    assert body["details"]["causes"][0]["field"] == "spec.template.spec.containers[0].volumeMounts[0].name"
    code, body, _ = api.call("PATCH", DEP, patch, "text/plain")
    assert code == 415


def test_pod_security_is_enforced_on_the_pods_not_the_workload(sb, api):
    path = "/apis/apps/v1/namespaces/locked/deployments/rooted"
    patch = {"spec": {"template": {"spec": {"securityContext": {"runAsNonRoot": None},
                                            "containers": [{"name": "app", "env": [
                                                {"name": "A", "value": "1"}]}]}}}}
    code, body, headers = api.call("PATCH", path, patch, "application/strategic-merge-patch+json")
    assert code == 200, body
    assert headers.get("Warning", "").startswith(
        '299 - "would violate PodSecurity \\"restricted:latest\\": runAsNonRoot != true')

    def failed():
        events, _ = sb.store.list("events", "locked")
        return [e for e in events if e["reason"] == "FailedCreate"]
    ev = wait_for(failed, what="FailedCreate")[0]
    assert ev["involvedObject"]["kind"] == "ReplicaSet"
    assert "violates PodSecurity" in ev["message"]
    # The old pod keeps serving: maxUnavailable rounds down to 0 for one replica.
    time.sleep(0.3)
    pods = pods_of(sb, "rooted-", "locked")
    assert len(pods) == 1 and ready(pods[0])


def test_initial_pods_with_unresolvable_env_wait_until_the_secret_exists(sb, api):
    pod = sb.store.get("pods", "default", "missing-secret")
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"] == {
        "reason": "CreateContainerConfigError", "message": 'secret "not-there" not found'}
    pod = sb.store.get("pods", "default", "missing-key")
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"] == \
        "couldn't find key token in Secret default/egress-keys"
    code, body, _ = api.call(
        "GET", "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dmissing-secret")
    assert code == 200
    assert any(e["message"] == 'Error: secret "not-there" not found' for e in body["items"])
    code, _, _ = api.call("POST", "/api/v1/namespaces/default/secrets", {
        "metadata": {"name": "not-there"}, "stringData": {"token": "t"}})
    assert code == 201
    wait_for(lambda: ready(sb.store.get("pods", "default", "missing-secret")),
             what="the pod to start once its Secret exists")


def _inject(api: Api, pod: str, container: dict) -> None:
    code, body, _ = api.call("PATCH", f"/api/v1/namespaces/default/pods/{pod}/ephemeralcontainers",
                             {"spec": {"ephemeralContainers": [container]}},
                             "application/strategic-merge-patch+json")
    assert code == 200, body


def _eph_state(sb: Sandbox, pod: str, name: str) -> dict:
    p = sb.store.get("pods", "default", pod)
    for s in p["status"].get("ephemeralContainerStatuses") or []:
        if s["name"] == name:
            return s["state"]
    return {}


def test_monitor_env_from_secret_configmap_and_downward_api(sb, api):
    _inject(api, "envpod", {
        "name": "monitor", "image": MONITOR, "args": ["--no-auth"],
        "terminationMessagePolicy": "File",
        "env": [
            {"name": "DotnetMonitor_Egress__AzureBlobStorage__blob__AccountKey",
             "valueFrom": {"secretKeyRef": {"name": "egress-keys", "key": "accountKey"}}},
            {"name": "DotnetMonitor_Egress__AzureBlobStorage__blob__ContainerName",
             "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ]})
    wait_for(lambda: "running" in _eph_state(sb, "envpod", "monitor"), what="monitor running")
    run = sb.kubelet._runs[(sb.store.get("pods", "default", "envpod")["metadata"]["uid"], "monitor")]
    cfg = run.monitor.config
    assert cfg.env["DotnetMonitor_Egress__AzureBlobStorage__blob__AccountKey"] == "super-secret"
    assert cfg.egress["blob"].settings["ContainerName"] == "envpod"
    assert cfg.env["POD_IP"] == sb.store.get("pods", "default", "envpod")["status"]["podIP"]
    # The app's processes see their resolved env too (what the monitor's process view reads).
    app_env = {e["name"]: e["value"] for e in run.monitor.monitor.pod["spec"]["containers"][0]["env"]}
    assert app_env["SECRET_VALUE"] == "super-secret" and app_env["CFG_LEVEL"] == "debug"
    assert app_env["GREETING"] == "mode=fast in default"
    assert "OPTIONAL" not in app_env  # an optional ref to a missing Secret sets nothing
    assert "CFG_mode" in app_env


def test_ephemeral_container_with_a_missing_secret_and_an_unpullable_image(sb, api):
    _inject(api, "envpod", {
        "name": "monitor-2", "image": MONITOR, "terminationMessagePolicy": "File",
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "egress-keys",
                                                             "key": "missing"}}}]})
    state = wait_for(lambda: _eph_state(sb, "envpod", "monitor-2").get("waiting", {}).get(
        "reason") == "CreateContainerConfigError" and _eph_state(sb, "envpod", "monitor-2"),
        what="CreateContainerConfigError")
    assert state["waiting"]["message"] == "couldn't find key missing in Secret default/egress-keys"
    _inject(api, "envpod", {"name": "monitor-3", "image": "mcr.microsoft.com/dotnet/monitor:does-not-exist",
                            "terminationMessagePolicy": "File"})

    def pull_events():
        events, _ = sb.store.list("events", "default")
        return [e for e in events if e["involvedObject"].get("fieldPath") ==
                "spec.ephemeralContainers{monitor-3}"]
    wait_for(lambda: any(e["reason"] == "BackOff" for e in pull_events()), what="BackOff event")
    reasons = {e["reason"] for e in pull_events()}
    assert {"Pulling", "Failed", "BackOff"} <= reasons
    started = [e for e in sb.store.list("events", "default")[0]
               if e["involvedObject"].get("fieldPath") == "spec.ephemeralContainers{monitor}"]
    assert {"Pulling", "Pulled", "Created", "Started"} <= {e["reason"] for e in started}


def test_real_kubectl_set_image_and_rollout_status(sb):
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    env = sb.handle().env()
    out = subprocess.run([kubectl, "set", "image", "deploy/shop", "app=registry.example/shop/web:1.5"],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([kubectl, "rollout", "status", "deploy/shop", "--timeout=30s"],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert 'deployment "shop" successfully rolled out' in out.stdout
    out = subprocess.run([kubectl, "describe", "pod", "missing-key"], env=env, check=False,
                         capture_output=True, text=True, timeout=60)
    assert "couldn't find key token in Secret default/egress-keys" in out.stdout
