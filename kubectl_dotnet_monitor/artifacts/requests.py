"""PURE: what each artifact command asks dotnet-monitor for (route, query, Accept, body).

Enum values go on the wire in PascalCase whatever the user typed: dotnet-monitor 10.0.0 and 10.0.1
bind enums case-sensitively (reference §1.2, §1.6). Durations become ``durationSeconds`` (whole
seconds, rounded up; ``-1`` = until stopped). ``/logs`` always gets an explicit ``Accept`` (406
otherwise, reference §1.4).
"""

from __future__ import annotations

import json
import math

from kubectl_dotnet_monitor.collect import ArtifactSpec
from kubectl_dotnet_monitor.errors import UsageError

DUMP_TYPES = ("Mini", "Triage", "WithHeap", "Full")
TRACE_PROFILES = ("Cpu", "Http", "Metrics", "GcCollect", "Logs")
LOG_LEVELS = ("Trace", "Debug", "Information", "Warning", "Error", "Critical", "None")
_LEVEL_ALIASES = {"info": "Information", "warn": "Warning", "fail": "Error", "crit": "Critical",
                  "dbug": "Debug", "trce": "Trace"}
#: Dump types that freeze the process long enough to matter to a liveness probe (#673).
HEAVY_DUMPS = ("WithHeap", "Full")

NDJSON = "application/x-ndjson"
JSON_SEQ = "application/json-seq"
TEXT = "text/plain"
STACK_FORMATS = {"text": (TEXT, "stacks.txt"), "json": ("application/json", "stacks.json"),
                 "speedscope": ("application/speedscope+json", "speedscope.json")}


def pascal_enum(value: str, allowed: tuple[str, ...], what: str, aliases: dict[str, str] | None = None) -> str:
    """``"withheap"`` → ``"WithHeap"``; a :class:`UsageError` listing the choices otherwise."""
    text = value.strip()
    for name in allowed:
        if name.lower() == text.lower():
            return name
    if aliases and text.lower() in aliases:
        return aliases[text.lower()]
    raise UsageError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")


def pascal_flags(value: str, allowed: tuple[str, ...], what: str) -> str:
    """``"cpu, http,gccollect"`` → ``"Cpu,Http,GcCollect"`` (order kept, duplicates dropped)."""
    out: list[str] = []
    for part in value.split(","):
        if not part.strip():
            continue
        name = pascal_enum(part, allowed, what)
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError(f"--{what} needs at least one of {', '.join(allowed)}")
    return ",".join(out)


def duration_seconds(seconds: float | None, *, follow: bool = False) -> int:
    """``durationSeconds`` for a duration in seconds: rounded up, at least 1; ``-1`` when following."""
    if follow:
        return -1
    if seconds is None:
        return 30
    if seconds <= 0:
        raise UsageError("--duration must be positive (use -f/--follow, where offered, for no limit)")
    return max(1, math.ceil(seconds - 1e-9))


def parse_method(text: str) -> dict:
    """``"MyApp.dll!MyApp.Orders.Service.Place"`` → ``{moduleName, typeName, methodName}``."""
    module, sep, rest = text.partition("!")
    type_name, dot, method = rest.rpartition(".")
    if not sep or not module or not dot or not type_name or not method:
        raise UsageError(f"--method {text!r}: expected MODULE!NAMESPACE.TYPE.METHOD, "
                         "e.g. MyApp.dll!MyApp.Orders.OrderService.Place")
    return {"moduleName": module, "typeName": type_name, "methodName": method}


def providers_body(path: str) -> bytes:
    """The ``POST /trace`` body (EventPipeConfiguration) from a JSON/YAML file, lightly checked."""
    from kubectl_dotnet_monitor.userfiles import load_mapping

    doc = load_mapping(path, "--providers file")
    providers = next((v for k, v in doc.items() if k.lower() == "providers"), None)
    if not isinstance(providers, list) or not providers:
        raise UsageError(f"--providers file {path}: needs a non-empty 'providers' list, e.g. "
                         '{"providers": [{"name": "Microsoft-Windows-DotNETRuntime", "eventLevel": "Informational"}]}')
    for i, provider in enumerate(providers):
        if not isinstance(provider, dict) or not any(k.lower() == "name" and v for k, v in provider.items()):
            raise UsageError(f"--providers file {path}: provider #{i + 1} needs a 'name'")
    return json.dumps(doc).encode("utf-8")


