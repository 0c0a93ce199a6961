"""PURE: decide how dotnet-monitor can reach the app, and build the ephemeral container to send.

Everything here works on the pod as the API returns it (a dict) and never talks to a cluster, so
what the plugin sends is testable without one (kubectl's ``generateDebugContainer`` + profiles,
STYLE.md). Two routes exist:

* **Listen** (preferred): the app container already has a diagnostic port
  (``DOTNET_DiagnosticPorts=/diag/dotnet-monitor.sock,nosuspend``) on a volume. The monitor
  mounts the same volume at the same path, listens on that socket, and keeps dumps on the volume
  (reference §6.2). Every feature works.
* **Process namespace** (unprepared pods, dotnet-monitor #4971): the monitor joins the app
  container's process namespace (``targetContainerName``) and, as the app's own user, reaches the
  runtime's default socket and writes dumps through ``/proc/1/root/<tmp>`` in Connect mode
  (reference §6.1). Connect mode has no stacks, exceptions, parameters or collection rules.

When neither is possible, a ``NotReadyError`` names what the pod spec lacks and the change to make.

The monitor always binds ``localhost`` only (port-forward needs nothing else), uses an API key
unless ``--no-auth`` is asked for, never gets ``SYS_PTRACE``, and runs as the app's user with a
security context that passes the ``restricted`` Pod Security level whenever the app itself does.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from kubectl_dotnet_monitor.errors import NotFoundError, NotReadyError, UsageError

DEFAULT_IMAGE = "mcr.microsoft.com/dotnet/monitor:10.0"
DEFAULT_PORT = 52323
DEFAULT_METRICS_PORT = 52325
#: First choice for the ephemeral container's name; then ``dotnet-monitor-2``, ``-3``, ...
MONITOR_NAME = "dotnet-monitor"
#: Non-secret marker in the monitor's env: the Secret holding its private key ("" when none).
KEY_SECRET_ENV = "KUBECTL_DOTNET_MONITOR_KEY_SECRET"
SUBJECT_ENV = "DotnetMonitor_Authentication__MonitorApiKey__Subject"
PUBLIC_KEY_ENV = "DotnetMonitor_Authentication__MonitorApiKey__PublicKey"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
#: What the app container needs for the Listen route (used in explanations).
DIAGNOSTIC_PORTS_ENV = "DOTNET_DiagnosticPorts"
#: The image's user when the container does not say otherwise (reference §7).
IMAGE_DEFAULT_UID = 1654

# The runtime reads DOTNET_ first, then the legacy COMPlus_ prefix; names are case-sensitive on Linux.
_RUNTIME_PREFIXES = ("DOTNET_", "COMPlus_")
# A waiting reason that never resolves by itself: such a monitor will not start, so it is not "live".
_PERMANENT_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})
_PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff"})
_IMAGE_RE = re.compile(r"(^|/)dotnet/monitor([:/@]|$)")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PUBLIC_KEY_RE = re.compile(r"^[0-9a-zA-Z_-]+$")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")

MonitorState = Literal["running", "waiting", "terminated", "unknown"]
RouteMode = Literal["listen", "process-namespace"]
PlanAction = Literal["create", "reuse", "wait"]


@dataclass(frozen=True)
class MonitorOptions:
    """What the user asked for, completed with defaults. Built by the CLI, read here."""

    image: str = DEFAULT_IMAGE
    app_container: str | None = None  # -c; None = choose (annotation, only one, diagnostic port)
    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    no_auth: bool = False
    api_key_subject: str | None = None  # required unless no_auth
    api_key_public: str | None = None  # ApiKey.public_key_config(); required unless no_auth
    key_secret_name: str | None = None  # where the private key lives; None = not in the cluster
    once: bool = False  # collect --exit-on-stdin-disconnect, stdin attached by the command
    extra_env: tuple[dict, ...] = ()  # e.g. collection rules, as container env entries
    needs_listen_mode: bool = False  # collection rules and in-process features need Listen
    container_name: str | None = None  # None = dotnet-monitor, dotnet-monitor-2, ...
    image_pull_policy: str | None = None  # None = the cluster's default

    @property
    def auth(self) -> bool:
        """True when the monitor checks an API key (the default)."""
        return not self.no_auth

    def __post_init__(self) -> None:
        for flag, value in (("--port", self.port), ("metrics port", self.metrics_port)):
            if not isinstance(value, int) or not 1 <= value <= 65535:
                raise UsageError(f"{flag} must be a TCP port (1-65535), not {value!r}")
        if self.port == self.metrics_port:
            raise UsageError(
                f"--port {self.port} is dotnet-monitor's metrics port; choose another port"
            )
        if not self.image or not self.image.strip():
            raise UsageError("--image must not be empty")
        if self.image_pull_policy is not None and self.image_pull_policy not in _PULL_POLICIES:
            raise UsageError(
                f"--image-pull-policy must be one of {', '.join(_PULL_POLICIES)}, "
                f"not {self.image_pull_policy!r}"
            )
        if self.container_name is not None and not is_dns_label(self.container_name):
            raise UsageError(
                f"container name {self.container_name!r} is not valid: use at most 63 lowercase "
                "letters, digits and '-', starting and ending with a letter or digit"
            )


@dataclass(frozen=True)
class DiagnosticPort:
    """One entry of ``DOTNET_DiagnosticPorts``: ``address[,connect|listen][,suspend|nosuspend]``."""

    address: str
    mode: Literal["connect", "listen"] = "connect"
    suspend: bool = True


@dataclass(frozen=True)
class AppUser:
    """The app container's effective identity, and where it was learnt."""

    uid: int | None
    gid: int | None
    source: str | None  # "container securityContext", "pod securityContext", "container status"
    pod_run_as_non_root: bool | None = None  # inherited by the monitor unless it overrides it


