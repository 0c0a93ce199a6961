"""Helpers for the integration suite: the plugin run exactly as a user runs it, against a sandbox.

Every test here starts the installed entry point (``kubectl-dotnet_monitor``, or real ``kubectl
dotnet-monitor`` through plugin dispatch) as a subprocess with the sandbox's kubeconfig, and judges
only what a user sees: the exit code, stdout, stderr, and the files left behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pytest

from tests.sandbox import SandboxHandle

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ENTRY_POINT = VENV_BIN / "kubectl-dotnet_monitor"
SCENARIO = "integration"

#: Temporary files the plugin writes next to the final artifact (artifacts/files.py naming).
TEMP_MARKERS = (".kubectl-dotnet-monitor-", ".partial")


@dataclass
class Run:
    """One finished command: what the user saw."""

    args: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    stdout_bytes: bytes = b""

    def __str__(self) -> str:  # shown by pytest when an assertion fails
        return f"$ {' '.join(self.args)}\nrc={self.rc}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def plugin_env(handle: SandboxHandle, **extra: str) -> dict[str, str]:
    """The sandbox's environment with the venv's bin first on PATH (where the entry point lives)."""
    env = handle.env(**extra)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONWARNINGS", None)
    return env


def plugin_command(*args: str, via_kubectl: bool = False) -> list[str]:
    if via_kubectl:
        return [shutil.which("kubectl") or "/usr/bin/kubectl", "dotnet-monitor", *args]
    if ENTRY_POINT.exists():
        return [str(ENTRY_POINT), *args]
    return [sys.executable, "-m", "kubectl_dotnet_monitor", *args]


def run_plugin(handle: SandboxHandle, *args: str, cwd: Path | str | None = None, timeout: float = 90,
               via_kubectl: bool = False, env: dict[str, str] | None = None, binary: bool = False) -> Run:
    """Run ``kubectl-dotnet_monitor ARGS`` (or ``kubectl dotnet-monitor ARGS``) against the sandbox."""
    proc = subprocess.run(plugin_command(*args, via_kubectl=via_kubectl), cwd=cwd or REPO,
                          env=env or plugin_env(handle), capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    out = proc.stdout
    return Run(tuple(args), proc.returncode, out.decode(errors="replace") if not binary else "",
               proc.stderr.decode(errors="replace"), out)


def start_plugin(handle: SandboxHandle, *args: str, cwd: Path | str | None = None,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the plugin in the background (for signals and concurrency); stdout/stderr are pipes."""
    return subprocess.Popen(plugin_command(*args), cwd=cwd or REPO, env=env or plugin_env(handle),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen, args: Iterable[str] = (), timeout: float = 60) -> Run:
    out, err = proc.communicate(timeout=timeout)
    return Run(tuple(args), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), out)


def assert_user_error(run: Run, exit_code: int, *phrases: str) -> None:
    """A failure as issue 10 wants it: the documented exit code, ``error: ...`` on stderr saying
    what happened (``phrases``, case-insensitive), nothing on stdout, no traceback."""
    assert run.rc == exit_code, str(run)
    assert "Traceback" not in run.stderr, str(run)
    assert "error:" in run.stderr, str(run)
    assert run.stdout.strip() == "", str(run)
    low = run.stderr.lower()
    for phrase in phrases:
        assert phrase.lower() in low, f"{phrase!r} not in stderr\n{run}"


def assert_no_artifacts(directory: Path, allowed: Iterable[str] = ()) -> None:
    """No artifact under a final name and no temporary file left in ``directory``."""
    left = sorted(p.name for p in Path(directory).iterdir() if p.name not in set(allowed))
    assert left == [], f"files left in {directory}: {left}"


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith(TEMP_MARKERS[0]))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pods_by_label(handle: SandboxHandle, namespace: str, **labels: str) -> list[str]:
    """Names of the pods in ``namespace`` carrying all ``labels``, sorted (read through the
    control API, so the plugin's own code is not involved)."""
    names = []
    for pod in handle.control.pods(namespace):
        meta = pod.get("metadata") or {}
        have = meta.get("labels") or {}
        if all(have.get(k) == v for k, v in labels.items()) and not meta.get("deletionTimestamp"):
            names.append(meta["name"])
    return sorted(names)


def pod_json(handle: SandboxHandle, namespace: str, name: str) -> dict:
    """The pod as real ``kubectl get pod -o json`` shows it."""
    import json

    proc = handle.kubectl("get", "pod", name, "-n", namespace, "-o", "json", env=plugin_env(handle))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def records_for(handle: SandboxHandle, pod: str, since_seq: int = 0, route: str = "/gcdump") -> list[dict]:
    """The sandbox's artifact records for ``pod`` newer than ``since_seq``."""
    return [r for r in handle.control.artifacts()
            if r.get("pod") == pod and r.get("route") == route and r.get("seq", 0) > since_seq]


def last_seq(handle: SandboxHandle) -> int:
    records = handle.control.artifacts()
    return max((r.get("seq", 0) for r in records), default=0)


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def send_signal(proc: subprocess.Popen, signum: int = signal.SIGINT) -> None:
    proc.send_signal(signum)


@pytest.fixture(scope="module")
def sb(sandbox_factory: Callable[..., SandboxHandle]) -> SandboxHandle:
    """The shared `integration` scenario (one per test session; modules use disjoint pods)."""
    return sandbox_factory(SCENARIO)