# --------------------------------------------------------------------------------------------
# Specs


def dump_spec(dump_type: str) -> ArtifactSpec:
    kind = pascal_enum(dump_type, DUMP_TYPES, "dump type")
    return ArtifactSpec(kind="dump", path="/dump", extension="dmp", query={"type": kind},
                        waiting="waiting for the runtime to write the dump (the process is frozen meanwhile)")


def trace_spec(profile: str | None, seconds: float | None, providers_file: str | None = None) -> ArtifactSpec:
    if profile and providers_file:
        raise UsageError("--profile and --providers exclude each other (a providers file replaces the profile)")
    duration = duration_seconds(seconds)
    query: dict = {"durationSeconds": duration}
    method, body = "GET", None
    if providers_file:
        method, body = "POST", providers_body(providers_file)
    elif profile:
        query["profile"] = pascal_flags(profile, TRACE_PROFILES, "profile")
    return ArtifactSpec(kind="trace", path="/trace", extension="nettrace", query=query, method=method, body=body,
                        duration=float(duration), stoppable=True, waiting="starting the trace session")


def logs_spec(level: str | None, seconds: float | None, follow: bool, as_json: bool) -> ArtifactSpec:
    query: dict = {"durationSeconds": duration_seconds(seconds, follow=follow)}
    if level:
        query["level"] = pascal_enum(level, LOG_LEVELS, "log level", _LEVEL_ALIASES)
    return ArtifactSpec(kind="logs", path="/logs", extension="txt", accept=NDJSON if as_json else TEXT,
                        query=query, stoppable=True)


def livemetrics_spec(seconds: float | None, follow: bool = False) -> ArtifactSpec:
    return ArtifactSpec(kind="livemetrics", path="/livemetrics", extension="metrics.json", accept=JSON_SEQ,
                        query={"durationSeconds": duration_seconds(seconds, follow=follow)}, stoppable=True)


def metrics_spec() -> ArtifactSpec:
    return ArtifactSpec(kind="metrics", path="/metrics", extension="prom", accept="text/plain")


def stacks_spec(fmt: str) -> ArtifactSpec:
    accept, extension = STACK_FORMATS[fmt]
    return ArtifactSpec(kind="stacks", path="/stacks", extension=extension, accept=accept,
                        waiting="collecting call stacks", feature="call stacks")


def exceptions_spec(as_json: bool) -> ArtifactSpec:
    return ArtifactSpec(kind="exceptions", path="/exceptions", extension="exceptions.txt",
                        accept=NDJSON if as_json else TEXT, feature="exceptions")


def parameters_spec(methods: tuple[str, ...], seconds: float | None, follow: bool, as_json: bool,
                    capture_limit: int | None = None) -> ArtifactSpec:
    if not methods:
        raise UsageError("pass at least one --method MODULE!TYPE.METHOD")
    body: dict = {"methods": [parse_method(m) for m in methods]}
    if capture_limit is not None:
        if capture_limit < 1:
            raise UsageError("--limit must be at least 1")
        body["captureLimit"] = capture_limit
    return ArtifactSpec(kind="parameters", path="/parameters", extension="parameters.txt",
                        accept=NDJSON if as_json else TEXT, method="POST",
                        body=json.dumps(body).encode("utf-8"),
                        query={"durationSeconds": duration_seconds(seconds, follow=follow)},
                        stoppable=True, feature="parameter capturing")


def in_process_env() -> tuple[dict, ...]:
    """Monitor env that turns on every in-process feature (stacks, exceptions, parameters)."""
    return ({"name": "DotnetMonitor_InProcessFeatures__Enabled", "value": "true"},
            {"name": "DotnetMonitor_InProcessFeatures__ParameterCapturing__Enabled", "value": "true"})


def liveness_risk(pod: dict, app_container: str | None) -> str | None:
    """The name of the app container when it has a livenessProbe, else None."""
    containers = (pod.get("spec") or {}).get("containers") or []
    if app_container:
        chosen = [c for c in containers if c.get("name") == app_container]
    else:
        try:
            from kubectl_dotnet_monitor.inject.spec import select_app_container

            chosen = [select_app_container(pod, None)[0]]
        except Exception:  # noqa: BLE001 - ambiguous: any probed container is a risk
            chosen = containers
    for container in chosen:
        if container.get("livenessProbe"):
            return str(container.get("name"))
    return None
