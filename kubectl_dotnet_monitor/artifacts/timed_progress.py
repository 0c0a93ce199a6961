"""Progress for timed sessions (trace: elapsed of the duration, then rundown) and a spinner for
operations that run elsewhere (egress). Drawn on stderr only when it is a terminal."""

from __future__ import annotations

import threading
import time
from typing import IO

from kubectl_dotnet_monitor.artifacts.progress import (
    TqdmReporter,
    format_duration,
    format_size,
)


def session_phase(elapsed: float, duration: float, received: int, at_end: int | None) -> str:
    """PURE: ``"12s of 30s"`` during the session, then ``"rundown 1.2 MiB"`` (bytes since it ended)."""
    if elapsed < duration:
        return f"{format_duration(elapsed)} of {format_duration(duration)}"
    extra = received - (at_end if at_end is not None else received)
    return f"rundown {format_size(extra)}" if extra else "rundown (finishing the trace)"


class TimedTqdmReporter(TqdmReporter):
    """The byte bar plus the session's phase as postfix, refreshed while the stream is quiet."""

    def __init__(self, label: str, stream: IO[str], duration: float) -> None:
        self._duration = duration
        self._t0 = time.monotonic()
        self._received = 0
        self._at_end: int | None = None
        super().__init__(label, stream)

    def _phase(self) -> str:
        elapsed = time.monotonic() - self._t0
        if elapsed >= self._duration and self._at_end is None:
            self._at_end = self._received
        return session_phase(elapsed, self._duration, self._received, self._at_end)

    def _refresh(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                self._bar.set_postfix_str(self._phase(), refresh=False)
                self._bar.refresh()

    def waiting(self, what: str) -> None:
        with self._lock:
            self._t0 = time.monotonic()
            self._bar.set_postfix_str(what, refresh=True)

    def update(self, n: int) -> None:
        with self._lock:
            self._received += n
            self._bar.set_postfix_str(self._phase(), refresh=False)
            self._bar.update(n)


class Spinner:
    """``⠋ gcdump to egress 'store': Running 4.2s`` on a terminal; silent elsewhere."""

    FRAMES = "|/-\\"

    def __init__(self, label: str, stream: IO[str], *, quiet: bool = False) -> None:
        self._label = label
        self._stream = stream
        self._state = "Starting"
        self._t0 = time.monotonic()
        self._active = not quiet and bool(getattr(stream, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._active:
            self._thread = threading.Thread(target=self._run, name="egress-spinner", daemon=True)
            self._thread.start()

    def update(self, state: str) -> None:
        self._state = state

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(0.1):
            elapsed = format_duration(time.monotonic() - self._t0)
            self._stream.write(f"\r{self.FRAMES[i % 4]} {self._label}: {self._state} {elapsed}\x1b[K")
            self._stream.flush()
            i += 1

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2)
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._thread = None
