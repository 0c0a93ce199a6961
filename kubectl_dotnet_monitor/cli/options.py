"""Flags shared by commands, bound in one place.

kubectl passes a plugin its arguments verbatim, so the kubectl-style flags
(``-n``, ``--context``, ``--kubeconfig``…) may come before or after the subcommand:
both the group and each command accept them, and the command's value wins.
"""

from __future__ import annotations

import re
from typing import Any, Callable, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

KUBE_FLAGS = ("kubeconfig", "context", "cluster", "user", "namespace", "request_timeout")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """kubectl-style duration: ``0``, ``30``, ``30s``, ``1m30s``, ``500ms``, ``1h`` → seconds."""
    value = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        number, unit = float(match.group(1)), match.group(2)
        total += number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
        pos = match.end()
    if pos != len(value) or not value:
        raise ValueError(f"invalid duration {text!r} (examples: 30s, 5m, 1h, 0 for none)")
    return total


class Duration(click.ParamType):
    """A click type for kubectl-style durations."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


def stack_options(func: F, decorators: list[Callable[[Any], Any]]) -> F:
    """Apply ``decorators`` so that ``--help`` lists them in the order given."""
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def kube_options(func: F) -> F:
    """``--kubeconfig``, ``--context``, ``--cluster``, ``--user``, ``-n``, ``--request-timeout``."""
    decorators = [
        click.option("--kubeconfig", metavar="PATH", default=None, help="Path to the kubeconfig file (else $KUBECONFIG, else ~/.kube/config)."),
        click.option("--context", metavar="NAME", default=None, help="The kubeconfig context to use."),
        click.option("--cluster", metavar="NAME", default=None, help="The kubeconfig cluster to use."),
        click.option("--user", metavar="NAME", default=None, help="The kubeconfig user to use."),
        click.option("-n", "--namespace", metavar="NS", default=None, help="Namespace (else the context's, else 'default')."),
        click.option("--request-timeout", type=DURATION, default=None, metavar="DURATION", help="Timeout of a single API request, e.g. 30s (0: none)."),
        # Accepted before and after the command, as kubectl users type it; run() reads it from argv.
        click.option("-v", "--verbose", count=True, expose_value=False, help="More detail on stderr; tracebacks on errors."),
    ]
    return stack_options(func, decorators)


def kube_flags(ctx: click.Context, **given: Any) -> "KubeFlags":  # noqa: F821 - lazy import
    """Merge group-level and command-level kubectl flags (command wins) into ``KubeFlags``."""
    from kubectl_dotnet_monitor.kube.config import KubeFlags

    root = ctx.find_root().obj or {}
    group_flags = root.get("kube_flags", {})
    values = {name: given.get(name) if given.get(name) is not None else group_flags.get(name) for name in KUBE_FLAGS}
    return KubeFlags(**values)


def say(message: str) -> None:
    """One line for the person at the terminal: stderr, never stdout (stdout is data)."""
    click.echo(message, err=True)


def inject_options(func: F) -> F:
    """How to find or inject the monitor: ``-c``, ``--image``, ``--config``, ``--no-auth``, ``--timeout``."""
    decorators = [
        click.option("-c", "--container", "app_container", metavar="NAME", default=None,
                     help="The app container to diagnose (default: the pod's default container, or the one with a diagnostic port)."),
        click.option("--image", default=None, metavar="IMAGE",
                     help="dotnet-monitor image to inject (default mcr.microsoft.com/dotnet/monitor:10.0)."),
        click.option("--config", "config_file", metavar="FILE", default=None, type=click.Path(dir_okay=False),
                     help="Partial container spec (JSON/YAML) merged into the monitor, like kubectl debug --custom."),
        click.option("--rules", "rules_file", metavar="FILE", default=None, type=click.Path(dir_okay=False),
                     help="Collection rules and egress (dotnet-monitor's configuration shape) for an injected monitor."),
        click.option("--no-auth", is_flag=True, default=False,
                     help="Inject the monitor without API-key authentication (insecure; still bound to localhost)."),
        click.option("--timeout", "wait_timeout", type=DURATION, default="2m", show_default=True, metavar="DURATION",
                     help="How long to wait for an injected monitor to start."),
    ]
    return stack_options(func, decorators)


def process_options(func: F) -> F:
    """``--pid``, ``--uid``, ``--process-name``."""
    decorators = [
        click.option("--pid", type=int, default=None, help="Process id (as dotnet-monitor reports it)."),
        click.option("--uid", default=None, metavar="UID", help="Runtime instance id (from `processes`)."),
        click.option("--process-name", default=None, metavar="NAME", help="Process name, e.g. dotnet or the app's name."),
    ]
    return stack_options(func, decorators)


def output_options(func: F) -> F:
    """``-o FILE|DIR|-``, ``--overwrite``, ``--idle-timeout``, ``--wait``, ``-q``."""
    decorators = [
        click.option("-o", "--output", default=None, metavar="FILE|DIR|-",
                     help="Where to save: a file, an existing directory, or - for stdout (default: a timestamped file here)."),
        click.option("--overwrite", is_flag=True, default=False, help="Replace an existing file named by -o."),
        click.option("--idle-timeout", type=DURATION, default="2m", show_default=True, metavar="DURATION",
                     help="Fail when no byte arrives for this long once the transfer started."),
        click.option("--wait", "wait_when_busy", is_flag=True, default=False,
                     help="If another collection of the same kind runs in the pod, wait for it instead of failing."),
        click.option("-q", "--quiet", is_flag=True, default=False, help="No progress bar and no summary line."),
    ]
    return stack_options(func, decorators)


def build_inject_request(app_container: str | None, image: str | None, config_file: str | None,
                         no_auth: bool, wait_timeout: float, rules_file: str | None = None) -> "InjectRequest":  # noqa: F821
    """Validate the injection flags before any API call (a bad --config or --rules fails here)."""
    from kubectl_dotnet_monitor.inject.custom import check_custom, load_custom_spec
    from kubectl_dotnet_monitor.inject.injector import InjectRequest
    from kubectl_dotnet_monitor.inject.spec import DEFAULT_IMAGE, MonitorOptions

    extra_env: tuple = ()
    needs_listen_mode = False
    secret_refs: tuple = ()
    if rules_file:
        from kubectl_dotnet_monitor.rules import load_rules

        rules = load_rules(rules_file)
        for warning in rules.warnings:
            say(f"warning: {warning}")
        extra_env, needs_listen_mode = tuple(rules.env), rules.needs_listen_mode
        secret_refs = tuple(rules.secret_refs)
    options = MonitorOptions(
        image=image or DEFAULT_IMAGE,
        app_container=app_container,
        no_auth=no_auth,
        extra_env=extra_env,
        needs_listen_mode=needs_listen_mode,
    )
    custom = None
    if config_file:
        custom = load_custom_spec(config_file)
        for warning in check_custom(custom, config_file):
            say(f"warning: {warning}")
    if no_auth:
        say("warning: --no-auth: anyone who can reach the monitor's port in the pod can read process memory, "
            "environment and logs; it stays bound to localhost, reachable only through port-forward")
    return InjectRequest(options=options, custom=custom, custom_source=config_file or "--config",
                         wait_timeout=wait_timeout, secret_refs=secret_refs,
                         listen_reason="collection rules (--rules)")


def pods_options(parallel_default: str) -> Callable[[F], F]:
    """``TARGET`` (POD, pod/NAME, deploy/NAME, sts/NAME, ds/NAME, rs/NAME), ``-l``, ``--all``, ``--parallel``.

    The command receives ``target``, ``label_selector``, ``all_pods`` and ``parallel``; resolve them
    with ``kube.targets.resolve_targets`` and, when ``.many``, run through ``fanout.run_many``.
    ``parallel_default`` is what ``--help`` says happens without ``--parallel``.
    """

    def decorate(func: F) -> F:
        return stack_options(func, [
            click.argument("target", required=False, metavar="TARGET"),
            click.option("-l", "--selector", "label_selector", metavar="SELECTOR", default=None,
                         help="Every running pod matching this label selector (e.g. app=web), instead of TARGET."),
            click.option("--all", "all_pods", is_flag=True, default=False,
                         help="With a workload TARGET: every running pod of it (default: one pod, as kubectl "
                              "logs picks)."),
            click.option("--parallel", type=click.IntRange(min=1), default=None, metavar="N",
                         help=f"With several pods: how many at a time (default: {parallel_default})."),
        ])

    return decorate
