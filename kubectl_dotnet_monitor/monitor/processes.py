"""PURE: pick the target process from dotnet-monitor's ``/processes`` list.

dotnet-monitor's own default-process rule (the image sets "pid 1") must not decide (reference §4):
the plugin picks here and then sends the chosen process's ``uid`` explicitly.

* a selector given (``--pid``, ``--uid``, ``--process-name``; several are AND-ed): exactly one match
  or an error; ``pid`` is ambiguous across containers (each entrypoint is pid 1), ``name`` compares
  case-insensitively (like dotnet-monitor), ``uid`` is a GUID compared case-insensitively
* no selector: the only process, else a :class:`UsageError` listing them
"""

from __future__ import annotations

from kubectl_dotnet_monitor.errors import NotFoundError, UsageError

_ZERO_UID = "00000000-0000-0000-0000-000000000000"


class AmbiguousProcessError(UsageError):
    """Several processes fit; the user must say which one."""


class ProcessNotFoundError(NotFoundError):
    """No process fits the selector (or dotnet-monitor sees none)."""


def format_process_table(processes: list[dict]) -> str:
    """PURE: a small aligned table ``PID UID NAME`` of ``processes``."""
    rows = [("PID", "UID", "NAME")] + [
        (str(p.get("pid", "?")), str(p.get("uid") or "-"), str(p.get("name") or "-")) for p in processes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}".rstrip() for r in rows)


def _describe_selector(pid: int | None, uid: str | None, name: str | None) -> str:
    parts = []
    if pid is not None:
        parts.append(f"--pid {pid}")
    if uid:
        parts.append(f"--uid {uid}")
    if name:
        parts.append(f"--process-name {name}")
    return " ".join(parts)


def _norm_uid(uid: object) -> str:
    return str(uid or "").strip().strip("{}").lower()


def select_process(processes: list[dict], pid: int | None = None, uid: str | None = None,
                   name: str | None = None) -> dict:
    """PURE: the one process of ``processes`` that the selectors (if any) designate.

    Raises :class:`ProcessNotFoundError` when none fits and :class:`AmbiguousProcessError` when
    several do (or several exist and no selector was given), each listing the processes.
    """
    name = name or None
    uid = uid or None
    selected = pid is not None or uid is not None or name is not None
    if not processes:
        raise ProcessNotFoundError(
            "dotnet-monitor sees no .NET process in this pod",
            hint=("the app must be running and share its diagnostic port with dotnet-monitor "
                  "(a shared /tmp, or DOTNET_DiagnosticPorts in listen mode)"))
    if not selected:
        if len(processes) == 1:
            return processes[0]
        raise AmbiguousProcessError(
            f"{len(processes)} .NET processes are running in this pod; say which one:\n"
            f"{format_process_table(processes)}",
            hint="pass --uid (unique), --pid or --process-name")
    matches = [
        p for p in processes
        if (pid is None or p.get("pid") == pid)
        and (uid is None or _norm_uid(p.get("uid")) == _norm_uid(uid))
        and (name is None or str(p.get("name") or "").lower() == name.lower())
    ]
    wanted = _describe_selector(pid, uid, name)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ProcessNotFoundError(
            f"no .NET process matches {wanted}; the pod has:\n{format_process_table(processes)}",
            hint="pass one of the listed pids, uids or names")
    note = ""
    if pid is not None and uid is None:
        note = " (pid numbers repeat across containers: each container's first process is pid 1)"
    raise AmbiguousProcessError(
        f"{len(matches)} .NET processes match {wanted}{note}:\n{format_process_table(matches)}",
        hint="pass --uid to pick exactly one")


def process_query(process: dict) -> dict[str, object]:
    """PURE: the query selecting ``process`` explicitly: its ``uid``, or its ``pid`` when the uid is
    unusable (all zeros for .NET Core 3.1 targets)."""
    uid = process.get("uid")
    if uid and _norm_uid(uid) != _ZERO_UID:
        return {"uid": uid}
    return {"pid": process["pid"]}
