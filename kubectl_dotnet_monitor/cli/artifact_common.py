"""What every artifact/stream/operation command shares: flags, the pods a command runs on, their
sessions, and the ways an artifact ends (a file, a stream on stdout, an egress operation).

One mechanism for one pod and for many: a command describes **one pod's turn** (a function of a
:class:`PodTurn`: open the session, collect, return the result) and :func:`for_each_pod` runs it on
the pod the target names, or — for ``--all``/``-l`` — on every pod through ``fanout.run_many``
(parallel workers, one progress bar row per worker, per-pod files, the summary table, exit 11 on a
partial failure). Streams are prefixed ``[pod/NAME]`` per line, like ``kubectl logs --prefix``.

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
    pods_options,
    process_options,
    say,
    stack_options,
)

F = TypeVar("F", bound=Callable[..., Any])
Say = Callable[[str], None]

_TARGET_KEYS = ("pid", "uid", "process_name", "app_container", "image", "config_file", "rules_file", "no_auth",
                "wait_timeout", "no_inject", "enable_in_process_features")
_MANY_KEYS = ("label_selector", "all_pods", "parallel")


def no_inject_option(func: F) -> F:
    """``--no-inject``: use a monitor that already runs, never inject one."""
    return click.option("--no-inject", is_flag=True, default=False,
                        help="Fail instead of injecting a monitor when none runs.")(func)


def pod_options(func: F) -> F:
    """The pod's monitor and process: process selection, injection, ``--no-inject``, kubectl flags."""
    return stack_options(func, [process_options, inject_options, no_inject_option, kube_options])


def monitor_options(func: F) -> F:
    """The pod's monitor only (no process): injection, ``--no-inject``, kubectl flags."""
    return stack_options(func, [inject_options, no_inject_option, kube_options])


def existing_monitor_options(func: F) -> F:
    """A monitor that must already run in the pod (never injected): ``-c`` and kubectl flags."""
    return stack_options(func, [
        click.option("-c", "--container", "app_container", metavar="NAME", default=None,
                     help="The app container the monitor serves (when the pod has several)."),
        kube_options,
    ])


def in_process_option(func: F) -> F:
    """``--enable-in-process-features`` (stacks, exceptions, parameters need them)."""
    return click.option(
        "--enable-in-process-features", is_flag=True, default=False,
        help="When injecting, turn on dotnet-monitor's in-process features (stacks, exceptions, "
             "parameters; needs a pod prepared for Listen mode)."
    )(func)


def egress_option(func: F) -> F:
    """``--egress PROVIDER``: the monitor sends the artifact there instead of the plugin downloading it."""
    return click.option(
        "--egress", "egress", metavar="PROVIDER", default=None,
        help="Send the artifact to this egress provider of the monitor's configuration instead of "
             "downloading it; prints where it went."
    )(func)


def duration_option(default: str, help_text: str) -> Callable[[F], F]:
    """``--duration`` with the command's own default and help."""
    return click.option("--duration", type=DURATION, default=default, show_default=True, metavar="DURATION",
                        help=help_text)


def file_artifact_options(func: F) -> F:
    """A file artifact: TARGET/``-l``/``--all``/``--parallel`` + target flags + ``-o``/``--overwrite``/
    ``--idle-timeout``/``--wait``/``-q`` + egress."""
    return stack_options(func, [pods_options("min(8, pods)"), egress_option, output_options, pod_options])


def stream_options(func: F) -> F:
    """A streamed artifact: TARGET/``-l``/``--all``/``--parallel`` + target flags + ``--wait``/``-q`` + egress."""
    return stack_options(func, [
        pods_options("every pod at once"),
        egress_option,
        click.option("--wait", "wait_when_busy", is_flag=True, default=False,
                     help="If another collection of the same kind runs in the pod, wait for it instead of failing."),
        click.option("-q", "--quiet", is_flag=True, default=False, help="No spinner and no summary line."),
        pod_options,
    ])


