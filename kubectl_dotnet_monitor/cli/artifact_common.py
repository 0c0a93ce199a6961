"""What every artifact/stream/operation command shares: flags, the pod session, and the three ways
an artifact ends (a file, a stream on stdout, an egress operation).

Click only at the top; the work is imported when a command runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from kubectl_dotnet_monitor.cli.options import (
    DURATION,
    KUBE_FLAGS,
    build_inject_request,
    inject_options,
    kube_flags,
    kube_options,
    output_options,
    process_options,
    say,
)

F = TypeVar("F", bound=Callable[..., Any])

_TARGET_KEYS = ("pid", "uid", "process_name", "app_container", "image", "config_file", "rules_file", "no_auth",
                "wait_timeout", "no_inject", "enable_in_process_features")


def _stack(func: F, decorators: list) -> F:
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def no_inject_option(func: F) -> F:
    return click.option("--no-inject", is_flag=True, default=False,
                        help="Fail instead of injecting a monitor when none runs.")(func)


def pod_options(func: F) -> F:
    """The pod's monitor and process: process selection, injection, ``--no-inject``, kubectl flags."""
    return _stack(func, [process_options, inject_options, no_inject_option, kube_options])


def monitor_options(func: F) -> F:
    """The pod's monitor only (no process): injection, ``--no-inject``, kubectl flags."""
    return _stack(func, [inject_options, no_inject_option, kube_options])


def existing_monitor_options(func: F) -> F:
    """A monitor that must already run in the pod (never injected): ``-c`` and kubectl flags."""
    return _stack(func, [
        click.option("-c", "--container", "app_container", metavar="NAME", default=None,
                     help="The app container the monitor serves (when the pod has several)."),
        kube_options,
    ])


def in_process_option(func: F) -> F:
    return click.option(
        "--enable-in-process-features", is_flag=True, default=False,
        help="When injecting, turn on dotnet-monitor's in-process features (stacks, exceptions, "
             "parameters; needs a pod prepared for Listen mode)."
    )(func)


def egress_option(func: F) -> F:
    return click.option(
        "--egress", "egress", metavar="PROVIDER", default=None,
        help="Send the artifact to this egress provider of the monitor's configuration instead of "
             "downloading it; prints where it went."
    )(func)


def duration_option(default: str, help_text: str) -> Callable[[F], F]:
    return click.option("--duration", type=DURATION, default=default, show_default=True, metavar="DURATION",
                        help=help_text)


def file_artifact_options(func: F) -> F:
    """A file artifact: target flags + ``-o``/``--overwrite``/``--idle-timeout``/``--wait``/``-q`` + egress."""
    return _stack(func, [egress_option, output_options, pod_options])


def stream_options(func: F) -> F:
    """A streamed artifact: target flags + ``--wait``/``-q`` + egress."""
    return _stack(func, [
        egress_option,
        click.option("--wait", "wait_when_busy", is_flag=True, default=False,
                     help="If another collection of the same kind runs in the pod, wait for it instead of failing."),
        click.option("-q", "--quiet", is_flag=True, default=False, help="No spinner and no summary line."),
        pod_options,
    ])


@dataclass
class Target:
    """The parsed target flags of one command invocation."""

    ctx: click.Context
    pod: str
    pid: int | None = None
    uid: str | None = None
    process_name: str | None = None
    app_container: str | None = None
    image: str | None = None
    config_file: str | None = None
    rules_file: str | None = None
    no_auth: bool = False
    wait_timeout: float = 120.0
    no_inject: bool = False
    enable_in_process_features: bool = False
    kube: dict = field(default_factory=dict)

    @classmethod
    def take(cls, ctx: click.Context, pod: str, kw: dict) -> Target:
        """Pop the target flags (and kubectl flags) out of a command's ``**kw``."""
        from kubectl_dotnet_monitor.cli.inject_cmd import _pod_name

        values = {k: kw.pop(k) for k in _TARGET_KEYS if k in kw}
        kube = {k: kw.pop(k) for k in KUBE_FLAGS if k in kw}
        return cls(ctx=ctx, pod=_pod_name(pod), kube=kube, **values)

    def selector(self) -> Any:
        from kubectl_dotnet_monitor.collect import ProcessSelector

        return ProcessSelector(pid=self.pid, uid=self.uid, name=self.process_name)

    def inject_request(self) -> Any:
        request = build_inject_request(self.app_container, self.image, self.config_file, self.no_auth,
                                       self.wait_timeout, self.rules_file)
        if not self.enable_in_process_features:
            return request
        from dataclasses import replace

        from kubectl_dotnet_monitor.artifacts.requests import in_process_env

        options = replace(request.options, extra_env=tuple(request.options.extra_env) + in_process_env(),
                          needs_listen_mode=True)
        return replace(request, options=options)

    def flags(self) -> Any:
        return kube_flags(self.ctx, **self.kube)

    def open(self, conn_and_client: tuple | None = None, *, allow_inject: bool | None = None) -> Any:
        """The pod's session: a running monitor (injected unless ``--no-inject``) and its client."""
        from kubectl_dotnet_monitor.session import open_session

        request = self.inject_request()
        inject = (not self.no_inject) if allow_inject is None else allow_inject
        return open_session(self.flags(), self.pod, request, allow_inject=inject, say=say,
                            conn_and_client=conn_and_client)


