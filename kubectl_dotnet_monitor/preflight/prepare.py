"""PURE: the pod-template change that makes a workload ready for an on-demand dotnet-monitor.

Three things in the app container's pod template (reference §6.2):

* an ``emptyDir`` volume (default name ``diagvol``, as in dotnet-monitor's own Kubernetes samples),
* its mount in the app container (default ``/diag``),
* ``DOTNET_DiagnosticPorts=/diag/dotnet-monitor.sock,nosuspend``. Never without ``nosuspend``:
  the runtime's default is to *suspend* start-up until a monitor connects, so every restart of the
  app would hang until someone injects a monitor.

The result is a strategic merge patch (``containers`` merge by name, ``env`` by name,
``volumeMounts`` by mountPath, ``volumes`` by name), usable as is with
``kubectl patch deploy/NAME --type strategic -p "$(kubectl dotnet-monitor prepare deploy/NAME)"``.
A workload that already has a usable diagnostic port with ``nosuspend`` needs nothing
(``PreparePlan.patch is None``), so applying twice changes nothing.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from kubectl_dotnet_monitor.errors import NotReadyError, UsageError
from kubectl_dotnet_monitor.inject.spec import (
    DEFAULT_PORT,
    DIAGNOSTIC_PORTS_ENV,
    IMAGE_DEFAULT_UID,
    AppUser,
    MonitorOptions,
    Route,
    app_user,
    is_dns_label,
    parse_diagnostic_ports,
    resolve_route,
    select_app_container,
)

DEFAULT_MOUNT_PATH = "/diag"
DEFAULT_VOLUME_NAME = "diagvol"
SOCKET_NAME = "dotnet-monitor.sock"
#: Tried in order when the default volume name is taken by something else.
_FALLBACK_VOLUME_NAMES = ("dotnet-diag", "dotnet-monitor-diag")
_PORT_NAMES = ("DOTNET_DiagnosticPorts", "COMPlus_DiagnosticPorts")


@dataclass(frozen=True)
class PrepareOptions:
    """What the user asked for (``-c``, ``--mount-path``, ``--volume-name``)."""

    container: str | None = None
    mount_path: str = DEFAULT_MOUNT_PATH
    volume_name: str | None = None  # None: diagvol, or a free alternative if that name is taken
    socket_name: str = SOCKET_NAME

    def __post_init__(self) -> None:
        path = self.mount_path or ""
        if not path.startswith("/") or posixpath.normpath(path) == "/" or ":" in path:
            raise UsageError(f"--mount-path must be an absolute directory other than '/', not {path!r}")
        if self.volume_name is not None and not is_dns_label(self.volume_name):
            raise UsageError(
                f"--volume-name {self.volume_name!r} is not a valid volume name: use at most 63 "
                "lowercase letters, digits and '-', starting and ending with a letter or digit"
            )
        if not self.socket_name or "/" in self.socket_name or "," in self.socket_name or ";" in self.socket_name:
            raise UsageError(f"invalid socket name {self.socket_name!r}")

    @property
    def socket_path(self) -> str:
        """Where the app's diagnostic socket goes: ``<mount path>/<socket name>``."""
        return posixpath.join(posixpath.normpath(self.mount_path), self.socket_name)


@dataclass(frozen=True)
class PreparePlan:
    """The change for one workload. ``patch is None``: already prepared, nothing to change."""

    target: str  # "deploy/web", for messages
    app_container: str
    socket_path: str
    patch: dict | None
    changes: tuple[str, ...] = ()  # one line per change, for people
    warnings: tuple[str, ...] = ()

    @property
    def already_prepared(self) -> bool:
        """True when the workload needs no change."""
        return self.patch is None


