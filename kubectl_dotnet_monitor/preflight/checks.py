"""Doctor's checks: each a small function from facts (API answers, the pod) to a ``CheckResult``.

Everything here is pure: ``doctor.py`` gathers the facts (reads only, plus server-side dry runs)
and hands them over, so every verdict and every fix text is testable without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kubectl_dotnet_monitor.errors import ExitCode, PluginError
from kubectl_dotnet_monitor.inject.injector import MIN_MINOR

if TYPE_CHECKING:
    from kubectl_dotnet_monitor.inject.spec import InjectionPlan

Status = Literal["passed", "failed", "warning", "skipped"]

#: Ephemeral containers are GA from 1.25 (``MIN_MINOR``, the injector's own floor); port-forward
#: needs `create` as well from 1.35.
PORTFORWARD_CREATE_MINOR = 35
#: Waiting reasons of a monitor that will not start by itself (kubernetes-notes §3.4).
_STUCK_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                            "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


@dataclass(frozen=True)
class CheckResult:
    """One line of doctor's report. ``fix`` says what to do when it did not pass."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False  # passed, but worth acting on (shown with "!")
    skipped: bool = False  # not run, because an earlier check failed (``detail`` says which)
    exit_code: ExitCode = ExitCode.NOT_READY  # the code doctor exits with when this is the first failure

    @property
    def status(self) -> Status:
        """passed, failed, warning or skipped."""
        if self.skipped:
            return "skipped"
        if not self.ok:
            return "failed"
        return "warning" if self.warning else "passed"

    def to_dict(self) -> dict[str, Any]:
        """The result for ``-o json``: name, status, detail and (when not passed) the fix."""
        out: dict[str, Any] = {"name": self.name, "status": self.status, "detail": self.detail}
        if self.fix and self.status in ("failed", "warning"):
            out["fix"] = self.fix
        return out


def passed(name: str, detail: str) -> CheckResult:
    """A check that passed."""
    return CheckResult(name, True, detail)


def warned(name: str, detail: str, fix: str | None = None) -> CheckResult:
    """A check that passed with something worth acting on."""
    return CheckResult(name, True, detail, fix, warning=True)


def failed(name: str, detail: str, fix: str | None = None, code: ExitCode = ExitCode.NOT_READY) -> CheckResult:
    """A failed check; ``code`` is doctor's exit code when it is the first failure."""
    return CheckResult(name, False, detail, fix, exit_code=code)


def skipped(name: str, why: str) -> CheckResult:
    """A check not run, because an earlier one failed (``why`` says which)."""
    return CheckResult(name, True, why, skipped=True)


def from_error(name: str, exc: PluginError, fix: str | None = None) -> CheckResult:
    """A failed check carrying a plugin error's message, hint and exit code."""
    return failed(name, exc.message, fix or exc.hint, ExitCode(int(exc.exit_code)))


# --------------------------------------------------------------------------------------------
# Cluster


def _leading_int(value: object) -> int | None:
    digits = ""
    for ch in str(value or ""):
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else None


def cluster_minor(version: dict) -> int | None:
    """The minor version (``"33+"`` → 33) when the major is 1, else None."""
    if _leading_int(version.get("major")) != 1:
        return None
    return _leading_int(version.get("minor"))


def check_cluster_version(version: dict) -> CheckResult:
    """1.25 or newer: ephemeral containers are GA and on by default."""
    name = "cluster version"
    text = version.get("gitVersion") or f"{version.get('major')}.{version.get('minor')}"
    major, minor = _leading_int(version.get("major")), _leading_int(version.get("minor"))
    if major is None or minor is None:
        return warned(name, f"the API server reports version {text!r}, which doctor cannot compare")
    if (major, minor) < (1, MIN_MINOR):
        return failed(
            name,
            f"Kubernetes {text}: ephemeral containers need 1.{MIN_MINOR} or newer",
            "upgrade the cluster, or run dotnet-monitor as a sidecar container in the pod template",
        )
    return passed(name, f"Kubernetes {text}")


