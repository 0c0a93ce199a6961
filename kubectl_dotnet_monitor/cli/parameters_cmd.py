"""``kubectl dotnet-monitor parameters TARGET`` (a pod, one pod of a workload, or many pods)."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.artifact_common import (
    duration_option,
    in_process_option,
    stream_options,
)


@click.command()
@click.option("--method", "methods", multiple=True, metavar="MODULE!TYPE.METHOD", required=True,
              help="A method whose parameters to capture, e.g. MyApp.dll!MyApp.Orders.OrderService.Place "
                   "(repeatable).")
@duration_option("30s", "How long to capture.")
@click.option("-f", "--follow", is_flag=True, default=False, help="Capture until Ctrl-C (no duration).")
@click.option("--limit", "capture_limit", type=int, default=None, help="Stop after this many calls.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one call a line; json: one JSON record a call.")
@in_process_option
@stream_options
@click.pass_context
def parameters(ctx: click.Context, methods: tuple[str, ...], duration: float, follow: bool,
               capture_limit: int | None, fmt: str, **kw: object) -> None:
    """Capture the parameters of calls to chosen methods in the .NET process in a pod (experimental).

    Each call prints as it happens. Needs dotnet-monitor's in-process features
    with parameter capturing (Listen mode; see --enable-in-process-features).
    dotnet-monitor documents it as unsupported for apps whose diagnostic port
    is `nosuspend`. Ctrl-C stops gracefully and exits 130.

    TARGET is a pod (POD or pod/NAME), a workload (deploy/NAME... with --all:
    every running pod of it) or -l SELECTOR; with several pods every pod runs at
    once and each line is prefixed [pod/NAME].

    \b
    Examples:
      kubectl dotnet-monitor parameters web-7d4b9-x2x9z --method 'Web.dll!Web.OrderService.Place'
      kubectl dotnet-monitor parameters web-7d4b9-x2x9z --method 'Web.dll!Web.Cart.Add' -f -o json
    """
    from kubectl_dotnet_monitor.artifacts.requests import parameters_spec
    from kubectl_dotnet_monitor.cli.artifact_common import (
        Target,
        passthrough,
        run_stream,
    )

    spec = parameters_spec(methods, duration, follow, fmt == "json", capture_limit)
    target = Target.take(ctx, None, kw)
    run_stream(target, spec, passthrough, **kw)