def plan_prepare(workload: dict[str, Any], options: PrepareOptions | None = None, target: str | None = None) -> PreparePlan:
    """Decide what ``workload`` (a Deployment, StatefulSet, DaemonSet or ReplicaSet as the API
    returns it) needs. Raises ``UsageError`` (bad ``-c``, a name or path taken by something else,
    a value the plugin cannot rewrite) or ``NotReadyError`` (diagnostics disabled, no containers)."""
    options = options or PrepareOptions()
    meta = workload.get("metadata") or {}
    target = target or f"{(workload.get('kind') or 'workload').lower()}/{meta.get('name')}"
    template = (workload.get("spec") or {}).get("template") or {}
    tspec = template.get("spec") or {}
    # A pod-shaped view of the template, so the inject module's rules (app container choice,
    # route detection, user ids) judge the template exactly as they will judge its pods.
    pod = {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "annotations": (template.get("metadata") or {}).get("annotations") or {},
        },
        "spec": tspec,
    }
    try:
        app, warnings = select_app_container(pod, options.container)
    except UsageError as exc:
        raise UsageError(exc.message.replace("pod ", f"{target} (pod template) ", 1), exc.hint) from None
    name = app.get("name")
    _refuse_disabled(app, target)
    user = app_user(pod, app)
    if user.uid is None:
        warnings.append(
            f"the user of container {name!r} is not in the pod template (no runAsUser); the monitor "
            f"will run as uid {IMAGE_DEFAULT_UID} (the .NET images' default). If the app image runs "
            "as another user, set runAsUser (and runAsGroup) in the template so dumps can be shared"
        )

    env_name, entry = _port_entry(app)
    if entry is not None and entry.get("valueFrom") is not None:
        source = next(iter(entry["valueFrom"]), "valueFrom")
        raise UsageError(
            f"{env_name} of container {name!r} in {target} comes from {source}, which the plugin "
            "cannot change",
            hint=f"set it there to {options.socket_path},nosuspend (with the volume mounted at "
            f"{posixpath.normpath(options.mount_path)}), or remove it so prepare can set it",
        )

    route = _usable_route(pod, app, user)
    if route is not None and not route.suspend:
        return PreparePlan(target=target, app_container=name, socket_path=route.socket_path,
                           patch=None, warnings=tuple(warnings))
    if route is not None:
        # Usable, but the runtime waits for a monitor at every start: only the flag is missing.
        value = _with_nosuspend(str(entry.get("value") if entry else ""), route.socket_path)
        patch = _patch(name, env=[{"name": env_name, "value": value}])
        change = (f"{env_name}: add ',nosuspend' to {route.socket_path} (without it the app waits at "
                  "every start until a monitor connects, and hangs when none comes)")
        return PreparePlan(target=target, app_container=name, socket_path=route.socket_path,
                           patch=patch, changes=(change,), warnings=tuple(warnings))

    volume_name, add_volume, add_mount = _choose_volume(tspec, app, options, target)
    mount_path = posixpath.normpath(options.mount_path)
    socket_path = posixpath.join(mount_path, options.socket_name)
    old_value = str(entry.get("value") or "") if entry else ""
    value, kept = _new_port_value(old_value, socket_path)
    changes = []
    if add_volume:
        changes.append(f"volume {volume_name!r}: a new emptyDir shared by the app and the monitor")
    if add_mount:
        changes.append(f"container {name!r}: mount volume {volume_name!r} at {mount_path}")
    changes.append(f"container {name!r}: {env_name}={value}"
                   + (" (the existing entries are kept)" if kept else ""))
    if kept and any(p.suspend for p in parse_diagnostic_ports(old_value) if p.address != socket_path):
        warnings.append(
            f"{env_name} of container {name!r} keeps entries that suspend start-up ({old_value}); "
            "the app waits at every start until something connects to them"
        )
    patch = _patch(
        name,
        env=[{"name": env_name, "value": value}],
        mounts=[{"name": volume_name, "mountPath": mount_path}] if add_mount else None,
        volumes=[{"name": volume_name, "emptyDir": {}}] if add_volume else None,
    )
    return PreparePlan(target=target, app_container=name, socket_path=socket_path, patch=patch,
                       changes=tuple(changes), warnings=tuple(warnings))


