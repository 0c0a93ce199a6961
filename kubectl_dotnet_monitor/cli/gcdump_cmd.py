"""``kubectl dotnet-monitor gcdump TARGET`` (a pod, one pod of a workload, or many pods)."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.options import (
    build_inject_request,
    inject_options,
    kube_flags,
    kube_options,
    output_options,
    process_options,
    say,
    target_options,
)


@click.command()
@target_options
@process_options
@output_options
@inject_options
@click.option("--no-inject", is_flag=True, default=False, help="Fail instead of injecting a monitor when none runs.")
@kube_options
@click.pass_context
def gcdump(ctx: click.Context, target: str | None, label_selector: str | None, all_pods: bool, parallel: int | None,
           pid: int | None, uid: str | None, process_name: str | None,
           output: str | None, overwrite: bool, idle_timeout: float, wait_when_busy: bool, quiet: bool,
           app_container: str | None, image: str | None, config_file: str | None, rules_file: str | None, no_auth: bool,
           wait_timeout: float, no_inject: bool, **flags: object) -> None:
    """Save a GC heap dump (.gcdump) of the .NET process in a pod, or in many pods at once.

    TARGET is a pod (POD or pod/NAME) or a workload (deploy/NAME, sts/NAME,
    ds/NAME, rs/NAME): a workload means one of its pods, picked as `kubectl logs`
    picks it; with --all, every running pod of it. -l SELECTOR means every running
    pod matching. Several pods are collected in parallel (--parallel N), each into
    its own file, with a summary table at the end; the exit code is 11 when some
    pods failed and others succeeded.

    Injects dotnet-monitor if none runs (say --no-inject to refuse), picks the
    .NET process (the only one, or --pid/--uid/--process-name), and streams the
    dump to <pod>_<pid>_<UTC time>.gcdump in the current directory (0600). The
    saved path is printed on stdout; progress and messages go to stderr. Open it
    with Visual Studio, PerfView or `dotnet-gcdump report`.

    \b
    Examples:
      kubectl dotnet-monitor gcdump web-7d4b9-x2x9z
      kubectl dotnet-monitor gcdump web-7d4b9-x2x9z -n shop -o dumps/
      kubectl dotnet-monitor gcdump web-7d4b9-x2x9z --pid 1 -o - | gzip > heap.gcdump.gz
      kubectl dotnet-monitor gcdump deploy/web --all -o dumps/
      kubectl dotnet-monitor gcdump -l app=web --parallel 4 -o dumps/
    """
    from kubectl_dotnet_monitor.collect import (
        GCDUMP,
        ProcessSelector,
        TransferOptions,
        collect_artifact,
    )
    from kubectl_dotnet_monitor.kube.targets import check_target_args, resolve_targets
    from kubectl_dotnet_monitor.session import connect, open_session

    check_target_args(target, label_selector)
    request = build_inject_request(app_container, image, config_file, no_auth, wait_timeout, rules_file)
    selector = ProcessSelector(pid=pid, uid=uid, name=process_name)
    transfer = TransferOptions(idle_timeout=idle_timeout, wait_when_busy=wait_when_busy, quiet=quiet)
    # Check -o before touching the cluster: a typo should not cost an injection.
    from kubectl_dotnet_monitor.artifacts.files import resolve_output

    resolve_output(output, "placeholder.gcdump", overwrite=overwrite)
    flags_ = kube_flags(ctx, **flags)
    conn, client = connect(flags_)
    targets = resolve_targets(client, conn.namespace, target, label_selector, all_pods)
    for note in targets.notes:
        say(note)

    if not targets.many:
        pod = targets.pods[0]
        session = open_session(flags_, pod, request, allow_inject=not no_inject, say=say,
                               conn_and_client=(conn, client))
        try:
            result = collect_artifact(session, GCDUMP, selector, output, overwrite=overwrite, transfer=transfer,
                                      say=say)
        finally:
            session.close()
        if not quiet:
            say(f"gcdump of pod {session.namespace}/{pod} pid {result.process.get('pid')}: {result.status.summary()}")
        if result.path is not None:
            click.echo(str(result.path))
        return

    import sys

    from kubectl_dotnet_monitor.fanout import check_many_output, run_many

    client.close()
    check_many_output(output, len(targets.pods))

    def one_pod(job: object) -> object:
        job.cancel.check()
        session = open_session(flags_, job.pod, request, allow_inject=not no_inject, say=job.say,
                               conn_and_client=job.conn_and_client())
        try:
            job.cancel.watch_session(session)
            return collect_artifact(session, GCDUMP, selector, output, overwrite=overwrite, transfer=transfer,
                                    say=job.say, progress_stream=sys.stderr)
        finally:
            session.close()

    run_many(targets, one_pod, conn=conn, parallel=parallel, stream=sys.stderr, quiet=quiet, kind="gcdump",
             print_result=lambda outcome: click.echo(str(outcome.value.path)))
