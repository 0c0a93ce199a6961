"""Sandbox-only knobs for the simulated dotnet-monitor, read from ``scenario.sandbox``.

Everything scenario-specific is parsed here, in :func:`monitor_knobs`, so a change of the scenario
YAML shape touches one function. Expected shape (all optional)::

    sandbox:
      monitor:
        version: "10.0.4"        # 8.x/9.x: MVC validation bodies; 10.0.0/10.0.1: case-sensitive enums
        time_scale: 1.0          # multiplies durations, counter intervals and delays (tests: 0.05)
        image_user: 1654         # override the monitor image's USER
        artifacts:
          dump:   {size: 32MiB, sizes: {Full: 64MiB, Mini: 4MiB}, first_byte_delay: 0, rate: null}
          gcdump: {size: 4MiB, first_byte_delay: 0}
          trace:  {size: 2MiB, rundown_size: 256KiB}
          logs:   {interval: 1}
        faults:                  # see faults.py
          - {artifact: gcdump, kind: reset, after: 1MiB, times: 1}
        egress_root: null        # host dir: FileSystem egress really writes files below it
        rule_triggers: []        # collection rules that fire right after start
      pods:
        <pod name or name prefix>:
          containers:
            <container name>:
              image_user: 0
              processes: [{pid: 1, name: dotnet, commandLine: "dotnet App.dll", uid: GUID,
                           managedEntryPointAssemblyName: App, env: {...}, runtime_version: "8.0.11"}]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3}

ARTIFACT_DEFAULTS = {
    "dump": {"size": 32 << 20},
    "gcdump": {"size": 4 << 20},
    "trace": {"size": 2 << 20, "rundown_size": 256 << 10},
    "logs": {"interval": 1.0},
    "livemetrics": {},
    "stacks": {},
    "exceptions": {},
    "parameters": {"interval": 1.0},
}


def parse_size(value) -> int:
    """``1048576``, ``"64MiB"``, ``"1.5 GiB"`` → bytes."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass
class ArtifactKnobs:
    size: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    first_byte_delay: float = 0.0
    rate: float | None = None          # bytes per second; None = as fast as possible
    rundown_size: int = 0
    interval: float = 1.0


@dataclass
class MonitorKnobs:
    version: str = "10.0.4"
    time_scale: float = 1.0
    image_user: int | None = None
    artifacts: dict[str, ArtifactKnobs] = field(default_factory=dict)
    faults: list[dict] = field(default_factory=list)
    egress_root: str | None = None
    rule_triggers: list[str] = field(default_factory=list)
    pod: dict = field(default_factory=dict)    # {"containers": {name: {"image_user", "processes"}}}

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    @property
    def minimal_api(self) -> bool:
        return self.major >= 10

    @property
    def case_sensitive_enums(self) -> bool:
        parts = (self.version.split(".") + ["0", "0"])[:3]
        return parts[0] == "10" and parts[1] == "0" and parts[2] in ("0", "1")

    def artifact(self, kind: str) -> ArtifactKnobs:
        return self.artifacts.get(kind) or ArtifactKnobs()


def _sandbox(scenario) -> dict:
    if scenario is None:
        return {}
    if isinstance(scenario, dict):
        return scenario.get("sandbox", scenario) or {}
    return getattr(scenario, "sandbox", None) or {}


def _pod_knobs(pods: dict, pod_name: str) -> dict:
    if pod_name in pods:
        return pods[pod_name] or {}
    # Pods created by a workload: the longest key that prefixes the generated name.
    best = None
    for key in pods:
        if pod_name.startswith(str(key) + "-") and (best is None or len(key) > len(best)):
            best = key
    return (pods[best] or {}) if best is not None else {}


def monitor_knobs(scenario, pod: dict) -> MonitorKnobs:
    """The one place that reads the scenario's sandbox section for the monitor."""
    sb = _sandbox(scenario)
    mon = sb.get("monitor") or {}
    arts: dict[str, ArtifactKnobs] = {}
    for kind, defaults in ARTIFACT_DEFAULTS.items():
        raw = {**defaults, **(mon.get("artifacts", {}).get(kind) or {})}
        arts[kind] = ArtifactKnobs(
            size=parse_size(raw.get("size", 0)),
            sizes={k: parse_size(v) for k, v in (raw.get("sizes") or {}).items()},
            first_byte_delay=float(raw.get("first_byte_delay", 0) or 0),
            rate=parse_size(raw["rate"]) if raw.get("rate") else None,
            rundown_size=parse_size(raw.get("rundown_size", 0)),
            interval=float(raw.get("interval", 1.0)),
        )
    pod_name = (pod.get("metadata") or {}).get("name", "")
    return MonitorKnobs(
        version=str(mon.get("version", "10.0.4")),
        time_scale=float(mon.get("time_scale", 1.0)),
        image_user=mon.get("image_user"),
        artifacts=arts,
        faults=list(mon.get("faults") or []),
        egress_root=mon.get("egress_root"),
        rule_triggers=list(mon.get("rule_triggers") or []),
        pod=_pod_knobs(sb.get("pods") or {}, pod_name),
    )