def check_ephemeral_api(core_resources: dict | None) -> CheckResult:
    """Discovery of ``/api/v1`` must list ``pods/ephemeralcontainers`` with the ``patch`` verb."""
    name = "ephemeral containers API"
    for resource in (core_resources or {}).get("resources") or []:
        if resource.get("name") == "pods/ephemeralcontainers":
            if "patch" in (resource.get("verbs") or []):
                return passed(name, "the API server serves pods/ephemeralcontainers")
            return failed(name, "pods/ephemeralcontainers is served without the 'patch' verb",
                          "ask the cluster admin; the API server is unusually configured")
    return failed(
        name,
        "the API server does not serve pods/ephemeralcontainers (ephemeral containers are disabled "
        "for this cluster)",
        f"Kubernetes 1.{MIN_MINOR}+ has them on by default; on older clusters the EphemeralContainers "
        "feature gate must be enabled on the API server and kubelets (ask the cluster admin)",
    )


# --------------------------------------------------------------------------------------------
# Permissions (SelfSubjectAccessReview)


@dataclass(frozen=True)
class Permission:
    """One thing the plugin needs, asked with a SelfSubjectAccessReview."""

    verb: str
    resource: str
    subresource: str = ""
    why: str = ""
    required: bool = True  # False: the plugin works without it, with a fallback

    @property
    def label(self) -> str:
        """``verb resource[/subresource]``, as ``kubectl auth can-i`` takes it."""
        return f"{self.verb} {self.resource}{'/' + self.subresource if self.subresource else ''}"

    def review(self, namespace: str, name: str | None = None) -> dict:
        """The SelfSubjectAccessReview asking for this permission in ``namespace`` (on ``name``)."""
        attrs = {"namespace": namespace, "verb": self.verb, "resource": self.resource}
        if self.subresource:
            attrs["subresource"] = self.subresource
        if name:
            attrs["name"] = name
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }


PERMISSIONS: tuple[Permission, ...] = (
    Permission("get", "pods", why="read the pod"),
    Permission("patch", "pods", "ephemeralcontainers", why="add the dotnet-monitor container"),
    Permission("get", "pods", "portforward", why="open the tunnel to the monitor"),
    Permission("create", "pods", "portforward", why="open the tunnel on Kubernetes 1.35+", required=False),
    Permission("create", "secrets", why="keep the monitor's private key in the cluster", required=False),
)


def check_permission(permission: Permission, status: dict | None, namespace: str, minor: int | None,
                     error: PluginError | None = None) -> CheckResult:
    """Judge one SelfSubjectAccessReview ``status`` (``allowed``, ``denied``, ``reason``, ``evaluationError``)."""
    name = f"permission: {permission.label}"
    where = f"in namespace {namespace}"
    if error is not None:
        return failed(name, f"could not ask the API server ({error.message})", error.hint,
                      ExitCode(int(error.exit_code)))
    status = status or {}
    if status.get("allowed"):
        return passed(name, f"allowed {where}")
    reason = status.get("reason") or status.get("evaluationError") or ""
    detail = f"not allowed {where}" + (f" ({reason})" if reason else "")
    rbac_fix = (
        f"ask a cluster admin to grant it: `kubectl dotnet-monitor rbac -n {namespace} --user YOU` "
        f"prints a Role and RoleBinding (check with `kubectl auth can-i {permission.verb} "
        f"{permission.resource}{'/' + permission.subresource if permission.subresource else ''} -n {namespace}`)"
    )
    if permission.subresource == "ephemeralcontainers":
        rbac_fix = ("the built-in edit/admin roles do not include pods/ephemeralcontainers on purpose; "
                    + rbac_fix)
    if permission.resource == "secrets":
        return warned(
            name,
            detail + ": the monitor's private key will be kept in a local file instead, so only "
            "you, on this machine, can use the monitors you start",
            rbac_fix,
        )
    if permission.subresource == "portforward" and permission.verb == "create":
        if minor is not None and minor < PORTFORWARD_CREATE_MINOR:
            return warned(name, detail + f": not needed before Kubernetes 1.{PORTFORWARD_CREATE_MINOR}, "
                          "but needed after an upgrade", rbac_fix)
        return failed(name, detail + f": Kubernetes 1.{PORTFORWARD_CREATE_MINOR}+ checks it for "
                      "port-forward over websockets", rbac_fix, ExitCode.FORBIDDEN)
    return failed(name, detail, rbac_fix, ExitCode.FORBIDDEN)


# --------------------------------------------------------------------------------------------
# The pod


