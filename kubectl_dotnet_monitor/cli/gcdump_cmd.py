"""``kubectl dotnet-monitor gcdump POD``."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.inject_cmd import _pod_name
from kubectl_dotnet_monitor.cli.options import (
    build_inject_request,
    inject_options,
    kube_flags,
    kube_options,
    output_options,
    process_options,
    say,
)


@click.command()
@click.argument("pod")
@process_options
@output_options
@inject_options
@click.option("--no-inject", is_flag=True, default=False, help="Fail instead of injecting a monitor when none runs.")
@kube_options
@click.pass_context
def gcdump(ctx: click.Context, pod: str, pid: int | None, uid: str | None, process_name: str | None,
           output: str | None, overwrite: bool, idle_timeout: float, wait_when_busy: bool, quiet: bool,
           app_container: str | None, image: str | None, config_file: str | None, rules_file: str | None, no_auth: bool,
           wait_timeout: float, no_inject: bool, **flags: object) -> None:
    """Save a GC heap dump (.gcdump) of the .NET process in POD.

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
    """
    from kubectl_dotnet_monitor.collect import GCDUMP, ProcessSelector, TransferOptions, collect_artifact
    from kubectl_dotnet_monitor.session import open_session

    pod = _pod_name(pod)
    request = build_inject_request(app_container, image, config_file, no_auth, wait_timeout, rules_file)
    selector = ProcessSelector(pid=pid, uid=uid, name=process_name)
    transfer = TransferOptions(idle_timeout=idle_timeout, wait_when_busy=wait_when_busy, quiet=quiet)
    # Check -o before touching the cluster: a typo should not cost an injection.
    from kubectl_dotnet_monitor.artifacts.files import resolve_output

    resolve_output(output, "placeholder.gcdump", overwrite=overwrite)
    session = open_session(kube_flags(ctx, **flags), pod, request, allow_inject=not no_inject, say=say)
    try:
        result = collect_artifact(session, GCDUMP, selector, output, overwrite=overwrite, transfer=transfer, say=say)
    finally:
        session.close()
    if not quiet:
        say(f"gcdump of pod {session.namespace}/{pod} pid {result.process.get('pid')}: {result.status.summary()}")
    if result.path is not None:
        click.echo(str(result.path))