@dataclass(frozen=True)
class Route:
    """How the monitor reaches the app's runtime."""

    mode: RouteMode
    app_container: str
    socket_path: str | None = None  # listen: the app's diagnostic port, created by the monitor
    volume_name: str | None = None  # listen: the shared pod volume
    mount_path: str | None = None  # listen: where both containers mount it
    suspend: bool | None = None  # listen: the app waits for a monitor at start-up
    proc_tmp: str | None = None  # process-namespace: /proc/1/root/<app tmp>


@dataclass(frozen=True)
class ExistingMonitor:
    """A dotnet-monitor already in the pod (an ephemeral container), as far as the spec tells."""

    name: str
    image: str
    state: MonitorState
    reason: str | None = None  # waiting/terminated reason
    message: str | None = None
    exit_code: int | None = None
    ports: tuple[int, ...] = ()  # artifact ports it binds (first = the one to forward to)
    metrics_ports: tuple[int, ...] = ()
    endpoint: str | None = None  # Listen-mode socket path
    target_container: str | None = None
    key_secret: str | None = None  # KUBECTL_DOTNET_MONITOR_KEY_SECRET; "" = key not in the cluster
    subject: str | None = None  # API-key subject it accepts
    no_auth: bool = False
    all_interfaces: bool = False  # binds something other than loopback
    managed: bool = False  # carries our marker env
    env: tuple[tuple[str, str], ...] = ()  # (name, value) of its env; valueFrom as its repr

    @property
    def port(self) -> int | None:
        """The artifact port to forward to."""
        return self.ports[0] if self.ports else None

    @property
    def live(self) -> bool:
        """Running, or about to be (still waiting for a reason that can clear, or no status yet)."""
        if self.state == "running" or self.state == "unknown":
            return True
        return self.state == "waiting" and self.reason not in _PERMANENT_WAITING

    def describe_state(self) -> str:
        """``running``, ``waiting (ImagePullBackOff)``, ``terminated (Error, exit code 1)``..."""
        if self.state == "waiting":
            return f"waiting ({self.reason or 'no reason given'})"
        if self.state == "terminated":
            detail = self.reason or "no reason given"
            if self.exit_code is not None:
                detail += f", exit code {self.exit_code}"
            return f"terminated ({detail})"
        return self.state


@dataclass(frozen=True)
class InjectionPlan:
    """What ``inject`` will do, decided before anything is sent.

    ``create``: send a new container named ``container_name`` (build it with
    ``build_monitor_container(pod, replace(options, container_name=plan.container_name, ...))``).
    ``reuse``: ``existing`` runs already; forward to ``port``. ``wait``: ``existing`` is starting.
    """

    action: PlanAction
    container_name: str
    port: int
    app_container: str | None = None
    route: Route | None = None
    user: AppUser | None = None
    existing: ExistingMonitor | None = None
    warnings: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------------
# Entry points


def plan_injection(pod: dict, options: MonitorOptions) -> InjectionPlan:
    """Decide whether to create, reuse or wait for a monitor, and explain every concern.

    Never starts a second live monitor on the same port or socket: a running one is reused, a
    starting one is waited for, a terminated one is left alone and a fresh name is used. Raises
    ``UsageError`` (bad ``-c``/name/port), ``NotFoundError`` (no such container) or
    ``NotReadyError`` (pod not prepared and no other route; a sidecar monitor in the way).
    """
    warnings: list[str] = []
    if options.app_container is not None:
        _find_app_container(pod, options.app_container)  # a wrong -c is always an error

    route: Route | None = None
    user: AppUser | None = None
    app_name: str | None = None
    deferred: Exception | None = None
    try:
        app, app_warnings = select_app_container(pod, options.app_container)
        app_name = app["name"]
        user = app_user(pod, app)
        route, route_warnings = resolve_route(pod, app, user, options)
        warnings += app_warnings + route_warnings
    except (NotReadyError, UsageError) as exc:
        deferred = exc  # a monitor that already runs may make this moot

    ours = {options.port, options.metrics_port}
    socket = route.socket_path if route else None

    def conflicts(monitor: ExistingMonitor) -> bool:
        bound = set(monitor.ports) | set(monitor.metrics_ports)
        return bool(bound & ours) or (socket is not None and monitor.endpoint == socket)

    for sidecar in _sidecar_monitors(pod):
        if conflicts(sidecar):
            raise NotReadyError(
                f"pod {_pod_ref(pod)} already runs dotnet-monitor in its container {sidecar.name!r} "
                f"(port {sidecar.port}); a second monitor would compete for "
                + ("its socket and port" if socket and sidecar.endpoint == socket else "its port"),
                hint=f"use that monitor directly (kubectl port-forward pod/{_pod_name(pod)} "
                f"{sidecar.port}), or choose another --port",
            )

    monitors = find_monitors(pod)
    # A monitor stuck pulling *another* image is a failed attempt (e.g. a mistyped --image): it may
    # retry forever, so it must not block a new monitor with the image asked for now.
    live = [m for m in monitors if m.live and conflicts(m) and not _pull_stuck_on_other_image(m, options)]
    running = [m for m in live if m.state == "running"]
    if running or live:
        chosen = (running or live)[0]
        action: PlanAction = "reuse" if running else "wait"
        warnings += _reuse_warnings(chosen, options)
        if options.extra_env and not _has_env(chosen, options.extra_env):
            raise NotReadyError(
                f"monitor {chosen.name!r} already {'runs' if running else 'starts'} in pod "
                f"{_pod_ref(pod)} without the requested configuration, and an ephemeral container "
                "can never be changed or removed",
                hint="recreate the pod (for example kubectl rollout restart) and inject again "
                "with the configuration",
            )
        return InjectionPlan(
            action=action,
            container_name=chosen.name,
            port=chosen.port or options.port,
            app_container=app_name or chosen.target_container,
            route=route,
            user=user,
            existing=chosen,
            warnings=tuple(warnings),
        )
    if deferred is not None:
        raise deferred

    name = _choose_name(pod, options.container_name)
    assert route is not None and user is not None and app_name is not None
    return InjectionPlan(
        action="create",
        container_name=name,
        port=options.port,
        app_container=app_name,
        route=route,
        user=user,
        warnings=tuple(warnings),
    )