def suggested_prepare_target(pod: dict) -> str:
    """``deploy/NAME`` when the pod comes from a Deployment's ReplicaSet (by its pod-template-hash),
    ``sts/NAME``, ``ds/NAME``; else ``pod/NAME`` (prepare follows the owners itself)."""
    meta = pod.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        kind, owner = ref.get("kind"), str(ref.get("name") or "")
        if kind == "StatefulSet":
            return f"sts/{owner}"
        if kind == "DaemonSet":
            return f"ds/{owner}"
        if kind == "ReplicaSet":
            template_hash = (meta.get("labels") or {}).get("pod-template-hash")
            if template_hash and owner.endswith("-" + template_hash):
                return f"deploy/{owner[: -len(template_hash) - 1]}"
    return f"pod/{meta.get('name')}"


def check_pod_phase(pod: dict) -> CheckResult:
    """The pod must run: a monitor can only be added to, and reached in, a running pod."""
    from kubectl_dotnet_monitor.inject.injector import check_pod_running

    name = "pod phase"
    try:
        check_pod_running(pod)
    except PluginError as exc:
        return from_error(name, exc)
    return passed(name, "Running")


def check_app_container(pod: dict, plan: InjectionPlan | None = None, error: PluginError | None = None) -> CheckResult:
    """The app container's diagnostic port (Listen route) or, failing that, the process-namespace
    route, from ``plan_injection``'s verdict (``plan``) or its error."""
    meta = pod.get("metadata") or {}
    ns = meta.get("namespace")
    name = "app container"
    prepare = f"kubectl dotnet-monitor prepare {suggested_prepare_target(pod)} -n {ns}"
    controlled = any(ref.get("controller") for ref in meta.get("ownerReferences") or [])

    def advise(change: str) -> str:
        if controlled:
            return f"run `{prepare}` to {change}"
        return (f"pod {meta.get('name')} belongs to no Deployment, StatefulSet or DaemonSet, so `prepare` cannot "
                f"change it: {change} in the manifest that creates it (an emptyDir volume mounted in the app "
                "container, DOTNET_DiagnosticPorts=<socket on it>,nosuspend), then recreate the pod")

    if error is not None:
        fix = f"run `{prepare}` to print (or --apply) the change" if controlled else advise("make the change")
        if error.hint and "diagnostic port on a shared volume" not in error.hint:
            fix = error.hint  # something prepare cannot fix (e.g. diagnostics disabled, -c)
        return failed(name, error.message, fix, ExitCode(int(error.exit_code)))
    route = getattr(plan, "route", None)
    container = getattr(plan, "app_container", None)
    if route is None:
        existing = getattr(plan, "existing", None)
        target = getattr(existing, "target_container", None) or container
        return passed(name, f"a monitor is already set up for container {target!r}")
    if route.mode == "listen":
        where = f"{route.socket_path} on volume {route.volume_name!r} (mounted at {route.mount_path})"
        if route.suspend:
            return warned(
                name,
                f"container {container!r} has a diagnostic port at {where}, but without ',nosuspend': "
                "the app waits at every start until a monitor connects",
                advise("add ',nosuspend'"),
            )
        return passed(name, f"container {container!r} has a diagnostic port: {where}, nosuspend")
    return warned(
        name,
        f"container {container!r} has no diagnostic port; the monitor will join its process namespace "
        "(Connect mode: no stacks, exceptions, parameters or collection rules)",
        "for every feature, " + advise("add a diagnostic port"),
    )


def check_user_ids(pod: dict, plan: InjectionPlan | None) -> CheckResult:
    """Monitor and app share the socket and dump files only as the same user (reference §6.2)."""
    from kubectl_dotnet_monitor.inject.spec import IMAGE_DEFAULT_UID

    name = "user ids"
    user = getattr(plan, "user", None)
    container = getattr(plan, "app_container", None)
    if user is None:
        return skipped(name, "no monitor to create")
    if user.uid is None:
        return warned(
            name,
            f"the user of container {container!r} is not known (no runAsUser, and the cluster does not "
            f"report it); the monitor runs as uid {IMAGE_DEFAULT_UID}, and dumps fail if the app runs "
            "as another user",
            "set runAsUser (and runAsGroup) for the app container in the pod template",
        )
    group = f", gid {user.gid}" if user.gid is not None else ""
    detail = f"container {container!r} runs as uid {user.uid}{group} ({user.source}); the monitor will use the same"
    if user.uid == 0:
        return warned(name, detail + ": root, which namespaces enforcing the 'restricted' Pod Security "
                      "level refuse", "run the app as a non-root user (runAsUser in the pod template)")
    return passed(name, detail)


