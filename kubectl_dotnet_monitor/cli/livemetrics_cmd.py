"""``kubectl dotnet-monitor livemetrics POD``."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import duration_option, stream_options


@click.command()
@click.argument("pod")
@duration_option("30s", "How long to collect.")
@click.option("-f", "--follow", is_flag=True, default=False, help="Collect until Ctrl-C (no duration).")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one readable line per counter value; json: one JSON record a line.")
@stream_options
@click.pass_context
def livemetrics(ctx: click.Context, pod: str, duration: float, follow: bool, fmt: str, **kw: object) -> None:
    """Stream live counter values (CPU, GC, thread pool, requests...) of the .NET process in POD.

    Values arrive every counter interval (5 s by default), one line per counter:
    time, provider, counter (unit), value. Ctrl-C stops gracefully and exits 130.

    \b
    Examples:
      kubectl dotnet-monitor livemetrics web-7d4b9-x2x9z
      kubectl dotnet-monitor livemetrics web-7d4b9-x2x9z -f
      kubectl dotnet-monitor livemetrics web-7d4b9-x2x9z -o json --duration 1m > counters.ndjson
    """
    from kubectl_dotnet_monitor.artifacts.render import (
        JsonSeqDecoder,
        livemetric_line,
        ndjson_line,
    )
    from kubectl_dotnet_monitor.artifacts.requests import livemetrics_spec
    from kubectl_dotnet_monitor.cli.artifact_common import (
        Target,
        run_stream,
        stdout_writer,
    )

    spec = livemetrics_spec(duration, follow)
    target = Target.take(ctx, pod, kw)
    decoder = JsonSeqDecoder()
    write = stdout_writer()
    line = ndjson_line if fmt == "json" else lambda r: livemetric_line(r) if isinstance(r, dict) else ndjson_line(r)

    def render(data: bytes) -> None:
        out = [line(r) for r in decoder.feed(data)]
        if out:
            write("\n".join(out) + "\n")

    def finish() -> None:
        out = [line(r) for r in decoder.flush()]
        if out:
            write("\n".join(out) + "\n")

    run_stream(target, spec, render, finish=finish, **kw)
