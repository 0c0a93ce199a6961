"""Shared pytest fixtures: sandboxes (simulated clusters) started as detached subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from tests.sandbox import SandboxHandle

REPO = Path(__file__).resolve().parents[1]


def _up(scenario: str, state_dir: Path) -> SandboxHandle:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.sandbox", "up", "--scenario", scenario,
         "--state-dir", str(state_dir), "--detach"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sandbox {scenario!r} did not start:\n{proc.stdout}{proc.stderr}")
    return SandboxHandle(state_dir)


def _down(state_dir: Path) -> None:
    subprocess.run([sys.executable, "-m", "tests.sandbox", "down", "--state-dir", str(state_dir)],
                   cwd=REPO, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def sandbox_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., SandboxHandle]:
    """`sandbox_factory(name="basic", fresh=False)` -> a running sandbox of that scenario
    (a name under tests/sandbox/scenarios/, or the path of a scenario file).

    Sandboxes are cached per scenario for the whole session (treat them as shared: do not delete
    or inject into pods other tests name); `fresh=True` starts a private one. All are torn down
    at the end of the session.
    """
    shared: dict[str, SandboxHandle] = {}
    started: list[Path] = []

    def get(name: str | Path = "basic", fresh: bool = False) -> SandboxHandle:
        name = str(name)  # a scenario name, or the path of a scenario file
        if not fresh and name in shared:
            return shared[name]
        state_dir = tmp_path_factory.mktemp(f"sandbox-{Path(name).stem}")
        started.append(state_dir)
        handle = _up(name, state_dir)
        if not fresh:
            shared[name] = handle
        return handle

    yield get
    for state_dir in started:
        _down(state_dir)


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., SandboxHandle]) -> SandboxHandle:
    """The shared `basic` scenario."""
    return sandbox_factory("basic")
