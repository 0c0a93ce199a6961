"""Where an artifact goes: names, output resolution, and a file that appears only when complete.

Artifacts hold process memory (secrets, tokens, personal data), so files are created 0600.
A download writes to a hidden temporary file in the target directory and is renamed to its
final name only after the last byte arrived; any failure or interruption removes the
temporary file, so nothing half-written ever carries a final name.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from kubectl_dotnet_monitor.errors import OutputError, UsageError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
TEMP_PREFIX = ".kubectl-dotnet-monitor-"
TEMP_SUFFIX = ".partial"
#: Written data is handed to the kernel's writeback in windows of this size while the download runs,
#: so the fsync before the rename only waits for the tail (and a 10 GiB dump does not fill the cache).
WRITEBACK_WINDOW = 64 << 20


def sanitize_filename(name: str, fallback: str = "artifact") -> str:
    """A name that is safe as a single path component: no separators, no leading dots."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).strip("._")
    return cleaned[:200] or fallback


def default_artifact_name(pod: str, pid: int | str | None, extension: str, now: datetime | None = None) -> str:
    """``<pod>_<pid>_<UTC yyyymmdd_HHMMSS>.<extension>``, e.g. ``web-7d4_1_20261129_101500.gcdump``."""
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    parts = [pod] + ([str(pid)] if pid is not None else []) + [when.strftime("%Y%m%d_%H%M%S")]
    return sanitize_filename("_".join(parts) + "." + extension.lstrip("."))


def filename_from_content_disposition(header: str | None) -> str | None:
    """The sanitized ``filename`` of a Content-Disposition header, or None."""
    if not header:
        return None
    match = re.search(r"filename\*=(?:UTF-8'')?([^;]+)", header, re.IGNORECASE) or re.search(
        r'filename="?([^";]+)"?', header, re.IGNORECASE
    )
    if not match:
        return None
    from urllib.parse import unquote

    return sanitize_filename(unquote(match.group(1).strip()), fallback="") or None


@dataclass(frozen=True)
class OutputTarget:
    """Where to write: a final path, or standard output (``path is None``)."""

    path: Path | None
    overwrite: bool = False

    @property
    def is_stdout(self) -> bool:
        return self.path is None


def resolve_output(output: str | None, default_name: str, *, overwrite: bool = False, cwd: Path | None = None) -> OutputTarget:
    """Turn ``-o`` into a target, checking what can be checked before anything is collected.

    ``None`` → ``default_name`` in the current directory; ``-`` → stdout; an existing directory
    (or a path ending in ``/``) → ``default_name`` inside it; anything else → that file, whose
    directory must exist. An existing file is never replaced unless ``overwrite``.
    """
    base = cwd or Path.cwd()
    if output == "-":
        return OutputTarget(None)
    if output is None:
        path = base / default_name
        if path.exists() and not overwrite:
            path = unique_path(path)
    else:
        given = Path(output).expanduser()
        given = given if given.is_absolute() else base / given
        if output.endswith(("/", os.sep)) or given.is_dir():
            if not given.is_dir():
                raise OutputError(
                    f"output directory {given} does not exist",
                    "create it first, or pass an existing directory or a file name to -o",
                )
            path = given / default_name
            if path.exists() and not overwrite:
                path = unique_path(path)
        else:
            path = given
            if not path.parent.is_dir():
                raise OutputError(
                    f"output directory {path.parent} does not exist",
                    "create it first, or pass -o with a path in an existing directory",
                )
            if path.exists() and not overwrite:
                raise OutputError(
                    f"{path} already exists",
                    "choose another name with -o, or pass --overwrite to replace it",
                )
    directory = path.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write to {directory}: permission denied (or read-only)",
            "choose a writable directory with -o",
        )
    return OutputTarget(path, overwrite=overwrite)


def unique_path(path: Path) -> Path:
    """``name.ext`` → ``name-1.ext``, ``name-2.ext``… the first that does not exist."""
    stem, suffix = path.stem, path.suffix
    for i in range(1, 10_000):
        candidate = path.with_name(f"{stem}-{i}{suffix}")
        if not candidate.exists():
            return candidate
    raise OutputError(f"too many files named like {path}", "clean up the directory or pass -o")