def transfer_options(idle_timeout: float = 120.0, wait_when_busy: bool = False, quiet: bool = False) -> Any:
    from kubectl_dotnet_monitor.collect import TransferOptions

    return TransferOptions(idle_timeout=idle_timeout, wait_when_busy=wait_when_busy, quiet=quiet)


def run_file_artifact(target: Target, spec: Any, *, output: str | None, overwrite: bool, idle_timeout: float,
                      wait_when_busy: bool, quiet: bool, egress: str | None, session: Any = None) -> None:
    """The common end of dump, gcdump, trace and stacks: download into a file, or egress."""
    from kubectl_dotnet_monitor.collect import collect_artifact

    transfer = transfer_options(idle_timeout, wait_when_busy, quiet)
    if egress:
        if output is not None:
            raise click.UsageError("--egress and -o exclude each other: an egressed artifact is not downloaded")
        run_egress(target, spec, egress, transfer, session=session)
        return
    # Check -o before touching the cluster: a typo should not cost an injection.
    from kubectl_dotnet_monitor.artifacts.files import resolve_output

    resolve_output(output, "placeholder." + spec.extension, overwrite=overwrite)
    session = session or target.open()
    try:
        result = collect_artifact(session, spec, target.selector(), output, overwrite=overwrite,
                                  transfer=transfer, say=say)
    finally:
        session.close()
    if not quiet:
        note = " (stopped early at your request; the file is complete)" if result.stopped else ""
        say(f"{spec.kind} of pod {session.namespace}/{target.pod} pid {result.process.get('pid')}: "
            f"{result.status.summary()}{note}")
    if result.path is not None:
        click.echo(str(result.path))


def run_egress(target: Target, spec: Any, provider: str, transfer: Any, session: Any = None) -> None:
    """Egress ``spec`` and print where it went (stdout) once the operation succeeded."""
    from kubectl_dotnet_monitor.collect import egress_artifact

    session = session or target.open()
    try:
        result = egress_artifact(session, spec, target.selector(), provider, transfer=transfer, say=say)
    finally:
        session.close()
    if not transfer.quiet:
        say(f"{spec.kind} of pod {session.namespace}/{target.pod} pid {result.process.get('pid')} "
            f"sent to egress {provider!r} (operation {result.operation_id})")
    click.echo(result.resource_location or f"(egress {provider!r} reported no location; "
                                           f"operation {result.operation_id})")


def run_stream(target: Target, spec: Any, render: Callable[[bytes], None], *, wait_when_busy: bool,
               quiet: bool, egress: str | None, finish: Callable[[], None] | None = None) -> None:
    """The common end of logs, livemetrics, parameters: to stdout as it comes, or egress.

    Ctrl-C stops the session gracefully, prints what is still in flight, then exits 130.
    """
    from kubectl_dotnet_monitor.collect import stream_artifact
    from kubectl_dotnet_monitor.errors import Interrupted

    transfer = transfer_options(wait_when_busy=wait_when_busy, quiet=quiet)
    if egress:
        run_egress(target, spec, egress, transfer)
        return
    session = target.open()
    try:
        try:
            result = stream_artifact(session, spec, target.selector(), render, transfer=transfer, say=say)
        finally:
            if finish is not None:
                finish()
            sys.stdout.flush()
    finally:
        session.close()
    if result.stopped:
        raise Interrupted("stopped at your request (the output above is complete up to here)")


def stdout_bytes() -> Callable[[bytes], None]:
    """Write bytes to stdout as they come (pass-through streams: text logs, ndjson)."""
    out = getattr(sys.stdout, "buffer", None)

    def write(data: bytes) -> None:
        if out is None:  # a text-only stdout (tests): decode
            sys.stdout.write(data.decode("utf-8", "replace"))
            sys.stdout.flush()
            return
        sys.stdout.flush()
        out.write(data)
        out.flush()

    return write


def stdout_writer() -> Callable[[str], None]:
    """Write text to stdout and flush at once (a stream is read as it comes)."""
    out = sys.stdout

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    return write


def emit_structured(doc: Any, fmt: str) -> None:
    """``-o json`` / ``-o yaml`` output of a document on stdout."""
    if fmt == "yaml":
        import yaml

        click.echo(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), nl=False)
    else:
        import json

        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
