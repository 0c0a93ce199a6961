"""One pod's monitor, ready for requests: the path kubeconfig → pod → container → tunnel → HTTP.

Every command that talks to dotnet-monitor goes through :func:`open_session`: resolve the
connection the way kubectl does, make sure a monitor runs in the pod (reusing, waiting for or
injecting one), mint a short-lived token from the key the plugin kept, and hand out a
:class:`MonitorClient` whose every request opens its own tunnel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from kubectl_dotnet_monitor.inject.injector import InjectRequest, MonitorEndpoint
from kubectl_dotnet_monitor.kube.config import ClusterConnection, KubeFlags

#: Token lifetime: long enough for a long dump, short enough to be worthless soon after.
TOKEN_TTL = 3600
#: A freshly started monitor needs a moment to bind its port; how long we retry "connection refused".
BIND_GRACE = 20.0
CONNECT_TIMEOUT = 20.0

Say = Callable[[str], None]


@dataclass
class PodSession:
    """A running monitor in one pod, and the means to reach it."""

    conn: ClusterConnection
    client: object  # KubeClient
    endpoint: MonitorEndpoint
    monitor: object  # MonitorClient

    @property
    def namespace(self) -> str:
        return self.endpoint.namespace

    @property
    def pod(self) -> str:
        return self.endpoint.pod

    def close(self) -> None:
        for closable in (self.monitor, self.client):
            close = getattr(closable, "close", None)
            if close:
                close()


def connect(flags: KubeFlags) -> tuple[ClusterConnection, object]:
    """Resolve the kubeconfig like kubectl and return the connection and a REST client."""
    from kubectl_dotnet_monitor.kube.api import KubeClient
    from kubectl_dotnet_monitor.kube.config import resolve_connection

    conn = resolve_connection(flags)
    return conn, KubeClient(conn)


def open_session(
    flags: KubeFlags,
    pod: str,
    request: InjectRequest,
    *,
    allow_inject: bool = True,
    say: Say = lambda _: None,
    conn_and_client: tuple[ClusterConnection, object] | None = None,
    tunnel_hook: Callable[[object], None] | None = None,
) -> PodSession:
    """Connect, ensure a monitor in ``pod``, and return a session with an authenticated client.

    ``tunnel_hook`` is called with every ``PodTunnel`` the session's client opens, before it is
    used (a many-pod run keeps them so Ctrl-C can :meth:`~PodTunnel.abort` them); if the hook
    raises, the tunnel is closed and the error propagates.
    """
    from kubectl_dotnet_monitor.inject.injector import ensure_monitor

    conn, client = conn_and_client or connect(flags)
    endpoint = ensure_monitor(client, conn.namespace, pod, request, allow_inject=allow_inject, say=say)
    monitor = monitor_client(conn, client, endpoint, tunnel_hook=tunnel_hook)
    return PodSession(conn=conn, client=client, endpoint=endpoint, monitor=monitor)


def monitor_client(conn: ClusterConnection, client: object, endpoint: MonitorEndpoint,
                   tunnel_hook: Callable[[object], None] | None = None) -> object:
    """A MonitorClient for ``endpoint``: token from the kept key, one tunnel per request.

    ``tunnel_hook`` (see :func:`open_session`) sees every tunnel opened, probes included.

    Right after an injection the monitor may not listen yet; the first tunnels then retry
    "connection refused" for a short grace period instead of failing.
    """
    from kubectl_dotnet_monitor.monitor.client import MonitorClient
    from kubectl_dotnet_monitor.tunnel.portforward import PodPortError, PodTunnel

    token = None
    if not endpoint.no_auth:
        from kubectl_dotnet_monitor.inject.apikey import mint_token
        from kubectl_dotnet_monitor.inject.keystore import load_private_key

        key = load_private_key(client, endpoint.pod_object, endpoint.container, server=conn.server)
        token = mint_token(key, ttl_seconds=TOKEN_TTL)

    grace_until = time.monotonic() + BIND_GRACE if endpoint.created else 0.0

    def open_tunnel() -> PodTunnel:
        nonlocal grace_until
        while True:
            tunnel = PodTunnel.open(conn, endpoint.namespace, endpoint.pod, endpoint.port, CONNECT_TIMEOUT)
            if tunnel_hook is not None:
                try:
                    tunnel_hook(tunnel)
                except BaseException:
                    tunnel.close()
                    raise
            if time.monotonic() >= grace_until:
                return tunnel
            # Probe: the kubelet reports "connection refused" on the error channel at once when
            # nothing listens yet; otherwise the tunnel is good and the grace period ends.
            try:
                tunnel.settimeout(0.3)
                tunnel.recv_into(memoryview(bytearray(1)))
            except PodPortError:
                tunnel.close()
                _check_still_starting(client, endpoint)
                time.sleep(0.5)
                continue
            except Exception:  # noqa: BLE001 - a quiet tunnel (timeout) means something listens
                pass
            grace_until = 0.0
            tunnel.close()

    log_hint = f"kubectl logs -n {endpoint.namespace} {endpoint.pod} -c {endpoint.container}"
    return MonitorClient(open_tunnel, token, log_hint=log_hint)


def _check_still_starting(client: object, endpoint: MonitorEndpoint) -> None:
    """While a fresh monitor does not listen yet, make sure it has not died (it is never restarted)."""
    from kubectl_dotnet_monitor.inject.injector import judge_container
    from kubectl_dotnet_monitor.kube.pods import get_pod

    judge_container(get_pod(client, endpoint.namespace, endpoint.pod), endpoint.container)
