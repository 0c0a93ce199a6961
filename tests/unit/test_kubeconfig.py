"""Kubeconfig resolution without kubectl: merge rules, overrides, namespace, in-cluster, credentials."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
import yaml

from kubectl_dotnet_monitor.errors import ConfigError, ExitCode
from kubectl_dotnet_monitor.kube.config import KubeFlags, load_kubeconfig, resolve_connection
from kubectl_dotnet_monitor.kube.credentials import credentials_from_user


def write_kubeconfig(path, *, current=None, clusters=(), users=(), contexts=()):
    """clusters/users/contexts: (name, body) pairs."""
    doc = {"apiVersion": "v1", "kind": "Config"}
    if current is not None:
        doc["current-context"] = current
    doc["clusters"] = [{"name": n, "cluster": b} for n, b in clusters]
    doc["users"] = [{"name": n, "user": b} for n, b in users]
    doc["contexts"] = [{"name": n, "context": b} for n, b in contexts]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return h


def env_for(home, **extra):
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "")}
    env.update(extra)
    return env


def simple(path, name="x", server="https://x.example:6443", ns=None, user_body=None):
    ctx = {"cluster": f"c-{name}", "user": f"u-{name}"}
    if ns:
        ctx["namespace"] = ns
    return write_kubeconfig(path, current=name, clusters=[(f"c-{name}", {"server": server})],
                            users=[(f"u-{name}", user_body or {"token": f"tok-{name}"})],
                            contexts=[(name, ctx)])


# -- which files ---------------------------------------------------------------------------------


def test_default_file_is_home_kube_config(home):
    simple(home / ".kube" / "config", ns="team")
    conn = resolve_connection(KubeFlags(), env_for(home))
    assert (conn.context_name, conn.server, conn.namespace) == ("x", "https://x.example:6443", "team")


def test_explicit_kubeconfig_must_exist(home, tmp_path):
    with pytest.raises(ConfigError) as err:
        resolve_connection(KubeFlags(kubeconfig=str(tmp_path / "nope")), env_for(home))
    assert "does not exist" in str(err.value) and err.value.exit_code == ExitCode.CONFIG


def test_explicit_kubeconfig_beats_env_list(home, tmp_path):
    a = simple(tmp_path / "a.yaml", name="a")
    b = simple(tmp_path / "b.yaml", name="b")
    conn = resolve_connection(KubeFlags(kubeconfig=b), env_for(home, KUBECONFIG=a))
    assert conn.context_name == "b"


def test_first_current_context_wins_and_first_definition_wins(home, tmp_path):
    a = write_kubeconfig(tmp_path / "a.yaml", current="xb",
                         clusters=[("shared", {"server": "https://from-a"})])
    b = write_kubeconfig(tmp_path / "b.yaml", current="xa",
                         clusters=[("shared", {"server": "https://from-b"})],
                         users=[("u", {"token": "t"})],
                         contexts=[("xb", {"cluster": "shared", "user": "u", "namespace": "nb"}),
                                   ("xa", {"cluster": "shared", "user": "u"})])
    conn = resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=os.pathsep.join([a, b])))
    assert (conn.context_name, conn.server, conn.namespace) == ("xb", "https://from-a", "nb")


def test_missing_and_duplicate_entries_in_list_are_ignored(home, tmp_path):
    a = simple(tmp_path / "a.yaml", name="a")
    listed = os.pathsep.join([str(tmp_path / "missing.yaml"), a, a, "", str(tmp_path / "gone")])
    merged = load_kubeconfig([a])
    conn = resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=listed))
    assert conn.kubeconfig_files == (a,) and merged.current_context == "a"


def test_empty_file_in_list_is_fine(home, tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    a = simple(tmp_path / "a.yaml", name="a")
    conn = resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=os.pathsep.join([str(tmp_path / "empty.yaml"), a])))
    assert conn.context_name == "a"


def test_broken_yaml_is_a_config_error(home, tmp_path):
    (tmp_path / "bad.yaml").write_text("clusters: [\n")
    with pytest.raises(ConfigError, match="error loading kubeconfig file"):
        resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=str(tmp_path / "bad.yaml")))


def test_duplicate_name_in_one_file_is_an_error_like_kubectl(home, tmp_path):
    p = write_kubeconfig(tmp_path / "d.yaml", current="x", clusters=[("c", {"server": "https://1"}),
                                                                     ("c", {"server": "https://2"})],
                         contexts=[("x", {"cluster": "c"})])
    with pytest.raises(ConfigError, match='duplicate name "c"'):
        resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))


# -- relative paths ------------------------------------------------------------------------------


def test_relative_paths_resolve_against_defining_file(home, tmp_path):
    (tmp_path / "one" / "pki").mkdir(parents=True)
    (tmp_path / "one" / "pki" / "ca.crt").write_text("x")
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "token").write_text("file-token\n")
    a = write_kubeconfig(tmp_path / "one" / "a.yaml", current="x",
                         clusters=[("c", {"server": "https://h", "certificate-authority": "pki/ca.crt"})],
                         contexts=[("x", {"cluster": "c", "user": "u"})])
    b = write_kubeconfig(tmp_path / "two" / "b.yaml", users=[("u", {"tokenFile": "token"})])
    conn = resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=os.pathsep.join([a, b])))
    assert conn.tls.ca_file == str(tmp_path / "one" / "pki" / "ca.crt")
    assert conn.auth_headers() == {"Authorization": "Bearer file-token"}


def test_missing_ca_file_is_reported(home, tmp_path):
    p = write_kubeconfig(tmp_path / "a.yaml", current="x",
                         clusters=[("c", {"server": "https://h", "certificate-authority": "nope.crt"})],
                         contexts=[("x", {"cluster": "c"})])
    with pytest.raises(ConfigError, match="unable to read certificate-authority .*nope.crt"):
        resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))


# -- overrides, errors ---------------------------------------------------------------------------


def test_context_cluster_user_namespace_overrides(home, tmp_path):
    p = write_kubeconfig(tmp_path / "a.yaml", current="x",
                         clusters=[("c1", {"server": "https://one/"}), ("c2", {"server": "https://two:8443"})],
                         users=[("u1", {"token": "t1"}), ("u2", {"token": "t2"})],
                         contexts=[("x", {"cluster": "c1", "user": "u1", "namespace": "nx"}),
                                   ("y", {"cluster": "c1", "user": "u1"})])
    env = env_for(home, KUBECONFIG=p)
    conn = resolve_connection(KubeFlags(context="y", cluster="c2", user="u2", namespace="n"), env)
    assert (conn.context_name, conn.cluster_name, conn.user_name) == ("y", "c2", "u2")
    assert (conn.server, conn.namespace, conn.auth_headers()["Authorization"]) == ("https://two:8443", "n", "Bearer t2")
    assert resolve_connection(KubeFlags(), env).server == "https://one"  # no trailing slash
    assert resolve_connection(KubeFlags(context="y"), env).namespace == "default"


@pytest.mark.parametrize("flags, pattern", [
    (KubeFlags(context="nope"), 'context "nope" does not exist'),
    (KubeFlags(cluster="nope"), 'cluster "nope" given with --cluster does not exist'),
    (KubeFlags(user="nope"), 'user "nope" given with --user does not exist'),
    (KubeFlags(context="dangling"), 'refers to cluster "gone"'),
    (KubeFlags(context="nouser"), 'refers to user "ghost"'),
])
def test_unusable_selection_is_a_config_error_with_hint(home, tmp_path, flags, pattern):
    p = write_kubeconfig(tmp_path / "a.yaml", current="x",
                         clusters=[("c", {"server": "https://h"})], users=[("u", {"token": "t"})],
                         contexts=[("x", {"cluster": "c", "user": "u"}), ("dangling", {"cluster": "gone", "user": "u"}),
                                   ("nouser", {"cluster": "c", "user": "ghost"})])
    with pytest.raises(ConfigError, match=pattern) as err:
        resolve_connection(flags, env_for(home, KUBECONFIG=p))
    assert err.value.hint


def test_current_context_naming_missing_context(home, tmp_path):
    p = write_kubeconfig(tmp_path / "a.yaml", current="q", clusters=[("c", {"server": "https://h"})],
                         contexts=[("x", {"cluster": "c"})])
    with pytest.raises(ConfigError, match='current-context "q"') as err:
        resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))
    assert "known contexts: x" in err.value.hint


def test_no_context_selected(home, tmp_path):
    p = write_kubeconfig(tmp_path / "a.yaml", clusters=[("c", {"server": "https://h"})],
                         contexts=[("x", {"cluster": "c"})])
    with pytest.raises(ConfigError, match="no context is selected"):
        resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))
    # ... but --cluster alone is enough (kubectl allows it)
    assert resolve_connection(KubeFlags(cluster="c"), env_for(home, KUBECONFIG=p)).server == "https://h"


def test_no_kubeconfig_at_all(home):
    with pytest.raises(ConfigError, match="no kubeconfig found") as err:
        resolve_connection(KubeFlags(), env_for(home))
    assert err.value.exit_code == ExitCode.CONFIG


def test_request_timeout_zero_means_none(home, tmp_path):
    p = simple(tmp_path / "a.yaml")
    assert resolve_connection(KubeFlags(request_timeout=0), env_for(home, KUBECONFIG=p)).request_timeout is None
    assert resolve_connection(KubeFlags(request_timeout=2.5), env_for(home, KUBECONFIG=p)).request_timeout == 2.5


def test_server_without_scheme_and_host_port(home, tmp_path):
    p = write_kubeconfig(tmp_path / "a.yaml", current="x",
                         clusters=[("c", {"server": "10.0.0.1:6443", "insecure-skip-tls-verify": True,
                                          "tls-server-name": "kube.local"})],
                         contexts=[("x", {"cluster": "c"})])
    conn = resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))
    assert conn.server == "https://10.0.0.1:6443"
    assert conn.host_port() == ("10.0.0.1", 6443)
    assert conn.server_hostname() == "kube.local"


def test_ipv6_host_port(home, tmp_path):
    p = simple(tmp_path / "a.yaml", server="https://[::1]:6443")
    assert resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p)).host_port() == ("::1", 6443)


def test_insecure_with_ca_is_refused(home, tmp_path):
    ca = base64.b64encode(b"pem").decode()
    p = write_kubeconfig(tmp_path / "a.yaml", current="x",
                         clusters=[("c", {"server": "https://h", "insecure-skip-tls-verify": True,
                                          "certificate-authority-data": ca})],
                         contexts=[("x", {"cluster": "c"})])
    with pytest.raises(ConfigError, match="insecure-skip-tls-verify"):
        resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))


def test_proxy_url_is_parsed(home, tmp_path):
    p = write_kubeconfig(tmp_path / "a.yaml", current="x",
                         clusters=[("c", {"server": "https://h", "proxy-url": "http://proxy:3128"})],
                         contexts=[("x", {"cluster": "c"})])
    assert resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p)).tls.proxy_url == "http://proxy:3128"
    p = write_kubeconfig(tmp_path / "b.yaml", current="x",
                         clusters=[("c", {"server": "https://h", "proxy-url": "ftp://proxy"})],
                         contexts=[("x", {"cluster": "c"})])
    with pytest.raises(ConfigError, match="invalid proxy-url"):
        resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))


def test_proxy_password_never_in_repr_or_message(home, tmp_path):
    p = write_kubeconfig(tmp_path / "a.yaml", current="x",
                         clusters=[("c", {"server": "https://h", "proxy-url": "http://me:PROXY-PW@proxy:3128"})],
                         contexts=[("x", {"cluster": "c"})])
    conn = resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))
    assert conn.tls.proxy_url == "http://me:PROXY-PW@proxy:3128"  # still used to dial
    assert "PROXY-PW" not in repr(conn)
    p = write_kubeconfig(tmp_path / "b.yaml", current="x",
                         clusters=[("c", {"server": "https://h", "proxy-url": "ftp://me:PROXY-PW@proxy"})],
                         contexts=[("x", {"cluster": "c"})])
    with pytest.raises(ConfigError, match="invalid proxy-url") as caught:
        resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))
    assert "PROXY-PW" not in str(caught.value)


# -- in-cluster ----------------------------------------------------------------------------------


@pytest.fixture
def sa_dir(tmp_path):
    d = tmp_path / "sa"
    d.mkdir()
    (d / "token").write_text("sa-token\n")
    (d / "namespace").write_text("from-file\n")
    (d / "ca.crt").write_text("x")
    return d


def test_in_cluster_when_no_kubeconfig(home, sa_dir):
    env = env_for(home, KUBERNETES_SERVICE_HOST="10.96.0.1", KUBERNETES_SERVICE_PORT="443")
    conn = resolve_connection(KubeFlags(), env, service_account_dir=str(sa_dir))
    assert conn.in_cluster and conn.server == "https://10.96.0.1:443"
    assert conn.namespace == "from-file" and conn.tls.ca_file == str(sa_dir / "ca.crt")
    assert conn.auth_headers() == {"Authorization": "Bearer sa-token"}
    env["POD_NAMESPACE"] = "from-env"
    assert resolve_connection(KubeFlags(), env, service_account_dir=str(sa_dir)).namespace == "from-env"
    assert resolve_connection(KubeFlags(namespace="n"), env, service_account_dir=str(sa_dir)).namespace == "n"


def test_in_cluster_ipv6_service_host(home, sa_dir):
    env = env_for(home, KUBERNETES_SERVICE_HOST="fd00::1", KUBERNETES_SERVICE_PORT="443")
    assert resolve_connection(KubeFlags(), env, service_account_dir=str(sa_dir)).server == "https://[fd00::1]:443"


def test_in_cluster_needs_env_and_token(home, sa_dir):
    with pytest.raises(ConfigError, match="no kubeconfig found"):
        resolve_connection(KubeFlags(), env_for(home, KUBERNETES_SERVICE_HOST="h"), service_account_dir=str(sa_dir))
    (sa_dir / "token").unlink()
    with pytest.raises(ConfigError):
        resolve_connection(KubeFlags(), env_for(home, KUBERNETES_SERVICE_HOST="h", KUBERNETES_SERVICE_PORT="1"),
                           service_account_dir=str(sa_dir))


def test_kubeconfig_wins_over_in_cluster_but_namespace_falls_back(home, tmp_path, sa_dir):
    p = simple(tmp_path / "a.yaml")
    env = env_for(home, KUBECONFIG=p, KUBERNETES_SERVICE_HOST="10.96.0.1", KUBERNETES_SERVICE_PORT="443")
    conn = resolve_connection(KubeFlags(), env, service_account_dir=str(sa_dir))
    assert not conn.in_cluster and conn.server == "https://x.example:6443"
    assert conn.namespace == "from-file"  # client-go: context has no namespace -> in-cluster namespace
    p2 = simple(tmp_path / "b.yaml", ns="ctx-ns")
    env["KUBECONFIG"] = p2
    assert resolve_connection(KubeFlags(), env, service_account_dir=str(sa_dir)).namespace == "ctx-ns"


# -- static credentials --------------------------------------------------------------------------


def test_basic_auth_header():
    creds = credentials_from_user("u", {"username": "ann", "password": "pw"}, env={})
    assert creds.headers() == {"Authorization": "Basic " + base64.b64encode(b"ann:pw").decode()}
    assert "pw" not in repr(creds)


def test_token_and_basic_is_refused():
    with pytest.raises(ConfigError, match="more than one authentication method"):
        credentials_from_user("u", {"token": "t", "username": "a", "password": "b"}, env={})


def test_token_never_in_repr(home, tmp_path):
    p = simple(tmp_path / "a.yaml", user_body={"token": "SECRET-TOKEN-123"})
    conn = resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))
    assert "SECRET-TOKEN-123" not in repr(conn)


def test_client_cert_needs_key(tmp_path):
    (tmp_path / "c.crt").write_text("x")
    with pytest.raises(ConfigError, match="client-key-data or client-key must be specified"):
        credentials_from_user("u", {"client-certificate": str(tmp_path / "c.crt")}, env={})


def test_client_cert_data_decoded():
    creds = credentials_from_user("u", {"client-certificate-data": base64.b64encode(b"CERT").decode(),
                                        "client-key-data": base64.b64encode(b"KEY").decode()}, env={})
    cert = creds.client_certificate()
    assert (cert.cert_pem, cert.key_pem) == (b"CERT", b"KEY") and "KEY" not in repr(cert)
    assert creds.headers() == {}


def _jwt(payload):
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc({'alg': 'none'})}.{enc(payload)}.sig"


def test_oidc_id_token_used_and_expiry_checked():
    good = _jwt({"exp": 2_000_000_000})
    creds = credentials_from_user("u", {"auth-provider": {"name": "oidc", "config": {"id-token": good}}}, env={},
                                  clock=lambda: 1_000_000_000)
    assert creds.headers() == {"Authorization": f"Bearer {good}"}
    with pytest.raises(ConfigError, match="expired") as err:
        credentials_from_user("u", {"auth-provider": {"name": "oidc", "config": {"id-token": good}}}, env={},
                              clock=lambda: 2_000_000_001)
    assert "kubelogin" in err.value.hint
    with pytest.raises(ConfigError, match="no id-token"):
        credentials_from_user("u", {"auth-provider": {"name": "oidc", "config": {}}}, env={})


@pytest.mark.parametrize("name, hint", [("gcp", "gke-gcloud-auth-plugin"), ("azure", "kubelogin"),
                                        ("weird", "exec credential plugin")])
def test_removed_auth_providers(name, hint):
    with pytest.raises(ConfigError, match=f'"{name}" auth-provider') as err:
        credentials_from_user("u", {"auth-provider": {"name": name}}, env={})
    assert hint in err.value.hint


def test_impersonation_headers():
    creds = credentials_from_user("u", {"token": "t", "as": "bob", "as-groups": ["devs"]}, env={})
    assert creds.headers() == {"Authorization": "Bearer t", "Impersonate-User": "bob", "Impersonate-Group": "devs"}


# -- exec plugins --------------------------------------------------------------------------------


def make_plugin(path, body):
    """A small Python exec plugin; ``body`` runs with ``info`` (KUBERNETES_EXEC_INFO) and ``out(dict)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "log = os.environ.get('PLUGIN_LOG')\n"
        "if log:\n"
        "    open(log, 'a').write(json.dumps({'info': info, 'env': os.environ.get('FROM_CONFIG')}) + '\\n')\n"
        "def out(status, version='client.authentication.k8s.io/v1'):\n"
        "    print(json.dumps({'apiVersion': version, 'kind': 'ExecCredential', 'status': status}))\n"
        + body + "\n")
    path.chmod(0o755)
    return str(path)