def render_patch(plan: PreparePlan, fmt: str = "yaml") -> str:
    """The patch as YAML (default) or JSON text; ``kubectl patch -p`` accepts both."""
    import json

    if plan.patch is None:
        return ""
    if fmt == "json":
        return json.dumps(plan.patch, indent=2) + "\n"
    import yaml

    return yaml.safe_dump(plan.patch, sort_keys=False, default_flow_style=False)


def apply_strategic(template_owner: dict[str, Any], patch: dict) -> dict[str, Any]:
    """What the API server makes of ``patch`` for the parts this module writes (containers by
    name, env by name, volumeMounts by mountPath, volumes by name); for checks and tests."""
    import copy

    result = copy.deepcopy(template_owner)
    tpatch = (((patch.get("spec") or {}).get("template") or {}).get("spec")) or {}
    tspec = result.setdefault("spec", {}).setdefault("template", {}).setdefault("spec", {})
    for container_patch in tpatch.get("containers") or []:
        containers = tspec.setdefault("containers", [])
        target = next((c for c in containers if c.get("name") == container_patch["name"]), None)
        if target is None:
            containers.append(copy.deepcopy(container_patch))
            continue
        _merge_list(target, "env", container_patch.get("env"), "name")
        _merge_list(target, "volumeMounts", container_patch.get("volumeMounts"), "mountPath")
    _merge_list(tspec, "volumes", tpatch.get("volumes"), "name")
    return result


# --------------------------------------------------------------------------------------------
# Helpers


def _merge_list(holder: dict, key: str, items: list | None, merge_key: str) -> None:
    if not items:
        return
    current = holder.setdefault(key, [])
    for item in items:
        for i, existing in enumerate(current):
            if existing.get(merge_key) == item.get(merge_key):
                merged = dict(existing)
                merged.update(item)
                if "value" in item:
                    merged.pop("valueFrom", None)
                current[i] = merged
                break
        else:
            current.append(dict(item))


def _patch(container: str, *, env: list | None = None, mounts: list | None = None, volumes: list | None = None) -> dict:
    entry: dict = {"name": container}
    if env:
        entry["env"] = env
    if mounts:
        entry["volumeMounts"] = mounts
    tspec: dict = {"containers": [entry]}
    if volumes:
        tspec["volumes"] = volumes
    return {"spec": {"template": {"spec": tspec}}}


def _env_entry(container: dict, name: str) -> dict | None:
    found = None
    for entry in container.get("env") or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            found = entry  # the last one wins, like the kubelet
    return found


def _port_entry(app: dict) -> tuple[str, dict | None]:
    """The env entry the runtime reads for diagnostic ports (DOTNET_ beats COMPlus_)."""
    for name in _PORT_NAMES:
        entry = _env_entry(app, name)
        if entry is not None:
            return name, entry
    return DIAGNOSTIC_PORTS_ENV, None


def _refuse_disabled(app: dict, target: str) -> None:
    for setting in ("EnableDiagnostics", "EnableDiagnostics_IPC"):
        for prefix in ("DOTNET_", "COMPlus_"):
            entry = _env_entry(app, prefix + setting)
            if entry is None:
                continue
            if str(entry.get("value") or "").strip() == "0":
                raise NotReadyError(
                    f"container {app.get('name')!r} in {target} disables .NET diagnostics "
                    f"({prefix + setting}=0): no monitor can see its process",
                    hint=f"remove {prefix + setting} from the container's env; prepare does not "
                    "override a deliberate choice",
                )
            break


def _usable_route(pod: dict, app: dict, user: AppUser) -> Route | None:
    """The Listen route the inject module would use, or None (process namespace or nothing)."""
    # Ports the app declares would clash with the monitor's defaults; they do not matter here.
    taken = {p.get("containerPort") for c in (pod["spec"].get("containers") or []) for p in c.get("ports") or []}
    free = [n for n in range(DEFAULT_PORT, DEFAULT_PORT + 100) if n not in taken]
    try:
        options = MonitorOptions(no_auth=True, app_container=app.get("name"), port=free[0], metrics_port=free[1])
        route, _ = resolve_route(pod, app, user, options)
    except (NotReadyError, UsageError):
        return None
    return route if route.mode == "listen" else None


