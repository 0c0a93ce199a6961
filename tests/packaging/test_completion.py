"""Completion: the kubectl helper protocol, candidates from the click tree, and the shell scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kubectl_dotnet_monitor.cli import completion as comp
from kubectl_dotnet_monitor.cli.app import cli
from tests.packaging.conftest import ROOT


def _tree() -> click.Group:
    """A stand-in command tree shaped like the plugin's (the real commands are written elsewhere)."""

    @click.group()
    @click.option("-v", "--verbose", count=True, help="More detail.")
    def root(verbose):
        """Root."""

    @root.command()
    def version():
        """Print the plugin version."""

    @root.command()
    @click.argument("pod")
    @click.option("-n", "--namespace", help="Namespace.")
    @click.option("--context", help="Kubeconfig context.")
    @click.option("--kubeconfig", help="Kubeconfig file.")
    @click.option("-c", "--container", help="Target container.")
    @click.option("--type", "dump_type", type=click.Choice(["Mini", "Full", "WithHeap", "Triage"]))
    @click.option("-o", "--output", type=click.Path(), help="Output file.")
    @click.option("--json", "as_json", is_flag=True)
    def dump(pod, namespace, context, kubeconfig, container, dump_type, output, as_json):
        """Collect a memory dump."""

    @root.command(hidden=True)
    def secret():
        """Hidden."""

    return root


@pytest.fixture
def fake_cluster(monkeypatch):
    calls = []

    def pods(options, env):
        calls.append(("pods", dict(options)))
        ns = options.get("namespace") or "default"
        return [comp.Candidate(f"{ns}-web-1", "Running"), comp.Candidate(f"{ns}-web-2", "Running"),
                comp.Candidate("other", "Pending")]

    def namespaces(options, env):
        calls.append(("namespaces", dict(options)))
        return [comp.Candidate("default"), comp.Candidate("shop"), comp.Candidate("kube-system")]

    def containers(pod, options, env):
        calls.append(("containers", pod, dict(options)))
        return [comp.Candidate("app", "img:1"), comp.Candidate("sidecar", "img:2")]

    monkeypatch.setattr(comp, "cluster_pods", pods)
    monkeypatch.setattr(comp, "cluster_namespaces", namespaces)
    monkeypatch.setattr(comp, "cluster_containers", containers)
    return calls


def values(words, env=None):
    cands, directive = comp.complete(_tree(), words, env or {})
    return [c.value for c in cands], directive


def test_subcommands(fake_cluster):
    assert values([""]) == (["dump", "version"], comp.DIRECTIVE_NO_FILE)
    assert values(["ver"]) == (["version"], comp.DIRECTIVE_NO_FILE)
    assert values(["-v", "d"]) == (["dump"], comp.DIRECTIVE_NO_FILE)  # global flag before


def test_flags_of_the_command_and_its_parents(fake_cluster):
    got, directive = values(["dump", "--"])
    assert {"--namespace", "--context", "--type", "--output", "--help", "--verbose"} <= set(got)
    assert directive == comp.DIRECTIVE_NO_FILE
    assert values(["dump", "-n"])[0] == ["-n"]


def test_pods_in_the_namespace_typed(fake_cluster):
    assert values(["dump", "-n", "shop", "shop-w"])[0] == ["shop-web-1", "shop-web-2"]
    assert fake_cluster[-1] == ("pods", {"namespace": "shop"})
    assert values(["dump", "--namespace=shop", "sh"])[0] == ["shop-web-1", "shop-web-2"]
    assert values(["dump", "-nshop", "o"])[0] == ["other"]
    assert values(["dump", "pod/sh", ][:1] + ["-n", "shop", "pod/sh"])[0] == ["pod/shop-web-1", "pod/shop-web-2"]


def test_only_one_pod_positional(fake_cluster):
    assert values(["dump", "web-1", ""]) == ([], comp.DIRECTIVE_NO_FILE)


def test_option_values(fake_cluster):
    assert values(["dump", "-n", "s"])[0] == ["shop"]
    assert values(["dump", "--type", ""])[0] == ["Mini", "Full", "WithHeap", "Triage"]
    assert values(["dump", "--type=W"])[0] == ["--type=WithHeap"]
    assert values(["dump", "web", "-o", ""]) == ([], comp.DIRECTIVE_DEFAULT)  # a path: files


def test_containers_of_the_pod_typed(fake_cluster):
    assert values(["dump", "web-1", "-n", "shop", "-c", ""])[0] == ["app", "sidecar"]
    assert fake_cluster[-1] == ("containers", "web-1", {"namespace": "shop"})