class ArtifactFile:
    """A sink that becomes ``target.path`` only on :meth:`commit`.

    Use as a context manager: leaving the block without ``commit()`` (an exception, Ctrl-C)
    deletes the temporary file. Writing to stdout is supported too (``target.is_stdout``);
    then there is nothing to rename or remove.
    """

    def __init__(self, target: OutputTarget, *, stdout: BinaryIO | None = None) -> None:
        self.target = target
        self.bytes_written = 0
        self._temp: Path | None = None
        self._fd: int | None = None
        self._written_back = 0  # bytes already handed to writeback
        self._stdout = stdout

    def open(self) -> "ArtifactFile":
        """Create the temporary file (0600) next to the final one; fail early if we cannot."""
        if self.target.is_stdout:
            out = self._stdout or sys.stdout.buffer
            if hasattr(out, "isatty") and out.isatty():
                raise UsageError(
                    "refusing to write a binary artifact to a terminal",
                    "redirect standard output to a file or a pipe, or drop '-o -'",
                )
            self._stdout = out
            return self
        assert self.target.path is not None
        directory = self.target.path.parent
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        for attempt in range(100):
            temp = directory / f"{TEMP_PREFIX}{self.target.path.name}.{os.getpid()}-{attempt}{TEMP_SUFFIX}"
            try:
                self._fd = os.open(temp, flags, 0o600)
                self._temp = temp
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise _output_error(exc, directory) from exc
        else:  # pragma: no cover - 100 collisions means something else is wrong
            raise OutputError(f"cannot create a temporary file in {directory}")
        return self

    def write(self, data: bytes | memoryview) -> None:
        """Write all of ``data``; a full disk becomes an :class:`OutputError`."""
        try:
            if self._fd is not None:
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
            else:
                assert self._stdout is not None
                self._stdout.write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            where = self.target.path.parent if self.target.path else Path("stdout")
            raise _output_error(exc, where, self.bytes_written) from exc
        self.bytes_written += len(data)
        if self._fd is not None and self.bytes_written - self._written_back >= 2 * WRITEBACK_WINDOW:
            self._start_writeback()

    def _start_writeback(self) -> None:
        # POSIX_FADV_DONTNEED starts asynchronous writeback of the range (Linux) and drops it from
        # the page cache once clean. The most recent window is left alone: it is still being written.
        advise = getattr(os, "posix_fadvise", None)
        if advise is not None:
            try:
                advise(self._fd, self._written_back, WRITEBACK_WINDOW, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass  # only an optimisation
        self._written_back += WRITEBACK_WINDOW

    def commit(self) -> Path | None:
        """Flush and give the file its final name without ever replacing a file silently."""
        if self._fd is None:
            if self._stdout is not None:
                self._stdout.flush()
            return None
        assert self._temp is not None and self.target.path is not None
        final = self.target.path
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            if self.target.overwrite:
                os.replace(self._temp, final)
            else:
                self._link_no_clobber(self._temp, final)
        except OutputError:
            raise
        except OSError as exc:
            raise _output_error(exc, final.parent, self.bytes_written) from exc
        self._temp = None
        return final

    @staticmethod
    def _link_no_clobber(temp: Path, final: Path) -> None:
        # A hard link fails if `final` appeared meanwhile: atomic, never overwrites.
        try:
            os.link(temp, final)
        except FileExistsError:
            raise OutputError(
                f"{final} appeared while downloading; the artifact was not saved over it",
                "choose another name with -o, or pass --overwrite",
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
                raise
            if final.exists():  # filesystems without hard links: best effort check
                raise OutputError(f"{final} already exists", "pass --overwrite to replace it") from None
            os.rename(temp, final)
            return
        os.unlink(temp)

    def discard(self) -> None:
        """Remove the temporary file (idempotent)."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if self._temp is not None:
            try:
                os.unlink(self._temp)
            except FileNotFoundError:
                pass
            self._temp = None

    def __enter__(self) -> "ArtifactFile":
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.discard()


def _output_error(exc: OSError, where: Path, written: int | None = None) -> OutputError:
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1):
        done = f" after {written} bytes" if written is not None else ""
        return OutputError(
            f"disk full writing to {where}{done}; the partial file was removed",
            "free some space or choose another directory with -o",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write to {where}: {exc.strerror}", "choose a writable directory with -o")
    if exc.errno == errno.ENOENT:
        return OutputError(f"{where} does not exist", "create it first or choose another -o")
    return OutputError(f"cannot write to {where}: {exc.strerror or exc}")
