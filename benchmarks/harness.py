"""Benchmark plumbing: a sandbox per artifact size, measured subprocesses, medians.

Every measured command runs as its own child process. Its peak RSS is ``ru_maxrss`` from
``os.wait4(pid)`` (that child and any children it waited for, never this process); its wall time is
from just before ``Popen`` to the return of ``wait4``. A poller thread notes when the first byte
reached the destination directory (time to first byte on disk, and the "streaming" part of the run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PLUGIN = str(VENV_BIN / "kubectl-dotnet_monitor")
NAMESPACE = "default"
BENCH_POD = "bench"
SERVER_VERSION = "v1.33.1"

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """``256M`` → 256 MiB, ``1G`` → 1 GiB (binary units, as the sandbox's sizes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG])(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 256M, 1G, 4G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def size_label(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


# --------------------------------------------------------------------------------------------------
# scenario + sandbox

SCENARIO = """\
name: bench
description: Benchmark-only scenario written by benchmarks/ (one prepared pod, gcdump of {size} bytes).
version:
  gitVersion: {version}
nodes:
  - name: sandbox-node-1
users:
  - name: admin
    groups: [system:masters, system:authenticated]
    rules:
      - {{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}}
namespaces:
  - name: default
objects:
  - apiVersion: v1
    kind: Pod
    metadata: {{name: {pod}, namespace: default, labels: {{app: bench}}}}
    spec:
      containers:
        - name: app
          image: registry.example/shop/web:1.4
          env:
            - {{name: DOTNET_DiagnosticPorts, value: "/diag/dotnet-monitor.sock,nosuspend"}}
          volumeMounts:
            - {{name: diagvol, mountPath: /diag}}
      volumes:
        - {{name: diagvol, emptyDir: {{}}}}
sandbox:
  kubelet:
    container_start_delay: 0.1
  images:
    registry.example/shop/web:1.4:
      user: 1654
      processes:
        - {{name: Web, commandLine: "dotnet Web.dll", runtime_version: "8.0.11"}}
    "mcr.microsoft.com/dotnet/monitor*":
      user: 1654
      monitor: true
  monitor:
    startup_delay: 0.1
    artifacts:
      gcdump: {{size: {size}, first_byte_delay: 0}}
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECTL_", "KUBERNETES_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@dataclass
class BenchSandbox:
    """A detached sandbox (its own process) and what the clients need to reach its monitor."""

    state_dir: Path
    scenario: str
    kubeconfig: Path = Path()
    server: str = ""
    ca: str = ""
    bearer: str = ""
    pid: int = 0
    env: dict[str, str] = field(default_factory=dict)
    # filled by prepare()
    pod: str = BENCH_POD
    port: int = 52323
    token: str = ""
    uid: str = ""
    host_port: int = 0

    @classmethod
    def start(cls, work: Path, name: str, *, size: int | None = None, scenario: str | None = None) -> BenchSandbox:
        state_dir = work / f"sandbox-{name}"
        shutil.rmtree(state_dir, ignore_errors=True)
        state_dir.mkdir(parents=True)
        if scenario is None:
            path = state_dir / "bench.yaml"
            path.write_text(SCENARIO.format(size=size, pod=BENCH_POD, version=SERVER_VERSION))
            scenario = str(path)
        out = subprocess.run([sys.executable, "-m", "tests.sandbox", "up", "--scenario", scenario,
                              "--state-dir", str(state_dir), "--detach"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=False)
        if out.returncode:
            raise RuntimeError(f"sandbox did not start: {out.stderr or out.stdout}")
        state = json.loads((state_dir / "state.json").read_text())
        sb = cls(state_dir=state_dir, scenario=scenario, kubeconfig=Path(state["kubeconfig"]),
                 server=state["server"], ca=state["ca"], bearer=state["users"]["admin"], pid=state["pid"])
        home = state_dir / "home"
        home.mkdir(exist_ok=True)
        sb.env = clean_env(KUBECONFIG=str(sb.kubeconfig), HOME=str(home))
        return sb

    def stop(self) -> None:
        subprocess.run([sys.executable, "-m", "tests.sandbox", "down", "--state-dir", str(self.state_dir)],
                       cwd=ROOT, capture_output=True, timeout=30, check=False)

    def control(self):
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tests.sandbox.control import SandboxControl

        return SandboxControl(self.state_dir)

    def inject(self, pod: str) -> subprocess.CompletedProcess:
        return subprocess.run([PLUGIN, "inject", pod], env=self.env, capture_output=True, text=True,
                              timeout=120, check=False)

    def prepare(self, pod: str = BENCH_POD) -> None:
        """Inject the monitor (through the plugin), then learn port, token, process uid, loopback port."""
        out = self.inject(pod)
        if out.returncode:
            raise RuntimeError(f"inject failed: {out.stderr}")
        from kubectl_dotnet_monitor.inject.apikey import mint_token
        from kubectl_dotnet_monitor.inject.injector import InjectRequest, ensure_monitor
        from kubectl_dotnet_monitor.inject.keystore import load_private_key
        from kubectl_dotnet_monitor.kube.config import KubeFlags
        from kubectl_dotnet_monitor.session import connect, monitor_client

        conn, client = connect(KubeFlags(kubeconfig=str(self.kubeconfig)))
        endpoint = ensure_monitor(client, NAMESPACE, pod, InjectRequest(), allow_inject=False)
        self.pod, self.port = pod, endpoint.port
        key = load_private_key(client, endpoint.pod_object, endpoint.container, server=conn.server)
        self.token = mint_token(key, ttl_seconds=6 * 3600)
        procs = monitor_client(conn, client, endpoint).processes()
        self.uid = procs[0]["uid"]
        for lst in self.control().listeners():
            if lst["pod"] == pod and lst["port"] == self.port:
                self.host_port = lst["host_port"]

    @property
    def gcdump_path(self) -> str:
        return f"/gcdump?uid={self.uid}"

    def last_record(self) -> dict | None:
        records = [r for r in self.control().artifacts() if r.get("route") == "/gcdump"]
        return records[-1] if records else None


# --------------------------------------------------------------------------------------------------
# measured processes


@dataclass
class Sample:
    wall: float                    # s, spawn -> exit
    rss_mb: float                  # peak RSS (MB = 10^6 bytes), summed over the variant's processes
    first_byte: float | None       # s from spawn to the first byte (on disk, or as the client reports)
    nbytes: int = 0
    detail: dict = field(default_factory=dict)
    cpu: float = float("nan")          # CPU seconds of the variant's processes (user + system)
    sandbox_cpu: float = float("nan")  # CPU seconds the sandbox process used meanwhile


def dir_bytes(path: Path) -> int:
    total = 0
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    pass
    except OSError:
        pass
    return total


class FirstBytePoller:
    """Notes when ``directory`` first holds a non-empty file (poll every ``interval`` seconds)."""

    def __init__(self, directory: Path | None, t0: float, interval: float) -> None:
        self.directory, self.t0, self.interval = directory, t0, interval
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if directory is not None:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if dir_bytes(self.directory) > 0:
                self.at = time.perf_counter() - self.t0
                return
            self._stop.wait(self.interval)

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.at


def _wait(proc: subprocess.Popen) -> tuple[int, object]:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


#: Peak RSS must not include this (large) harness: a forked child's RSS before ``exec`` counts in its
#: ``ru_maxrss``. So every measured command is started by GNU time (a ~1 MB C program), which forks
#: it from itself and reports the child's ``ru_maxrss`` (``%M``, KiB) into a file.
TIME = "/usr/bin/time"


class Rss:
    """``/usr/bin/time -f %M -o FILE cmd...``: the wrapped command and, after it ended, its peak RSS."""

    def __init__(self) -> None:
        fd, name = tempfile.mkstemp(prefix="bench-rss-")
        os.close(fd)
        self.path = Path(name)

    def wrap(self, cmd: list[str]) -> list[str]:
        if not os.access(TIME, os.X_OK):
            raise SystemExit(f"{TIME} (GNU time) is needed to measure peak RSS: apt-get install time")
        return [TIME, "-f", "%M %U %S", "-o", str(self.path), *cmd]

    def read(self) -> tuple[float, float]:
        """(peak RSS in MB, CPU seconds user+system) of the wrapped command."""
        try:
            lines = [l.split() for l in self.path.read_text().split("\n")]
            lines = [l for l in lines if len(l) == 3 and l[0].isdigit()]
            if not lines:
                return float("nan"), float("nan")
            kb, user, system = lines[-1]
            return int(kb) * 1024 / 1e6, float(user) + float(system)
        finally:
            self.path.unlink(missing_ok=True)


def process_cpu(pid: int) -> float:
    """CPU seconds (user+system) used so far by process ``pid`` (all its threads), 0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _child_of(pid: int) -> int | None:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def run_measured(cmd: list[str], env: dict[str, str], *, watch: Path | None = None,
                 poll: float = 0.02, cwd: Path | None = None, stdout_to: Path | None = None) -> tuple[Sample, str, str]:
    """Run ``cmd`` to completion; its Sample, stdout and stderr (``stdout_to``: stdout goes to that file)."""
    with (open(stdout_to, "w+b") if stdout_to else tempfile.TemporaryFile()) as out, \
            tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        wall0 = time.time()
        rss = Rss()
        proc = subprocess.Popen(rss.wrap(cmd), env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                cwd=cwd)
        poller = FirstBytePoller(watch, t0, poll)
        rc, _usage = _wait(proc)
        wall = time.perf_counter() - t0
        first = poller.stop()
        out.seek(0)
        err.seek(0)
        stdout = "" if stdout_to else out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if rc:
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {rc}: {stderr.strip()[-800:]}")
    rss_mb, cpu = rss.read()
    sample = Sample(wall=wall, rss_mb=rss_mb, first_byte=first, cpu=cpu,
                    detail={"wall0": wall0})
    return sample, stdout, stderr


def run_port_forward_curl(kubectl: str, sb: BenchSandbox, dest: Path, *, poll: float = 0.02) -> Sample:
    """``kubectl port-forward pod/P :PORT`` then ``curl`` through it; wall from kubectl's spawn."""
    krss, crss = Rss(), Rss()
    with tempfile.TemporaryFile() as kerr, tempfile.TemporaryFile() as cerr:
        t0 = time.perf_counter()
        kpf = subprocess.Popen(krss.wrap([kubectl, "port-forward", "--address", "127.0.0.1", f"pod/{sb.pod}",
                                f":{sb.port}", "-n", NAMESPACE]), env=sb.env, stdout=subprocess.PIPE,
                               stderr=kerr, stdin=subprocess.DEVNULL)
        try:
            line = kpf.stdout.readline().decode()
            m = re.search(r"127\.0\.0\.1:(\d+)", line)
            if not m:
                kerr.seek(0)
                raise RuntimeError(f"kubectl port-forward: {line!r} {kerr.read()[-500:]!r}")
            url = f"http://127.0.0.1:{m.group(1)}{sb.gcdump_path}"
            curl = subprocess.Popen(crss.wrap(["curl", "-sS", "-f", "-o", str(dest), "-H",
                                               f"Authorization: Bearer {sb.token}",
                                               "-H", "Accept: application/octet-stream", url]),
                                    env=sb.env, stdout=subprocess.DEVNULL, stderr=cerr, stdin=subprocess.DEVNULL)
            poller = FirstBytePoller(dest.parent, t0, poll)
            rc, _ = _wait(curl)
            wall = time.perf_counter() - t0
            first = poller.stop()
        finally:
            child = _child_of(kpf.pid)  # kubectl itself, not GNU time
            os.kill(child if child else kpf.pid, signal.SIGTERM)
            _wait(kpf)
            kpf.stdout.close()
        if rc:
            cerr.seek(0)
            raise RuntimeError(f"curl exited {rc}: {cerr.read()[-500:]!r}")
    (k_mb, k_cpu), (c_mb, c_cpu) = krss.read(), crss.read()
    return Sample(wall=wall, rss_mb=k_mb + c_mb, first_byte=first, cpu=k_cpu + c_cpu,
                  detail={"rss_kubectl": k_mb, "rss_curl": c_mb})


def median(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def find_kubectl(explicit: str | None = None) -> str:
    """``--kubectl``, else the versioned kubectl matching the sandbox (1.33) next to ``kubectl``, else ``kubectl``."""
    if explicit:
        return explicit
    found = shutil.which("kubectl") or "kubectl"
    real = Path(os.path.realpath(found))
    minor = ".".join(SERVER_VERSION.lstrip("v").split(".")[:2])
    versioned = real.parent / f"kubectl.{minor}"
    return str(versioned) if versioned.exists() else found


def command_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"