def exec_kubeconfig(tmp_path, exec_section, *, cluster_extra=None):
    cluster = {"server": "https://h:6443"}
    cluster.update(cluster_extra or {})
    return write_kubeconfig(tmp_path / "kc" / "config", current="x", clusters=[("c", cluster)],
                            users=[("u", {"exec": exec_section})], contexts=[("x", {"cluster": "c", "user": "u"})])


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_exec_plugin_token_v1_cached_until_expiry(home, tmp_path):
    make_plugin(tmp_path / "kc" / "bin" / "plug",
                "out({'token': 'exec-tok', 'expirationTimestamp': '2099-01-01T00:00:00Z'})")
    log = tmp_path / "log"
    p = exec_kubeconfig(tmp_path, {"apiVersion": "client.authentication.k8s.io/v1", "command": "./bin/plug",
                                   "interactiveMode": "Never", "env": [{"name": "FROM_CONFIG", "value": "yes"}],
                                   "provideClusterInfo": True},
                        cluster_extra={"insecure-skip-tls-verify": True})
    conn = resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p, PLUGIN_LOG=str(log)))
    assert conn.auth_headers() == {"Authorization": "Bearer exec-tok"}
    assert conn.auth_headers() == {"Authorization": "Bearer exec-tok"}
    runs = read_log(log)
    assert len(runs) == 1  # cached
    assert runs[0]["env"] == "yes"
    info = runs[0]["info"]
    assert info["apiVersion"] == "client.authentication.k8s.io/v1" and info["kind"] == "ExecCredential"
    assert info["spec"]["interactive"] is False
    assert info["spec"]["cluster"]["server"] == "https://h:6443"
    assert info["spec"]["cluster"]["insecure-skip-tls-verify"] is True


