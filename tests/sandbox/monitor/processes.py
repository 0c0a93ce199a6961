"""Which .NET processes a simulated dotnet-monitor can see, by the rules a real node applies.

Reference §6. Two ways a runtime becomes visible:

* **Listen** mode: the monitor creates its socket at ``endpoint_name``; an app runtime connects to it
  when its ``DOTNET_DiagnosticPorts`` names a path that is, in the app container, the *same file*
  (same volume, same path inside the volume) and the app user may open the socket. The socket is
  created by the monitor user with the default umask (0755 → only the owner or root may connect).
* **Connect** mode: the monitor enumerates ``dotnet-diagnostic-<pid>-*`` sockets in its own temp dir
  (``$TMPDIR`` or ``/tmp``). A runtime's socket lives in the app's temp dir with mode 0600. Visible
  when the monitor shares the PID namespace (``targetContainerName`` or ``shareProcessNamespace``)
  and either its temp dir is ``/proc/<pid>/root<app tmp>`` of a target process (dotnet-monitor #4971,
  needs the same uid, or root with SYS_PTRACE), or the same volume is mounted as both temp dirs.

``DOTNET_EnableDiagnostics=0`` (or ``…_IPC=0``; ``COMPlus_`` spelling too) hides a process.
Dumps: the runtime writes ``<DumpTempFolder>/<file>`` in *its* filesystem, the monitor reads the same
path in *its* filesystem; see :func:`dump_access`.
"""

from __future__ import annotations

import posixpath
import uuid
from dataclasses import dataclass, field

from .config import MONITOR_IMAGE_USER, FilterSpec, MonitorConfig


@dataclass
class SimProcess:
    """One runtime as the monitor sees it."""
    pid: int
    uid: str
    name: str
    command_line: str
    container: str
    os_uid: int
    env: dict[str, str]
    entry_assembly: str | None
    runtime_version: str
    dump_access: str = "ok"          # ok | missing | not_writable | denied
    dump_path_hint: str = "/tmp"
    operating_system: str = "linux"
    architecture: str = "x64"
    extra: dict = field(default_factory=dict)

    def identifier(self) -> dict:
        return {"pid": self.pid, "uid": self.uid, "name": self.name}


def _security(obj: dict | None) -> dict:
    return (obj or {}).get("securityContext") or {}


def container_user(pod: dict, container: dict, image_user: int | None) -> int:
    """Effective uid: container runAsUser > pod runAsUser > reported status uid > image USER > root."""
    v = _security(container).get("runAsUser")
    if v is None:
        v = _security(pod.get("spec")).get("runAsUser")
    if v is None:
        for group in ("containerStatuses", "ephemeralContainerStatuses", "initContainerStatuses"):
            for st in (pod.get("status") or {}).get(group) or []:
                if st.get("name") == container.get("name"):
                    linux = (st.get("user") or {}).get("linux") or {}
                    if linux.get("uid") is not None:
                        v = linux["uid"]
    if v is None:
        v = image_user
    return int(v) if v is not None else 0


def monitor_image_user(image: str) -> int:
    """8.0+ monitor images run as 1654; 6.x/7.x images ran as root."""
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
    major = tag.split(".", 1)[0].split("-", 1)[0]
    if major.isdigit() and int(major) < 8:
        return 0
    return MONITOR_IMAGE_USER


def _mounts(container: dict) -> list[tuple[str, str, str]]:
    out = []
    for m in container.get("volumeMounts") or []:
        out.append((posixpath.normpath(m["mountPath"]), m["name"], (m.get("subPath") or "").strip("/")))
    return out


def resolve_on_volume(container: dict, pod: dict, path: str) -> tuple[str, str] | None:
    """(volume name, path inside the volume) of ``path`` in this container, or None when the path is
    on the container's own filesystem. The longest matching mountPath wins."""
    path = posixpath.normpath(path)
    volumes = {v.get("name") for v in (pod.get("spec") or {}).get("volumes") or []}
    best = None
    for mount_path, vol, sub in _mounts(container):
        if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
            if best is None or len(mount_path) > len(best[0]):
                best = (mount_path, vol, sub)
    if best is None or best[1] not in volumes:
        return None
    rest = path[len(best[0]):].lstrip("/")
    inner = posixpath.normpath(posixpath.join("/", best[2], rest))
    return best[1], inner


def runtime_env(container: dict, proc_env: dict[str, str] | None) -> dict[str, str]:
    env = {e["name"]: str(e.get("value", "") or "") for e in container.get("env") or []}
    env.update(proc_env or {})
    return env


