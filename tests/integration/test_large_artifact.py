"""Issue 10: a 4 GiB artifact arrives bit-exact (SHA-256 recorded by the sandbox as it sent it).

Runs the plugin as a user does, through the sandbox's API server and port-forward, to a file.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.integration.conftest import run_plugin

SCENARIO = Path(__file__).parent / "scenarios" / "large.yaml"
SIZE = 4 << 30


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_4_gib_gcdump_arrives_bit_exact(sandbox_factory, tmp_path):
    if shutil.disk_usage(tmp_path).free < SIZE + (1 << 30):
        pytest.skip("needs 5 GiB free for the 4 GiB artifact")
    sb = sandbox_factory(SCENARIO, fresh=True)
    run = run_plugin(sb, "gcdump", "big", "-o", str(tmp_path / "big.gcdump"), timeout=480)
    assert run.rc == 0, str(run)
    saved = tmp_path / "big.gcdump"
    assert saved.stat().st_size == SIZE
    [record] = [r for r in sb.control.artifacts() if r.get("route") == "/gcdump"]
    assert record["complete"] and record["bytes"] == SIZE
    assert sha256_of(saved) == record["sha256"]
    saved.unlink()
