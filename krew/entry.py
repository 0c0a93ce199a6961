"""Entry script of the release executable (PyInstaller analyses this file).

One executable, two names: run as ``kubectl-dotnet_monitor`` it is the plugin; run through a link or
copy named ``kubectl_complete-dotnet_monitor`` (``.exe`` on Windows) it is kubectl's completion
helper (kubectl >= 1.26). krew links only the first name, so the second is the user's one-line
install step (``kubectl dotnet-monitor completion --help``).
"""

import os
import sys


def _main() -> None:
    name = os.path.basename(sys.argv[0] or "").lower()
    if name.startswith("kubectl_complete-"):
        from kubectl_dotnet_monitor.cli.completion import complete_main

        complete_main()
    else:
        from kubectl_dotnet_monitor.cli import main

        main()


if __name__ == "__main__":
    _main()
