"""Output naming and the never-half-written artifact file."""

from __future__ import annotations

import errno
import io
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from kubectl_dotnet_monitor.artifacts.files import (
    TEMP_PREFIX,
    ArtifactFile,
    OutputTarget,
    default_artifact_name,
    filename_from_content_disposition,
    resolve_output,
    sanitize_filename,
)
from kubectl_dotnet_monitor.errors import ExitCode, OutputError, UsageError

NOW = datetime(2026, 11, 29, 10, 15, 0, tzinfo=timezone.utc)


def test_default_name_has_pod_pid_and_utc_time():
    assert default_artifact_name("web-7d4", 1, "gcdump", NOW) == "web-7d4_1_20261129_101500.gcdump"


def test_default_name_without_pid():
    assert default_artifact_name("web", None, ".txt", NOW) == "web_20261129_101500.txt"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("../../etc/passwd", "passwd"),
        ("a/b\\c.dmp", "c.dmp"),
        ("..", "artifact"),
        ("core 2026:01", "core_2026_01"),
        (".hidden", "hidden"),
    ],
)
def test_sanitize_filename(raw, expected):
    assert sanitize_filename(raw) == expected


@pytest.mark.parametrize(
    "header, expected",
    [
        ("attachment; filename=20261129_101500_1.gcdump", "20261129_101500_1.gcdump"),
        ('attachment; filename="core_20261129"', "core_20261129"),
        ("attachment; filename=../../x", "x"),
        ("attachment; filename*=UTF-8''a%20b.txt", "a_b.txt"),
        ("attachment", None),
        (None, None),
        ("attachment; filename=..", None),
    ],
)
def test_content_disposition(header, expected):
    assert filename_from_content_disposition(header) == expected


def test_resolve_default_goes_to_cwd(tmp_path):
    target = resolve_output(None, "a.gcdump", cwd=tmp_path)
    assert target.path == tmp_path / "a.gcdump"


def test_resolve_default_never_overwrites(tmp_path):
    (tmp_path / "a.gcdump").write_bytes(b"old")
    target = resolve_output(None, "a.gcdump", cwd=tmp_path)
    assert target.path == tmp_path / "a-1.gcdump"


def test_resolve_directory(tmp_path):
    (tmp_path / "out").mkdir()
    assert resolve_output("out", "a.gcdump", cwd=tmp_path).path == tmp_path / "out" / "a.gcdump"


def test_resolve_missing_directory_with_slash(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        resolve_output("nope/", "a.gcdump", cwd=tmp_path)


def test_resolve_file_in_missing_directory(tmp_path):
    with pytest.raises(OutputError, match="does not exist") as info:
        resolve_output("nope/x.gcdump", "a.gcdump", cwd=tmp_path)
    assert info.value.exit_code == ExitCode.OUTPUT


def test_resolve_existing_file_refused_unless_overwrite(tmp_path):
    (tmp_path / "x.gcdump").write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists") as info:
        resolve_output("x.gcdump", "a.gcdump", cwd=tmp_path)
    assert "--overwrite" in info.value.hint
    assert resolve_output("x.gcdump", "a.gcdump", cwd=tmp_path, overwrite=True).overwrite


def test_resolve_stdout(tmp_path):
    assert resolve_output("-", "a", cwd=tmp_path).is_stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_resolve_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(OutputError, match="cannot write"):
        resolve_output("ro/", "a", cwd=tmp_path)


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_commit_creates_0600_file_and_no_temp(tmp_path):
    target = OutputTarget(tmp_path / "a.gcdump")
    with ArtifactFile(target) as sink:
        sink.write(b"hello ")
        sink.write(memoryview(b"world"))
        final = sink.commit()
    assert final == tmp_path / "a.gcdump"
    assert final.read_bytes() == b"hello world"
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    assert _leftovers(tmp_path) == []


def test_temp_file_is_0600_while_writing(tmp_path):
    with ArtifactFile(OutputTarget(tmp_path / "a")):
        (temp,) = [p for p in tmp_path.iterdir()]
        assert temp.name.startswith(TEMP_PREFIX)
        assert stat.S_IMODE(temp.stat().st_mode) == 0o600


def test_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with ArtifactFile(OutputTarget(tmp_path / "a.gcdump")) as sink:
            sink.write(b"partial")
            raise RuntimeError("stream reset")
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with ArtifactFile(OutputTarget(tmp_path / "a.gcdump")) as sink:
            sink.write(b"partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_commit_never_clobbers_a_file_that_appeared(tmp_path):
    final = tmp_path / "a.gcdump"
    with ArtifactFile(OutputTarget(final)) as sink:
        sink.write(b"new")
        final.write_bytes(b"someone else's")
        with pytest.raises(OutputError, match="appeared while downloading"):
            sink.commit()
    assert final.read_bytes() == b"someone else's"
    assert _leftovers(tmp_path) == []


def test_overwrite_replaces(tmp_path):
    final = tmp_path / "a.gcdump"
    final.write_bytes(b"old")
    with ArtifactFile(OutputTarget(final, overwrite=True)) as sink:
        sink.write(b"new")
        sink.commit()
    assert final.read_bytes() == b"new"


def test_disk_full_is_an_output_error(tmp_path, monkeypatch):
    real_write = os.write

    def full(fd, data):
        if len(data) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    with pytest.raises(OutputError, match="disk full") as info:
        with ArtifactFile(OutputTarget(tmp_path / "a.gcdump")) as sink:
            monkeypatch.setattr(os, "write", full)
            sink.write(b"abc")
            sink.write(b"more than three")
    monkeypatch.undo()
    assert info.value.exit_code == ExitCode.OUTPUT
    assert list(tmp_path.iterdir()) == []


def test_stdout_sink_writes_bytes():
    out = io.BytesIO()
    with ArtifactFile(OutputTarget(None), stdout=out) as sink:
        sink.write(b"abc")
        assert sink.commit() is None
    assert out.getvalue() == b"abc"


def test_stdout_terminal_refused():
    class Tty(io.BytesIO):
        def isatty(self):
            return True

    with pytest.raises(UsageError, match="terminal"):
        ArtifactFile(OutputTarget(None), stdout=Tty()).open()


def test_large_writes_hand_data_to_writeback_and_stay_exact(tmp_path, monkeypatch):
    from kubectl_dotnet_monitor.artifacts import files

    monkeypatch.setattr(files, "WRITEBACK_WINDOW", 1024)
    calls = []
    real = os.posix_fadvise
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, adv: calls.append((off, n, adv)) or real(fd, off, n, adv))
    chunk = bytes(range(256)) * 4  # 1 KiB
    with ArtifactFile(OutputTarget(tmp_path / "big")) as sink:
        for _ in range(10):
            sink.write(chunk)
        sink.commit()
    assert (tmp_path / "big").read_bytes() == chunk * 10
    # Windows behind the most recent one are advised, in order, never past what was written.
    assert [c[0] for c in calls] == [i * 1024 for i in range(len(calls))]
    assert len(calls) == 9 and all(adv == os.POSIX_FADV_DONTNEED for _, _, adv in calls)
