"""The root command group and the error-to-exit-code boundary."""

from __future__ import annotations

import os
import sys

import click

from kubectl_dotnet_monitor import __version__
from kubectl_dotnet_monitor.cli.options import KUBE_FLAGS, kube_options
from kubectl_dotnet_monitor.errors import ExitCode, PluginError


def _prog_name() -> str:
    """Usage says ``kubectl dotnet-monitor`` when kubectl dispatched us (argv[0] is kubectl-…)."""
    base = os.path.basename(sys.argv[0] or "")
    if base.startswith("kubectl-"):
        return "kubectl " + base[len("kubectl-"):].replace("_", "-")
    return "kubectl dotnet-monitor"


class SectionedGroup(click.Group):
    """``--help`` lists commands by what they are for, as kubectl's own help does."""

    sections: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        placed: set[str] = set()
        for title, names in self.sections:
            rows = [(n, self.commands[n].get_short_help_str(limit=formatter.width - 22)) for n in names if n in self.commands]
            placed.update(names)
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        rest = [(n, c.get_short_help_str(limit=formatter.width - 22)) for n, c in sorted(self.commands.items()) if n not in placed]
        if rest:
            with formatter.section("Other Commands"):
                formatter.write_dl(rest)


@click.group(cls=SectionedGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@kube_options
@click.pass_context
def cli(ctx: click.Context, **flags: object) -> None:
    """Collect GC dumps, memory dumps, traces, logs and metrics from .NET pods.

    dotnet-monitor is injected into the pod as an ephemeral container when needed,
    reached through an inline port-forward, and the artifact is streamed to disk.

    \b
    Examples:
      kubectl dotnet-monitor gcdump mypod
      kubectl dotnet-monitor inject mypod -n shop
    """
    ctx.ensure_object(dict)
    ctx.obj["kube_flags"] = {name: flags.get(name) for name in KUBE_FLAGS}


@cli.command()
def version() -> None:
    """Print the plugin version.

    \b
    Example:
      kubectl dotnet-monitor version
    """
    click.echo(f"kubectl-dotnet_monitor {__version__}")


def _raise_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C (temporary files are removed) and exits 143."""
    import signal

    from kubectl_dotnet_monitor.errors import Interrupted

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted("terminated (SIGTERM)", signum=signum)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. embedded in tests): leave the default
        pass


def silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that no later flush (the interpreter flushes stdout
    at exit) fails on a closed pipe and turns a clean `| head` into an error exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def run(group: click.Group, argv: list[str] | None = None) -> int:
    """Run the CLI and turn every outcome into an exit code; never let a traceback out unless -v."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in args)
    _raise_on_sigterm()
    try:
        group.main(args=args, prog_name=_prog_name(), standalone_mode=False)
        return ExitCode.OK
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        return ExitCode.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return ExitCode.USAGE if exc.exit_code == 2 else exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except PluginError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(exc.hint, err=True)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # Reader went away (e.g. `| head`): not our failure.
        silence_stdout()
        return ExitCode.OK
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if verbose:
            import traceback

            traceback.print_exc()
        click.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
        click.echo("This is a bug in kubectl-dotnet_monitor; run again with -v and report the output.", err=True)
        return ExitCode.FAILURE


# Commands. Their modules import only click at the top; the work is imported when a command runs.
from kubectl_dotnet_monitor.cli.collectionrules_cmd import collectionrules  # noqa: E402
from kubectl_dotnet_monitor.cli.completion import register as register_completion  # noqa: E402
from kubectl_dotnet_monitor.cli.doctor_cmd import doctor  # noqa: E402
from kubectl_dotnet_monitor.cli.dump_cmd import dump  # noqa: E402
from kubectl_dotnet_monitor.cli.env_cmd import env  # noqa: E402
from kubectl_dotnet_monitor.cli.exceptions_cmd import exceptions  # noqa: E402
from kubectl_dotnet_monitor.cli.gcdump_cmd import gcdump  # noqa: E402
from kubectl_dotnet_monitor.cli.info_cmd import info  # noqa: E402
from kubectl_dotnet_monitor.cli.inject_cmd import inject  # noqa: E402
from kubectl_dotnet_monitor.cli.livemetrics_cmd import livemetrics  # noqa: E402
from kubectl_dotnet_monitor.cli.logs_cmd import logs  # noqa: E402
from kubectl_dotnet_monitor.cli.metrics_cmd import metrics  # noqa: E402
from kubectl_dotnet_monitor.cli.operations_cmd import operations  # noqa: E402
from kubectl_dotnet_monitor.cli.parameters_cmd import parameters  # noqa: E402
from kubectl_dotnet_monitor.cli.prepare_cmd import prepare  # noqa: E402
from kubectl_dotnet_monitor.cli.processes_cmd import processes  # noqa: E402
from kubectl_dotnet_monitor.cli.rbac_cmd import rbac  # noqa: E402
from kubectl_dotnet_monitor.cli.rules_cmd import rules  # noqa: E402
from kubectl_dotnet_monitor.cli.stacks_cmd import stacks  # noqa: E402
from kubectl_dotnet_monitor.cli.trace_cmd import trace  # noqa: E402

cli.sections = (
    ("Collect Commands", ("gcdump", "dump", "trace", "logs", "metrics", "livemetrics", "stacks", "exceptions", "parameters")),
    ("Inspect Commands", ("processes", "info", "env", "collectionrules", "operations")),
    ("Set-up Commands", ("inject", "doctor", "prepare", "rbac", "rules")),
)
for _command in (gcdump, dump, trace, logs, metrics, livemetrics, stacks, exceptions, parameters,
                 processes, info, env, collectionrules, operations, inject, doctor, prepare, rbac, rules):
    cli.add_command(_command)
register_completion(cli)