def test_exec_plugin_rerun_after_expiry(home, tmp_path):
    from kubectl_dotnet_monitor.kube.credentials import ExecConfig, ExecPlugin

    script = make_plugin(tmp_path / "plug", "out({'token': 't', 'expirationTimestamp': '2030-01-01T00:00:00.123456789Z'})")
    now = [1_800_000_000.0]  # 2027: before the expiry
    plugin = ExecPlugin(ExecConfig(command=script, interactive_mode="Never"), "u", env_for(home),
                        clock=lambda: now[0])
    assert plugin.credential().token == "t" and plugin.credential().token == "t"
    assert plugin.runs == 1
    now[0] = 1_900_000_000.0  # 2030-03: expired
    plugin.credential()
    assert plugin.runs == 2
    plugin.invalidate()
    plugin.credential()
    assert plugin.runs == 3


def test_exec_plugin_without_expiry_is_cached_for_the_process(home, tmp_path):
    from kubectl_dotnet_monitor.kube.credentials import ExecConfig, ExecPlugin

    script = make_plugin(tmp_path / "plug", "out({'token': 't'})")
    plugin = ExecPlugin(ExecConfig(command=script, interactive_mode="Never"), "u", env_for(home))
    for _ in range(3):
        plugin.credential()
    assert plugin.runs == 1