def test_contexts_from_the_kubeconfig(tmp_path):
    a = tmp_path / "a"
    a.write_text(textwrap.dedent("""\
        current-context: prod
        contexts:
        - name: prod
          context: {cluster: c1, namespace: shop}
        - name: dev
          context: {cluster: c2}
        """))
    b = tmp_path / "b"
    b.write_text("contexts:\n- name: dev\n  context: {cluster: other}\n- name: stage\n  context: {cluster: c3}\n")
    env = {"KUBECONFIG": os.pathsep.join([str(a), str(b), str(tmp_path / "missing")])}
    cands, _ = comp.complete(_tree(), ["dump", "--context", ""], env)
    assert [c.value for c in cands] == ["prod", "dev", "stage"]
    assert cands[0].description == "cluster c1, namespace shop (current)"
    assert values(["dump", "--kubeconfig", str(b), "--context", "s"], env)[0] == ["stage"]


def test_cluster_failure_means_no_candidates(monkeypatch, capsys):
    def boom(*a, **k):
        raise ConnectionRefusedError("no cluster")

    monkeypatch.setattr(comp, "_kube_client", boom)
    with pytest.raises(SystemExit) as exc:
        comp.complete_main(["gcdump", ""])  # whatever the real tree has: must not raise
    assert exc.value.code == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(":")


def test_complete_main_never_fails(monkeypatch, capsys):
    monkeypatch.setattr(comp, "complete", lambda *a, **k: 1 / 0)
    with pytest.raises(SystemExit) as exc:
        comp.complete_main(["x", ""])
    assert exc.value.code == 0
    assert capsys.readouterr().out == ":4\n"


def test_real_tree_completes_version(capsys):
    with pytest.raises(SystemExit):
        comp.complete_main(["ver"])
    lines = capsys.readouterr().out.splitlines()
    assert "version" in [line.split("\t")[0] for line in lines[:-1]] and lines[-1] == ":4"


def test_real_tree_kube_flags(fake_cluster):
    """The plugin's real commands: pods, containers and -o paths through the shared kube options."""
    if "gcdump" not in cli.commands:
        pytest.skip("gcdump not written yet")
    got, directive = comp.complete(cli, ["gcdump", "-n", "shop", "shop-web-"], {})
    assert [c.value for c in got] == ["shop-web-1", "shop-web-2"] and directive == comp.DIRECTIVE_NO_FILE
    got, _ = comp.complete(cli, ["gcdump", "web-1", "-c", ""], {})
    assert [c.value for c in got] == ["app", "sidecar"]
    assert comp.complete(cli, ["gcdump", "web-1", "-o", ""], {}) == ([], comp.DIRECTIVE_DEFAULT)
    assert comp.complete(cli, ["gcdump", "web-1", "--pid", ""], {}) == ([], comp.DIRECTIVE_NO_FILE)
    flags = [c.value for c in comp.complete(cli, ["gcdump", "--"], {})[0]]
    assert {"--namespace", "--context", "--kubeconfig", "--output", "--help"} <= set(flags)


def test_render_format():
    out = comp.render([comp.Candidate("a", "one\ntwo"), comp.Candidate("b")], 6)
    assert out == "a\tone two\nb\n:6\n"


def test_real_namespace_lookup_uses_the_kube_layer(monkeypatch):
    """With the kube layer present, namespaces come from GET /api/v1/namespaces."""
    pytest.importorskip("kubectl_dotnet_monitor.kube.api")
    pytest.importorskip("kubectl_dotnet_monitor.kube.config")

    class FakeClient:
        def get(self, path, query=None):
            assert path == "/api/v1/namespaces"
            return {"items": [{"metadata": {"name": "shop"}}, {"metadata": {"name": "default"}}]}

    monkeypatch.setattr(comp, "_kube_client", lambda options, env: (FakeClient(), "default"))
    assert [c.value for c in comp.cluster_namespaces({}, {})] == ["shop", "default"]


# ----------------------------------------------------------------------------- `completion` command


@pytest.mark.parametrize("shell", comp.SHELLS)
def test_completion_command_prints_the_script(shell):
    result = CliRunner().invoke(comp.completion, [shell])
    assert result.exit_code == 0
    assert result.output == comp.completion_script(shell)
    assert "kubectl_complete-dotnet_monitor" in result.output


def test_completion_command_rejects_unknown_shell():
    assert CliRunner().invoke(comp.completion, ["tcsh"]).exit_code == 2


def test_register_adds_completion_once():
    group = click.Group("g")
    comp.register(group)
    comp.register(group)
    assert list(group.commands) == ["completion"]


# ----------------------------------------------------------------------------- through real shells/kubectl


