"""Install the release archive the way ``kubectl krew install --manifest --archive`` does, then use
it through the real kubectl: ``kubectl dotnet-monitor version``, ``kubectl plugin list`` and
``kubectl __complete dotnet-monitor ...`` (the completion helper is the same executable under the
name ``kubectl_complete-dotnet_monitor``)."""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

import kubectl_dotnet_monitor
from tests.packaging import krewcheck as kc


@pytest.fixture(scope="module")
def krew_root(tmp_path_factory, release_manifest, release_archive, krew_build) -> Path:
    root = tmp_path_factory.mktemp("krew-root")
    target_os, arch = krew_build.host_target()
    kc.install(release_manifest, release_archive, root, target_os, arch)
    return root


def _env(bin_dir: Path, kubectl: str, home: Path) -> dict[str, str]:
    """PATH = krew's bin dir first, then only kubectl's own directory: no other plugins, no .venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECTL_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(kubectl).parent), "/bin"])
    env["HOME"] = str(home)
    env["KUBECONFIG"] = str(home / "no-such-kubeconfig")
    return env


def test_install_links_the_plugin(krew_root, release_manifest):  # I8, I9
    link = krew_root / "bin" / "kubectl-dotnet_monitor"
    assert link.is_symlink()
    target = link.resolve()
    version = release_manifest["spec"]["version"]
    assert target.parent == (krew_root / "store" / "dotnet-monitor" / version).resolve()
    assert os.access(target, os.X_OK)
    assert sorted(p.name for p in target.parent.iterdir()) == ["LICENSE", "kubectl-dotnet_monitor"]


def test_version_through_kubectl(krew_root, kubectl, tmp_path):
    proc = subprocess.run([kubectl, "dotnet-monitor", "version"], env=_env(krew_root / "bin", kubectl, tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert kubectl_dotnet_monitor.__version__ in proc.stdout
    # kubectl turns both spellings into the same executable
    proc2 = subprocess.run([kubectl, "dotnet_monitor", "version"], env=_env(krew_root / "bin", kubectl, tmp_path),
                           capture_output=True, text=True, timeout=60)
    assert proc2.stdout == proc.stdout


def test_usage_says_kubectl_dotnet_monitor(krew_root, kubectl, tmp_path):
    proc = subprocess.run([kubectl, "dotnet-monitor", "--help"], env=_env(krew_root / "bin", kubectl, tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "kubectl dotnet-monitor" in proc.stdout


def test_plugin_list_without_warnings(krew_root, kubectl, tmp_path):
    proc = subprocess.run([kubectl, "plugin", "list"], env=_env(krew_root / "bin", kubectl, tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert str(krew_root / "bin" / "kubectl-dotnet_monitor") in proc.stdout
    assert "warning" not in (proc.stdout + proc.stderr).lower()


def test_completion_helper_through_kubectl(krew_root, kubectl, tmp_path):
    """The executable doubles as kubectl_complete-dotnet_monitor (linked by the user)."""
    helper_dir = tmp_path / "helper"
    helper_dir.mkdir()
    (helper_dir / "kubectl_complete-dotnet_monitor").symlink_to(krew_root / "bin" / "kubectl-dotnet_monitor")
    env = _env(krew_root / "bin", kubectl, tmp_path)
    env["PATH"] = str(helper_dir) + os.pathsep + env["PATH"]
    proc = subprocess.run([kubectl, "__complete", "dotnet-monitor", "ver"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines[:-1]] == ["version"]
    assert lines[-1] == ":4"


def test_wrong_checksum_is_refused(tmp_path, release_manifest, release_archive, krew_build):  # I2
    bad = copy.deepcopy(release_manifest)
    for plat in bad["spec"]["platforms"]:
        plat["sha256"] = hashlib.sha256(b"not the archive").hexdigest()
    with pytest.raises(kc.KrewError, match="I2"):
        kc.install(bad, release_archive, tmp_path, *krew_build.host_target())


def test_unknown_platform_is_refused(tmp_path, release_manifest, release_archive):  # I10
    with pytest.raises(kc.KrewError, match="I10"):
        kc.install(release_manifest, release_archive, tmp_path, "linux", "ppc64le")


def test_unclean_files_to_is_refused(tmp_path, release_manifest, release_archive, krew_build):  # I6
    bad = copy.deepcopy(release_manifest)
    for plat in bad["spec"]["platforms"]:
        plat["files"][0]["to"] = "./"
    with pytest.raises(kc.KrewError, match="I6"):
        kc.install(bad, release_archive, tmp_path, *krew_build.host_target())


def test_files_from_that_matches_nothing_is_refused(tmp_path, release_manifest, release_archive, krew_build):  # I7
    bad = copy.deepcopy(release_manifest)
    for plat in bad["spec"]["platforms"]:
        plat["files"].append({"from": "README*", "to": "."})
    with pytest.raises(kc.KrewError, match="I7"):
        kc.install(bad, release_archive, tmp_path, *krew_build.host_target())


def test_missing_bin_is_refused(tmp_path, release_manifest, release_archive, krew_build):  # I8
    bad = copy.deepcopy(release_manifest)
    for plat in bad["spec"]["platforms"]:
        plat["bin"] = "kubectl-dotnet-monitor"
    with pytest.raises(kc.KrewError, match="I8"):
        kc.install(bad, release_archive, tmp_path, *krew_build.host_target())


def test_real_command_through_kubectl_against_the_sandbox(krew_root, kubectl, sandbox_factory, tmp_path):
    """The executable carries everything a real command needs (yaml, urllib3, cryptography, tqdm):
    a gcdump through kubectl, injecting into a private sandbox."""
    from kubectl_dotnet_monitor.cli.app import cli

    if "gcdump" not in cli.commands:
        pytest.skip("gcdump not written yet")
    sandbox = sandbox_factory("basic", fresh=True)
    env = _env(krew_root / "bin", kubectl, tmp_path)
    env["KUBECONFIG"] = str(sandbox.kubeconfig)
    pods = subprocess.run([kubectl, "get", "pods", "-o", "name"], env=env, capture_output=True, text=True,
                          timeout=60)
    pod = next(line.split("/", 1)[1] for line in pods.stdout.splitlines() if line.startswith("pod/web"))
    out = tmp_path / "heap.gcdump"
    proc = subprocess.run([kubectl, "dotnet-monitor", "gcdump", pod, "-o", str(out)], env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
