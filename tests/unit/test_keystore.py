"""Private keys: a pod-owned Secret first, a 0600 file when that is not allowed."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from types import SimpleNamespace

import pytest

from kubectl_dotnet_monitor.errors import ForbiddenError, Interrupted, NotFoundError, NotReadyError, OutputError
from kubectl_dotnet_monitor.inject.apikey import generate_api_key
from kubectl_dotnet_monitor.inject.keystore import (
    KeyLocation,
    delete_private_key,
    key_secret_name,
    load_private_key,
    local_key_path,
    store_private_key,
)
from kubectl_dotnet_monitor.inject.spec import KEY_SECRET_ENV, PUBLIC_KEY_ENV, SUBJECT_ENV
from kubectl_dotnet_monitor.kube.api import ApiConflict, ApiForbidden, ApiInvalid, ApiNotFound, ApiServerError

SERVER = "https://127.0.0.1:6443"
KEY = generate_api_key()
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class FakeClient:
    """Records calls; answers from ``secrets`` or raises what ``errors`` says for a method."""

    def __init__(self, errors=None):
        self.conn = SimpleNamespace(server=SERVER)
        self.calls = []
        self.secrets = {}
        self.errors = dict(errors or {})

    def _maybe_fail(self, method):
        queue = self.errors.get(method)
        if queue:
            raise queue.pop(0) if isinstance(queue, list) else queue

    def post(self, path, body, query=None):
        self.calls.append(("POST", path, body))
        self._maybe_fail("post")
        self.secrets[body["metadata"]["name"]] = body
        return body

    def get(self, path, query=None):
        self.calls.append(("GET", path, None))
        self._maybe_fail("get")
        name = path.rsplit("/", 1)[1]
        if name not in self.secrets:
            raise ApiNotFound(f'secrets "{name}" not found', status=404, reason="NotFound")
        return self.secrets[name]

    def delete(self, path):
        self.calls.append(("DELETE", path, None))
        self._maybe_fail("delete")
        self.secrets.pop(path.rsplit("/", 1)[1], None)
        return {}


def make_pod(monitor_env=None, name="web-0"):
    return {
        "metadata": {"name": name, "namespace": "shop", "uid": "0b6f-42"},
        "spec": {
            "containers": [{"name": "app", "image": "a"}],
            "ephemeralContainers": [
                {"name": "dotnet-monitor", "image": "mcr.microsoft.com/dotnet/monitor:10.0", "env": monitor_env or []}
            ],
        },
    }


def monitor_env(secret_name, key=KEY):
    return [
        {"name": SUBJECT_ENV, "value": key.subject},
        {"name": PUBLIC_KEY_ENV, "value": key.public_key_config()},
        {"name": KEY_SECRET_ENV, "value": secret_name},
    ]


@pytest.fixture
def env(tmp_path):
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path / "home")}


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ------------------------------------------------------------------------------------------


def test_secret_is_owned_by_the_pod_and_holds_only_the_key(env):
    client = FakeClient()
    location = store_private_key(client, make_pod(), "dotnet-monitor", KEY, env=env)
    assert location.in_cluster and location.path is None
    ((method, path, body),) = client.calls
    assert (method, path) == ("POST", "/api/v1/namespaces/shop/secrets")
    meta = body["metadata"]
    assert meta["name"] == location.secret_name
    assert re.fullmatch(r"web-0-dotnet-monitor-[a-z0-9]{5}", meta["name"])
    assert meta["namespace"] == "shop"
    assert meta["labels"] == {"app.kubernetes.io/managed-by": "kubectl-dotnet-monitor"}
    assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": "0b6f-42"}]
    assert body["type"] == "Opaque"
    assert set(body["data"]) == {"subject", "private-key.pem"}
    assert base64.b64decode(body["data"]["subject"]).decode() == KEY.subject
    assert base64.b64decode(body["data"]["private-key.pem"]) == KEY.private_key_pem
    assert "Secret shop/" in location.describe()
    assert not os.path.exists(env["XDG_CONFIG_HOME"])


def test_secret_round_trip(env):
    client = FakeClient()
    location = store_private_key(client, make_pod(), "dotnet-monitor", KEY, env=env)
    pod = make_pod(monitor_env(location.secret_name))
    loaded = load_private_key(client, pod, "dotnet-monitor", env=env)
    assert loaded == KEY
    assert client.calls[-1] == ("GET", f"/api/v1/namespaces/shop/secrets/{location.secret_name}", None)


@pytest.mark.parametrize(
    "pod_name",
    ["web-0", "a" * 253, ("a" * 230) + "." + ("b" * 22), ("x" * 226) + "-" + "y" * 26],
    ids=["short", "longest", "dot-at-cut", "dash-at-cut"],
)
def test_secret_names_are_valid_dns_subdomains(pod_name):
    name = key_secret_name(pod_name)
    assert len(name) <= 253
    assert DNS_SUBDOMAIN.match(name), name
    assert name.endswith(name[-5:]) and "-dotnet-monitor-" in name


def test_name_collision_retries_with_another_suffix(env):
    client = FakeClient(errors={"post": [ApiConflict("already exists", status=409, reason="AlreadyExists")]})
    location = store_private_key(client, make_pod(), "dotnet-monitor", KEY, env=env)
    assert location.in_cluster
    names = [body["metadata"]["name"] for _, _, body in client.calls]
    assert len(names) == 2 and names[0] != names[1]


@pytest.mark.parametrize(
    "error",
    [
        ApiForbidden("forbidden", status=403, api_message='secrets is forbidden: User "dev" cannot create resource "secrets"'),
        ApiInvalid("invalid", status=422, api_message="admission webhook denied the request"),
        ApiServerError("server error", status=500, api_message="etcd timeout"),
    ],
    ids=["forbidden", "webhook", "server-error"],
)
def test_fallback_file_when_the_secret_cannot_be_created(env, error):
    client = FakeClient(errors={"post": error})
    location = store_private_key(client, make_pod(), "dotnet-monitor", KEY, env=env)
    assert not location.in_cluster
    assert location.fallback_reason == error.api_message
    expected = local_key_path(SERVER, "shop", "0b6f-42", "dotnet-monitor", env)
    assert location.path == str(expected)
    relative = expected.relative_to(env["XDG_CONFIG_HOME"]).parts
    assert relative[:2] == ("kubectl-dotnet-monitor", "keys") and relative[3:] == ("shop", "0b6f-42", "dotnet-monitor.json")
    assert re.fullmatch(r"[0-9a-f]{16}", relative[2])
    assert mode(expected) == 0o600
    root = os.path.join(env["XDG_CONFIG_HOME"], "kubectl-dotnet-monitor")
    directory = expected.parent
    while True:
        assert mode(directory) == 0o700, directory
        if str(directory) == root:
            break
        directory = directory.parent
    record = json.loads(expected.read_text())
    assert record["subject"] == KEY.subject and record["pod_uid"] == "0b6f-42"
    assert "could not be stored in a Secret" in location.describe() and str(expected) in location.describe()
    assert not list(expected.parent.glob(".*.tmp"))


def test_fallback_tightens_our_existing_directory_but_not_the_users(env):
    config = env["XDG_CONFIG_HOME"]
    os.makedirs(os.path.join(config, "kubectl-dotnet-monitor"), mode=0o755)
    os.chmod(config, 0o755)
    os.chmod(os.path.join(config, "kubectl-dotnet-monitor"), 0o755)
    client = FakeClient(errors={"post": ApiForbidden("forbidden", status=403)})
    store_private_key(client, make_pod(), "dotnet-monitor", KEY, env=env)
    assert mode(os.path.join(config, "kubectl-dotnet-monitor")) == 0o700
    assert mode(config) == 0o755


def test_fallback_path_uses_home_config_without_xdg(tmp_path):
    path = local_key_path(SERVER, "shop", "uid-1", "dotnet-monitor", {"HOME": str(tmp_path)})
    assert str(path).startswith(str(tmp_path / ".config" / "kubectl-dotnet-monitor" / "keys"))
    other = local_key_path("https://other:6443", "shop", "uid-1", "dotnet-monitor", {"HOME": str(tmp_path)})
    assert path != other and path.name == other.name == "dotnet-monitor.json"


def test_fallback_path_components_cannot_escape(tmp_path):
    path = local_key_path(SERVER, "..", "../../etc", "a/b", {"XDG_CONFIG_HOME": str(tmp_path)})
    assert ".." not in path.parts and path.is_relative_to(tmp_path)


def test_both_stores_failing_is_an_output_error(env, tmp_path):
    blocker = tmp_path / "config"
    blocker.write_text("not a directory")
    client = FakeClient(errors={"post": ApiForbidden("forbidden", status=403, api_message="no secrets for you")})
    with pytest.raises(OutputError) as info:
        store_private_key(client, make_pod(), "dotnet-monitor", KEY, env=env)
    assert "no secrets for you" in info.value.message


def test_interrupt_is_not_swallowed(env):
    client = FakeClient(errors={"post": Interrupted()})
    with pytest.raises(Interrupted):
        store_private_key(client, make_pod(), "dotnet-monitor", KEY, env=env)


def test_file_round_trip(env):
    client = FakeClient(errors={"post": ApiForbidden("forbidden", status=403)})
    store_private_key(client, make_pod(), "dotnet-monitor", KEY, env=env)
    pod = make_pod(monitor_env(""))
    assert load_private_key(FakeClient(), pod, "dotnet-monitor", env=env) == KEY


def test_file_is_used_when_the_secret_is_not_readable(env):
    store_private_key(FakeClient(errors={"post": ApiForbidden("no", status=403)}), make_pod(), "dotnet-monitor", KEY, env=env)
    pod = make_pod(monitor_env("web-0-dotnet-monitor-abcde"))
    client = FakeClient(errors={"get": ApiForbidden("forbidden", status=403)})
    assert load_private_key(client, pod, pod["spec"]["ephemeralContainers"][0], env=env) == KEY


def test_forbidden_secret_and_no_file_says_whom_to_ask(env):
    pod = make_pod(monitor_env("web-0-dotnet-monitor-abcde"))
    client = FakeClient(errors={"get": ApiForbidden("forbidden", status=403, api_message='cannot get resource "secrets"')})
    with pytest.raises(ForbiddenError) as info:
        load_private_key(client, pod, "dotnet-monitor", env=env)
    error = info.value
    assert "the key for monitor 'dotnet-monitor' in pod shop/web-0 is not available to you" in error.message
    assert "forbidden" in error.message and "no local key file" in error.message
    assert "ask someone with access to Secrets" in error.hint and "inject a fresh monitor" in error.hint


def test_missing_secret_and_no_file_is_not_ready(env):
    pod = make_pod(monitor_env("web-0-dotnet-monitor-gone1"))
    with pytest.raises(NotReadyError, match="does not exist"):
        load_private_key(FakeClient(), pod, "dotnet-monitor", env=env)


def test_key_kept_elsewhere_is_explained(env):
    with pytest.raises(NotReadyError, match="keeps its key outside the cluster"):
        load_private_key(FakeClient(), make_pod(monitor_env("")), "dotnet-monitor", env=env)


def test_monitor_without_api_key(env):
    with pytest.raises(NotReadyError, match="no API key configured"):
        load_private_key(FakeClient(), make_pod([{"name": KEY_SECRET_ENV, "value": ""}]), "dotnet-monitor", env=env)


def test_unknown_monitor_container(env):
    with pytest.raises(NotFoundError):
        load_private_key(FakeClient(), make_pod(), "nope", env=env)


def test_a_key_that_does_not_match_the_monitor_is_refused(env):
    client = FakeClient()
    location = store_private_key(client, make_pod(), "dotnet-monitor", generate_api_key(), env=env)
    pod = make_pod(monitor_env(location.secret_name))  # env carries KEY, Secret holds another
    with pytest.raises(NotReadyError, match="does not belong to this monitor"):
        load_private_key(client, pod, "dotnet-monitor", env=env)


def test_a_mangled_secret_is_refused_without_echoing_it(env):
    client = FakeClient()
    client.secrets["web-0-dotnet-monitor-bad00"] = {"data": {"subject": base64.b64encode(KEY.subject.encode()).decode(), "private-key.pem": base64.b64encode(b"garbage").decode()}}
    with pytest.raises(NotReadyError) as info:
        load_private_key(client, make_pod(monitor_env("web-0-dotnet-monitor-bad00")), "dotnet-monitor", env=env)
    assert "garbage" not in str(info.value)
    client.secrets["web-0-dotnet-monitor-bad00"] = {"data": {}}
    with pytest.raises(NotReadyError, match="does not hold a monitor key"):
        load_private_key(client, make_pod(monitor_env("web-0-dotnet-monitor-bad00")), "dotnet-monitor", env=env)


def test_delete_private_key_cleans_up_either_store(env):
    client = FakeClient()
    location = store_private_key(client, make_pod(), "dotnet-monitor", KEY, env=env)
    delete_private_key(client, location)
    assert client.calls[-1][0] == "DELETE" and not client.secrets
    failing = FakeClient(errors={"post": ApiForbidden("no", status=403), "delete": ApiForbidden("no", status=403)})
    location = store_private_key(failing, make_pod(), "dotnet-monitor", KEY, env=env)
    delete_private_key(failing, location)
    assert not os.path.exists(location.path)
    delete_private_key(failing, KeyLocation(namespace="shop", secret_name="x"))  # best effort, no raise


def test_key_location_repr_has_no_key_material(env):
    location = store_private_key(FakeClient(errors={"post": ApiForbidden("no", status=403)}), make_pod(), "dotnet-monitor", KEY, env=env)
    assert "PRIVATE" not in repr(location) and "PRIVATE" not in location.describe()
