"""``prepare TARGET [--apply]``: find the workload behind a target, plan its change and, when
asked, apply it: a server-side dry run first, then the patch. Idempotent: a prepared workload
is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubectl_dotnet_monitor.errors import ForbiddenError, NotReadyError, UsageError
from kubectl_dotnet_monitor.kube.workloads import WorkloadRef, resolve_workload
from kubectl_dotnet_monitor.preflight.prepare import (
    PrepareOptions,
    PreparePlan,
    plan_prepare,
)

if TYPE_CHECKING:
    from kubectl_dotnet_monitor.kube.api import KubeClient


@dataclass(frozen=True)
class PrepareTarget:
    """The workload a target resolved to, and its plan."""

    requested: WorkloadRef
    workload: WorkloadRef
    plan: PreparePlan

    @property
    def followed_owner(self) -> bool:
        """True when the target was a pod (or ReplicaSet) and its owner is what gets changed."""
        return self.requested != self.workload


def plan_target(client: KubeClient, namespace: str, ref: WorkloadRef, options: PrepareOptions) -> PrepareTarget:
    """Resolve ``ref`` (a pod leads to its Deployment/StatefulSet/DaemonSet) and plan its change."""
    workload, obj = resolve_workload(client, namespace, ref)
    return PrepareTarget(ref, workload, plan_prepare(obj, options, str(workload)))


def apply_plan(client: KubeClient, namespace: str, target: PrepareTarget, options: PrepareOptions) -> dict | None:
    """Send the patch with ``dryRun=All``, check the server's result is prepared, then send it for
    real. Returns the patched object, or None when nothing had to change."""
    plan = target.plan
    if plan.patch is None:
        return None
    path = target.workload.path(namespace)
    preview = _patch(client, path, plan.patch, target, dry_run=True)
    after = plan_prepare(preview, options, str(target.workload))
    if not after.already_prepared:
        raise NotReadyError(
            f"the API server's dry run of the change to {target.workload} does not leave it prepared "
            f"(still to change: {'; '.join(after.changes)})",
            hint="apply the printed patch by hand and inspect the result (kubectl get -o yaml)",
        )
    return _patch(client, path, plan.patch, target, dry_run=False)


def _patch(client: KubeClient, path: str, body: dict, target: PrepareTarget, *, dry_run: bool) -> dict:
    from kubectl_dotnet_monitor.kube.api import ApiForbidden, ApiInvalid

    what = f"{target.workload.kind.resource}.{target.workload.kind.group or 'core'}"
    try:
        return client.patch(path, body, "strategic", dry_run=dry_run)
    except ApiForbidden as exc:
        raise ForbiddenError(
            f"not allowed to change {target.workload}: {exc.api_message or exc.message}",
            hint=f"you need 'patch' on {what} in that namespace (the built-in edit role has it); or "
            "hand the printed patch (without --apply) to someone who may apply it",
        ) from exc
    except ApiInvalid as exc:
        causes = exc.causes_text()
        raise UsageError(
            f"the API server rejected the change to {target.workload}: {causes or exc.api_message or exc.message}",
            hint="print the patch without --apply to inspect it",
        ) from exc
