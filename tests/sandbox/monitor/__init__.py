"""Simulated dotnet-monitor, started by the sandbox kubelet for ``*/dotnet/monitor*`` images.

Configured only by what the ephemeral container spec says (env, args, command, securityContext,
volumeMounts, targetContainerName, stdin) plus the pod it runs in; sandbox-only knobs (process lists,
artifact sizes, faults, version) come from ``scenario.sandbox`` via :func:`knobs.monitor_knobs`.

Contract with the rest of the sandbox:

* ``start_monitor(pod, container, scenario, network, recorder) -> MonitorHandle``
* ``network.register(ns, pod_name, container_port, host_port, bind_all)`` must raise ``OSError`` when
  that container port is already taken in the pod's network namespace (→ Kestrel bind failure, the
  monitor exits with code 1). ``network.unregister(ns, pod_name, container_port)`` is called on stop
  when it exists.
* ``recorder.record(dict)`` receives one record per artifact served (HTTP-streamed or egressed).
* Runtime control for the control endpoint: ``handle.set_faults([...])``, ``handle.add_fault({...})``,
  ``handle.clear_faults()``, ``handle.fire_rule(name)``, ``handle.close_stdin()``.
"""

from __future__ import annotations

import json
import threading
import time
import zlib

from .api import MonitorApi
from .auth import ApiKeyValidator, AuthDecision, generate_temp_key
from .config import MonitorConfig, Url, monitor_config
from .egress import EgressRunner
from .faults import FaultPlan
from .knobs import MonitorKnobs, monitor_knobs
from .operations import OperationRegistry
from .processes import SimProcess, container_user, default_process, discover, monitor_image_user, select
from .rules import RuleEngine
from .server import HttpListener

__all__ = ["start_monitor", "MonitorHandle", "SimulatedMonitor", "is_monitor_image"]

_VERSIONS = {"8": ("8.1.2+b5d2a6d6c4d2e3b1c9a8f7e6d5c4b3a291807f6e", "8.0.11"),
             "9": ("9.0.3+c1e4f7a2b5d8e1f4a7b0c3d6e9f2a5b8c1d4e7f0", "9.0.3"),
             "10": ("{v}+e9a1c8f4d3b2a1908f7e6d5c4b3a2918f7e6d5c4", "10.0.0")}


def is_monitor_image(image: str) -> bool:
    """``mcr.microsoft.com/dotnet/monitor[:tag|/base…]`` and mirrors of it."""
    path = image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image.split("@", 1)[0]
    return "/dotnet/monitor" in path or path.endswith("dotnet-monitor")


