"""``kubectl dotnet-monitor rules example|validate`` as a user types them (no cluster needed)."""

from __future__ import annotations

import io

import yaml

from kubectl_dotnet_monitor.cli import cli
from kubectl_dotnet_monitor.cli.app import run
from kubectl_dotnet_monitor.errors import ExitCode
from kubectl_dotnet_monitor.rules.templates import example


def test_example_prints_the_yaml(capsys):
    assert run(cli, ["rules", "example", "high-cpu"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert out == example("high-cpu")
    assert yaml.safe_load(out)["CollectionRules"]["HighCpu"]["Trigger"]["Type"] == "CPUUsage"


def test_example_without_name_lists_names(capsys):
    assert run(cli, ["rules", "example"]) == ExitCode.OK
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["high-cpu", "memory-leak", "slow-requests", "http-5xx"]


def test_unknown_example_is_a_usage_error_listing_names(capsys):
    assert run(cli, ["rules", "example", "cpu"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "error: no example named 'cpu'; choose one of: high-cpu, memory-leak, slow-requests, http-5xx" in err


def test_validate_ok(tmp_path, capsys):
    path = tmp_path / "rules.yaml"
    path.write_text(example("memory-leak"))
    assert run(cli, ["rules", "validate", str(path)]) == ExitCode.OK
    assert capsys.readouterr().out == f"OK: {path}: 1 collection rule (MemoryLeak); egress: artifacts\n"


def test_validate_shows_env(tmp_path, capsys):
    path = tmp_path / "rules.yaml"
    path.write_text(example("high-cpu"))
    assert run(cli, ["rules", "validate", "--show-env", str(path)]) == ExitCode.OK
    out = capsys.readouterr().out
    env = yaml.safe_load(out.split("\n", 1)[1])["env"]
    assert env[0] == {"name": "DotnetMonitor_CollectionRules__HighCpu__Trigger__Type", "value": "CPUUsage"}


def test_validate_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(example("http-5xx")))
    assert run(cli, ["rules", "validate", "-"]) == ExitCode.OK
    assert capsys.readouterr().out.startswith("OK: <stdin>: 1 collection rule (Http5xx)")


def test_validate_invalid_prints_every_problem_with_lines(tmp_path, capsys):
    path = tmp_path / "rules.yaml"
    path.write_text(example("high-cpu").replace("Type: CPUUsage", "Type: CpuUsage").replace("Egress: artifacts", "Egress: s3"))
    assert run(cli, ["rules", "validate", str(path)]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0] == f"error: {path} is not a valid rules file (2 problems):"
    assert lines[1].startswith(f"  {path}:6: CollectionRules.HighCpu.Trigger.Type: 'CpuUsage' is not a valid value "
                               "(did you mean 'CPUUsage'? names are spelled exactly so)")
    assert lines[2].startswith(f"  {path}:15: CollectionRules.HighCpu.Actions[0].Settings.Egress: egress provider 's3'")


def test_validate_secret_literal(tmp_path, capsys):
    path = tmp_path / "rules.yaml"
    path.write_text("Egress:\n  S3Storage:\n    s3:\n      BucketName: b\n      SecretAccessKey: TOPSECRET\n")
    assert run(cli, ["rules", "validate", str(path)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"{path}:5: Egress.S3Storage.s3.SecretAccessKey: a literal secret is refused" in err
    assert "TOPSECRET" not in err


def test_validate_warns_about_secrets_that_must_exist(tmp_path, capsys):
    path = tmp_path / "rules.yaml"
    path.write_text(example("high-cpu") + "  S3Storage:\n    s3:\n      BucketName: b\n"
                    "      SecretAccessKey: {secretKeyRef: {name: s3-creds, key: sak}}\n")
    assert run(cli, ["rules", "validate", str(path)]) == ExitCode.OK
    captured = capsys.readouterr()
    assert "Secrets used: s3-creds/sak" in captured.out
    assert "must exist in the pod's namespace" in captured.err


def test_validate_missing_file(tmp_path, capsys):
    assert run(cli, ["rules", "validate", str(tmp_path / "nope.yaml")]) == ExitCode.USAGE
    assert "no such file" in capsys.readouterr().err
