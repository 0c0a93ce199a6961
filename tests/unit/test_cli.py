"""The CLI boundary: exit codes, -v placement, and a start-up path that imports only click."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kubectl_dotnet_monitor import __version__
from kubectl_dotnet_monitor.cli.app import cli, run
from kubectl_dotnet_monitor.errors import ExitCode


def test_version(capsys):
    assert run(cli, ["version"]) == ExitCode.OK
    assert capsys.readouterr().out.strip() == f"kubectl-dotnet_monitor {__version__}"


@pytest.mark.parametrize("argv", [
    ["gcdump", "web", "--kubeconfig", "/nonexistent/kubeconfig", "-v"],
    ["-v", "gcdump", "web", "--kubeconfig", "/nonexistent/kubeconfig"],
    ["gcdump", "-v", "web", "--kubeconfig", "/nonexistent/kubeconfig"],
])
def test_verbose_anywhere_shows_the_traceback(argv, capsys):
    assert run(cli, argv) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "error: the kubeconfig file /nonexistent/kubeconfig" in err


def test_no_traceback_without_verbose(capsys):
    assert run(cli, ["gcdump", "web", "--kubeconfig", "/nonexistent/kubeconfig"]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("error: ")


def test_unknown_flag_is_a_usage_error(capsys):
    assert run(cli, ["gcdump", "web", "--no-such-flag"]) == ExitCode.USAGE
    assert "No such option" in capsys.readouterr().err


def test_kube_flags_before_the_command_are_used(capsys):
    assert run(cli, ["--kubeconfig", "/nonexistent/kubeconfig", "gcdump", "web"]) == ExitCode.CONFIG
    assert "/nonexistent/kubeconfig" in capsys.readouterr().err


def test_help_imports_only_click():
    code = (
        "import sys; from kubectl_dotnet_monitor.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('yaml', 'urllib3', 'cryptography', 'tqdm', 'jsonschema', 'kubernetes') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Usage:" in out
    assert out.strip().splitlines()[-1] == "HEAVY="
