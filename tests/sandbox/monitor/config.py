"""Configuration of a simulated dotnet-monitor, derived only from its container spec.

dotnet-monitor reads .NET configuration: keys are hierarchical (``A:B:C``), case-insensitive, and
environment variables spell ``:`` as ``__``. Sources, low to high precedence (reference §7):
command line (``--urls``…) < unprefixed env < ``DotnetMonitor_``-prefixed env (prefix case-insensitive).
The image contributes its ENV (container env with the same name wins, as in Kubernetes) and its CMD
(``collect --urls https://+:52323 --metricUrls http://+:52325``) when the container has no ``args``
and no ``command``. Replacing ``args`` falls back to the command-line defaults
(``https://localhost:52323``, ``http://localhost:52325``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

IMAGE_CMD = ["collect", "--urls", "https://+:52323", "--metricUrls", "http://+:52325"]
DEFAULT_URLS = "https://localhost:52323"
DEFAULT_METRIC_URLS = "http://localhost:52325"
MONITOR_IMAGE_USER = 1654  # 8.0+ images: user "app"
DEFAULT_PROBLEM_VERSION = "10.0.4"

#: ENV baked into the 8+ images (reference §7).
IMAGE_ENV = {
    "DefaultProcess__Filters__0__Key": "ProcessId",
    "DefaultProcess__Filters__0__Value": "1",
    "DiagnosticPort__DeleteEndpointOnStartup": "true",
    "DOTNET_gcServer": "1",
    "COMPlus_EnableDiagnostics": "0",
    "Logging__Console__FormatterName": "json",
    "ASPNETCORE_HTTP_PORTS": "",
}

_PREFIX = "dotnetmonitor_"


class ConfigSource:
    """A flat, case-insensitive view of .NET configuration keys (``a:b:c``)."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self._values: dict[str, tuple[str, str]] = {}
        for k, v in (values or {}).items():
            self.set(k, v)

    def set(self, key: str, value: str) -> None:
        self._values[key.lower()] = (key, value)

    def get(self, key: str, default: str | None = None) -> str | None:
        hit = self._values.get(key.lower())
        return hit[1] if hit is not None else default

    def get_bool(self, key: str, default: bool) -> bool:
        v = self.get(key)
        if v is None or v.strip() == "":
            return default
        return v.strip().lower() == "true"

    def section(self, prefix: str) -> dict[str, str]:
        """Keys under ``prefix:`` with their original spelling of the remainder."""
        p = prefix.lower() + ":"
        return {orig[len(p):]: v for low, (orig, v) in self._values.items() if low.startswith(p)}

    def children(self, prefix: str) -> list[str]:
        """Immediate child names under ``prefix`` (original spelling, first seen wins, deduped)."""
        seen: dict[str, str] = {}
        for rest in self.section(prefix):
            name = rest.split(":", 1)[0]
            seen.setdefault(name.lower(), name)
        return list(seen.values())


@dataclass(frozen=True)
class Url:
    """One Kestrel listener URL."""
    raw: str
    scheme: str
    host: str
    port: int

    @property
    def bind_all(self) -> bool:
        """``localhost`` and loopback literals bind loopback only; ``+``, ``*`` and anything else all."""
        return self.host.lower() not in ("localhost", "127.0.0.1", "[::1]", "::1")


def parse_urls(value: str | None) -> list[Url]:
    """Kestrel's ``;``-separated URL list. Unparsable entries are skipped."""
    out: list[Url] = []
    for raw in (value or "").split(";"):
        raw = raw.strip()
        if not raw:
            continue
        m = re.match(r"^(https?)://(\[[^\]]+\]|[^:/]+)(?::(\d+))?/?$", raw, re.I)
        if not m:
            continue
        scheme = m.group(1).lower()
        port = int(m.group(3)) if m.group(3) else (443 if scheme == "https" else 80)
        out.append(Url(raw=raw, scheme=scheme, host=m.group(2), port=port))
    return out


@dataclass
class CommandLine:
    verb: str = "collect"
    options: dict[str, str] = field(default_factory=dict)   # config keys set by the command line
    no_auth: bool = False
    temp_apikey: bool = False
    no_http_egress: bool = False
    exit_on_stdin_disconnect: bool = False
    unknown: list[str] = field(default_factory=list)