def _ssl_context():
    """TLS with a throw-away self-signed certificate (the sandbox cannot read the container's cert file)."""
    import datetime
    import os
    import ssl
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7)).sign(key, hashes.SHA256()))
    with tempfile.TemporaryDirectory() as d:
        cp, kp = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        with open(cp, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(kp, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cp, kp)
    return ctx


class SimulatedMonitor:
    def __init__(self, pod: dict, container: dict, cfg: MonitorConfig, knobs: MonitorKnobs, recorder) -> None:
        self.pod = pod
        self.container = container
        self.cfg = cfg
        self.knobs = knobs
        self.recorder = recorder
        self.namespace = (pod.get("metadata") or {}).get("namespace", "default")
        self.pod_name = (pod.get("metadata") or {}).get("name", "")
        image_user = knobs.image_user if knobs.image_user is not None else monitor_image_user(container.get("image", ""))
        self.monitor_uid = container_user(pod, container, image_user)
        self.stopping = threading.Event()
        self.ops = OperationRegistry()
        self.faults = FaultPlan(knobs.faults)
        self.egress = EgressRunner(self)
        self.rules = RuleEngine(self)
        self.seed_base = zlib.crc32(f"{self.namespace}/{self.pod_name}/{container.get('name')}".encode())
        self.log_lines: list[str] = []
        self.exited: tuple[int, str] | None = None
        self.listeners: list[tuple[Url, str, HttpListener]] = []
        self.temp_token: str | None = None
        if cfg.auth_mode == "temp":
            self.validator, self.temp_token = generate_temp_key()
        elif cfg.auth_mode == "apikey":
            self.validator = ApiKeyValidator(cfg.api_key_subject, cfg.api_key_public_key, cfg.api_key_issuer)
        else:
            self.validator = None
        self.api = MonitorApi(self)
        self._lock = threading.Lock()

    # -------------------------------------------------------------------------------------------
    def log(self, event_id: int, level: str, message: str, **state) -> None:
        line = {"Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z", "EventId": event_id,
                "LogLevel": level, "Category": "Microsoft.Diagnostics.Tools.Monitor.Startup",
                "Message": message, "State": {"Message": message, **state}}
        self.log_lines.append(json.dumps(line))

    def version_string(self) -> str:
        major = str(self.knobs.major)
        v, _ = _VERSIONS.get(major, _VERSIONS["10"])
        return v.format(v=self.knobs.version) if "{v}" in v else v

    def runtime_version(self) -> str:
        return _VERSIONS.get(str(self.knobs.major), _VERSIONS["10"])[1]

    def authorize(self, header: str | None) -> AuthDecision:
        if self.validator is None:
            return AuthDecision(0)
        return self.validator.check(header)

    def processes(self) -> list[SimProcess]:
        return discover(self.pod, self.container, self.cfg, self.knobs.pod, self.monitor_uid)

    def default_process(self, procs: list[SimProcess]):
        return default_process(procs, self.cfg.default_process_filters)

    def select_process(self, pid, uid, name):
        return select(self.processes(), self.cfg.default_process_filters, pid, uid, name)

    def record(self, rec: dict) -> None:
        full = {"namespace": self.namespace, "pod": self.pod_name, "container": self.container.get("name"),
                "time": time.time(), **rec}
        if self.recorder is not None:
            self.recorder.record(full)

    def start_rule_action(self, kind: str, proc: SimProcess, egress: str, action: dict,
                          rule: str | None = None) -> str:
        op = self.ops.register(kind, proc.identifier(), egress, [], counted=False)
        op.rule = rule
        from . import artifacts as art
        knob = self.knobs.artifact(kind)
        size = knob.size or 64 << 10
        seed = self.seed_base ^ zlib.crc32(op.operation_id.encode())
        name = {"dump": f"core_{art.utc_stamp()}", "gcdump": f"{art.utc_stamp()}_{proc.pid}.gcdump",
                "trace": f"{art.utc_stamp()}_{proc.pid}.nettrace"}.get(kind, f"{art.utc_stamp()}_{proc.pid}.{kind}")
        bulk_kind = kind if kind in ("dump", "gcdump", "trace") else "logs"

        def produce(sink, op_):
            for mv in art.bulk_chunks(bulk_kind, seed, size):
                sink.write(mv)

        self.egress.start(op, kind, proc, f"collectionrule:{kind}", name, "application/octet-stream", produce, 0.0,
                          self.faults.take(kind), None)
        return op.operation_id

    # -------------------------------------------------------------------------------------------
    def start(self, network) -> None:
        cfg = self.cfg
        if cfg.verb.lower() != "collect":
            if cfg.verb.lower() == "generatekey":
                validator, token = generate_temp_key()
                self.exited = (0, json.dumps({"Authentication": {"MonitorApiKey": {
                    "Subject": validator.subject, "PublicKey": "(generated)"}}, "AuthorizationHeader": f"Bearer {token}"}))
            else:
                self.exited = (1, f"Unrecognized command or argument '{cfg.verb}'.")
            return
        if cfg.auth_mode == "none":
            self.log(13, "Warning", "WARNING: Authentication has been disabled. This can pose a security risk and is not intended for production environments.")
        elif cfg.auth_mode == "temp":
            self.log(23, "Warning", "Generated one-time-use ApiKey for dotnet-monitor; use the following header for authorization:\n"
                     f"Authorization: Bearer {self.temp_token}", MonitorApiKey=self.temp_token)
        elif self.validator is not None and self.validator.problems:
            if self.validator.configured:
                self.log(21, "Warning", "The MonitorApiKey settings are invalid: " + " ".join(self.validator.problems))
            else:
                self.log(0, "Warning", "API key authentication is not configured.")
        groups = [("default", u) for u in cfg.urls]
        if cfg.metrics_enabled:
            groups += [("metrics", u) for u in cfg.metric_urls]
        for group, url in groups:
            ssl_ctx = None
            if url.scheme == "https":
                if not cfg.certificate_path:
                    self.log(15, "Error", f"Unable to listen to {url.raw}. Dotnet-monitor functionality will be limited.")
                    continue
                ssl_ctx = _ssl_context()
            listener = HttpListener(self.api, group, url.scheme, self.stopping, ssl_ctx)
            try:
                if _port_taken(network, self.namespace, self.pod_name, url.port):
                    raise OSError(98, "Address already in use")
                network.register(self.namespace, self.pod_name, url.port, listener.port, url.bind_all)
            except OSError:
                listener.close()
                shown = f"{url.scheme}://{'127.0.0.1' if not url.bind_all else '[::]'}:{url.port}"
                self.exited = (1, f"Unhandled exception: System.IO.IOException: Failed to bind to address {shown}: address already in use.")
                self._release(network)
                return
            listener.start()
            self.listeners.append((url, group, listener))
            self.log(16 if group == "default" else 17, "Debug",
                     f"Bound {'default' if group == 'default' else 'metrics'} address: {url.scheme}://{url.host}:{url.port}")
        if cfg.connection_mode == "Listen":
            self.log(77, "Information", f"Listening for diagnostic connections on {cfg.endpoint_name}")
        if cfg.exit_on_stdin_disconnect and not self.container.get("stdin"):
            self.stop(network)
            self.exited = (0, "stdin closed; dotnet-monitor is shutting down.")
            return
        for proc in self.processes():
            self.rules.for_process(proc)   # Startup triggers fire when a process is first seen
        for rule in self.knobs.rule_triggers:
            self.rules.fire(rule)

    def _release(self, network) -> None:
        unregister = getattr(network, "unregister", None)
        for url, _group, listener in self.listeners:
            listener.close()
            if unregister is not None:
                try:
                    unregister(self.namespace, self.pod_name, url.port)
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    pass
        self.listeners = []

    def stop(self, network) -> None:
        self.stopping.set()
        self._release(network)


def _port_taken(network, ns: str, pod: str, port: int) -> bool:
    """The pod's network namespace already has a listener on ``port`` (PodNetwork.listeners)."""
    listeners = getattr(network, "listeners", None)
    if listeners is None:
        return False
    return any(getattr(item, "port", None) == port for item in listeners(ns, pod))


class MonitorHandle:
    """What the kubelet keeps for a running simulated monitor."""

    def __init__(self, monitor: SimulatedMonitor, network) -> None:
        self._m = monitor
        self._network = network

    @property
    def config(self) -> MonitorConfig:
        return self._m.cfg

    @property
    def exited(self) -> tuple[int, str] | None:
        return self._m.exited

    @property
    def ports(self) -> dict[int, int]:
        """container port → real loopback port."""
        return {url.port: listener.port for url, _g, listener in self._m.listeners}

    @property
    def logs(self) -> list[str]:
        """Container log lines (JSON console formatter)."""
        return list(self._m.log_lines)

    @property
    def monitor(self) -> SimulatedMonitor:
        return self._m

    def stop(self) -> None:
        self._m.stop(self._network)
        if self._m.exited is None:
            self._m.exited = (0, "stopped")

    def close_stdin(self) -> None:
        """The attach session ended: with --exit-on-stdin-disconnect the monitor exits (code 0)."""
        if self._m.cfg.exit_on_stdin_disconnect and self._m.exited is None:
            self._m.stop(self._network)
            self._m.exited = (0, "stdin closed; dotnet-monitor is shutting down.")

    def update_pod(self, pod: dict) -> None:
        self._m.pod = pod

    def set_faults(self, faults: list[dict]) -> None:
        self._m.faults.set(faults)

    def add_fault(self, fault: dict) -> None:
        self._m.faults.add(fault)

    def clear_faults(self) -> None:
        self._m.faults.clear()

    def faults(self) -> list[dict]:
        return self._m.faults.list()

    def fire_rule(self, rule: str, uid: str | None = None, pid: int | None = None) -> list[str]:
        """The rule's trigger condition is met (for every matching process, or one)."""
        return self._m.rules.fire(rule, uid, pid)

    def operations(self) -> list[dict]:
        return [op.status_body() for op in self._m.ops.all()]


def start_monitor(pod: dict, container: dict, scenario, network, recorder) -> MonitorHandle:
    """Start a simulated dotnet-monitor for an ephemeral container that just became Running."""
    cfg = monitor_config(container)
    knobs = monitor_knobs(scenario, pod)
    if knobs.image_user is None and hasattr(scenario, "image"):
        info = scenario.image(container.get("image", ""))
        if getattr(info, "monitor", False) and getattr(info, "user", None) is not None:
            knobs.image_user = info.user
    monitor = SimulatedMonitor(pod, container, cfg, knobs, recorder)
    shared = getattr(scenario, "faults", None)
    if shared is not None and hasattr(shared, "take"):
        monitor.faults = shared   # the sandbox-wide plan the control endpoint edits
    monitor.start(network)
    return MonitorHandle(monitor, network)
