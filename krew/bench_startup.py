#!/usr/bin/env python3
"""Start-up time of the packaging variants: median wall time of `--help` and `version`.

    python3 krew/bench_startup.py [--runs 15]

Builds (or reuses from the cache) the onefile executable and the zipapp, then times each with the
pip-installed console script of .venv as the baseline. Prints a Markdown table for PACKAGING.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build  # noqa: E402


def median_seconds(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the page cache once
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    epoch = build.source_date_epoch()
    build_dir = build.ROOT / "build" / "krew"
    exe = build.build_onefile(build_dir, epoch)
    pyz = build.build_zipapp(build_dir, epoch)
    variants = {
        "PyInstaller --onefile": [str(exe)],
        "zipapp (python3 + .pyz)": [sys.executable, str(pyz)],
    }
    console = build.ROOT / ".venv" / "bin" / "kubectl-dotnet_monitor"
    if console.exists():
        variants["pip console script (.venv)"] = [str(console)]
    print("| variant | size | `--help` median | `version` median |")
    print("|---|---|---|---|")
    for name, cmd in variants.items():
        size = Path(cmd[-1]).stat().st_size
        h = median_seconds(cmd + ["--help"], args.runs)
        v = median_seconds(cmd + ["version"], args.runs)
        print(f"| {name} | {size / 1e6:.1f} MB | {h * 1000:.0f} ms | {v * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