def one_pod_name(target: str | None, command: str = "this command") -> str:
    """``POD`` or ``pod/NAME`` → the name; a workload is a usage error (``command`` takes one pod)."""
    from kubectl_dotnet_monitor.errors import UsageError
    from kubectl_dotnet_monitor.kube.workloads import POD, parse_target

    if not target:
        raise UsageError("a pod is required: POD or pod/NAME")
    ref = parse_target(target)
    if ref.kind is not POD:
        raise UsageError(f"{command} works on one pod; {target!r} names a workload",
                         hint="give a pod (POD or pod/NAME); `kubectl get pods -l ...` lists the workload's pods")
    return ref.name


@dataclass
class Target:
    """The parsed target flags of one command invocation: which pods, which process, which monitor."""

    ctx: click.Context
    target: str | None = None
    label_selector: str | None = None
    all_pods: bool = False
    parallel: int | None = None
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
    command: str = "this command"

    @classmethod
    def take(cls, ctx: click.Context, pod: str | None, kw: dict) -> Target:
        """Pop the target flags (TARGET, ``-l``/``--all``/``--parallel``, kubectl flags) out of ``**kw``.

        ``pod`` is the command's POD argument (single-pod commands); ``None`` takes ``kw["target"]``.
        """
        target = kw.pop("target", None) if pod is None else pod
        values = {k: kw.pop(k) for k in _TARGET_KEYS + _MANY_KEYS if k in kw}
        kube = {k: kw.pop(k) for k in KUBE_FLAGS if k in kw}
        return cls(ctx=ctx, target=target, kube=kube, command=f"`{ctx.command_path}`", **values)

    @property
    def pod(self) -> str:
        """The one pod of a single-pod command (a workload or ``-l`` is a usage error)."""
        if self.label_selector:
            from kubectl_dotnet_monitor.errors import UsageError

            raise UsageError(f"{self.command} works on one pod; -l selects several", hint="give POD or pod/NAME")
        return one_pod_name(self.target, self.command)

    def selector(self) -> Any:
        """The ``collect.ProcessSelector`` of ``--pid``/``--uid``/``--process-name``."""
        from kubectl_dotnet_monitor.collect import ProcessSelector

        return ProcessSelector(pid=self.pid, uid=self.uid, name=self.process_name)

    def inject_request(self) -> Any:
        """The ``InjectRequest`` of the injection flags, checked before any API call."""
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
        """The ``KubeFlags`` of this command (given before or after the command name)."""
        return kube_flags(self.ctx, **self.kube)

    def resolve(self) -> tuple[Any, Any, Any]:
        """``(conn, client, PodTargets)``: connect once, turn TARGET/``-l``/``--all`` into pods."""
        from kubectl_dotnet_monitor.kube.targets import (
            check_target_args,
            resolve_targets,
        )
        from kubectl_dotnet_monitor.session import connect

        check_target_args(self.target, self.label_selector)
        conn, client = connect(self.flags())
        targets = resolve_targets(client, conn.namespace, self.target, self.label_selector, self.all_pods)
        return conn, client, targets

    def open(self, conn_and_client: tuple | None = None, *, allow_inject: bool | None = None,
             pod: str | None = None, say: Say = say, tunnel_hook: Callable[[Any], None] | None = None,
             request: Any = None) -> Any:
        """The pod's session: a running monitor (injected unless ``--no-inject``) and its client."""
        from kubectl_dotnet_monitor.session import open_session

        request = request if request is not None else self.inject_request()
        inject = (not self.no_inject) if allow_inject is None else allow_inject
        return open_session(self.flags(), pod or self.pod, request, allow_inject=inject, say=say,
                            conn_and_client=conn_and_client, tunnel_hook=tunnel_hook)


# --------------------------------------------------------------------------------------------
# One pod's turn, for one pod or many


