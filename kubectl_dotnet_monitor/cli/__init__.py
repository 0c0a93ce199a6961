"""Command line: click parses, the layers below work, errors become exit codes.

Only click is imported at start-up; every command imports what it needs when it runs,
so ``--help`` stays instant.
"""

from __future__ import annotations

import sys

from kubectl_dotnet_monitor import __version__
from kubectl_dotnet_monitor.cli.app import cli, run, silence_stdout


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``kubectl-dotnet_monitor``)."""
    code = run(cli, argv)
    try:
        sys.stdout.flush()  # now, while a closed pipe can still be handled
    except BrokenPipeError:
        silence_stdout()
    except (OSError, ValueError):
        pass
    sys.exit(code)


__all__ = ["cli", "main", "__version__"]
