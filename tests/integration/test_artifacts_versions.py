"""Issue 5: the same commands against dotnet-monitor 8.x (MVC validation bodies) and 10.0.1
(case-sensitive enums, empty-bodied 400s) behaviour: PascalCase always goes on the wire, and the
monitor's refusals read well in both shapes."""

from __future__ import annotations

import json

import pytest

from tests.integration.artifact_helpers import (
    Cli,
    last_record,
    sha256,
    start_sandbox,
    stop_sandbox,
)


@pytest.fixture(scope="module", params=["8.0.5", "10.0.1"])
def sandbox(request, tmp_path_factory):
    state = tmp_path_factory.mktemp(f"artifacts-{request.param}") / "state"
    handle = start_sandbox(state, version=request.param)
    handle.version = request.param
    yield handle
    stop_sandbox(state)


@pytest.fixture
def cli(sandbox, tmp_path) -> Cli:
    return Cli(sandbox, tmp_path)


def test_lower_case_flags_work_on_every_version(cli, sandbox, tmp_path):
    run = cli("dump", "plain", "--type", "triage", "-o", "t.dmp")
    assert run.returncode == 0, run.stderr
    assert sha256(tmp_path / "t.dmp") == last_record(sandbox, "plain", "dump")["sha256"]
    run = cli("trace", "plain", "--profile", "cpu,http", "--duration", "2s", "-o", "t.nettrace")
    assert run.returncode == 0, run.stderr
    run = cli("logs", "plain", "--level", "error", "--duration", "10s")
    assert run.returncode == 0, run.stderr
    assert run.stdout and all(l.startswith(("fail:", "crit:", "      ")) for l in run.stdout.splitlines())


def test_info_reports_the_version(cli, sandbox):
    doc = json.loads(cli("info", "plain", "-o", "json").stdout)
    assert doc["version"].split(".")[0] == sandbox.version.split(".")[0]  # the simulator reports its major line
    text = cli("info", "plain").stdout
    if sandbox.version.startswith("8"):
        assert "not reported by this dotnet-monitor version" in text
    else:
        assert "Capabilities:" in text and "http_egress" in text


def test_invalid_providers_explained_in_the_version_s_own_shape(cli, sandbox, tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"providers": [{"name": "X", "eventLevel": "Loud"}]}))
    run = cli("trace", "plain", "--providers", "bad.json", "-o", "bad.nettrace")
    assert run.returncode == 8
    if sandbox.version.startswith("8"):
        assert "rejected" in run.stderr and "Providers:" in run.stderr  # the errors map, listed
    else:
        assert "malformed (400 without details)" in run.stderr
    assert not (tmp_path / "bad.nettrace").exists()


def test_features_off_message_is_the_same(cli):
    run = cli("exceptions", "plain")
    assert run.returncode == 8 and "exceptions feature turned off" in run.stderr