def test_exec_plugin_failure_is_config_error_with_stderr_and_install_hint(home, tmp_path):
    make_plugin(tmp_path / "kc" / "plug", "sys.stderr.write('error: you must log in: run mycloud login\\n'); sys.exit(3)")
    p = exec_kubeconfig(tmp_path, {"apiVersion": "client.authentication.k8s.io/v1", "command": "./plug",
                                   "interactiveMode": "IfAvailable", "installHint": "install mycloud-cli from x"})
    conn = resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))
    with pytest.raises(ConfigError) as err:
        conn.auth_headers()
    assert "you must log in: run mycloud login" in err.value.message
    assert "exit code 3" in err.value.message
    assert err.value.hint == "install mycloud-cli from x"
    assert err.value.exit_code == ExitCode.CONFIG


def test_exec_plugin_not_found_uses_install_hint(home, tmp_path):
    p = exec_kubeconfig(tmp_path, {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                   "command": "no-such-auth-plugin-xyz", "installHint": "get it from example.com"})
    conn = resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))
    with pytest.raises(ConfigError, match="not found") as err:
        conn.auth_headers()
    assert err.value.hint == "get it from example.com"


def test_exec_plugin_on_path_v1beta1_defaults_to_if_available(home, tmp_path):
    bindir = tmp_path / "pathbin"
    make_plugin(bindir / "my-auth", "out({'token': 'beta'}, version='client.authentication.k8s.io/v1beta1')")
    log = tmp_path / "log"
    p = exec_kubeconfig(tmp_path, {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "my-auth",
                                   "args": ["get-token"]})
    env = env_for(home, KUBECONFIG=p, PLUGIN_LOG=str(log))
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    conn = resolve_connection(KubeFlags(), env)
    assert conn.auth_headers() == {"Authorization": "Bearer beta"}
    info = read_log(log)[0]["info"]
    assert info["apiVersion"].endswith("v1beta1") and "cluster" not in info["spec"]


