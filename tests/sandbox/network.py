"""Pod networking: which (namespace, pod, port) is served by which real loopback port.

A simulated process inside a pod (the simulated dotnet-monitor) binds a real socket on 127.0.0.1
and registers it here under the pod's port. Port-forward dials through `PodNetwork.dial`, which
behaves like containerd dialling `localhost:<port>` inside the pod's network namespace: when nothing
listens it raises `ConnectionRefusedError` with containerd's message, which the port-forward layer
puts on the error channel.

`bind_all` records whether the process listens on all interfaces (`http://+:52323`,
`0.0.0.0`, `[::]`) or only on localhost: port-forward reaches both, but only the former is exposed
on the pod IP (`reachable_from_cluster`).
"""

from __future__ import annotations

import hashlib
import socket
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Listener:
    """A registered listening socket of a pod."""

    namespace: str
    pod: str
    port: int
    host_port: int
    bind_all: bool


class PodNetwork:
    """Registry of pod ports -> loopback ports. Thread-safe."""

    def __init__(self, connect_timeout: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[tuple[str, str, int], Listener] = {}
        self.connect_timeout = connect_timeout

    def register(self, ns: str, pod: str, port: int, host_port: int, bind_all: bool) -> None:
        """Declare that `pod` listens on `port`, served by 127.0.0.1:`host_port`."""
        with self._lock:
            self._listeners[(ns, pod, int(port))] = Listener(ns, pod, int(port), int(host_port),
                                                            bool(bind_all))

    def unregister(self, ns: str, pod: str, port: int | None = None) -> None:
        """Forget one port of a pod, or all its ports when `port` is None."""
        with self._lock:
            for key in list(self._listeners):
                if key[0] == ns and key[1] == pod and (port is None or key[2] == int(port)):
                    del self._listeners[key]

    def listeners(self, ns: str | None = None, pod: str | None = None) -> list[Listener]:
        """Registered listeners, optionally of one pod."""
        with self._lock:
            return [l for (n, p, _), l in self._listeners.items()
                    if (ns is None or n == ns) and (pod is None or p == pod)]

    def reachable_from_cluster(self, ns: str, pod: str, port: int) -> bool:
        """True when the port is bound to all interfaces, i.e. exposed on the pod IP."""
        with self._lock:
            listener = self._listeners.get((ns, pod, int(port)))
        return listener is not None and listener.bind_all

    def dial(self, ns: str, pod: str, port: int) -> socket.socket:
        """Connect to the pod's `port` as the runtime would (localhost inside the pod netns)."""
        with self._lock:
            listener = self._listeners.get((ns, pod, int(port)))
        if listener is not None:
            try:
                sock = socket.create_connection(("127.0.0.1", listener.host_port),
                                                timeout=self.connect_timeout)
            except ConnectionRefusedError:
                pass
            else:
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
        raise ConnectionRefusedError(refused_message(ns, pod, int(port)))


def sandbox_id(ns: str, pod: str) -> str:
    """The pod sandbox id the runtime names in its messages (64 hex chars, stable per pod)."""
    return hashlib.sha256(f"sandbox:{ns}/{pod}".encode()).hexdigest()


def refused_message(ns: str, pod: str, port: int) -> str:
    """containerd's text when nothing listens on `port` inside the pod."""
    return (
        f'failed to connect to localhost:{port} inside namespace "{sandbox_id(ns, pod)}", '
        f"IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused "
        f"IPv6 dial tcp6 [::1]:{port}: connect: connection refused "
    )
