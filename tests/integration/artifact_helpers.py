"""Shared by tests/integration/test_artifacts_*.py: one private sandbox per module, the CLI run the
way a user runs it (the installed entry point, as a subprocess), and artifact-record lookups."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.sandbox import SandboxHandle

REPO = Path(__file__).resolve().parents[2]
SCENARIO = Path(__file__).with_name("scenarios") / "artifacts.yaml"
ENTRY = str(Path(sys.executable).with_name("kubectl-dotnet_monitor"))


def start_sandbox(state_dir: Path, version: str | None = None) -> SandboxHandle:
    """The `artifacts` scenario (optionally with another dotnet-monitor version) in ``state_dir``."""
    scenario = SCENARIO
    if version is not None:
        text = SCENARIO.read_text().replace('version: "10.0.4"', f'version: "{version}"')
        scenario = state_dir.parent / f"artifacts-{version}.yaml"
        scenario.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.sandbox", "up", "--scenario", str(scenario), "--state-dir", str(state_dir),
         "--detach"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"sandbox did not start:\n{proc.stdout}{proc.stderr}")
    return SandboxHandle(state_dir)


def stop_sandbox(state_dir: Path) -> None:
    subprocess.run([sys.executable, "-m", "tests.sandbox", "down", "--state-dir", str(state_dir)],
                   cwd=REPO, capture_output=True, timeout=60, check=False)


class Cli:
    """``kubectl dotnet-monitor ...`` against one sandbox, from a working directory."""

    def __init__(self, sandbox: SandboxHandle, cwd: Path) -> None:
        self.sandbox = sandbox
        self.cwd = cwd

    def __call__(self, *args: str, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([ENTRY, *args], cwd=self.cwd, env=self.sandbox.env(), capture_output=True,
                              text=True, timeout=timeout, input=input if input is not None else "", check=False)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([ENTRY, *args], cwd=self.cwd, env=self.sandbox.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def interrupt(proc: subprocess.Popen, times: int = 1, gap: float = 0.3) -> None:
    for i in range(times):
        if i:
            time.sleep(gap)
        proc.send_signal(signal.SIGINT)


def wait_for_operation(cli: Cli, pod: str, kind_path: str, timeout: float = 10.0) -> dict:
    """The running operation of ``pod``'s monitor whose record route will be ``kind_path`` (polls)."""
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cli("operations", "list", pod, "-o", "json")
        if out.returncode == 0:
            running = [op for op in json.loads(out.stdout) if op["status"] == "Running"]
            if running:
                return running[-1]
        time.sleep(0.2)
    raise AssertionError(f"no running operation in {pod} within {timeout}s")


def records(sandbox: SandboxHandle, pod: str, artifact: str) -> list[dict]:
    return [r for r in sandbox.control.artifacts() if r.get("pod") == pod and r.get("artifact") == artifact]


def last_record(sandbox: SandboxHandle, pod: str, artifact: str, timeout: float = 5.0) -> dict:
    """The newest finished record (the monitor writes it when the response ends)."""
    deadline = time.monotonic() + timeout
    while True:
        found = records(sandbox, pod, artifact)
        if found or time.monotonic() > deadline:
            assert found, f"no {artifact} record for {pod}"
            return found[-1]
        time.sleep(0.1)


def sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def leftovers(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if n.startswith(".kubectl-dotnet-monitor-")]
