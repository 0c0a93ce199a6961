"""python -m tests.sandbox up [--scenario NAME] [--state-dir DIR] [--detach] | down | list |
artifacts | fire-rule NAMESPACE POD RULE [--pid N]"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox",
                                     description="A simulated Kubernetes cluster on loopback.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a scenario (foreground unless --detach)")
    up.add_argument("--scenario", default="basic")
    up.add_argument("--state-dir", help="default: .sandbox/<scenario>")
    up.add_argument("--detach", action="store_true", help="run in the background, return when ready")
    up.add_argument("--log", action="store_true", help="log every API request to stderr")
    down = sub.add_parser("down", help="stop a detached sandbox")
    down.add_argument("--scenario", default="basic")
    down.add_argument("--state-dir")
    sub.add_parser("list", help="scenarios, and sandboxes running under .sandbox/")
    arts = sub.add_parser("artifacts", help="what the simulated monitors sent (bytes, SHA-256)")
    arts.add_argument("--scenario", default="basic")
    arts.add_argument("--state-dir")
    fire = sub.add_parser("fire-rule", help="fire a collection rule's trigger in a pod's dotnet-monitor "
                                             "and print the ids of the operations it started")
    fire.add_argument("--scenario", default="basic")
    fire.add_argument("--state-dir")
    fire.add_argument("namespace")
    fire.add_argument("pod")
    fire.add_argument("rule", help="the collection rule's name (case-insensitive)")
    fire.add_argument("--pid", type=int, help="only for the process with this id")
    args = parser.parse_args(argv)
    if args.command == "fire-rule":
        return cmd_fire_rule(_state_dir(args), args.namespace, args.pod, args.rule, args.pid)
    if args.command == "artifacts":
        return cmd_artifacts(_state_dir(args))
    if args.command == "up":
        return cmd_up(args)
    if args.command == "down":
        return cmd_down(_state_dir(args))
    return cmd_list()


def _state_dir(args: argparse.Namespace) -> Path:
    from . import default_state_dir

    return Path(args.state_dir).resolve() if args.state_dir else default_state_dir(args.scenario)


def cmd_up(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    if args.detach:
        return _up_detached(args, state_dir)
    from . import Sandbox

    sandbox = Sandbox(args.scenario, state_dir, log=args.log or None)
    try:
        sandbox.start()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    kubeconfig = state_dir / "kubeconfig"
    print(f"sandbox {sandbox.scenario.name!r} ({sandbox.scenario.version['gitVersion']}) at "
          f"{sandbox.server}", flush=True)
    print(f"kubeconfig: {kubeconfig}", flush=True)
    print(f"export KUBECONFIG={kubeconfig}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


def _up_detached(args: argparse.Namespace, state_dir: Path) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / "state.json"
    if state_file.exists():
        try:
            pid = json.loads(state_file.read_text())["pid"]
            os.kill(pid, 0)
            print(f"error: a sandbox is already running from {state_dir} (pid {pid})",
                  file=sys.stderr)
            return 1
        except (OSError, ValueError, KeyError):
            state_file.unlink(missing_ok=True)
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "tests.sandbox", "up", "--scenario", args.scenario,
           "--state-dir", str(state_dir)]
    if args.log:
        cmd.append("--log")
    log = open(state_dir / "sandbox.log", "wb")
    proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.stderr.write((state_dir / "sandbox.log").read_text(errors="replace"))
            print(f"error: the sandbox exited with status {proc.returncode}", file=sys.stderr)
            return 1
        if state_file.exists():
            try:
                state = json.loads(state_file.read_text())
            except ValueError:
                state = {}
            if state.get("pid") == proc.pid:
                print(f"sandbox {args.scenario!r} at {state['server']} (pid {proc.pid})")
                print(f"export KUBECONFIG={state['kubeconfig']}")
                return 0
        time.sleep(0.02)
    proc.terminate()
    print("error: the sandbox did not become ready in 20 s", file=sys.stderr)
    return 1


def cmd_down(state_dir: Path) -> int:
    state_file = state_dir / "state.json"
    if not state_file.exists():
        print(f"no sandbox running from {state_dir}", file=sys.stderr)
        return 0
    pid = json.loads(state_file.read_text())["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        state_file.unlink(missing_ok=True)
        return 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    state_file.unlink(missing_ok=True)
    return 0


def cmd_artifacts(state_dir: Path) -> int:
    """One line per artifact served: pod, route, bytes, SHA-256, complete."""
    from .control import SandboxControl

    for record in SandboxControl(state_dir).artifacts():
        if "sha256" not in record:
            continue  # kubelet events share the log
        print(f"{record.get('pod', '?'):28} {record.get('route', '?'):12} {record.get('bytes', 0):>12} "
              f"sha256={record.get('sha256', '?')} complete={record.get('complete')}")
    return 0


def cmd_fire_rule(state_dir: Path, namespace: str, pod: str, rule: str, pid: int | None) -> int:
    """`fire-rule`: the trigger of `rule` fires in the pod's simulated dotnet-monitor(s) (through
    the control endpoint); prints one started operation id per line. Exit 1, with the reason on
    stderr, when the sandbox, the pod, a running monitor or the rule is missing."""
    from .control import ControlError, SandboxControl

    if not (state_dir / "state.json").exists():
        print(f"error: no sandbox running from {state_dir}", file=sys.stderr)
        return 1
    control = SandboxControl(state_dir)
    try:
        spec = control.pod(namespace, pod)
        if spec is None:
            print(f'error: pod "{pod}" not found in namespace "{namespace}"', file=sys.stderr)
            return 1
        ids = control.fire_rule(namespace, pod, rule, pid=pid)
    except ControlError as exc:
        if exc.code == 404:
            print(f"error: no dotnet-monitor is running in pod {namespace}/{pod}", file=sys.stderr)
        else:
            print(f"error: the control endpoint answered {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot reach the sandbox's control endpoint ({exc}); is it running?",
              file=sys.stderr)
        return 1
    for op in ids:
        print(op)
    if ids:
        return 0
    # Nothing started: tell an unknown rule (an error) from one that did not act (throttled,
    # finished, still executing, or no process passes its filters).
    configured = _configured_rules(spec)
    if rule.lower() not in {name.lower() for name in configured}:
        known = ", ".join(sorted(configured)) or "none"
        print(f"error: no collection rule {rule!r} in the dotnet-monitor of pod {namespace}/{pod} "
              f"(configured: {known})", file=sys.stderr)
        return 1
    if pid is not None:
        why = (f"no process {pid} is visible to the monitor, or the rule is throttled, finished or "
               "still executing for it, or the process does not pass the rule's filters")
    else:
        why = ("it is throttled, finished or still executing, or no visible process passes its "
               "filters")
    print(f"rule {rule!r} fired but started no operation ({why})", file=sys.stderr)
    return 0


def _configured_rules(pod: dict) -> list[str]:
    """Collection rule names configured in the pod's containers (the monitor's config comes
    from its container spec only)."""
    from .monitor.config import monitor_config

    spec = pod.get("spec") or {}
    names: list[str] = []
    for container in (spec.get("ephemeralContainers") or []) + (spec.get("containers") or []):
        try:
            rules = monitor_config(container).collection_rules
        except (ValueError, KeyError, TypeError, AttributeError):
            rules = {}  # settings the monitor could not bind: it runs no rules
        names += [n for n in rules if n not in names]
    return names


def cmd_list() -> int:
    from . import scenario

    for name in scenario.available():
        s = scenario.load(name)
        print(f"{name:14} {s.version['gitVersion']:10} {s.description.strip().splitlines()[0] if s.description else ''}")
    root = Path.cwd() / ".sandbox"
    for state_file in sorted(root.glob("*/state.json")):
        state = json.loads(state_file.read_text())
        print(f"running: {state['scenario']} at {state['server']} (pid {state['pid']}, "
              f"{state_file.parent})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