def parse_command_line(argv: list[str]) -> CommandLine:
    """``dotnet-monitor collect`` options (System.CommandLine spelling; ``--opt value`` or ``--opt=value``)."""
    cl = CommandLine(options={"urls": DEFAULT_URLS, "Metrics:Endpoints": DEFAULT_METRIC_URLS})
    args = list(argv)
    if args and not args[0].startswith("-"):
        cl.verb = args.pop(0)
    valued = {"--urls": "urls", "-u": "urls", "--metricurls": "Metrics:Endpoints",
              "--metrics": "Metrics:Enabled", "-m": "Metrics:Enabled",
              "--diagnostic-port": "DiagnosticPort", "--configuration-file-path": None}
    flags = {"--no-auth": "no_auth", "--temp-apikey": "temp_apikey",
             "--no-http-egress": "no_http_egress", "--exit-on-stdin-disconnect": "exit_on_stdin_disconnect"}
    i = 0
    while i < len(args):
        a = args[i]
        name, _, inline = a.partition("=")
        low = name.lower()
        if low in flags:
            setattr(cl, flags[low], inline.lower() != "false" if inline else True)
        elif low in valued:
            if inline:
                val = inline
            elif i + 1 < len(args):
                i += 1
                val = args[i]
            else:
                val = ""
            key = valued[low]
            if key == "urls" or key == "Metrics:Endpoints":
                # System.CommandLine accepts several values; Kestrel joins them with ';'.
                vals = [val]
                while i + 1 < len(args) and not args[i + 1].startswith("-"):
                    i += 1
                    vals.append(args[i])
                val = ";".join(vals)
            if key:
                cl.options[key] = val
        else:
            cl.unknown.append(a)
        i += 1
    return cl


def effective_env(container: dict, image_env: dict[str, str] | None = None) -> dict[str, str]:
    """Image ENV overlaid by the container's env (``value`` only; ``valueFrom`` must be resolved
    by the kubelet into ``value`` beforehand, otherwise the variable is empty)."""
    env = dict(IMAGE_ENV if image_env is None else image_env)
    for item in container.get("env") or []:
        env[item["name"]] = str(item.get("value", "") or "")
    return env


def effective_argv(container: dict) -> list[str]:
    """What the monitor process receives: image CMD unless the spec overrides it.

    Kubernetes: ``command`` replaces ENTRYPOINT and drops the image CMD; ``args`` replaces CMD.
    A ``command`` that names dotnet-monitor contributes its trailing words as arguments.
    """
    command = container.get("command")
    args = container.get("args")
    if command:
        tail = [w for w in command[1:]] if "monitor" in command[0] else list(command)
        return tail + list(args or [])
    if args is not None:
        return list(args)
    return list(IMAGE_CMD)


def build_configuration(container: dict, image_env: dict[str, str] | None = None) -> tuple[ConfigSource, CommandLine, dict[str, str]]:
    """Merge command line < unprefixed env < DotnetMonitor_ env into one ConfigSource."""
    env = effective_env(container, image_env)
    cl = parse_command_line(effective_argv(container))
    cfg = ConfigSource()
    for k, v in cl.options.items():
        cfg.set(k, v)
    prefixed: list[tuple[str, str]] = []
    for name, value in env.items():
        if name.lower().startswith(_PREFIX):
            prefixed.append((name[len(_PREFIX):], value))
            continue
        key = name
        if name.upper().startswith("ASPNETCORE_"):
            key = name[len("ASPNETCORE_"):]
        cfg.set(key.replace("__", ":"), value)
    for name, value in prefixed:
        cfg.set(name.replace("__", ":"), value)
    return cfg, cl, env


# --------------------------------------------------------------------------------------------------
# Typed view used by the rest of the simulator


@dataclass
class FilterSpec:
    key: str          # ProcessId | ProcessName | CommandLine | ManagedEntryPointAssemblyName
    value: str
    match_type: str = "Exact"   # Exact | Contains


@dataclass
class EgressProvider:
    name: str
    kind: str                   # FileSystem | AzureBlobStorage | S3Storage
    settings: dict[str, str]


@dataclass
class MonitorConfig:
    """Everything the simulator needs, resolved once at start (env vars are not hot-reloaded)."""
    urls: list[Url]
    metric_urls: list[Url]
    metrics_enabled: bool
    no_auth: bool
    temp_apikey: bool
    no_http_egress: bool
    exit_on_stdin_disconnect: bool
    api_key_subject: str | None
    api_key_public_key: str | None
    api_key_issuer: str | None
    connection_mode: str        # Connect | Listen
    endpoint_name: str | None   # Listen-mode socket path
    default_shared_path: str | None
    dump_temp_folder: str
    tmpdir: str
    default_process_filters: list[FilterSpec]
    egress: dict[str, EgressProvider]
    collection_rules: dict[str, dict[str, str]]
    in_process_enabled: bool
    call_stacks_enabled: bool
    exceptions_enabled: bool
    parameters_enabled: bool
    counter_interval: float
    certificate_path: str | None
    delete_endpoint_on_startup: bool
    verb: str
    env: dict[str, str]
    raw: ConfigSource

    @property
    def auth_mode(self) -> str:
        if self.no_auth:
            return "none"
        if self.temp_apikey:
            return "temp"
        return "apikey"