def _env_get(env: dict[str, str], name: str) -> str | None:
    """DOTNET_ wins over COMPlus_ (runtime config lookup)."""
    for prefix in ("DOTNET_", "COMPlus_"):
        if prefix + name in env:
            return env[prefix + name]
    return None


def diagnostics_disabled(env: dict[str, str]) -> bool:
    return _env_get(env, "EnableDiagnostics") == "0" or _env_get(env, "EnableDiagnostics_IPC") == "0"


def diagnostic_ports(env: dict[str, str]) -> list[tuple[str, str, bool]]:
    """``DOTNET_DiagnosticPorts``: ``path[,connect|listen][,suspend|nosuspend]`` joined by ``;``.
    Returns (path, kind, suspend)."""
    out = []
    for item in (_env_get(env, "DiagnosticPorts") or "").split(";"):
        parts = [p.strip() for p in item.split(",") if p.strip()]
        if not parts:
            continue
        kind, suspend = "connect", True
        for p in parts[1:]:
            low = p.lower()
            if low in ("connect", "listen"):
                kind = low
            elif low in ("suspend", "nosuspend"):
                suspend = low == "suspend"
        out.append((parts[0], kind, suspend))
    return out


def _capabilities(container: dict) -> set[str]:
    caps = (_security(container).get("capabilities") or {}).get("add") or []
    return {c.upper().removeprefix("CAP_") for c in caps}


def _app_containers(pod: dict) -> list[dict]:
    return list((pod.get("spec") or {}).get("containers") or [])


def _proc_uid(pod: dict, container: str, pid: int, given: str | None) -> str:
    if given:
        return str(uuid.UUID(given))
    ident = (pod.get("metadata") or {}).get("uid") or (pod.get("metadata") or {}).get("name", "")
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-runtime:{ident}:{container}:{pid}"))


def discover(pod: dict, monitor: dict, cfg: MonitorConfig, knobs: dict, monitor_uid: int) -> list[SimProcess]:
    """Every runtime the monitor is connected to, in a stable order (container order, then pid)."""
    shared_pidns = bool((pod.get("spec") or {}).get("shareProcessNamespace"))
    target = monitor.get("targetContainerName")
    found: list[SimProcess] = []
    for c_index, app in enumerate(_app_containers(pod)):
        cknobs = (knobs.get("containers") or {}).get(app.get("name")) or {}
        if not _container_running(pod, app.get("name")):
            continue
        app_uid = container_user(pod, app, cknobs.get("image_user"))
        for p_index, pk in enumerate(cknobs.get("processes") or []):
            own_pid = int(pk.get("pid", 1 if p_index == 0 else 100 + p_index))
            pid = int(pk.get("shared_pid", 1000 * (c_index + 1) + own_pid)) if shared_pidns else own_pid
            env = runtime_env(app, pk.get("env"))
            if diagnostics_disabled(env):
                continue
            tmp = env.get("TMPDIR") or "/tmp"
            proc = SimProcess(
                pid=pid,
                uid=_proc_uid(pod, app.get("name", ""), own_pid, pk.get("uid")),
                name=str(pk.get("name", "dotnet")),
                command_line=str(pk.get("commandLine", pk.get("command_line", "dotnet app.dll"))),
                container=app.get("name", ""),
                os_uid=int(pk.get("user", app_uid)),
                env=env,
                entry_assembly=pk.get("managedEntryPointAssemblyName", pk.get("entry_assembly")),
                runtime_version=str(pk.get("runtime_version", "8.0.11")),
                extra=dict(pk),
            )
            if cfg.connection_mode == "Listen":
                ok = _listen_visible(pod, app, monitor, cfg, proc, monitor_uid)
            else:
                ok = _connect_visible(pod, app, monitor, cfg, proc, monitor_uid, tmp, shared_pidns, target)
            if ok:
                proc.dump_access, proc.dump_path_hint = dump_access(pod, app, monitor, cfg, proc, monitor_uid)
                found.append(proc)
    return found


def _container_running(pod: dict, name: str | None) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses")
    if statuses is None:
        return True  # no status information: assume the spec is running
    for st in statuses:
        if st.get("name") == name:
            return "running" in (st.get("state") or {})
    return False


def _can_open_socket(app_uid: int, owner_uid: int) -> bool:
    return app_uid == owner_uid or app_uid == 0


def _listen_visible(pod, app, monitor, cfg, proc: SimProcess, monitor_uid: int) -> bool:
    if not cfg.endpoint_name:
        return False
    mon_loc = resolve_on_volume(monitor, pod, cfg.endpoint_name)
    if mon_loc is None:
        return False
    for path, kind, _suspend in diagnostic_ports(proc.env):
        if kind != "connect":
            continue
        if resolve_on_volume(app, pod, path) == mon_loc and _can_open_socket(proc.os_uid, monitor_uid):
            return True
    return False