@dataclass
class PodTurn:
    """One pod's turn in a command: the pod, where to say things, and how to open its session.

    In a many-pod run ``job`` is the ``fanout.PodJob``: messages are prefixed ``[pod/NAME]``, the
    REST client is the worker's, every tunnel is handed to the shared cancellation (Ctrl-C aborts
    it), the progress bar gets the worker's row, and stoppable artifacts register their graceful stop.
    """

    target: Target
    pod: str
    namespace: str
    say: Say
    conn_and_client: tuple
    request: Any = None  # the InjectRequest, built once per command
    job: Any = None

    @property
    def many(self) -> bool:
        return self.job is not None

    @property
    def position(self) -> int | None:
        """The tqdm row of this pod's progress bar (``None``: the one-pod bar)."""
        return None if self.job is None else self.job.slot

    @property
    def on_stopper(self) -> Callable[[Any], None] | None:
        return None if self.job is None else self.job.cancel.add_stopper

    def open(self, allow_inject: bool | None = None) -> Any:
        """This pod's session (see :meth:`Target.open`), with the worker's client and cancellation."""
        hook = None
        if self.job is not None:
            self.job.cancel.check()
            hook = self.job.cancel.adopt
        return self.target.open(self.conn_and_client, allow_inject=allow_inject, pod=self.pod, say=self.say,
                                tunnel_hook=hook, request=self.request)


def for_each_pod(target: Target, work: Callable[[PodTurn], Any], *, kind: str, quiet: bool = False,
                 single: Callable[[PodTurn, Any], None] | None = None,
                 print_result: Callable[[Any], None] | None = None,
                 check_many: Callable[[Any], None] | None = None,
                 before: Callable[[Any, Any, Any], None] | None = None,
                 streaming: bool = False) -> list[Any]:
    """Run ``work`` on the pod(s) ``target`` names; returns what it returned, per pod.

    One pod (a pod, or a workload without ``--all``): ``work`` runs here, then ``single(turn, value)``
    reports it. Many pods (``--all``, ``-l``): ``check_many(targets)`` first (e.g. ``-o`` must be a
    directory), then ``fanout.run_many`` with ``print_result(outcome)`` for each success; failures
    raise ``PodsFailed`` (exit 11 when some succeeded). ``before(conn, client, targets)`` runs on the
    main thread before any pod's turn (questions to the user). ``streaming``: without ``--parallel``
    every pod runs at once and no summary table follows the data.
    """
    request = target.inject_request()  # a bad --config/--rules fails before any API call
    conn, client, targets = target.resolve()
    for note in targets.notes:
        say(note)
    if targets.many and check_many is not None:
        check_many(targets)
    if before is not None:
        before(conn, client, targets)
    if not targets.many:
        turn = PodTurn(target, targets.pods[0], targets.namespace, say, (conn, client), request)
        value = work(turn)
        if single is not None:
            single(turn, value)
        return [value]

    from kubectl_dotnet_monitor.fanout import DEFAULT_PARALLEL, run_many

    client.close()

    def one_pod(job: Any) -> Any:
        job.cancel.check()
        return work(PodTurn(target, job.pod, job.namespace, job.say, job.conn_and_client(), request, job))

    outcomes = run_many(targets, one_pod, conn=conn, parallel=target.parallel, stream=sys.stderr, quiet=quiet,
                        kind=kind, print_result=print_result,
                        parallel_fallback=len(targets.pods) if streaming else DEFAULT_PARALLEL,
                        table=not streaming)
    return [o.value for o in outcomes]


def transfer_options(idle_timeout: float = 120.0, wait_when_busy: bool = False, quiet: bool = False) -> Any:
    """``collect.TransferOptions`` from ``--idle-timeout``, ``--wait`` and ``-q``."""
    from kubectl_dotnet_monitor.collect import TransferOptions

    return TransferOptions(idle_timeout=idle_timeout, wait_when_busy=wait_when_busy, quiet=quiet)


def _many_output(output: str | None) -> Callable[[Any], None]:
    def check(targets: Any) -> None:
        from kubectl_dotnet_monitor.fanout import check_many_output

        check_many_output(output, len(targets.pods))

    return check


