"""rbac: exactly the rules the plugin needs, bindings for users/groups/service accounts, and
objects real kubectl and the official models accept."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kubectl_dotnet_monitor.errors import UsageError
from kubectl_dotnet_monitor.preflight.rbac import (
    RbacRequest,
    rbac_objects,
    render_json,
    render_yaml,
)

EXPECTED_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]


def test_role_has_exactly_the_needed_rules():
    (role,) = rbac_objects(RbacRequest(namespace="shop"))
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == "shop"
    assert role["rules"] == EXPECTED_RULES


def test_logs_rule_is_optional():
    (role,) = rbac_objects(RbacRequest(namespace="shop", logs=False))
    assert role["rules"] == EXPECTED_RULES[:-1]


def test_no_wildcards_and_no_update_or_escalation():
    for obj in rbac_objects(RbacRequest(namespace="x", cluster_wide=True, users=("a",))):
        for rule in obj.get("rules", []):
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
            assert not {"update", "escalate", "bind", "impersonate", "list"} & set(rule["verbs"]) - (
                {"list"} if rule["resources"] == ["pods"] else set())


def test_binding_with_every_subject_kind():
    role, binding = rbac_objects(RbacRequest(
        namespace="shop", users=("jane@example.com",), groups=("sre",),
        service_accounts=("ci:deployer", "runner")))
    assert binding["kind"] == "RoleBinding" and binding["metadata"]["namespace"] == "shop"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane@example.com"},
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "sre"},
        {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"},
        {"kind": "ServiceAccount", "name": "runner", "namespace": "shop"},
    ]


def test_cluster_wide():
    role, binding = rbac_objects(RbacRequest(cluster_wide=True, name="dm", groups=("sre",)))
    assert role["kind"] == "ClusterRole" and "namespace" not in role["metadata"]
    assert binding["kind"] == "ClusterRoleBinding" and "namespace" not in binding["metadata"]
    assert binding["roleRef"]["kind"] == "ClusterRole" and binding["roleRef"]["name"] == "dm"


@pytest.mark.parametrize("kw", [
    {"name": "Bad_Name"},
    {"service_accounts": ("a:b:c",)},
    {"service_accounts": (":x",)},
    {"users": ("",)},
])
def test_invalid_requests(kw):
    with pytest.raises(UsageError):
        RbacRequest(namespace="shop", **kw)


def test_yaml_stream_parses_back_with_comments():
    request = RbacRequest(namespace="shop", users=("jane",))
    text = render_yaml(request)
    assert text.startswith("# What kubectl dotnet-monitor needs in namespace shop:")
    assert "pods/ephemeralcontainers: patch" in text
    assert list(yaml.safe_load_all(text)) == rbac_objects(request)
    assert "No binding" in render_yaml(RbacRequest(namespace="shop"))


def test_json_list():
    request = RbacRequest(namespace="shop", users=("jane",))
    doc = json.loads(render_json(request))
    assert doc["kind"] == "List" and doc["items"] == rbac_objects(request)


# ---------------------------------------------------------------------------------------------
# Independent checks: the official Python models, and real kubectl


def test_objects_round_trip_through_the_official_models():
    """Every field is one the API knows (unknown keys would be dropped) and required ones are set."""
    kubernetes = pytest.importorskip("kubernetes")
    client = kubernetes.client.ApiClient()

    for request in (RbacRequest(namespace="shop", users=("u",), groups=("g",), service_accounts=("a:b",)),
                    RbacRequest(cluster_wide=True, service_accounts=("a:b",))):
        for obj in rbac_objects(request):
            model = client.deserialize(json.dumps(obj), f"V1{obj['kind']}", "application/json")
            assert client.sanitize_for_serialization(model) == obj


def _kubectl_without_server(tmp_path: Path) -> dict[str, str]:
    """A kubeconfig pointing nowhere, and a discovery cache that tells kubectl about RBAC kinds,
    so `kubectl create --dry-run=client` maps and decodes the objects without a server."""
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x", "namespace": "shop"}}],
    }))
    cache = tmp_path / "home" / ".kube" / "cache" / "discovery" / "127.0.0.1_1"
    (cache / "rbac.authorization.k8s.io" / "v1").mkdir(parents=True)
    (cache / "v1").mkdir(parents=True)
    gv = lambda g: {"groupVersion": f"{g}/v1" if g else "v1", "version": "v1"}
    (cache / "servergroups.json").write_text(json.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": g, "versions": [gv(g)], "preferredVersion": gv(g)} for g in ("", "rbac.authorization.k8s.io")]}))
    verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
    (cache / "rbac.authorization.k8s.io" / "v1" / "serverresources.json").write_text(json.dumps({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "rbac.authorization.k8s.io/v1",
        "resources": [{"name": k.lower() + "s", "singularName": k.lower(), "namespaced": not k.startswith("Cluster"),
                       "kind": k, "verbs": verbs}
                      for k in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")]}))
    (cache / "v1" / "serverresources.json").write_text(json.dumps({
        "kind": "APIResourceList", "groupVersion": "v1", "resources": []}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env.update(HOME=str(tmp_path / "home"), KUBECONFIG=str(tmp_path / "kubeconfig"))
    return env


@pytest.mark.parametrize("request_", [
    RbacRequest(namespace="shop", users=("jane",), groups=("sre",), service_accounts=("ci:deployer",)),
    RbacRequest(cluster_wide=True, groups=("sre",)),
    RbacRequest(namespace="shop"),
], ids=["role", "cluster-role", "role-only"])
def test_real_kubectl_accepts_the_yaml(tmp_path, request_):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    proc = subprocess.run([kubectl, "create", "--dry-run=client", "--validate=false", "-f", "-", "-o", "json"],
                          input=render_yaml(request_), env=_kubectl_without_server(tmp_path),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    items, text, pos = [], proc.stdout, 0
    decoder = json.JSONDecoder()
    while text[pos:].strip():
        doc, end = decoder.raw_decode(text, pos + len(text[pos:]) - len(text[pos:].lstrip()))
        items.append(doc)
        pos = end
    assert [i["kind"] for i in items] == [o["kind"] for o in rbac_objects(request_)]
    for got, want in zip(items, rbac_objects(request_)):
        assert got.get("rules") == want.get("rules") and got.get("subjects") == want.get("subjects")
