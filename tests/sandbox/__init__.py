"""A simulated Kubernetes cluster (and dotnet-monitors) on loopback, for tests, demos and benchmarks.

`Sandbox` runs one scenario in-process (API server + control endpoint + simulated kubelet);
`SandboxHandle` is what tests hold: the state directory of a running sandbox (possibly another
process), its kubeconfig, control client and a helper that runs real kubectl against it.
It never imports `kubectl_dotnet_monitor`: it is an independent check of the plugin.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

KUBECTL_VERSIONED_DIR = Path("/usr/lib/google-cloud-sdk/bin")


def default_state_dir(scenario: str) -> Path:
    """`.sandbox/<scenario>/` under the current directory."""
    return Path.cwd() / ".sandbox" / scenario


class Sandbox:
    """One running scenario, in this process."""

    def __init__(self, scenario: str, state_dir: str | Path | None = None,
                 log: bool | None = None) -> None:
        self.scenario_name = scenario
        self.state_dir = Path(state_dir) if state_dir else default_state_dir(scenario)
        self.log = log
        self.scenario: Any = None
        self.store: Any = None
        self.network: Any = None
        self.recorder: Any = None
        self.kubelet: Any = None
        self.events: Any = None
        self.controllers: Any = None
        self.apiserver: Any = None
        self.control_server: Any = None
        self.server = ""
        self.control_url = ""
        self.control_token = ""
        self.tokens: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "Sandbox":
        """Build the cluster, start both servers, write kubeconfig and state.json."""
        from . import pki as pki_mod
        from . import scenario as scenario_mod
        from .apiserver import ApiServer
        from .control import ArtifactRecorder, ControlServer
        from .network import PodNetwork
        from .store import Store

        started = time.time()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "state.json").unlink(missing_ok=True)
        self.scenario = scenario_mod.load(self.scenario_name)
        s = self.scenario
        try:
            from .monitor.faults import FaultPlan

            s.faults = FaultPlan(list((s.sandbox.get("monitor") or {}).get("faults") or []))
        except ImportError:
            s.faults = None
        self.store = Store(pod_termination_grace=s.knobs.kubelet.pod_termination_grace)
        self.store.load(s.materialize(started))
        self.network = PodNetwork()
        self.recorder = ArtifactRecorder()
        from .events import EventRecorder

        self.events = EventRecorder(self.store)
        self.kubelet = self._make_kubelet()
        if self.kubelet is not None:
            self.kubelet.adopt(self.store.list("pods")[0])
        from .workloads import Controllers

        self.controllers = Controllers(self.store, s, self.kubelet, self.events)
        self.controllers.start()

        pki = pki_mod.create_pki()
        ca_path = self.state_dir / "ca.crt"
        ca_path.write_bytes(pki.ca.cert_pem)
        cert_path = self.state_dir / "apiserver.crt"
        key_path = self.state_dir / "apiserver.key"
        cert_path.write_bytes(pki.server.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(pki.server.key_pem)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(str(cert_path), str(key_path))
        tls.set_alpn_protocols(["http/1.1"])
        tls.verify_mode = ssl.CERT_OPTIONAL
        tls.load_verify_locations(cadata=pki.ca.cert_pem.decode())

        tokens = {}
        for user in s.users:
            token = user.token or secrets.token_urlsafe(32)
            tokens[token] = user
            self.tokens[user.name] = token
        self.apiserver = ApiServer(s, self.store, self.network, tls, tokens, self.kubelet,
                                   log=self.log)
        host, port = self.apiserver.start()
        self.server = f"https://{host}:{port}"
        self.control_token = secrets.token_urlsafe(24)
        self.control_server = ControlServer(self, self.control_token)
        self.control_url = self.control_server.start()

        kubeconfig = build_kubeconfig(s, self.server, pki, self.tokens)
        kc_path = self.state_dir / "kubeconfig"
        kc_path.touch(mode=0o600)
        import yaml

        kc_path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
        state = {
            "scenario": s.name,
            "server": self.server,
            "control": self.control_url,
            "control_token": self.control_token,
            "kubeconfig": str(kc_path),
            "ca": str(ca_path),
            "pid": os.getpid(),
            "users": self.tokens,
            "started": started,
            "startup_seconds": round(time.time() - started, 3),
        }
        tmp = self.state_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_dir / "state.json")
        return self

    def _make_kubelet(self) -> Any:
        try:
            from .kubelet import Kubelet
        except ImportError:
            return None
        kubelet = Kubelet(self.store, self.network, self.scenario, self.recorder,
                          events=self.events)

        def deleted(resource: str, obj: dict) -> None:
            if resource == "pods":
                kubelet.on_pod_deleted(obj)

        self.store.on_deleted(deleted)
        return kubelet

    def stop(self) -> None:
        """Stop everything and remove state.json (the kubeconfig and CA stay for inspection)."""
        for part in (self.apiserver, self.control_server):
            if part is not None:
                try:
                    part.stop()
                except Exception:
                    pass
        if getattr(self, "controllers", None) is not None:
            self.controllers.stop()
        if self.store is not None:
            self.store.close()
        if self.kubelet is not None:
            try:
                self.kubelet.stop()
            except Exception:
                pass
        (self.state_dir / "state.json").unlink(missing_ok=True)

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def handle(self) -> "SandboxHandle":
        return SandboxHandle(self.state_dir)


def build_kubeconfig(scenario: Any, server: str, pki: Any, tokens: dict[str, str]) -> dict:
    """A kubeconfig with several contexts: `sandbox` (admin, namespace default, current),
    `sandbox-nons` (admin, no namespace), one per user named after the user (namespace default),
    and `<user>-cert` for users with a client certificate."""
    cluster = f"sandbox-{scenario.name}"
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    users, contexts = [], []
    admin = "admin" if "admin" in tokens else next(iter(tokens))
    contexts.append({"name": "sandbox", "context": {"cluster": cluster, "user": admin,
                                                    "namespace": "default"}})
    contexts.append({"name": "sandbox-nons", "context": {"cluster": cluster, "user": admin}})
    for spec in scenario.users:
        users.append({"name": spec.name, "user": {"token": tokens[spec.name]}})
        contexts.append({"name": spec.name, "context": {"cluster": cluster, "user": spec.name,
                                                        "namespace": "default"}})
        if spec.client_cert:
            pair = pki.client(spec.name, tuple(g for g in spec.groups
                                               if g != "system:authenticated"))
            users.append({"name": f"{spec.name}-cert",
                          "user": {"client-certificate-data": b64(pair.cert_pem),
                                   "client-key-data": b64(pair.key_pem)}})
            contexts.append({"name": f"{spec.name}-cert",
                             "context": {"cluster": cluster, "user": f"{spec.name}-cert",
                                         "namespace": "default"}})
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "current-context": "sandbox",
        "clusters": [{"name": cluster, "cluster": {
            "server": server, "certificate-authority-data": b64(pki.ca.cert_pem)}}],
        "users": users,
        "contexts": contexts,
    }


class SandboxHandle:
    """A running sandbox as seen from a test: paths, control client, kubectl runner."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.state = json.loads((self.state_dir / "state.json").read_text())
        self.kubeconfig = Path(self.state["kubeconfig"])
        self.server: str = self.state["server"]
        self.scenario: str = self.state["scenario"]
        self.home = self.state_dir / "home"
        self.home.mkdir(exist_ok=True)
        from .control import SandboxControl

        self.control = SandboxControl(self.state_dir)

    def token(self, user: str) -> str:
        """The bearer token of a scenario user."""
        return self.state["users"][user]

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ with KUBECONFIG set and HOME pointed into the state dir."""
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("KUBECTL_", "KUBERNETES_")):
                env.pop(key)
        env.update(KUBECONFIG=str(self.kubeconfig), HOME=str(self.home))
        env.update(extra)
        return env

    @staticmethod
    def kubectl_path(version: str | None = None) -> str:
        """The installed kubectl, or a versioned one (`"1.29"`) shipped beside it."""
        if version is None:
            return shutil.which("kubectl") or "/usr/bin/kubectl"
        return str(KUBECTL_VERSIONED_DIR / f"kubectl.{version}")

    def kubectl(self, *args: str, version: str | None = None, timeout: float = 60,
                input: str | None = None, env: dict[str, str] | None = None,
                check: bool = False) -> subprocess.CompletedProcess:
        """Run real kubectl against the sandbox; returns the CompletedProcess (text mode)."""
        cmd = [self.kubectl_path(version), *args]
        return subprocess.run(cmd, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout, input=input, check=check)