def run_file_artifact(target: Target, spec: Any, *, output: str | None, overwrite: bool, idle_timeout: float,
                      wait_when_busy: bool, quiet: bool, egress: str | None,
                      before: Callable[[Any, Any, Any], None] | None = None) -> None:
    """The common end of dump, gcdump, trace and stacks: download into a file per pod, or egress."""
    from kubectl_dotnet_monitor.collect import collect_artifact

    transfer = transfer_options(idle_timeout, wait_when_busy, quiet)
    if egress:
        if output is not None:
            from kubectl_dotnet_monitor.errors import UsageError

            raise UsageError("--egress and -o exclude each other: an egressed artifact is not downloaded",
                             hint="drop -o (the command prints where the monitor sent the artifact), or drop --egress")
        run_egress(target, spec, egress, transfer, before=before)
        return
    # Check -o before touching the cluster: a typo should not cost an injection.
    from kubectl_dotnet_monitor.artifacts.files import resolve_output

    resolve_output(output, "placeholder." + spec.extension, overwrite=overwrite)
    selector = target.selector()

    def one(turn: PodTurn) -> Any:
        session = turn.open()
        try:
            return collect_artifact(session, spec, selector, output, overwrite=overwrite, transfer=transfer,
                                    say=turn.say, progress_stream=sys.stderr, progress_position=turn.position,
                                    on_stopper=turn.on_stopper)
        finally:
            session.close()

    def single(turn: PodTurn, result: Any) -> None:
        if not quiet:
            note = " (stopped early at your request; the file is complete)" if result.stopped else ""
            say(f"{spec.kind} of pod {turn.namespace}/{turn.pod} pid {result.process.get('pid')}: "
                f"{result.status.summary()}{note}")
        if result.path is not None:
            click.echo(str(result.path))

    for_each_pod(target, one, kind=spec.kind, quiet=quiet, single=single, check_many=_many_output(output),
                 before=before, print_result=lambda outcome: click.echo(str(outcome.value.path)))


def run_egress(target: Target, spec: Any, provider: str, transfer: Any,
               before: Callable[[Any, Any, Any], None] | None = None) -> None:
    """Egress ``spec`` from each pod and print where it went (stdout) once its operation succeeded.

    Many pods: ``pod/NAME LOCATION`` lines on stdout, the locations in the table; no spinners.
    """
    from dataclasses import replace

    from kubectl_dotnet_monitor.collect import egress_artifact

    selector = target.selector()

    def one(turn: PodTurn) -> Any:
        session = turn.open()
        try:
            return egress_artifact(session, spec, selector, provider,
                                   transfer=replace(transfer, quiet=True) if turn.many else transfer,
                                   say=turn.say, progress_stream=sys.stderr)
        finally:
            session.close()

    def location(result: Any) -> str:
        return result.resource_location or f"(egress {provider!r} reported no location; operation {result.operation_id})"

    def single(turn: PodTurn, result: Any) -> None:
        if not transfer.quiet:
            say(f"{spec.kind} of pod {turn.namespace}/{turn.pod} pid {result.process.get('pid')} "
                f"sent to egress {provider!r} (operation {result.operation_id})")
        click.echo(location(result))

    for_each_pod(target, one, kind=f"{spec.kind} to egress {provider!r}", quiet=transfer.quiet, single=single,
                 before=before, print_result=lambda outcome: click.echo(f"pod/{outcome.pod} {location(outcome.value)}"))


#: ``make_render(out)`` → ``(render, finish)``: ``out`` takes bytes or text (one pod's stdout, or its
#: ``[pod/NAME]``-prefixed share of it); ``render`` gets the body as it arrives; ``finish`` flushes.
MakeRender = Callable[[Callable[[Any], None]], tuple[Callable[[bytes], None], Callable[[], None] | None]]


def passthrough(out: Callable[[Any], None]) -> tuple[Callable[[bytes], None], None]:
    """A ``MakeRender`` for streams printed as they come (text logs, ndjson)."""
    return out, None


