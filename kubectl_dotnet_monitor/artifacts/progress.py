"""How a transfer is shown. The byte loop only calls a :class:`ProgressReporter`.

``TransferStatus`` counts; reporters draw. On a terminal a tqdm bar on stderr shows bytes,
rate and elapsed time (dotnet-monitor sends no Content-Length, so there is no total) and,
before the first byte, what we are waiting for. Elsewhere nothing is drawn. Either way a
one-line summary (size, time, rate) ends the transfer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import IO, Protocol


def format_size(n: float) -> str:
    """Human bytes with binary units: ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``0.4s``, ``12.3s``, ``4m05s``, ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@dataclass
class TransferStatus:
    """Bytes and timings of one transfer (monotonic clock)."""

    started: float = field(default_factory=time.monotonic)
    first_byte: float | None = None
    finished: float | None = None
    bytes: int = 0

    def add(self, n: int) -> None:
        if self.first_byte is None and n:
            self.first_byte = time.monotonic()
        self.bytes += n

    def finish(self) -> None:
        self.finished = time.monotonic()

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        """Bytes per second over the whole transfer, waiting included."""
        return self.bytes / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        return f"{format_size(self.bytes)} in {format_duration(self.elapsed)} ({format_size(self.rate)}/s)"


class ProgressReporter(Protocol):
    """What the data path tells the user interface."""

    def waiting(self, what: str) -> None: ...  # before the first byte (may take minutes)

    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


class SilentReporter:
    """No drawing (stderr is not a terminal, or --quiet)."""

    def waiting(self, what: str) -> None:
        pass

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class TqdmReporter:
    """A tqdm bar on ``stream``; a refresher thread keeps the elapsed time moving while idle."""

    def __init__(self, label: str, stream: IO[str], position: int | None = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            desc=label,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=stream,
            position=position,
            leave=position is None,
            dynamic_ncols=True,
            mininterval=0.2,
            bar_format="{desc}: {n_fmt}{unit} [{elapsed}, {rate_fmt}]{postfix}",
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="progress-refresh", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                self._bar.refresh()

    def waiting(self, what: str) -> None:
        with self._lock:
            self._bar.set_postfix_str(what, refresh=True)

    def update(self, n: int) -> None:
        with self._lock:
            if self._bar.postfix:
                self._bar.set_postfix_str("", refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            self._bar.close()


def make_reporter(label: str, stream: IO[str], *, quiet: bool = False, position: int | None = None) -> ProgressReporter:
    """A bar when ``stream`` is a terminal and not ``quiet``; otherwise silence."""
    if quiet or not getattr(stream, "isatty", lambda: False)():
        return SilentReporter()
    return TqdmReporter(label, stream, position=position)