def build_monitor_container(pod: dict, options: MonitorOptions) -> dict:
    """The ephemeral container to add to ``pod``, as the API expects it (a plain dict).

    Uses ``options.container_name`` or the next free ``dotnet-monitor[-N]`` name. Requires the
    API-key subject and public key unless ``options.no_auth``. Same errors as ``plan_injection``.
    """
    app, _ = select_app_container(pod, options.app_container)
    user = app_user(pod, app)
    route, _ = resolve_route(pod, app, user, options)
    name = options.container_name or next_monitor_name(pod)

    env: list[dict] = [
        {"name": "DotnetMonitor_Urls", "value": f"http://localhost:{options.port}"},
        {"name": "DotnetMonitor_Metrics__Endpoints", "value": f"http://localhost:{options.metrics_port}"},
    ]
    container: dict = {"name": name, "image": options.image}
    if route.mode == "listen":
        env += [
            {"name": "DotnetMonitor_DiagnosticPort__ConnectionMode", "value": "Listen"},
            {"name": "DotnetMonitor_DiagnosticPort__EndpointName", "value": route.socket_path},
            # Dumps are written by the app's runtime and read by the monitor: on the shared volume.
            {"name": "DotnetMonitor_Storage__DefaultSharedPath", "value": route.mount_path},
        ]
        # Same volume, same path, never subPath (forbidden for ephemeral containers).
        container["volumeMounts"] = [{"name": route.volume_name, "mountPath": route.mount_path}]
    else:
        env += [
            {"name": "DotnetMonitor_DiagnosticPort__ConnectionMode", "value": "Connect"},
            # Connect mode looks for dotnet-diagnostic-<pid>-* sockets in the temp dir. Through
            # /proc/1/root the monitor sees the app container's file system: pid 1 of the target's
            # process namespace is that container's first process.
            {"name": "TMPDIR", "value": route.proc_tmp},
            # The runtime writes the dump to this path in *its* mount namespace, where
            # /proc/1/root is its own root: the one path both containers agree on.
            {"name": "DotnetMonitor_Storage__DumpTempFolder", "value": route.proc_tmp},
        ]
        container["targetContainerName"] = route.app_container
    if options.no_auth:
        env.append({"name": KEY_SECRET_ENV, "value": ""})
    else:
        subject, public = options.api_key_subject, options.api_key_public
        if not subject or not public:
            raise UsageError("an API-key subject and public key are needed unless --no-auth is given")
        if not _PUBLIC_KEY_RE.match(public):
            raise UsageError("the API public key must be base64url without padding")
        env += [
            {"name": SUBJECT_ENV, "value": subject},
            {"name": PUBLIC_KEY_ENV, "value": public},
            {"name": KEY_SECRET_ENV, "value": options.key_secret_name or ""},
        ]
    env += _checked_extra_env(options.extra_env, env)
    container["env"] = env

    # Replacing args drops the image CMD (https://+:52323, http://+:52325): nothing binds beyond
    # what the env above says.
    args = ["collect"]
    if options.no_auth:
        args.append("--no-auth")
    if options.once:
        args.append("--exit-on-stdin-disconnect")
        container["stdin"] = True
        # Without stdinOnce the runtime never closes stdin, and the monitor would never exit.
        container["stdinOnce"] = True
    container["args"] = args
    container["securityContext"] = monitor_security_context(pod, app, user, route)
    container["terminationMessagePolicy"] = "File"
    if options.image_pull_policy:
        container["imagePullPolicy"] = options.image_pull_policy
    return container


# --------------------------------------------------------------------------------------------
# App container and identity