def test_exec_v1_requires_interactive_mode(home, tmp_path):
    p = exec_kubeconfig(tmp_path, {"apiVersion": "client.authentication.k8s.io/v1", "command": "x"})
    with pytest.raises(ConfigError, match="interactiveMode must be specified"):
        resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))


def test_exec_v1alpha1_is_refused(home, tmp_path):
    p = exec_kubeconfig(tmp_path, {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"})
    with pytest.raises(ConfigError, match="not supported"):
        resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))


def test_exec_always_interactive_without_tty(home, tmp_path):
    from kubectl_dotnet_monitor.kube.credentials import ExecConfig, ExecPlugin

    plugin = ExecPlugin(ExecConfig(command="x", interactive_mode="Always"), "u", env_for(home),
                        stdin_is_tty=lambda: False)
    with pytest.raises(ConfigError, match="not a terminal"):
        plugin.credential()


@pytest.mark.parametrize("body, pattern", [
    ("out({'token': 't'}, version='client.authentication.k8s.io/v1beta1')", "returned version"),
    ("print('token: SECRET-XYZ not json')", "not an ExecCredential JSON"),
    ("out({})", "neither a token nor a certificate"),
    ("out({'clientCertificateData': 'c'})", "only a certificate or a key"),
    ("print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential'}))",
     "did not return a status"),
    ("out({'token': 't', 'expirationTimestamp': 'soon'})", "invalid expirationTimestamp"),
])
def test_exec_plugin_bad_output(home, tmp_path, body, pattern):
    from kubectl_dotnet_monitor.kube.credentials import ExecConfig, ExecPlugin

    script = make_plugin(tmp_path / "plug", body)
    plugin = ExecPlugin(ExecConfig(command=script, interactive_mode="Never"), "u", env_for(home))
    with pytest.raises(ConfigError, match=pattern) as err:
        plugin.credential()
    assert "SECRET-XYZ" not in str(err.value)