def run_stream(target: Target, spec: Any, make_render: MakeRender, *, wait_when_busy: bool, quiet: bool,
               egress: str | None) -> None:
    """The common end of logs, livemetrics, exceptions, parameters: to stdout as it comes, or egress.

    Many pods run at once (``--parallel`` to bound them) and each line is prefixed ``[pod/NAME] ``.
    Ctrl-C stops every session gracefully, prints what is still in flight, then exits 130.
    """
    import threading

    from kubectl_dotnet_monitor.collect import stream_artifact
    from kubectl_dotnet_monitor.errors import Interrupted

    transfer = transfer_options(wait_when_busy=wait_when_busy, quiet=quiet)
    if egress:
        run_egress(target, spec, egress, transfer)
        return
    selector = target.selector()
    lock = threading.Lock()

    def check_many(targets: Any) -> None:
        if spec.duration is None and target.parallel and target.parallel < len(targets.pods):
            from kubectl_dotnet_monitor.errors import UsageError

            raise UsageError(f"you are attempting to follow {len(targets.pods)} streams, but --parallel "
                             f"{target.parallel} would never start the last {len(targets.pods) - target.parallel}",
                             hint=f"use --parallel {len(targets.pods)} (or leave it out), or a --duration")

    def one(turn: PodTurn) -> Any:
        from kubectl_dotnet_monitor.fanout import LinePrefixer

        prefixer = None
        if turn.many:
            prefixer = LinePrefixer.for_pod(turn.pod, getattr(sys.stdout, "buffer", sys.stdout), lock)
            render, finish = make_render(prefixer.write)
        else:
            render, finish = make_render(stdout_out())
        session = turn.open()
        try:
            try:
                return stream_artifact(session, spec, selector, render, transfer=transfer, say=turn.say,
                                       on_stopper=turn.on_stopper)
            finally:
                if finish is not None:
                    finish()
                if prefixer is not None:
                    prefixer.close()
                sys.stdout.flush()
        finally:
            session.close()

    def single(turn: PodTurn, result: Any) -> None:
        if result.stopped:
            raise Interrupted("stopped at your request (the output above is complete up to here)")

    sys.stdout.flush()
    for_each_pod(target, one, kind=spec.kind, quiet=quiet, single=single, check_many=check_many, streaming=True)


def run_fetch(target: Target, spec: Any, emit: Callable[[PodTurn, Any, bytes, Callable[[Any], None]], None], *,
              transfer: Any = None, with_process: bool = True, kind: str | None = None) -> None:
    """A small artifact read whole (metrics, stacks on stdout), then ``emit(turn, process, body, out)``.

    ``out`` takes text or bytes: stdout for one pod, the pod's ``[pod/NAME]``-prefixed lines for many.
    """
    import threading

    from kubectl_dotnet_monitor.collect import TransferOptions, fetch_artifact
    from kubectl_dotnet_monitor.fanout import LinePrefixer

    transfer = transfer or TransferOptions()
    selector = target.selector() if with_process else None
    lock = threading.Lock()

    def one(turn: PodTurn) -> Any:
        session = turn.open()
        try:
            process, body = fetch_artifact(session, spec, selector, transfer, say=turn.say)
        finally:
            session.close()
        if turn.many:
            prefixer = LinePrefixer.for_pod(turn.pod, getattr(sys.stdout, "buffer", sys.stdout), lock)
            emit(turn, process, body, prefixer.write)
            prefixer.close()
        else:
            emit(turn, process, body, stdout_out())
        return _Fetched(process or {}, len(body))

    for_each_pod(target, one, kind=kind or spec.kind, quiet=transfer.quiet, streaming=True)


@dataclass
class _Fetched:
    """What the summary table shows for a fetched artifact (PROCESS, SIZE)."""

    process: dict
    size: int

    @property
    def status(self) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(bytes=self.size)


def stdout_out() -> Callable[[Any], None]:
    """Write bytes or text to stdout and flush at once (a stream is read as it comes)."""
    text_out = sys.stdout
    binary_out = getattr(text_out, "buffer", None)

    def write(data: Any) -> None:
        if isinstance(data, str) or binary_out is None:  # a text-only stdout (tests) gets bytes decoded
            text_out.write(data if isinstance(data, str) else bytes(data).decode("utf-8", "replace"))
            text_out.flush()
            return
        text_out.flush()  # text written before must not come out after these bytes
        binary_out.write(bytes(data))
        binary_out.flush()

    return write


def emit_structured(doc: Any, fmt: str) -> None:
    """``-o json`` / ``-o yaml`` output of a document on stdout."""
    if fmt == "yaml":
        import yaml

        click.echo(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), nl=False)
    else:
        import json

        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