def select_app_container(pod: dict, requested: str | None) -> tuple[dict, list[str]]:
    """The app container: ``-c``, else the default-container annotation, else the only one, else
    the one with a diagnostic port. Several candidates is a ``UsageError`` listing them."""
    containers = _spec(pod).get("containers") or []
    if requested is not None:
        return _find_app_container(pod, requested), []
    warnings: list[str] = []
    annotated = ((pod.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if annotated:
        for container in containers:
            if container.get("name") == annotated:
                return container, warnings
        warnings.append(
            f"annotation {DEFAULT_CONTAINER_ANNOTATION} names container {annotated!r}, which the pod "
            "does not have; ignoring it"
        )
    if len(containers) == 1:
        return containers[0], warnings
    if not containers:
        raise NotReadyError(f"pod {_pod_ref(pod)} has no containers")
    with_port = [c for c in containers if _env_lookup(c, _runtime_names("DiagnosticPorts"))[0] != "absent"]
    if len(with_port) == 1:
        return with_port[0], warnings
    names = [c.get("name") for c in (with_port or containers)]
    why = "have a diagnostic port" if with_port else "could be the app (none has a diagnostic port)"
    raise UsageError(
        f"pod {_pod_ref(pod)} has several containers that {why}: {', '.join(names)}",
        hint=f"choose one with -c, for example -c {names[0]}",
    )


def app_user(pod: dict, container: dict) -> AppUser:
    """The app container's uid/gid: its securityContext > the pod's > what the cluster reports.

    The API cannot see an image's ``USER``; newer clusters report the real ids in
    ``status.containerStatuses[].user.linux``. Each id is resolved on its own.
    """
    container_sc = container.get("securityContext") or {}
    pod_sc = _spec(pod).get("securityContext") or {}
    reported = {}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container.get("name"):
            reported = ((status.get("user") or {}).get("linux")) or {}
    uid, source = None, None
    for candidate, where in (
        (container_sc.get("runAsUser"), "container securityContext"),
        (pod_sc.get("runAsUser"), "pod securityContext"),
        (reported.get("uid"), "container status"),
    ):
        if isinstance(candidate, int):
            uid, source = candidate, where
            break
    gid = next(
        (g for g in (container_sc.get("runAsGroup"), pod_sc.get("runAsGroup"), reported.get("gid")) if isinstance(g, int)),
        None,
    )
    pod_non_root = pod_sc.get("runAsNonRoot")
    return AppUser(uid=uid, gid=gid, source=source, pod_run_as_non_root=pod_non_root if isinstance(pod_non_root, bool) else None)


def monitor_security_context(pod: dict, app: dict, user: AppUser, route: Route) -> dict:
    """A securityContext that shares files with the app and adds no privilege.

    Non-root app (or unknown user): ``restricted`` as kubectl's profile sets it, plus the app's
    uid/gid when known (unknown: the image's user 1654, and ``plan_injection`` warns).

    Root app: the socket and dump files are root's, so the monitor must be root too, and then
    ``runAsNonRoot`` cannot be true. That passes the same Pod Security level as the app itself:
    a namespace enforcing ``restricted`` already refuses a root app, and Pod Security judges both
    containers alike. ``runAsNonRoot`` is omitted, or set to false when the pod level says true
    (the app container must have overridden it the same way). In the process-namespace route a
    root monitor reaches ``/proc/1/root`` only if its capabilities include the app's, so it keeps
    the app's own capability set (never adding any) instead of dropping ALL.
    """
    context: dict = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if user.uid is None:
        context["runAsNonRoot"] = True
    elif user.uid == 0:
        if user.pod_run_as_non_root:
            context["runAsNonRoot"] = False
        context["runAsUser"] = 0
        if route.mode == "process-namespace":
            drop = list(((app.get("securityContext") or {}).get("capabilities") or {}).get("drop") or [])
            if drop:
                context["capabilities"] = {"drop": drop}
            else:
                del context["capabilities"]
    else:
        context["runAsNonRoot"] = True
        context["runAsUser"] = user.uid
    if user.gid is not None:
        context["runAsGroup"] = user.gid
    return dict(sorted(context.items()))


# --------------------------------------------------------------------------------------------
# Routes


def parse_diagnostic_ports(value: str) -> list[DiagnosticPort]:
    """Parse ``DOTNET_DiagnosticPorts``: ``;``-separated ``address[,connect|listen][,suspend|nosuspend]``.

    The runtime's defaults are ``connect`` and ``suspend``; unknown tags are ignored like it does.
    """
    ports = []
    for entry in value.split(";"):
        parts = [part.strip() for part in entry.split(",")]
        if not parts[0]:
            continue
        mode: Literal["connect", "listen"] = "connect"
        suspend = True
        for tag in (p.lower() for p in parts[1:]):
            if tag in ("connect", "listen"):
                mode = tag  # type: ignore[assignment]
            elif tag in ("suspend", "nosuspend"):
                suspend = tag == "suspend"
        ports.append(DiagnosticPort(address=parts[0], mode=mode, suspend=suspend))
    return ports


def resolve_route(
    pod: dict, app: dict, user: AppUser, options: MonitorOptions | None = None
) -> tuple[Route, list[str]]:
    """The Listen route when the app has a usable diagnostic port, else the process-namespace
    route when the pod allows it, else ``NotReadyError`` with what to change."""
    options = options or MonitorOptions(no_auth=True)
    name = app.get("name")
    if (_spec(pod).get("os") or {}).get("name") == "windows":
        raise NotReadyError(f"pod {_pod_ref(pod)} runs Windows containers, which this plugin does not support")
    disabled = _diagnostics_disabled(app)
    if disabled:
        raise NotReadyError(
            f"container {name!r} in pod {_pod_ref(pod)} disables .NET diagnostics ({disabled}): "
            "no monitor can see its process",
            hint=f"remove {disabled.split('=')[0]} from the container's env and roll the workload out again",
        )
    _check_port_clash(pod, options)

    listen_problems: list[str] = []
    route = listen_route(pod, app, listen_problems)
    if route is not None:
        return route, _listen_warnings(pod, app, user, route)

    process_problems: list[str] = []
    route = _process_route(pod, app, user, process_problems)
    if route is not None and options.needs_listen_mode:
        process_problems = ["collection rules and in-process features need Listen mode"]
        route = None
    if route is not None:
        warnings = [
            f"container {name!r} has no usable diagnostic port ({'; '.join(listen_problems)}); "
            "the monitor joins its process namespace instead (Connect mode: no stacks, exceptions, "
            "parameters or collection rules; the container runtime must support targeting a "
            "container's process namespace)"
        ]
        if user.gid is None:
            warnings.append(
                f"the group id of container {name!r} is not known; the monitor sees the process only "
                "if its group matches (set runAsGroup in the pod spec if processes stay empty)"
            )
        return route, warnings

    raise NotReadyError(
        f"container {name!r} in pod {_pod_ref(pod)} is not prepared for dotnet-monitor: "
        f"{'; '.join(listen_problems)}; and the monitor cannot join its process namespace: "
        f"{'; '.join(process_problems)}",
        hint=preparation_hint(pod, app, user),
    )


def preparation_hint(pod: dict, app: dict, user: AppUser | None = None) -> str:
    """The pod-template change that enables the Listen route, as a YAML snippet."""
    volumes = {v.get("name") for v in _spec(pod).get("volumes") or []}
    volume = next(n for n in ("diagvol", "dotnet-diag", "dotnet-monitor-diag") if n not in volumes)
    mounts = {m.get("mountPath") for m in app.get("volumeMounts") or []}
    mount = next(p for p in ("/diag", "/dotnet-diag", "/var/run/dotnet-diag") if p not in mounts)
    lines = [
        "add a diagnostic port on a shared volume to the workload's pod template, then roll it out:",
        "",
        "  spec:",
        "    volumes:",
        f"      - name: {volume}",
        "        emptyDir: {}",
        "    containers:",
        f"      - name: {app.get('name')}",
        "        env:",
        f"          - name: {DIAGNOSTIC_PORTS_ENV}",
        f"            value: {mount}/dotnet-monitor.sock,nosuspend",
        "        volumeMounts:",
        f"          - name: {volume}",
        f"            mountPath: {mount}",
    ]
    if user is not None and user.uid is None:
        lines += [
            "        securityContext:",
            "          runAsUser: <the image's user id>   # lets the monitor run as the same user",
        ]
    lines += ["", "(',nosuspend' keeps the app from waiting for a monitor every time it starts.)"]
    return "\n".join(lines)


def listen_route(pod: dict, app: dict, problems: list[str]) -> Route | None:
    """The Listen route through ``app``'s diagnostic port, or ``None`` with each reason it cannot
    be used appended to ``problems`` (the words that ``resolve_route`` and ``rules.listen`` show)."""
    name = app.get("name")
    state, value, origin = _env_lookup(app, _runtime_names("DiagnosticPorts"))
    if state == "absent":
        problems.append(f"{DIAGNOSTIC_PORTS_ENV} is not set{_env_from_note(app)}")
        return None
    if state == "unknown":
        problems.append(
            f"{origin} comes from {value}, which the plugin cannot read, so the socket path is unknown"
        )
        return None
    ports = parse_diagnostic_ports(value)
    if not ports:
        problems.append(f"{origin} is empty")
    pod_volumes = {v.get("name") for v in _spec(pod).get("volumes") or []}
    for port in ports:
        if port.mode == "listen":
            problems.append(
                f"{origin} entry {port.address!r} is a listen port (the runtime listens); "
                "dotnet-monitor needs a connect port (drop ',listen')"
            )
            continue
        if not port.address.startswith("/"):
            problems.append(f"{origin} entry {port.address!r} is not an absolute socket path")
            continue
        socket_path = posixpath.normpath(port.address)
        mount = _mount_containing(app, socket_path)
        if mount is None:
            problems.append(
                f"the socket {socket_path} is not on a volume mounted by container {name!r}, so no "
                "other container can reach it"
            )
            continue
        if mount.get("subPath") or mount.get("subPathExpr"):
            problems.append(
                f"container {name!r} mounts volume {mount.get('name')!r} at {mount.get('mountPath')} "
                "with subPath, and an ephemeral container cannot use subPath, so the monitor cannot "
                "see the same directory (mount the volume without subPath)"
            )
            continue
        if mount.get("name") not in pod_volumes:
            problems.append(f"volume {mount.get('name')!r} is not declared in the pod")
            continue
        return Route(
            mode="listen",
            app_container=name,
            socket_path=socket_path,
            volume_name=mount["name"],
            mount_path=posixpath.normpath(mount["mountPath"]),
            suspend=port.suspend,
        )
    return None


def _process_route(pod: dict, app: dict, user: AppUser, problems: list[str]) -> Route | None:
    if _spec(pod).get("shareProcessNamespace"):
        problems.append(
            "the pod shares one process namespace among all containers (shareProcessNamespace), so "
            "the app's process id is not known in advance"
        )
    app_sc = app.get("securityContext") or {}
    if user.uid is None:
        problems.append(
            "its user id is unknown (no runAsUser in the pod spec and the cluster does not report "
            "it), and only the same user can reach its process"
        )
    elif user.uid == 0:
        caps = app_sc.get("capabilities") or {}
        if app_sc.get("privileged"):
            problems.append("it is privileged, and the plugin never starts a privileged monitor")
        elif caps.get("add"):
            problems.append(
                f"it runs as root with added capabilities ({', '.join(caps['add'])}), which the plugin "
                "never gives a monitor"
            )
    if problems:
        return None
    state, tmp, _ = _env_lookup(app, ("TMPDIR",))
    tmp_dir = posixpath.normpath(tmp) if state == "known" and tmp.startswith("/") else "/tmp"
    return Route(mode="process-namespace", app_container=app.get("name"), proc_tmp=f"/proc/1/root{tmp_dir}")


def _listen_warnings(pod: dict, app: dict, user: AppUser, route: Route) -> list[str]:
    warnings = []
    if user.uid is None:
        warnings.append(
            f"the user of container {app.get('name')!r} is not known (no runAsUser in the pod spec and "
            f"the cluster does not report it); the monitor runs as the image's user {IMAGE_DEFAULT_UID}, "
            "and dumps fail if the app runs as another user (set runAsUser in the pod spec)"
        )
    mount = _mount_containing(app, route.socket_path or "")
    if mount is not None and mount.get("readOnly"):
        warnings.append(
            f"container {app.get('name')!r} mounts volume {route.volume_name!r} read-only: the app's "
            "runtime cannot write dumps there"
        )
    return warnings


# --------------------------------------------------------------------------------------------
# Monitors already in the pod


def find_monitors(pod: dict) -> list[ExistingMonitor]:
    """The pod's ephemeral containers that are dotnet-monitors (by image, or by our marker env),
    with their state from ``status.ephemeralContainerStatuses``."""
    statuses = {
        s.get("name"): s for s in (pod.get("status") or {}).get("ephemeralContainerStatuses") or []
    }
    found = []
    for container in _spec(pod).get("ephemeralContainers") or []:
        monitor = _as_monitor(container, statuses.get(container.get("name")))
        if monitor is not None:
            found.append(monitor)
    return found


def next_monitor_name(pod: dict) -> str:
    """``dotnet-monitor``, else ``dotnet-monitor-2``, ``-3``...: never a name used in the pod."""
    used = _container_names(pod)
    if MONITOR_NAME not in used:
        return MONITOR_NAME
    n = 2
    while f"{MONITOR_NAME}-{n}" in used:
        n += 1
    return f"{MONITOR_NAME}-{n}"


def _sidecar_monitors(pod: dict) -> list[ExistingMonitor]:
    statuses = {s.get("name"): s for s in (pod.get("status") or {}).get("containerStatuses") or []}
    found = []
    for container in _spec(pod).get("containers") or []:
        if _IMAGE_RE.search(container.get("image") or ""):
            monitor = _as_monitor(container, statuses.get(container.get("name")))
            if monitor is not None:
                found.append(monitor)
    return found


def _as_monitor(container: dict, status: dict | None) -> ExistingMonitor | None:
    env = {e.get("name"): e for e in container.get("env") or [] if isinstance(e, dict)}
    managed = KEY_SECRET_ENV in env
    image = container.get("image") or ""
    if not managed and not _IMAGE_RE.search(image):
        return None
    config = _monitor_config(container)
    args = [str(a) for a in container.get("args") or []]
    command = [str(c) for c in container.get("command") or []]
    all_args = command + args

    urls = config.get("urls") or _arg_value(all_args, "--urls")
    metrics = config.get("metrics__endpoints") or _arg_value(all_args, "--metricurls")
    if not container.get("args") and not container.get("command"):
        # The image's CMD: collect --urls https://+:52323 --metricUrls http://+:52325
        urls = urls or f"https://+:{DEFAULT_PORT}"
        metrics = metrics or f"http://+:{DEFAULT_METRICS_PORT}"
    urls = urls or f"https://localhost:{DEFAULT_PORT}"
    metrics = metrics or f"http://localhost:{DEFAULT_METRICS_PORT}"
    ports, wide = _url_ports(urls)
    metrics_ports, metrics_wide = _url_ports(metrics)

    endpoint = config.get("diagnosticport__endpointname") or config.get("diagnosticport") or _arg_value(
        all_args, "--diagnostic-port"
    )
    mode = (config.get("diagnosticport__connectionmode") or "").lower()
    if not endpoint and mode == "listen" and config.get("storage__defaultsharedpath"):
        endpoint = posixpath.join(config["storage__defaultsharedpath"], "dotnet-monitor.sock")

    state: MonitorState = "unknown"
    reason = message = None
    exit_code = None
    current = (status or {}).get("state") or {}
    if "running" in current:
        state = "running"
    elif "terminated" in current:
        state = "terminated"
        reason = current["terminated"].get("reason")
        message = current["terminated"].get("message")
        exit_code = current["terminated"].get("exitCode")
    elif "waiting" in current:
        state = "waiting"
        reason = current["waiting"].get("reason")
        message = current["waiting"].get("message")

    secret_entry = env.get(KEY_SECRET_ENV) or {}
    return ExistingMonitor(
        name=container.get("name"),
        image=image,
        state=state,
        reason=reason,
        message=message,
        exit_code=exit_code,
        ports=ports,
        metrics_ports=metrics_ports,
        endpoint=posixpath.normpath(endpoint) if endpoint else None,
        target_container=container.get("targetContainerName"),
        key_secret=secret_entry.get("value", "") if managed else None,
        subject=config.get("authentication__monitorapikey__subject"),
        no_auth="--no-auth" in all_args,
        all_interfaces=wide or metrics_wide,
        managed=managed,
        env=tuple(_env_pair(e) for e in container.get("env") or [] if isinstance(e, dict)),
    )


def _pull_stuck_on_other_image(monitor: ExistingMonitor, options: MonitorOptions) -> bool:
    return (
        monitor.state == "waiting"
        and monitor.reason in _PULL_FAILURES
        and monitor.image != options.image
    )


def _reuse_warnings(monitor: ExistingMonitor, options: MonitorOptions) -> list[str]:
    # Reuse itself is announced by the caller; warn only where the monitor differs from what was asked.
    warnings: list[str] = []
    if monitor.no_auth and options.auth:
        warnings.append(f"monitor {monitor.name!r} runs without authentication (--no-auth)")
    if monitor.all_interfaces:
        warnings.append(
            f"monitor {monitor.name!r} listens on all interfaces: anything that reaches the pod's "
            "network can talk to it"
        )
    if options.image != DEFAULT_IMAGE and monitor.image != options.image:
        warnings.append(f"monitor {monitor.name!r} uses image {monitor.image}, not {options.image}")
    return warnings


def _has_env(monitor: ExistingMonitor, wanted: tuple[dict, ...]) -> bool:
    have = set(monitor.env)
    return all(_env_pair(entry) in have for entry in wanted)


def _env_pair(entry: dict) -> tuple[str, str]:
    if entry.get("valueFrom") is not None:
        return entry.get("name") or "", repr(entry["valueFrom"])
    return entry.get("name") or "", str(entry.get("value") or "")


def _choose_name(pod: dict, requested: str | None) -> str:
    if requested is None:
        return next_monitor_name(pod)
    if requested in _container_names(pod):
        raise UsageError(
            f"pod {_pod_ref(pod)} already has a container named {requested!r}; container names can "
            "never be reused in a pod",
            hint="choose another name, or leave it out to get a fresh one",
        )
    return requested


# --------------------------------------------------------------------------------------------
# Small helpers


def _spec(pod: dict) -> dict:
    return pod.get("spec") or {}


def _pod_name(pod: dict) -> str:
    return (pod.get("metadata") or {}).get("name") or "?"


def _pod_ref(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{_pod_name(pod)}" if ns else _pod_name(pod)


def _container_names(pod: dict) -> set[str]:
    spec = _spec(pod)
    return {
        c.get("name")
        for key in ("containers", "initContainers", "ephemeralContainers")
        for c in spec.get(key) or []
    }


def _find_app_container(pod: dict, name: str) -> dict:
    spec = _spec(pod)
    for container in spec.get("containers") or []:
        if container.get("name") == name:
            return container
    names = ", ".join(c.get("name") for c in spec.get("containers") or [])
    for key, kind in (("initContainers", "an init container"), ("ephemeralContainers", "an ephemeral container")):
        if any(c.get("name") == name for c in spec.get(key) or []):
            raise UsageError(f"{name!r} is {kind} of pod {_pod_ref(pod)}; choose one of: {names}")
    raise NotFoundError(f"pod {_pod_ref(pod)} has no container {name!r}; it has: {names}")


def is_dns_label(name: str) -> bool:
    """True for a valid DNS-1123 label (container and volume names): at most 63 of ``[a-z0-9-]``,
    starting and ending with a letter or digit."""
    return len(name) <= 63 and bool(_DNS_LABEL_RE.match(name))


def _runtime_names(setting: str) -> tuple[str, ...]:
    return tuple(prefix + setting for prefix in _RUNTIME_PREFIXES)


def _env_lookup(container: dict, names: tuple[str, ...]) -> tuple[str, str, str]:
    """``("known", value, name)``, ``("unknown", "<where from>", name)`` or ``("absent", "", "")``.

    Takes the first of ``names`` that is set (so ``DOTNET_`` beats ``COMPlus_``), the last entry
    of a name winning like the kubelet, with ``$(VAR)`` references expanded from earlier entries.
    """
    resolved = _expanded_env(container)
    for name in names:
        if name in resolved:
            value = resolved[name]
            if value is None:
                return "unknown", _value_from_description(container, name), name
            return "known", value, name
    return "absent", "", ""


def _expanded_env(container: dict) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for entry in container.get("env") or []:
        if not isinstance(entry, dict) or not entry.get("name"):
            continue
        if entry.get("valueFrom") is not None:
            values[entry["name"]] = None
            continue
        values[entry["name"]] = _expand(str(entry.get("value") or ""), values)
    return values


def _expand(value: str, known: dict[str, str | None]) -> str | None:
    """Kubernetes ``$(VAR)`` expansion; ``$$`` escapes. ``None`` when a reference is unknowable."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if value.startswith("$(", i):
            end = value.find(")", i + 2)
            if end != -1:
                ref = value[i + 2 : end]
                if ref in known:
                    if known[ref] is None:
                        return None
                    out.append(known[ref])  # type: ignore[arg-type]
                    i = end + 1
                    continue
        out.append(value[i])
        i += 1
    return "".join(out)


def _value_from_description(container: dict, name: str) -> str:
    for entry in reversed(container.get("env") or []):
        if isinstance(entry, dict) and entry.get("name") == name and entry.get("valueFrom") is not None:
            source = entry["valueFrom"]
            for key in ("configMapKeyRef", "secretKeyRef"):
                if key in source:
                    ref = source[key] or {}
                    return f"valueFrom.{key} ({ref.get('name')}/{ref.get('key')})"
            return f"valueFrom.{next(iter(source), '?')}"
    return "a reference to a value the plugin cannot read"


def _env_from_note(app: dict) -> str:
    sources = []
    for item in app.get("envFrom") or []:
        for key in ("configMapRef", "secretRef"):
            if key in (item or {}):
                sources.append(f"{key[:-3]} {(item[key] or {}).get('name')}")
    if not sources:
        return ""
    return f" in the pod spec (the container also takes env from {', '.join(sources)}, which the plugin does not read)"


def _diagnostics_disabled(app: dict) -> str | None:
    resolved = _expanded_env(app)
    for setting in ("EnableDiagnostics", "EnableDiagnostics_IPC"):
        for name in _runtime_names(setting):
            if name in resolved:
                if resolved[name] is not None and resolved[name].strip() == "0":
                    return f"{name}=0"
                break
    return None


def _mount_containing(app: dict, path: str) -> dict | None:
    best = None
    for mount in app.get("volumeMounts") or []:
        mount_path = posixpath.normpath(mount.get("mountPath") or "/")
        if mount_path == "/" or path.startswith(mount_path.rstrip("/") + "/"):
            if best is None or len(mount_path) > len(posixpath.normpath(best.get("mountPath"))):
                best = mount
    return best


def _check_port_clash(pod: dict, options: MonitorOptions) -> None:
    for container in _spec(pod).get("containers") or []:
        for port in container.get("ports") or []:
            taken = port.get("containerPort")
            if taken in (options.port, options.metrics_port):
                raise UsageError(
                    f"container {container.get('name')!r} in pod {_pod_ref(pod)} declares port {taken}, "
                    "which the monitor would bind in the same network namespace",
                    hint="choose other ports for the monitor (--port)",
                )


def _monitor_config(container: dict) -> dict[str, str]:
    """dotnet-monitor's view of the env: keys lower-cased, ``DotnetMonitor_`` prefix stripped,
    prefixed entries winning over unprefixed ones (reference §7)."""
    plain: dict[str, str] = {}
    prefixed: dict[str, str] = {}
    for entry in container.get("env") or []:
        if not isinstance(entry, dict) or not entry.get("name") or entry.get("valueFrom") is not None:
            continue
        key = entry["name"].lower()
        value = str(entry.get("value") or "")
        if key.startswith("dotnetmonitor_"):
            prefixed[key[len("dotnetmonitor_") :]] = value
        else:
            plain[key] = value
    plain.update(prefixed)
    return plain


def _arg_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        lowered = arg.lower()
        if lowered == flag and i + 1 < len(args):
            return args[i + 1]
        if lowered.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _url_ports(urls: str) -> tuple[tuple[int, ...], bool]:
    """Ports of a ``;``-separated URL list, and whether any binds beyond loopback."""
    ports: list[int] = []
    wide = False
    for url in (u.strip() for u in urls.replace(",", ";").split(";")):
        if not url:
            continue
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            continue
        if port not in ports:
            ports.append(port)
        host = (parts.hostname or "").lower()
        if host not in ("localhost", "127.0.0.1", "::1"):
            wide = True
    return tuple(ports), wide


def is_loopback_only(urls: str) -> bool:
    """True when every URL in a ``;``-separated list binds loopback only."""
    return not _url_ports(urls)[1]


def _checked_extra_env(extra: tuple[dict, ...], ours: list[dict]) -> list[dict]:
    taken = {_config_key(e["name"]) for e in ours}
    result = []
    for entry in extra:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not name:
            raise UsageError(f"extra environment entry {entry!r} has no name")
        if _config_key(name) in taken:
            raise UsageError(
                f"{name} is set by the plugin itself and cannot be given as extra environment"
            )
        taken.add(_config_key(name))
        result.append(dict(entry))
    return result


def _config_key(name: str) -> str:
    key = name.lower()
    return key[len("dotnetmonitor_") :] if key.startswith("dotnetmonitor_") else key