def test_exec_plugin_client_certificate(home, tmp_path):
    make_plugin(tmp_path / "kc" / "plug", "out({'clientCertificateData': 'CERT', 'clientKeyData': 'KEY'})")
    p = exec_kubeconfig(tmp_path, {"apiVersion": "client.authentication.k8s.io/v1", "command": "./plug",
                                   "interactiveMode": "Never"})
    conn = resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))
    cert = conn.credentials.client_certificate()
    assert (cert.cert_pem, cert.key_pem) == (b"CERT", b"KEY")
    assert conn.auth_headers() == {}


def test_static_token_wins_over_exec(home, tmp_path):
    p = write_kubeconfig(tmp_path / "a.yaml", current="x", clusters=[("c", {"server": "https://h"})],
                         users=[("u", {"token": "static", "exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                                   "command": "never-run", "interactiveMode": "Never"}})],
                         contexts=[("x", {"cluster": "c", "user": "u"})])
    conn = resolve_connection(KubeFlags(), env_for(home, KUBECONFIG=p))
    assert conn.auth_headers() == {"Authorization": "Bearer static"}
    assert conn.refresh_credentials() is False


def test_help_does_not_import_yaml_or_urllib3():
    code = ("import sys; import kubectl_dotnet_monitor.kube.config, kubectl_dotnet_monitor.kube.api, "
            "kubectl_dotnet_monitor.kube.pods; "
            "print(sorted(m for m in ('yaml', 'urllib3', 'cryptography') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
