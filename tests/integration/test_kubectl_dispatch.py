"""Issue 4: the plugin through real kubectl's plugin dispatch, with the venv's bin first on PATH."""

from __future__ import annotations

import os
import re
import stat

from tests.integration.conftest import last_seq, pods_by_label, records_for, run_plugin, sha256_file


def test_kubectl_dotnet_monitor_gcdump(sb, tmp_path):
    pod = pods_by_label(sb, "default", app="dump")[0]
    since = last_seq(sb)
    # Flags after the plugin name reach the plugin verbatim (kubernetes-notes §5.1).
    run = run_plugin(sb, "gcdump", pod, "-n", "default", via_kubectl=True, cwd=tmp_path)
    assert run.rc == 0, str(run)
    saved = run.stdout.strip()
    assert saved.count("\n") == 0
    name = os.path.basename(saved)
    assert re.fullmatch(rf"{re.escape(pod)}_1_\d{{8}}_\d{{6}}\.gcdump", name), name
    assert os.listdir(tmp_path) == [name]
    [record] = records_for(sb, pod, since)
    assert record["complete"] is True
    assert sha256_file(tmp_path / name) == record["sha256"]
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert "gcdump of pod" in run.stderr and "Traceback" not in run.stderr


def test_underscore_name_and_usage_name(sb):
    run = run_plugin(sb, "version", via_kubectl=True)
    assert run.rc == 0 and "kubectl-dotnet_monitor" in run.stdout, str(run)
    import shutil
    import subprocess

    from tests.integration.conftest import plugin_env
    proc = subprocess.run([shutil.which("kubectl") or "kubectl", "dotnet_monitor", "gcdump", "--help"],
                          env=plugin_env(sb), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "kubectl dotnet-monitor gcdump" in proc.stdout


def test_plugin_list_finds_it(sb):
    from tests.integration.conftest import plugin_env
    proc = sb.kubectl("plugin", "list", env=plugin_env(sb))
    assert "kubectl-dotnet_monitor" in proc.stdout, proc.stdout + proc.stderr