def _ptrace_ok(monitor: dict, monitor_uid: int, app_uid: int) -> bool:
    return monitor_uid == app_uid or (monitor_uid == 0 and "SYS_PTRACE" in _capabilities(monitor))


def _connect_visible(pod, app, monitor, cfg, proc, monitor_uid, app_tmp, shared_pidns, target) -> bool:
    in_pidns = shared_pidns or target == app.get("name")
    if not in_pidns:
        return False
    mon_tmp = posixpath.normpath(cfg.tmpdir)
    # Route 1 (#4971): the monitor's temp dir is the app's temp dir seen through /proc/<pid>/root.
    # proc.pid is the pid in the shared namespace the monitor joined.
    if mon_tmp == posixpath.normpath(f"/proc/{proc.pid}/root/{app_tmp.lstrip('/')}"):
        return _ptrace_ok(monitor, monitor_uid, proc.os_uid)
    # Route 2 (§6.1): the same volume mounted as both temp dirs; socket 0600 → same uid or root.
    a = resolve_on_volume(app, pod, app_tmp)
    if a is not None and a == resolve_on_volume(monitor, pod, mon_tmp):
        return monitor_uid == proc.os_uid or monitor_uid == 0
    return False


def dump_access(pod, app, monitor, cfg: MonitorConfig, proc: SimProcess, monitor_uid: int) -> tuple[str, str]:
    """Can a dump written by this runtime be read back by the monitor? Returns (verdict, folder)."""
    folder = posixpath.normpath(cfg.dump_temp_folder)
    if folder.startswith("/proc/"):
        parts = folder.split("/")
        # /proc/<pid>/root/... — the runtime resolves it to its own root (same pid namespace).
        if len(parts) > 3 and parts[3] == "root" and parts[2].isdigit():
            if int(parts[2]) == proc.pid and monitor.get("targetContainerName") == app.get("name"):
                return ("ok" if _ptrace_ok(monitor, monitor_uid, proc.os_uid) else "denied"), folder
        return "missing", folder
    mon_loc = resolve_on_volume(monitor, pod, folder)
    app_loc = resolve_on_volume(app, pod, folder)
    if mon_loc is None or app_loc is None or mon_loc != app_loc:
        return "missing", folder
    # The folder is created by the monitor (0755) unless it is the volume root (emptyDir: 0777).
    is_volume_root = mon_loc[1] == "/" or any(
        posixpath.normpath(m["mountPath"]) == folder for m in monitor.get("volumeMounts") or [])
    if not is_volume_root and not (proc.os_uid == monitor_uid or proc.os_uid == 0):
        return "not_writable", folder
    # The dump file is written by the app user with mode 0600.
    if not (monitor_uid == proc.os_uid or monitor_uid == 0):
        return "denied", folder
    return "ok", folder


def matches_filter(proc: SimProcess, f: FilterSpec) -> bool:
    values = {"processid": str(proc.pid), "processname": proc.name, "commandline": proc.command_line,
              "managedentrypointassemblyname": proc.entry_assembly or ""}
    actual = values.get(f.key.lower())
    if actual is None:
        return False
    if f.match_type.lower() == "contains":
        return f.value.lower() in actual.lower()
    return f.value.lower() == actual.lower()


def default_process(procs: list[SimProcess], filters: list[FilterSpec]) -> tuple[SimProcess | None, str | None]:
    """(process, None) or (None, error detail) — reference §4."""
    if not filters:
        return None, "No default process configuration has been set."
    hits = [p for p in procs if all(matches_filter(p, f) for f in filters)]
    if not hits:
        return None, "Unable to discover a target process."
    if len(hits) > 1:
        return None, "Unable to select a single target process because multiple target processes have been discovered."
    return hits[0], None


def select(procs: list[SimProcess], filters: list[FilterSpec], pid: int | None, uid: str | None,
           name: str | None) -> tuple[SimProcess | None, str | None]:
    """Explicit pid/uid/name (AND) or the default process."""
    if pid is None and uid is None and not name:
        return default_process(procs, filters)
    hits = [p for p in procs
            if (pid is None or p.pid == pid)
            and (uid is None or p.uid == uid)
            and (not name or p.name.lower() == name.lower())]
    if not hits:
        return None, "Unable to discover a target process."
    if len(hits) > 1:
        return None, "Unable to select a single target process because multiple target processes have been discovered."
    return hits[0], None
