"""``kubectl dotnet-monitor trace TARGET`` (a pod, one pod of a workload, or many pods)."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import (
    duration_option,
    file_artifact_options,
)


@click.command()
@click.option("--profile", default=None, metavar="LIST",
              help="Comma list of Cpu, Http, Metrics, GcCollect, Logs (any case; default: the monitor's, "
                   "Cpu,Http,Metrics,GcCollect on 8.1+).")
@duration_option("30s", "How long the trace session runs (rundown follows).")
@click.option("--providers", "providers_file", metavar="FILE", default=None, type=click.Path(dir_okay=False),
              help="EventPipe configuration (JSON or YAML: {providers: [{name, keywords, eventLevel}], "
                   "requestRundown, bufferSizeInMB}) instead of --profile.")
@file_artifact_options
@click.pass_context
def trace(ctx: click.Context, profile: str | None, duration: float, providers_file: str | None,
          **kw: object) -> None:
    """Record an EventPipe trace (.nettrace) of the .NET process in a pod, or in many pods.

    The session runs for --duration, then the runtime's rundown completes the
    file (this can take a while on big apps). Progress shows the elapsed time
    of the session, then the rundown bytes. Ctrl-C ends the session early and
    still gives a complete, readable file; a second Ctrl-C aborts (no file).
    Open it with PerfView, Visual Studio, `dotnet-trace convert` or speedscope.

    TARGET is a pod (POD or pod/NAME) or a workload (deploy/NAME, sts/NAME,
    ds/NAME, rs/NAME; with --all every running pod of it), or -l SELECTOR: one
    file per pod, at most --parallel (8) at a time; Ctrl-C stops every running
    session gracefully (complete files) and starts no new one.

    \b
    Examples:
      kubectl dotnet-monitor trace web-7d4b9-x2x9z
      kubectl dotnet-monitor trace web-7d4b9-x2x9z --profile cpu,http --duration 1m -o traces/
      kubectl dotnet-monitor trace web-7d4b9-x2x9z --providers providers.yaml --duration 10s
      kubectl dotnet-monitor trace -l app=web --duration 20s --parallel 10 -o traces/
    """
    from kubectl_dotnet_monitor.artifacts.requests import trace_spec
    from kubectl_dotnet_monitor.cli.artifact_common import Target, run_file_artifact

    spec = trace_spec(profile, duration, providers_file)
    target = Target.take(ctx, None, kw)
    run_file_artifact(target, spec, **kw)