def _with_nosuspend(value: str, socket_path: str) -> str:
    """Rewrite the entry for ``socket_path`` to end in ``,nosuspend``; keep every other entry."""
    out = []
    for raw in value.split(";"):
        parts = [p.strip() for p in raw.split(",")]
        if parts[0] and posixpath.normpath(parts[0]) == socket_path:
            tags = [t for t in parts[1:] if t.lower() not in ("suspend", "nosuspend") and t]
            raw = ",".join([parts[0], *tags, "nosuspend"])
        if raw.strip():
            out.append(raw.strip())
    return ";".join(out)


def _new_port_value(old: str, socket_path: str) -> tuple[str, bool]:
    """Our entry appended to the entries already there (one for the same path is replaced)."""
    ours = f"{socket_path},nosuspend"
    kept = [
        raw.strip()
        for raw in old.split(";")
        if raw.strip() and posixpath.normpath(raw.split(",")[0].strip() or ".") != socket_path
    ]
    return ";".join([*kept, ours]), bool(kept)


def _choose_volume(tspec: dict, app: dict, options: PrepareOptions, target: str) -> tuple[str, bool, bool]:
    """``(volume name, add the volume?, add the mount?)``, refusing to reuse anything that is
    not an unused emptyDir (or our own mount)."""
    volumes = {v.get("name"): v for v in tspec.get("volumes") or [] if isinstance(v, dict)}
    mount_path = posixpath.normpath(options.mount_path)
    app_name = app.get("name")

    at_path = next(
        (m for m in app.get("volumeMounts") or [] if posixpath.normpath(m.get("mountPath") or "/") == mount_path),
        None,
    )
    if at_path is not None:
        volume = volumes.get(at_path.get("name")) or {}
        if "emptyDir" in volume and not at_path.get("subPath") and not at_path.get("subPathExpr") and not at_path.get("readOnly"):
            return at_path["name"], False, False  # an emptyDir already there: the socket can live on it
        raise UsageError(
            f"container {app_name!r} in {target} already mounts volume {at_path.get('name')!r} at "
            f"{mount_path}" + (", read-only" if at_path.get("readOnly") else "")
            + (" with subPath" if at_path.get("subPath") or at_path.get("subPathExpr") else "")
            + ("" if "emptyDir" in volume else f" (a {_volume_type(volume)} volume)"),
            hint="choose a free directory for the diagnostic socket with --mount-path, e.g. --mount-path /dotnet-diag",
        )

    mounted_anywhere = {
        m.get("name")
        for key in ("containers", "initContainers")
        for c in tspec.get(key) or []
        for m in c.get("volumeMounts") or []
    }
    wanted = options.volume_name or DEFAULT_VOLUME_NAME
    if wanted not in volumes:
        return wanted, True, True
    existing = volumes[wanted]
    if "emptyDir" in existing and wanted not in mounted_anywhere:
        return wanted, False, True  # declared but unused: mount it
    if options.volume_name is not None:
        why = "is mounted by another container or elsewhere" if "emptyDir" in existing else f"is a {_volume_type(existing)} volume"
        raise UsageError(
            f"{target} already has a volume named {wanted!r}, which {why}",
            hint="choose another name with --volume-name (or leave it out to get a free one)",
        )
    for candidate in _FALLBACK_VOLUME_NAMES + tuple(f"{DEFAULT_VOLUME_NAME}-{n}" for n in range(2, 100)):
        if candidate not in volumes:
            return candidate, True, True
    raise UsageError(f"{target} has no free volume name; choose one with --volume-name")


def _volume_type(volume: dict) -> str:
    kinds = [k for k in volume if k != "name"]
    return kinds[0] if kinds else "unknown"
