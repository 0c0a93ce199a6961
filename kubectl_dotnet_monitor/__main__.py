"""Allow ``python -m kubectl_dotnet_monitor``."""

from kubectl_dotnet_monitor.cli import main

if __name__ == "__main__":
    main()
