"""Errors a user can act on, and the exit codes scripts can trust.

Every failure the plugin expects is one of the types below. Each carries a
message that says what went wrong *and what to do next*; the CLI prints
``error: <message>`` (plus the hint, if any) on stderr and exits with the
type's code. Anything else is a bug: the CLI prints a short line and, only
with ``-v``, the traceback.

The exit codes are part of the public interface (README, "Exit codes").
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes. Stable: scripts depend on them."""

    OK = 0
    FAILURE = 1  # unexpected error (a bug) or several causes at once
    USAGE = 2  # bad flags or arguments (click uses 2 as well)
    CONFIG = 3  # kubeconfig, context, credentials
    NOT_FOUND = 4  # pod, namespace, workload, process or operation not found
    FORBIDDEN = 5  # RBAC, Pod Security, 401/403 from the API or the monitor
    UNAVAILABLE = 6  # API server or tunnel unreachable, TLS failure, reset, stall, truncation
    NOT_READY = 7  # pod not running, cluster too old, pod not prepared, monitor failed to start
    MONITOR = 8  # dotnet-monitor refused or failed the request (400/404/406/500)
    BUSY = 9  # dotnet-monitor's concurrency limit (429): another collection is running
    OUTPUT = 10  # output path missing, read-only, exists, disk full
    PARTIAL = 11  # many pods: at least one failed, at least one succeeded
    INTERRUPTED = 130  # SIGINT (128 + 2)
    TERMINATED = 143  # SIGTERM (128 + 15)


class PluginError(Exception):
    """Base of every expected failure.

    ``message`` says what happened; ``hint`` says what to do about it.
    """

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class UsageError(PluginError):
    """A flag or argument is wrong or two of them conflict."""

    exit_code = ExitCode.USAGE


class ConfigError(PluginError):
    """Kubeconfig missing/invalid, unknown context, credential plugin failed."""

    exit_code = ExitCode.CONFIG


class NotFoundError(PluginError):
    """A named object (pod, namespace, workload, process, operation) does not exist."""

    exit_code = ExitCode.NOT_FOUND


class ForbiddenError(PluginError):
    """RBAC denied, Pod Security rejected, or authentication failed."""

    exit_code = ExitCode.FORBIDDEN


class UnavailableError(PluginError):
    """Could not reach or keep talking to the API server, the pod or the monitor."""

    exit_code = ExitCode.UNAVAILABLE


class NotReadyError(PluginError):
    """The target exists but cannot be used yet or at all (not running, unprepared, too old)."""

    exit_code = ExitCode.NOT_READY


class MonitorError(PluginError):
    """dotnet-monitor answered with an error."""

    exit_code = ExitCode.MONITOR


class BusyError(MonitorError):
    """dotnet-monitor's concurrency limit for this artifact is reached (HTTP 429)."""

    exit_code = ExitCode.BUSY


class OutputError(PluginError):
    """The artifact cannot be written where the user asked."""

    exit_code = ExitCode.OUTPUT


class Interrupted(PluginError):
    """The user (SIGINT) or the system (SIGTERM) stopped the command."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str = "interrupted", hint: str | None = None, signum: int = 2) -> None:
        super().__init__(message, hint)
        self.exit_code = ExitCode.TERMINATED if signum == 15 else ExitCode.INTERRUPTED
