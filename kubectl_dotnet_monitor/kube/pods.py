"""Pod lookup and state helpers: plain dicts as the API returns them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from kubectl_dotnet_monitor.kube.api import ApiNotFound

if TYPE_CHECKING:
    from kubectl_dotnet_monitor.kube.api import KubeClient


def pod_path(namespace: str, name: str, subresource: str | None = None) -> str:
    """``/api/v1/namespaces/NS/pods/NAME[/SUB]`` with each segment escaped."""
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
    return f"{path}/{subresource}" if subresource else path


def get_pod(client: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    """GET the pod; a 404 becomes :class:`ApiNotFound` saying which pod and namespace."""
    try:
        return client.get(pod_path(namespace, name))
    except ApiNotFound as exc:
        raise ApiNotFound(
            f'pod "{name}" not found in namespace "{namespace}"',
            hint=f"list the pods with `kubectl get pods -n {namespace}`; pick another namespace with -n",
            status=exc.status, reason=exc.reason, api_message=exc.api_message, details=exc.details,
        ) from exc


def pod_phase(pod: dict[str, Any]) -> str:
    """``status.phase`` (Pending, Running, Succeeded, Failed, Unknown); ``Unknown`` when absent."""
    return str((pod.get("status") or {}).get("phase") or "Unknown")


def container_statuses(pod: dict[str, Any], kind: str = "containers") -> list[dict[str, Any]]:
    """Statuses of ``containers`` (default), ``initContainers`` or ``ephemeralContainers``."""
    key = {"containers": "containerStatuses", "initContainers": "initContainerStatuses",
           "ephemeralContainers": "ephemeralContainerStatuses"}[kind]
    return list((pod.get("status") or {}).get(key) or [])


def find_container(pod: dict[str, Any], name: str) -> tuple[str, dict[str, Any]] | None:
    """The spec of the container called ``name`` and its kind (containers, initContainers, ephemeralContainers)."""
    spec = pod.get("spec") or {}
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(kind) or []:
            if container.get("name") == name:
                return kind, container
    return None


def container_status(pod: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The status entry of the container called ``name``, of any kind."""
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        for status in container_statuses(pod, kind):
            if status.get("name") == name:
                return status
    return None


def container_state(status: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """``("running"|"waiting"|"terminated"|"unknown", detail)`` from a container status."""
    state = (status or {}).get("state") or {}
    for key in ("running", "waiting", "terminated"):
        if key in state:
            return key, state.get(key) or {}
    return "unknown", {}


def default_container_name(pod: dict[str, Any]) -> str | None:
    """kubectl's default container: the ``kubectl.kubernetes.io/default-container`` annotation, else the first."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    wanted = annotations.get("kubectl.kubernetes.io/default-container")
    containers = (pod.get("spec") or {}).get("containers") or []
    if wanted and any(c.get("name") == wanted for c in containers):
        return str(wanted)
    return str(containers[0]["name"]) if containers else None
