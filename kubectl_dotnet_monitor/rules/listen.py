"""PURE: can this pod give dotnet-monitor the Listen mode that collection rules need?

dotnet-monitor runs collection rules only for processes that connected to it in Listen mode (the
app's ``DOTNET_DiagnosticPorts`` names a socket on a volume the monitor shares). The other route,
joining the app's process namespace, is Connect mode: no rules ever run there. An ephemeral
container cannot be changed later, so this is checked before anything is sent, and the message
names the command that fixes it (``prepare``).
"""

from __future__ import annotations

from kubectl_dotnet_monitor.errors import NotReadyError
from kubectl_dotnet_monitor.inject.spec import (
    listen_route,
    preparation_hint,
    select_app_container,
)


def check_listen_mode(pod: dict, app_container: str | None = None, what: str = "collection rules (--rules)") -> None:
    """Raise ``NotReadyError`` naming ``prepare`` unless the pod's app container has a diagnostic
    port the monitor can listen on. ``what`` names the feature that needs it.

    Uses the injector's own test for the Listen route, so both give the same reasons in the same words.
    """
    app, _ = select_app_container(pod, app_container)
    meta = pod.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    problems: list[str] = []
    if listen_route(pod, app, problems) is not None:
        return
    why = "; ".join(problems) or "no usable diagnostic port"
    message = (f"{what} need dotnet-monitor's Listen mode, and container {app.get('name')!r} in pod "
               f"{namespace}/{name} is not prepared for it ({why}); a monitor injected without it would "
               "run no rules")
    if meta.get("ownerReferences"):
        hint = (f"prepare its workload, then inject into one of the new pods:\n"
                f"  kubectl dotnet-monitor prepare pod/{name} -n {namespace}           # shows the change\n"
                f"  kubectl dotnet-monitor prepare pod/{name} -n {namespace} --apply   # applies it (new pods roll out)")
    else:
        hint = (f"pod {name} belongs to no Deployment, StatefulSet or DaemonSet, so `kubectl dotnet-monitor "
                "prepare` cannot change it for you (it does for workloads: prepare deploy/NAME --apply); "
                "make this change in the manifest that creates the pod, recreate it, and inject again\n"
                + preparation_hint(pod, app).split("\n", 1)[1])
    raise NotReadyError(message, hint=hint)