def _filters(cfg: ConfigSource) -> list[FilterSpec]:
    out: list[FilterSpec] = []
    names = sorted(cfg.children("DefaultProcess:Filters"), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    for idx in names:
        base = f"DefaultProcess:Filters:{idx}"
        key = cfg.get(base + ":Key")
        value = cfg.get(base + ":Value")
        match = cfg.get(base + ":MatchType") or "Exact"
        if key is not None and value is not None:
            out.append(FilterSpec(key, value, match))
            continue
        for short in ("ProcessId", "ProcessName", "CommandLine", "ManagedEntryPointAssemblyName"):
            v = cfg.get(f"{base}:{short}")
            if v is not None:
                out.append(FilterSpec(short, v, match))
    return out


def _egress(cfg: ConfigSource) -> dict[str, EgressProvider]:
    out: dict[str, EgressProvider] = {}
    for kind in ("FileSystem", "AzureBlobStorage", "S3Storage"):
        for name in cfg.children(f"Egress:{kind}"):
            settings = dict(cfg.section(f"Egress:{kind}:{name}"))
            out[name] = EgressProvider(name=name, kind=kind, settings=settings)
    return out


def _rules(cfg: ConfigSource) -> dict[str, dict[str, str]]:
    return {name: cfg.section(f"CollectionRules:{name}") for name in cfg.children("CollectionRules")}


def monitor_config(container: dict, image_env: dict[str, str] | None = None) -> MonitorConfig:
    """The resolved configuration of the monitor the container spec describes."""
    cfg, cl, env = build_configuration(container, image_env)
    shared = cfg.get("Storage:DefaultSharedPath") or None
    diag_short = cfg.get("DiagnosticPort")
    mode = cfg.get("DiagnosticPort:ConnectionMode")
    endpoint = cfg.get("DiagnosticPort:EndpointName") or None
    if diag_short:
        mode = mode or "Listen"
        endpoint = endpoint or diag_short
    mode = "Listen" if (mode or "").lower() == "listen" else "Connect"
    if mode == "Listen" and not endpoint and shared:
        endpoint = shared.rstrip("/") + "/dotnet-monitor.sock"
    tmpdir = env.get("TMPDIR") or "/tmp"
    dump_folder = cfg.get("Storage:DumpTempFolder") or (shared.rstrip("/") + "/dumps" if shared else tmpdir)
    in_proc = cfg.get("InProcessFeatures:Enabled")
    in_proc_on = (in_proc or "").lower() == "true"
    force_off = (in_proc or "").lower() == "false"

    def feature(name: str, default: bool) -> bool:
        if force_off:
            return False
        v = cfg.get(f"InProcessFeatures:{name}:Enabled")
        return v.lower() == "true" if v else default

    try:
        interval = float(cfg.get("GlobalCounter:IntervalSeconds") or 5)
    except ValueError:
        interval = 5.0
    return MonitorConfig(
        urls=parse_urls(cfg.get("urls")),
        metric_urls=parse_urls(cfg.get("Metrics:Endpoints")),
        metrics_enabled=cfg.get_bool("Metrics:Enabled", True),
        no_auth=cl.no_auth,
        temp_apikey=cl.temp_apikey and not cl.no_auth,
        no_http_egress=cl.no_http_egress,
        exit_on_stdin_disconnect=cl.exit_on_stdin_disconnect,
        api_key_subject=cfg.get("Authentication:MonitorApiKey:Subject"),
        api_key_public_key=cfg.get("Authentication:MonitorApiKey:PublicKey"),
        api_key_issuer=cfg.get("Authentication:MonitorApiKey:Issuer") or None,
        connection_mode=mode,
        endpoint_name=endpoint if mode == "Listen" else None,
        default_shared_path=shared,
        dump_temp_folder=dump_folder,
        tmpdir=tmpdir,
        default_process_filters=_filters(cfg),
        egress=_egress(cfg),
        collection_rules=_rules(cfg),
        in_process_enabled=in_proc_on and mode == "Listen",
        call_stacks_enabled=feature("CallStacks", in_proc_on) and mode == "Listen",
        exceptions_enabled=feature("Exceptions", in_proc_on) and mode == "Listen",
        parameters_enabled=(not force_off) and (cfg.get("InProcessFeatures:ParameterCapturing:Enabled") or "").lower() == "true" and mode == "Listen",
        counter_interval=max(interval, 0.0),
        certificate_path=cfg.get("Kestrel:Certificates:Default:Path") or None,
        delete_endpoint_on_startup=cfg.get_bool("DiagnosticPort:DeleteEndpointOnStartup", False),
        verb=cl.verb,
        env=env,
        raw=cfg,
    )
