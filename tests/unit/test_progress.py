"""Progress accounting and the byte loop."""

from __future__ import annotations

import io

import pytest

from kubectl_dotnet_monitor.artifacts.download import copy_body
from kubectl_dotnet_monitor.artifacts.progress import (
    SilentReporter,
    TqdmReporter,
    TransferStatus,
    format_duration,
    format_size,
    make_reporter,
)


@pytest.mark.parametrize(
    "n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (10 * 1024**3, "10.0 GiB")]
)
def test_format_size(n, text):
    assert format_size(n) == text


@pytest.mark.parametrize("s, text", [(0.42, "0.4s"), (59.9, "59.9s"), (245, "4m05s"), (3720, "1h02m")])
def test_format_duration(s, text):
    assert format_duration(s) == text


class ChunkedBody:
    def __init__(self, chunks):
        self.chunks = list(chunks)

    def read_into(self, buf):
        if not self.chunks:
            return 0
        data = self.chunks.pop(0)
        buf[: len(data)] = data
        return len(data)


class Recorder:
    def __init__(self):
        self.updates = []

    def waiting(self, what):
        pass

    def update(self, n):
        self.updates.append(n)

    def close(self):
        pass


def test_copy_body_copies_everything_and_counts():
    out = io.BytesIO()
    reporter = Recorder()
    status = copy_body(ChunkedBody([b"ab", b"cde", b"f"]), out, reporter)
    assert out.getvalue() == b"abcdef"
    assert status.bytes == 6 and reporter.updates == [2, 3, 1]
    assert status.first_byte is not None and status.finished is not None
    assert "6 B in" in status.summary()


def test_copy_body_propagates_errors():
    class Broken:
        def read_into(self, buf):
            raise ConnectionResetError("reset")

    with pytest.raises(ConnectionResetError):
        copy_body(Broken(), io.BytesIO(), SilentReporter())


def test_reporter_is_silent_when_not_a_terminal():
    assert isinstance(make_reporter("gcdump", io.StringIO()), SilentReporter)


def test_tqdm_reporter_draws_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    reporter = make_reporter("gcdump web-1", stream)
    assert isinstance(reporter, TqdmReporter)
    reporter.waiting("waiting for the GC heap walk")
    reporter.update(2048)
    reporter.close()
    text = stream.getvalue()
    assert "gcdump web-1" in text
    assert "waiting for the GC heap walk" in text
    assert "2.00kB" in text


def test_status_rate():
    status = TransferStatus(started=0.0)
    status.add(100)
    status.finished = 2.0
    assert status.rate == 50.0