@pytest.fixture
def helper_bin(tmp_path) -> Path:
    """kubectl_complete-dotnet_monitor from this checkout (what the console script will be)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "kubectl_complete-dotnet_monitor"
    helper.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                      "from kubectl_dotnet_monitor.cli.completion import complete_main\ncomplete_main()\n")
    helper.chmod(0o755)
    # kubectl consults the helper only for a plugin it can find on PATH
    plugin = bin_dir / "kubectl-dotnet_monitor"
    plugin.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                      "from kubectl_dotnet_monitor.cli import main\nmain()\n")
    plugin.chmod(0o755)
    return bin_dir


def _path_env(bin_dir: Path, *extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir), *extra, env.get("PATH", "")])
    env["KUBECONFIG"] = str(bin_dir / "no-kubeconfig")
    return env


def test_kubectl_runs_the_helper(helper_bin, kubectl):
    proc = subprocess.run([kubectl, "__complete", "dotnet-monitor", "ver"], env=_path_env(helper_bin),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "version" in [line.split("\t")[0] for line in lines[:-1]] and lines[-1] == ":4"


def test_helper_is_fast(helper_bin):
    """A TAB must feel instant: the helper imports only click for subcommand completion."""
    start = time.monotonic()
    subprocess.run([str(helper_bin / "kubectl_complete-dotnet_monitor"), ""], capture_output=True,
                   timeout=30, check=True)
    assert time.monotonic() - start < 1.5


def test_bash_script_completes(helper_bin):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not installed")
    script = comp.completion_script("bash")
    probe = script + textwrap.dedent("""
        t() { COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); __kubectl_dotnet_monitor_complete
              local r; for r in "${COMPREPLY[@]}"; do echo "$2$r$3"; done; }
        t "kubectl-dotnet_monitor ver" "<" ">"
        t "kubectl-dotnet_monitor completion " "[" "]"
        t "kubectl-dotnet_monitor doctor mypod --output=j" "{" "}"
        """)
    proc = subprocess.run([bash, "--norc", "--noprofile", "-c", probe], env=_path_env(helper_bin),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "<version>" in proc.stdout.splitlines()
    # `completion` takes a shell name: offered when the CLI owner has registered the command
    if "completion" in cli.commands:
        assert {"[bash]", "[zsh]", "[fish]", "[powershell]"} <= set(proc.stdout.splitlines())
    if "doctor" in cli.commands:  # bash splits at "=": the reply is the part after it
        assert "{json}" in proc.stdout.splitlines()


@pytest.mark.parametrize("shell,args", [("zsh", ["-n"]), ("fish", ["--no-execute"])])
def test_script_syntax(shell, args, tmp_path):
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} not installed")
    script = tmp_path / f"script.{shell}"
    script.write_text(comp.completion_script(shell))
    proc = subprocess.run([exe, *args, str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_fish_script_completes(helper_bin, tmp_path):
    fish = shutil.which("fish")
    if fish is None:
        pytest.skip("fish not installed")
    script = tmp_path / "c.fish"
    script.write_text(comp.completion_script("fish"))
    env = _path_env(helper_bin)
    env["HOME"] = str(tmp_path)
    proc = subprocess.run([fish, "--no-config", "-c", f"source {script}; complete -C 'kubectl-dotnet_monitor ver'"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split("\t")[0] == "version"


# ----------------------------------------------------------------------------- against the sandbox cluster


def _helper(helper_bin: Path, env: dict[str, str], *words: str) -> list[str]:
    start = time.monotonic()
    proc = subprocess.run([str(helper_bin / "kubectl_complete-dotnet_monitor"), *words], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert time.monotonic() - start < 5, "completion must stay fast"
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith(":")
    return [line.split("\t")[0] for line in lines[:-1]]


def test_cluster_candidates_from_the_sandbox(sandbox, helper_bin):
    if "gcdump" not in cli.commands:
        pytest.skip("gcdump not written yet")
    pytest.importorskip("kubectl_dotnet_monitor.kube.api")
    env = sandbox.env()
    env["PATH"] = str(helper_bin) + os.pathsep + env["PATH"]
    pods = _helper(helper_bin, env, "gcdump", "we")
    assert pods and all(p.startswith("web") for p in pods)
    assert "shop" in _helper(helper_bin, env, "gcdump", "-n", "sh")
    shop = _helper(helper_bin, env, "gcdump", "-n", "shop", "")
    assert shop and all(p.startswith("orders") for p in shop)
    assert _helper(helper_bin, env, "gcdump", "-n", "shop", f"pod/{shop[0][:3]}") == [f"pod/{p}" for p in shop]
    assert _helper(helper_bin, env, "gcdump", pods[0], "-c", "")  # the pod's containers
    # a broken kubeconfig: no candidates, no noise, exit 0
    env["KUBECONFIG"] = str(helper_bin / "missing")
    assert _helper(helper_bin, env, "gcdump", "we") == []
