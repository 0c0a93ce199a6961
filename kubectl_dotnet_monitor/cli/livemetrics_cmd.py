"""``kubectl dotnet-monitor livemetrics TARGET`` (a pod, one pod of a workload, or many pods)."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import duration_option, stream_options


@click.command()
@duration_option("30s", "How long to collect.")
@click.option("-f", "--follow", is_flag=True, default=False, help="Collect until Ctrl-C (no duration).")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one readable line per counter value; json: one JSON record a line.")
@stream_options
@click.pass_context
def livemetrics(ctx: click.Context, duration: float, follow: bool, fmt: str, **kw: object) -> None:
    """Stream live counter values (CPU, GC, thread pool, requests...) of the .NET process in a pod (or many).

    Values arrive every counter interval (5 s by default), one line per counter:
    time, provider, counter (unit), value. Ctrl-C stops gracefully and exits 130.

    TARGET is a pod (POD or pod/NAME), a workload (deploy/NAME... with --all:
    every running pod of it) or -l SELECTOR; with several pods every pod runs at
    once and each line is prefixed [pod/NAME].

    \b
    Examples:
      kubectl dotnet-monitor livemetrics web-7d4b9-x2x9z
      kubectl dotnet-monitor livemetrics web-7d4b9-x2x9z -f
      kubectl dotnet-monitor livemetrics web-7d4b9-x2x9z -o json --duration 1m > counters.ndjson
      kubectl dotnet-monitor livemetrics deploy/web --all --duration 30s
    """
    from kubectl_dotnet_monitor.artifacts.render import (
        JsonSeqDecoder,
        livemetric_line,
        ndjson_line,
    )
    from kubectl_dotnet_monitor.artifacts.requests import livemetrics_spec
    from kubectl_dotnet_monitor.cli.artifact_common import Target, run_stream

    spec = livemetrics_spec(duration, follow)
    target = Target.take(ctx, None, kw)
    line = ndjson_line if fmt == "json" else lambda r: livemetric_line(r) if isinstance(r, dict) else ndjson_line(r)

    def make_render(write: object) -> tuple:
        decoder = JsonSeqDecoder()  # one per pod: each stream is its own JSON sequence

        def render(data: bytes) -> None:
            out = [line(r) for r in decoder.feed(data)]
            if out:
                write("\n".join(out) + "\n")

        def finish() -> None:
            out = [line(r) for r in decoder.flush()]
            if out:
                write("\n".join(out) + "\n")

        return render, finish

    run_stream(target, spec, make_render, **kw)