def check_pod_security(outcome: PluginError | None, *, reason_skipped: str | None = None) -> CheckResult:
    """The server-side dry run of the monitor container: admission (Pod Security, webhooks) spoke."""
    name = "pod security"
    if reason_skipped:
        return skipped(name, reason_skipped)
    if outcome is None:
        return passed(name, "a server-side dry run of the monitor container passed admission "
                      "(Pod Security and webhooks)")
    return from_error(name, outcome)


def check_monitors(pod: dict) -> CheckResult:
    """Monitors already in the pod and their states."""
    from kubectl_dotnet_monitor.inject.spec import find_monitors

    name = "monitors in the pod"
    monitors = find_monitors(pod)
    if not monitors:
        return passed(name, "none yet; the first command starts one")
    described = ", ".join(f"{m.name} ({m.describe_state()})" for m in monitors)
    broken = [m for m in monitors if m.state == "waiting" and (not m.live or m.reason in _STUCK_WAITING)]
    running = [m for m in monitors if m.state == "running"]
    if broken and not running:
        first = broken[0]
        meta = pod.get("metadata") or {}
        return failed(
            name,
            described + (f": {first.message}" if first.message else ""),
            f"an ephemeral container is never restarted or removed: check its image "
            f"(`kubectl describe pod {meta.get('name')} -n {meta.get('namespace')}`); the next command "
            "starts a fresh one with another name",
        )
    if running:
        return passed(name, described)
    return warned(name, described, "a terminated monitor is left as it is; the next command starts a fresh one")


def check_monitor_api(info: dict | None, error: PluginError | None, monitor: str) -> CheckResult:
    """A running monitor answers ``/info`` through the tunnel, with the plugin's token."""
    name = "monitor reachable"
    if error is not None:
        return from_error(name, error)
    version = (info or {}).get("version")
    return passed(name, f"{monitor!r} answers with a valid token" + (f" (dotnet-monitor {version})" if version else ""))


def check_processes(processes: list[dict] | None, error: PluginError | None, monitor: str) -> CheckResult:
    """The monitor sees at least one .NET process."""
    name = ".NET processes"
    if error is not None:
        return from_error(name, error)
    if not processes:
        return failed(
            name,
            f"monitor {monitor!r} sees no .NET process",
            "the app must share the diagnostic socket's volume and path, run as the same user, and not "
            "set DOTNET_EnableDiagnostics=0; with a pod prepared after the app started, restart it",
        )
    listed = ", ".join(f"{p.get('name') or '?'} (pid {p.get('pid')})" for p in processes[:5])
    more = f" and {len(processes) - 5} more" if len(processes) > 5 else ""
    return passed(name, listed + more)


@dataclass
class DoctorReport:
    """All results for one pod, in the order they ran."""

    namespace: str
    pod: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skips do not count)."""
        return all(r.ok for r in self.results)

    @property
    def exit_code(self) -> ExitCode:
        """OK, else the code of the first failed check (usually the root cause)."""
        for result in self.results:
            if not result.ok:
                return result.exit_code
        return ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        """The report for ``-o json``."""
        return {
            "namespace": self.namespace,
            "pod": self.pod,
            "ok": self.ok,
            "checks": [r.to_dict() for r in self.results],
        }


def render_human(report: DoctorReport, unicode: bool = True) -> str:
    """✔/✘ lines, the fix indented under each failure or warning."""
    marks = {"passed": "✔", "failed": "✘", "warning": "!", "skipped": "-"} if unicode else \
        {"passed": "[ok]", "failed": "[FAIL]", "warning": "[warn]", "skipped": "[skip]"}
    lines = []
    for result in report.results:
        lines.append(f"{marks[result.status]} {result.name}: {result.detail}")
        if result.fix and result.status in ("failed", "warning"):
            first, *rest = result.fix.splitlines() or [""]
            lines.append(f"    fix: {first}")
            lines.extend(f"         {line}" if line else "" for line in rest)
    failures = sum(1 for r in report.results if not r.ok)
    warnings = sum(1 for r in report.results if r.status == "warning")
    summary = (f"pod {report.namespace}/{report.pod}: "
               + ("ready" if not failures else f"{failures} check{'s' if failures > 1 else ''} failed"))
    if warnings:
        summary += f", {warnings} warning{'s' if warnings > 1 else ''}"
    lines.append(summary)
    return "\n".join(lines) + "\n"
