"""``python -m benchmarks.run``: download throughput and memory, start-up, first byte, fan-out.

    .venv/bin/python -m benchmarks.run                          # everything, 256M,1G,4G, 3 rounds
    .venv/bin/python -m benchmarks.run --sizes 256M --repeat 3 --only download
    .venv/bin/python -m benchmarks.run --only startup,ttfb,fanout

Compared variants always run in the same sandbox, interleaved round by round (the order rotates each
round), and the table gives medians and ratios of those medians. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.harness import (
    PLUGIN,
    ROOT,
    BenchSandbox,
    Sample,
    clean_env,
    command_version,
    find_kubectl,
    median,
    parse_size,
    process_cpu,
    run_measured,
    run_port_forward_curl,
    sha256_file,
    size_label,
)

SECTIONS = ("download", "ttfb", "startup", "fanout")
VARIANTS = ("plugin", "plugin-stdout", "kubectl+curl", "python-client", "ceiling-ws", "ceiling-tcp")
#: ``--baseline DIR``: a directory holding another ``kubectl_dotnet_monitor`` package (say, a copy
#: taken before a change), run as the extra variant ``plugin-baseline`` for before/after figures.
BASELINE: dict[str, str] = {}
TARGETS = {
    "throughput": "plugin >= 1.0x kubectl+curl",
    "rss": "plugin peak RSS flat in size, <= 100 MB at 4 GiB",
    "help": "--help <= 0.25 s",
    "ttfb": "first-byte overhead <= 0.5 s",
    "fanout": "50 pods <= 2x one pod",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds and not math.isnan(seconds) else float("nan")


def fmt(x: float, spec: str = ".0f") -> str:
    return "n/a" if math.isnan(x) else format(x, spec)


# --------------------------------------------------------------------------------------------------
# one download by one variant


def client_cmd(mode: str, sb: BenchSandbox, dest: str) -> list[str]:
    base = [sys.executable, "-m", "benchmarks.clients", mode, "--path", sb.gcdump_path, "--token", sb.token,
            "--dest", dest]
    if mode == "pyclient":
        return base + ["--kubeconfig", str(sb.kubeconfig), "--pod", sb.pod, "--port", str(sb.port)]
    if mode == "ceiling-ws":
        return base + ["--server", sb.server, "--ca", sb.ca, "--bearer", sb.bearer, "--pod", sb.pod,
                       "--port", str(sb.port)]
    return base + ["--host-port", f"127.0.0.1:{sb.host_port}"]


def download(variant: str, sb: BenchSandbox, rundir: Path, kubectl: str, *, poll: float = 0.02) -> Sample:
    """One artifact download; ``rundir`` is an empty directory on the benchmark disk."""
    cpu0 = process_cpu(sb.pid)
    sample = _download(variant, sb, rundir, kubectl, poll)
    sample.sandbox_cpu = process_cpu(sb.pid) - cpu0
    return sample


def _download(variant: str, sb: BenchSandbox, rundir: Path, kubectl: str, poll: float) -> Sample:
    dest = rundir / "out.gcdump"
    if variant == "plugin-stdout":  # `-o - > FILE`: same bytes, no temp file, no fsync before rename
        sample, _, err = run_measured([PLUGIN, "gcdump", sb.pod, "-n", "default", "-o", "-"], sb.env,
                                      watch=rundir, poll=poll, stdout_to=dest)
        sample.nbytes = dest.stat().st_size
    elif variant in ("plugin", "plugin-baseline"):
        env = sb.env
        if variant == "plugin-baseline":  # another copy of the package, e.g. before a change
            env = {**sb.env, "PYTHONPATH": BASELINE["dir"]}
        sample, _, err = run_measured([PLUGIN, "gcdump", sb.pod, "-n", "default", "-o", str(dest)], env,
                                      watch=rundir, poll=poll)
        sample.nbytes = dest.stat().st_size
        sample.detail["summary"] = err.strip().splitlines()[-1] if err.strip() else ""
    elif variant == "kubectl+curl":
        sample = run_port_forward_curl(kubectl, sb, dest, poll=poll)
        sample.nbytes = dest.stat().st_size
    else:
        mode = {"python-client": "pyclient"}.get(variant, variant)
        sample, out, _ = run_measured(client_cmd(mode, sb, str(dest)), sb.env, watch=rundir, poll=poll, cwd=ROOT)
        import json

        info = json.loads(out.strip().splitlines()[-1])
        sample.nbytes = info["bytes"]
        if info.get("first_byte"):  # the client's own clock: more precise than polling the file
            sample.first_byte = info["first_byte"] - sample.detail["wall0"]
    return sample


# --------------------------------------------------------------------------------------------------
# sections


def section_download(args, work: Path, kubectl: str, results: dict) -> None:
    variants = [v for v in VARIANTS if v in args.variants]
    if args.baseline:
        variants.insert(1, "plugin-baseline")
    for size_text in args.sizes:
        size = parse_size(size_text)
        log(f"download {size_label(size)}: starting a sandbox")
        sb = BenchSandbox.start(work, f"dl-{size_text}", size=size)
        samples: dict[str, list[Sample]] = {v: [] for v in variants}
        try:
            sb.prepare()
            for r in range(args.repeat):
                order = variants[r % len(variants):] + variants[:r % len(variants)]
                for v in order:
                    rundir = work / f"run-{v.replace('+', '-')}"
                    shutil.rmtree(rundir, ignore_errors=True)
                    rundir.mkdir()
                    s = download(v, sb, rundir, kubectl)
                    if not v.startswith("ceiling") and s.nbytes != size:
                        raise RuntimeError(f"{v}: {s.nbytes} bytes, expected {size}")
                    if v.startswith("ceiling") and s.nbytes < size:
                        raise RuntimeError(f"{v}: only {s.nbytes} bytes on the wire, expected > {size}")
                    if r == 0 and args.verify and v in ("plugin", "kubectl+curl") and size <= (1 << 30):
                        rec = sb.last_record()
                        got = sha256_file(rundir / "out.gcdump")
                        if not rec or rec.get("sha256") != got:
                            raise RuntimeError(f"{v}: SHA-256 {got} differs from the monitor's record {rec}")
                    shutil.rmtree(rundir, ignore_errors=True)
                    samples[v].append(s)
                    log(f"  {size_label(size):8} round {r + 1} {v:14} {s.wall:6.2f} s  "
                        f"{mbps(size, s.wall):6.0f} MB/s  RSS {s.rss_mb:5.1f} MB  "
                        f"first byte {fmt(s.first_byte or float('nan'), '.2f')} s")
        finally:
            sb.stop()
        results.setdefault("download", {})[size] = samples


def section_ttfb(args, work: Path, kubectl: str, results: dict) -> None:
    # 64 MiB: the transfer outlasts the 5 ms polling of the output directory by far
    log("first byte: starting a sandbox (64 MiB gcdump)")
    sb = BenchSandbox.start(work, "ttfb", size=64 << 20)
    variants = ["plugin", "ceiling-ws", "kubectl+curl", "python-client"]
    samples: dict[str, list[Sample]] = {v: [] for v in variants}
    try:
        sb.prepare()
        for v in variants:  # warm the page cache of every binary once
            rundir = work / "ttfb-warm"
            shutil.rmtree(rundir, ignore_errors=True)
            rundir.mkdir()
            download(v, sb, rundir, kubectl, poll=0.005)
        for r in range(args.ttfb_runs):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                rundir = work / f"ttfb-{v.replace('+', '-')}"
                shutil.rmtree(rundir, ignore_errors=True)
                rundir.mkdir()
                s = download(v, sb, rundir, kubectl, poll=0.005)
                samples[v].append(s)
                shutil.rmtree(rundir, ignore_errors=True)
            log(f"  ttfb round {r + 1}: " + ", ".join(f"{v} {fmt(samples[v][-1].first_byte or float('nan'), '.3f')}s" for v in variants))
    finally:
        sb.stop()
    results["ttfb"] = samples


def _importtime(cmd_args: list[str]) -> tuple[float, list[tuple[str, float]]]:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "kubectl_dotnet_monitor", *cmd_args],
                         capture_output=True, text=True, env=clean_env(), cwd=ROOT, check=False)
    rows = []
    total = 0.0
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if not m:
            continue
        cumulative = int(m.group(2)) / 1e6
        if not m.group(3):  # top level imports only
            rows.append((m.group(4), cumulative))
            total += cumulative
    rows.sort(key=lambda r: -r[1])
    return total, rows[:8]


def _krew_binary(work: Path) -> Path | None:
    tarballs = sorted((ROOT / "dist" / "krew").glob("kubectl-dotnet-monitor_*_linux_amd64.tar.gz"))
    if not tarballs:
        return None
    dest = work / "krew-bin"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    with tarfile.open(tarballs[-1]) as tar:
        tar.extractall(dest, filter="data")
    exe = dest / "kubectl-dotnet_monitor"
    if exe.exists():
        exe.chmod(0o755)
        return exe
    return None


def section_startup(args, work: Path, kubectl: str, results: dict) -> None:
    log("start-up")
    variants = {"source (.venv console script)": [PLUGIN]}
    krew = _krew_binary(work)
    if krew is not None:
        variants[f"krew build ({krew.name}, {krew.stat().st_size / 1e6:.0f} MB)"] = [str(krew)]
    env = clean_env(HOME=str(work))
    times: dict[tuple[str, str], list[float]] = {}
    for name, cmd in variants.items():  # warm-up (page cache; PyInstaller's first extraction)
        for sub in ("--help", "version"):
            subprocess.run(cmd + [sub], env=env, capture_output=True, check=True)
    for _ in range(args.startup_runs):
        for name, cmd in variants.items():
            for sub in ("--help", "version"):
                t0 = time.perf_counter()
                subprocess.run(cmd + [sub], env=env, capture_output=True, check=True)
                times.setdefault((name, sub), []).append(time.perf_counter() - t0)
    imports = {sub: _importtime([sub]) for sub in ("--help", "version")}
    results["startup"] = {"times": times, "imports": imports, "krew": krew is not None}


def section_fanout(args, work: Path, kubectl: str, results: dict) -> None:
    scenario = "fanout"
    if args.fanout_first_byte_delay:
        # The realistic case: each gcdump starts only after the heap walk (a first-byte delay).
        text = (ROOT / "tests" / "sandbox" / "scenarios" / "fanout.yaml").read_text()
        knob = "gcdump: {size: 524288}"
        if knob not in text:
            raise RuntimeError("fanout.yaml changed: cannot set the gcdump first_byte_delay")
        path = work / "fanout-first-byte-delay.yaml"
        path.write_text(text.replace(knob, f"gcdump: {{size: 524288, first_byte_delay: {args.fanout_first_byte_delay}}}"))
        scenario = str(path)
    log(f"fan-out: starting the `fanout` scenario (50 pods; gcdump first-byte delay "
        f"{args.fanout_first_byte_delay or 0:g} s)")
    sb = BenchSandbox.start(work, "fanout", scenario=scenario)
    try:
        out = subprocess.run([kubectl, "get", "pods", "-n", "default", "-o", "name"], env=sb.env,
                             capture_output=True, text=True, check=True)
        pods = sorted(line.split("/", 1)[1] for line in out.stdout.split())
        log(f"  injecting dotnet-monitor into {len(pods)} pods (10 at a time)")
        with ThreadPoolExecutor(10) as pool:
            failed = [p for p, r in zip(pods, pool.map(sb.inject, pods)) if r.returncode]
        if failed:
            raise RuntimeError(f"inject failed for {failed[:3]}")
        helptext = subprocess.run([PLUGIN, "gcdump", "--help"], capture_output=True, text=True, env=sb.env,
                                  check=False).stdout
        native = "--selector" in helptext or "--all" in helptext  # issue 7's many-pods mode, when it exists
        if not native:
            log("  `gcdump --help` shows no --selector/--all: measuring concurrent processes only")

        def measured(fn, rundir: Path) -> tuple[float, float, float, float]:
            """(wall s, peak RSS MB (summed over processes), client CPU s, sandbox CPU s)."""
            cpu0 = process_cpu(sb.pid)
            wall, rss, cpu = fn(rundir)
            return wall, rss, cpu, process_cpu(sb.pid) - cpu0

        def one(rundir: Path) -> tuple[float, float, float]:
            s, _, _ = run_measured([PLUGIN, "gcdump", pods[0], "-o", str(rundir / "one.gcdump")], sb.env)
            return s.wall, s.rss_mb, s.cpu

        def many_processes(rundir: Path) -> tuple[float, float, float]:
            t0 = time.perf_counter()
            with ThreadPoolExecutor(len(pods)) as pool:
                got = list(pool.map(lambda p: run_measured(
                    [PLUGIN, "gcdump", p, "-o", str(rundir / f"{p}.gcdump")], sb.env)[0], pods))
            return time.perf_counter() - t0, sum(s.rss_mb for s in got), sum(s.cpu for s in got)

        def many_native(rundir: Path) -> tuple[float, float, float]:
            flag = ["-l", "app=web"] if "--selector" in helptext else ["deploy/web", "--all"]
            s, _, _ = run_measured([PLUGIN, "gcdump", *flag, *args.fanout_flags.split(), "-o", str(rundir)], sb.env)
            return s.wall, s.rss_mb, s.cpu

        one_t, many_t, native_t = [], [], []
        kinds = ("one", "native", "many") if native else ("one", "many")
        if args.fanout_no_processes and native:
            kinds = ("one", "native")
        for r in range(args.fanout_runs):
            for kind in kinds:
                rundir = work / f"fanout-{kind}"
                shutil.rmtree(rundir, ignore_errors=True)
                rundir.mkdir()
                fn = {"one": one, "many": many_processes, "native": many_native}[kind]
                got = measured(fn, rundir)
                {"one": one_t, "many": many_t, "native": native_t}[kind].append(got)
                if kind != "one" and len(list(rundir.iterdir())) != len(pods):
                    raise RuntimeError(f"fan-out ({kind}): not every pod's gcdump arrived")
                shutil.rmtree(rundir, ignore_errors=True)
            log(f"  fan-out round {r + 1}: one {one_t[-1][0]:.2f} s"
                + (f", {len(pods)} processes {many_t[-1][0]:.2f} s" if many_t else "")
                + (f", one process for all {native_t[-1][0]:.2f} s" if native else ""))
        results["fanout"] = {"pods": len(pods), "one": one_t, "many": many_t, "native": native_t,
                             "native_available": native}
    finally:
        sb.stop()


# --------------------------------------------------------------------------------------------------
# report


def machine(kubectl: str) -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores ({cpu}), {mem} RAM, {platform.system()} {platform.release()}, "
        f"load average at the end {os.getloadavg()[0]:.2f}",
        f"- Python {platform.python_version()} ({sys.executable})",
        f"- kubectl: {command_version([kubectl, 'version', '--client'])} ({kubectl}); "
        f"{command_version(['curl', '--version'])}",
        "- sandbox: tests/sandbox (API server, port-forward and simulated dotnet-monitor in one Python "
        "process, TLS on loopback), Kubernetes v1.33.1",
    ]


def report(args, results: dict, kubectl: str) -> str:
    lines = ["# Benchmark results", ""] + machine(kubectl) + [""]
    lines.append(f"Command: `python -m benchmarks.run {' '.join(args.argv)}`".rstrip())
    lines.append("")
    verdicts: list[str] = []

    if "download" in results:
        lines += [
            "## Artifact download (gcdump through the sandbox)",
            "",
            f"Median of {args.repeat} interleaved rounds per size. MB/s = 10^6 bytes per second of wall time, "
            "process start to exit (the plugin's time includes its start-up, the pod and Secret lookups and "
            "`/processes`; kubectl+curl's includes kubectl's start-up and the port-forward set-up). "
            "\"stream\" = size / (exit - first byte on disk). Destination: a file on the same disk for every "
            "variant (the ceilings write the raw wire bytes). Peak RSS from GNU time (`%M`); kubectl+curl "
            "is the sum of both processes.",
            "",
            "| size | variant | MB/s (wall) | MB/s (stream) | wall s | first byte s | peak RSS MB | client CPU s "
            "| sandbox CPU s | vs plugin |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        rss_by_size = {}
        for size, samples in results["download"].items():
            med = {v: median([s.wall for s in ss]) for v, ss in samples.items()}
            plugin_wall = med.get("plugin")
            for v, ss in samples.items():
                wall = med[v]
                fb = median([s.first_byte for s in ss])
                stream = median([size / (s.wall - s.first_byte) / 1e6 for s in ss if s.first_byte])
                rss = max(s.rss_mb for s in ss)
                extra = ""
                if v == "kubectl+curl":
                    extra = (f" (kubectl {max(s.detail['rss_kubectl'] for s in ss):.0f} + "
                             f"curl {max(s.detail['rss_curl'] for s in ss):.0f})")
                ratio = (wall / plugin_wall) if plugin_wall else float("nan")
                lines.append(f"| {size_label(size)} | {v} | {fmt(mbps(size, wall))} | {fmt(stream)} | "
                             f"{wall:.2f} | {fmt(fb, '.2f')} | {rss:.0f}{extra} | "
                             f"{fmt(median([s.cpu for s in ss]), '.2f')} | "
                             f"{fmt(median([s.sandbox_cpu for s in ss]), '.2f')} | "
                             f"{'—' if v == 'plugin' else f'{1 / ratio:.2f}x'} |")
                if v == "plugin":
                    rss_by_size[size] = rss
            if "plugin" in med:
                for other in ("kubectl+curl", "ceiling-ws"):
                    if other in med:
                        r = med[other] / med["plugin"]
                        verdicts.append(f"- {size_label(size)}: plugin / {other} throughput = **{r:.2f}x**"
                                        + (f" (target >= 1.0x: {'met' if r >= 1.0 else 'MISSED'})"
                                           if other == "kubectl+curl" else ""))
        lines.append("")
        lines.append("\"vs plugin\" = that variant's throughput relative to the plugin's (plugin / variant "
                     "ratios are in the summary).")
        lines.append("")
        if rss_by_size:
            biggest = max(rss_by_size)
            flat = max(rss_by_size.values()) - min(rss_by_size.values())
            ok = rss_by_size[biggest] <= 100 and flat <= 10
            verdicts.append(
                "- plugin peak RSS: " + ", ".join(f"{size_label(k)} {v:.0f} MB" for k, v in rss_by_size.items())
                + f" (spread {flat:.1f} MB; target flat and <= 100 MB: {'met' if ok else 'MISSED'})")

    if "ttfb" in results:
        s = results["ttfb"]
        med = {v: median([x.first_byte for x in ss]) for v, ss in s.items()}
        lines += ["## Time to first byte (64 MiB gcdump, monitor already injected)", "",
                  f"Median of {args.ttfb_runs} interleaved runs: seconds from spawning the command to the first "
                  "artifact byte (on disk for the plugin and kubectl+curl, polled every 5 ms; the Python "
                  "clients report their own clock). Overhead = variant - ceiling-ws (the sandbox's own "
                  "latency: Python start, TLS, upgrade, request, monitor).", "",
                  "| variant | first byte s | overhead vs ceiling s |", "|---|---:|---:|"]
        for v, t in med.items():
            lines.append(f"| {v} | {t:.3f} | {t - med['ceiling-ws']:+.3f} |")
        lines.append("")
        over = med["plugin"] - med["ceiling-ws"]
        verdicts.append(f"- first-byte overhead of the plugin: **{over:.3f} s** (target <= 0.5 s: "
                        f"{'met' if over <= 0.5 else 'MISSED'})")

    if "startup" in results:
        st = results["startup"]
        lines += ["## Start-up", "", f"Median wall time of {args.startup_runs} runs each, interleaved.", "",
                  "| build | `--help` s | `version` s |", "|---|---:|---:|"]
        names = list(dict.fromkeys(k[0] for k in st["times"]))
        for name in names:
            h = median(st["times"][(name, "--help")])
            v = median(st["times"][(name, "version")])
            lines.append(f"| {name} | {h:.3f} | {v:.3f} |")
            verdicts.append(f"- `--help` ({name}): **{h:.3f} s** (target <= 0.25 s: {'met' if h <= 0.25 else 'MISSED'})")
        if not st["krew"]:
            lines.append("| krew build | skipped: no dist/krew/*.tar.gz | |")
        lines.append("")
        for sub, (total, rows) in st["imports"].items():
            lines.append(f"`python -X importtime -m kubectl_dotnet_monitor {sub}`: top-level imports "
                         f"{total * 1000:.0f} ms cumulative; largest: "
                         + ", ".join(f"{n} {t * 1000:.0f} ms" for n, t in rows))
            lines.append("")

    if "fanout" in results:
        f = results["fanout"]

        def row(what: str, runs: list, one_wall: float) -> str:
            wall = median([r[0] for r in runs])
            return (f"| {what} | {wall:.2f} | {wall / one_wall:.2f}x | {median([r[1] for r in runs]):.0f} | "
                    f"{median([r[2] for r in runs]):.2f} | {median([r[3] for r in runs]):.2f} |")

        one = median([r[0] for r in f["one"]])
        delay = f" with a {args.fanout_first_byte_delay:g} s first-byte delay (heap walk)" \
            if args.fanout_first_byte_delay else ""
        lines += [f"## Fan-out (`fanout` scenario, 512 KiB gcdumps{delay}, monitors already injected)", "",
                  f"Median of {args.fanout_runs} runs. RSS and client CPU are summed over the plugin processes; "
                  "sandbox CPU is what the sandbox process used meanwhile (it is one Python process, so "
                  "about one core at most).", "",
                  "| what | wall s | vs one pod | peak RSS MB | client CPU s | sandbox CPU s |",
                  "|---|---:|---:|---:|---:|---:|",
                  row("one pod, one plugin process", f["one"], one)]
        if f["native_available"]:
            nat = median([r[0] for r in f["native"]])
            extra = f" {args.fanout_flags}" if args.fanout_flags else ""
            lines.append(row(f"{f['pods']} pods, one plugin process (`gcdump -l app=web{extra}`)", f["native"], one))
            verdicts.append(f"- fan-out, one process for {f['pods']} pods: **{nat / one:.2f}x** one pod (target <= 2x: "
                            f"{'met' if nat / one <= 2 else 'MISSED'})")
        else:
            lines.append(f"| {f['pods']} pods, one plugin process | not yet: `gcdump -l` (issue 7) is missing; "
                         "re-run `--only fanout` when it exists | | | | |")
        if f["many"]:
            many = median([r[0] for r in f["many"]])
            lines.append(row(f"{f['pods']} pods, {f['pods']} concurrent plugin processes (for comparison)",
                             f["many"], one))
            verdicts.append(f"- fan-out, {f['pods']} concurrent plugin processes (for comparison): "
                            f"{many / one:.2f}x one pod")
        lines.append("")

    lines = lines[:8] + ["## Summary against the targets", ""] + verdicts + [""] + lines[8:]
    return "\n".join(lines) + "\n"


def _compile_bytecode(args: argparse.Namespace) -> None:
    """Measure what users run: an installed package has its .pyc files (pip compiles them), but an
    editable checkout under PYTHONDONTWRITEBYTECODE=1 would recompile every module at every start."""
    import compileall

    dirs = [ROOT / "kubectl_dotnet_monitor"]
    if args.baseline:
        dirs.append(Path(args.baseline) / "kubectl_dotnet_monitor")
    for directory in dirs:
        compileall.compile_dir(str(directory), quiet=1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256M,1G,4G", help="artifact sizes (default 256M,1G,4G)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds per size (default 3)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections: {','.join(SECTIONS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="download variants to run")
    parser.add_argument("--ttfb-runs", type=int, default=7)
    parser.add_argument("--startup-runs", type=int, default=15)
    parser.add_argument("--fanout-runs", type=int, default=3)
    parser.add_argument("--fanout-flags", default="", help="extra flags for the many-pods run, e.g. '--parallel 16'")
    parser.add_argument("--fanout-first-byte-delay", type=float, default=0.0, metavar="SECONDS",
                        help="gcdump first-byte delay in the fanout scenario (the heap walk; default 0)")
    parser.add_argument("--fanout-no-processes", action="store_true",
                        help="skip the 50-concurrent-processes comparison (slow, CPU-heavy)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also run the plugin from DIR/kubectl_dotnet_monitor (variant plugin-baseline)")
    parser.add_argument("--kubectl", help="kubectl binary (default: the 1.33 one next to `kubectl`, else `kubectl`)")
    parser.add_argument("--workdir", help="where artifacts land (default: a temp dir under /tmp; same disk for all)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the SHA-256 check of the first round (sizes <= 1 GiB)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "latest.md"))
    args = parser.parse_args(argv)
    args.argv = argv
    _compile_bytecode(args)
    args.sizes = [s for s in args.sizes.split(",") if s]
    args.variants = [v for v in args.variants.split(",") if v]
    only = [s for s in args.only.split(",") if s]
    for name in only:
        if name not in SECTIONS:
            parser.error(f"unknown section {name!r}")
    for v in args.variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    if args.baseline:
        if not (Path(args.baseline) / "kubectl_dotnet_monitor" / "__init__.py").exists():
            parser.error(f"--baseline: no kubectl_dotnet_monitor package in {args.baseline}")
        BASELINE["dir"] = str(Path(args.baseline).resolve())
    kubectl = find_kubectl(args.kubectl)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="kdm-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    t0 = time.perf_counter()
    try:
        for name in SECTIONS:
            if name in only:
                globals()[f"section_{name}"](args, work, kubectl, results)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    text = report(args, results, kubectl)
    print(text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log(f"done in {time.perf_counter() - t0:.0f} s; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
