"""``kubectl dotnet-monitor gcdump TARGET`` (a pod, one pod of a workload, or many pods)."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import file_artifact_options


@click.command()
@file_artifact_options
@click.pass_context
def gcdump(ctx: click.Context, **kw: object) -> None:
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
    with Visual Studio, PerfView or `dotnet-gcdump report`. --egress sends it to
    an egress provider of the monitor's configuration instead.

    A gcdump forces a full blocking (gen 2) GC: the process pauses while its heap
    is walked. That is why at most 8 pods are dumped at a time by default: pausing
    every replica of a service at once can take it down. Raise --parallel when
    the service can take it (e.g. --parallel 50 for 50 pods in about the time of
    one).

    \b
    Examples:
      kubectl dotnet-monitor gcdump web-7d4b9-x2x9z
      kubectl dotnet-monitor gcdump web-7d4b9-x2x9z -n shop -o dumps/
      kubectl dotnet-monitor gcdump web-7d4b9-x2x9z --pid 1 -o - | gzip > heap.gcdump.gz
      kubectl dotnet-monitor gcdump deploy/web --all -o dumps/
      kubectl dotnet-monitor gcdump -l app=web --parallel 4 -o dumps/
      kubectl dotnet-monitor gcdump deploy/web --all --egress blobs
    """
    from kubectl_dotnet_monitor.cli.artifact_common import Target, run_file_artifact
    from kubectl_dotnet_monitor.collect import GCDUMP

    target = Target.take(ctx, None, kw)
    run_file_artifact(target, GCDUMP, **kw)
