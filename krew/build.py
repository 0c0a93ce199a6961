#!/usr/bin/env python3
"""Build the krew release archive for this machine's platform, reproducibly.

    python3 krew/build.py                    # onefile executable -> dist/krew/<archive> + .sha256
    python3 krew/build.py --render-manifest  # ... then re-render plugin.yaml from dist/krew/
    python3 krew/build.py --kind zipapp      # the zipapp variant (comparison only, see PACKAGING.md)

Standard library only, so any ``python3`` >= 3.10 can run it from a clean checkout. Steps:

1. a throw-away venv under ``build/krew/`` with the pinned tools and runtime dependencies of
   ``krew/requirements-build.txt`` (keyed on that file's hash + the interpreter, so reused);
2. PyInstaller ``--onefile`` on ``krew/entry.py`` with ``PYTHONHASHSEED=0`` and
   ``SOURCE_DATE_EPOCH`` fixed (last commit time by default). The executable is cached under
   ``build/krew/cache/<source hash>/`` so the test suite builds once per source state;
3. a tar.gz (zip for Windows) with the executable (0755) and LICENSE (0644) at the root: sorted
   entries, mtime = SOURCE_DATE_EPOCH, uid/gid 0, no user/group names, gzip header without name
   or time -- the same inputs give the same SHA-256.

PyInstaller cannot cross-build: the archive is for the host only (the release workflow runs this
on one native runner per platform).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "krew" / "requirements-build.txt"
ENTRY = ROOT / "krew" / "entry.py"
PACKAGE = "kubectl_dotnet_monitor"
PROJECT = "kubectl-dotnet-monitor"
EXE_STEM = "kubectl-dotnet_monitor"  # what kubectl looks for on PATH; krew links the same name
DEFAULT_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can carry

# The targets we ship (krew os/arch names); PACKAGING.md explains the choice.
TARGETS = (
    ("linux", "amd64"),
    ("linux", "arm64"),
    ("darwin", "amd64"),
    ("darwin", "arm64"),
    ("windows", "amd64"),
)

# Runtime dependencies the plugin imports lazily inside functions; listed so the executable does
# not depend on static analysis finding every late import. `kubernetes` stays out on purpose.
HIDDEN_IMPORTS = (
    "click",
    "yaml",
    "urllib3",
    "tqdm",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "cryptography.hazmat.primitives.serialization",
    "cryptography.hazmat.primitives.hashes",
)
EXCLUDED_MODULES = ("kubernetes", "tests", "pytest", "_pytest", "tkinter", "setuptools", "pip")


# ----------------------------------------------------------------------------- small pure helpers


def plugin_version(root: Path = ROOT) -> str:
    """``__version__`` of the package, read without importing it (the build must not need deps)."""
    text = (root / PACKAGE / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
    if not match:
        raise SystemExit(f"error: no __version__ in {root / PACKAGE / '__init__.py'}")
    return match.group(1)


def host_target() -> tuple[str, str]:
    """This machine as a krew (os, arch) pair."""
    system = {"linux": "linux", "darwin": "darwin", "windows": "windows"}.get(platform.system().lower())
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if system is None or arch is None:
        raise SystemExit(f"error: unsupported build host {platform.system()}/{platform.machine()}")
    return system, arch


def exe_name(target_os: str) -> str:
    """File name of the executable inside the archive (and krew's ``bin``)."""
    return EXE_STEM + (".exe" if target_os == "windows" else "")


def archive_name(version: str, target_os: str, arch: str) -> str:
    """``kubectl-dotnet-monitor_v0.1.0_linux_amd64.tar.gz`` (``.zip`` for Windows)."""
    ext = "zip" if target_os == "windows" else "tar.gz"
    return f"{PROJECT}_v{version}_{target_os}_{arch}.{ext}"


def sha256_file(path: Path) -> str:
    """Lower-case hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_date_epoch(root: Path = ROOT, env: dict[str, str] | None = None) -> int:
    """``SOURCE_DATE_EPOCH`` if set, else the last commit's time, else 1980-01-01."""
    env = os.environ if env is None else env
    if env.get("SOURCE_DATE_EPOCH", "").strip():
        return int(env["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%ct"],
            capture_output=True, text=True, check=True, timeout=20,
        ).stdout.strip()
        return int(out) if out else DEFAULT_EPOCH
    except (OSError, subprocess.SubprocessError, ValueError):
        return DEFAULT_EPOCH


def source_files(root: Path = ROOT) -> list[Path]:
    """Every file whose bytes end up in (or decide) the executable, sorted."""
    files = sorted(p for p in (root / PACKAGE).rglob("*.py") if "__pycache__" not in p.parts)
    return files + [ENTRY, Path(__file__).resolve(), REQUIREMENTS, root / "LICENSE"]


def source_hash(kind: str, root: Path = ROOT) -> str:
    """Cache key of a build: sources, tool pins, interpreter and platform."""
    digest = hashlib.sha256()
    digest.update(f"{kind}|{sys.version}|{platform.platform()}|{sys.executable}".encode())
    for path in source_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


# ----------------------------------------------------------------------------- archives


def write_tar_gz(out: Path, members: list[tuple[str, Path, int]], mtime: int) -> None:
    """A deterministic tar.gz: entries sorted by name, fixed mtime/uid/gid, no owner names.

    ``members`` are (name in archive, source file, mode). Only regular files are written, so the
    archive satisfies krew's "regular files and directories only" rule by construction.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for arcname, src, mode in sorted(members):
            if not src.is_file() or src.is_symlink():
                raise SystemExit(f"error: {src} is not a regular file")
            info = tarfile.TarInfo(arcname)
            info.size = src.stat().st_size
            info.mtime = mtime
            info.mode = mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            with open(src, "rb") as fh:
                tar.addfile(info, fh)
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as fh:
        # filename="" and mtime=0 keep the gzip header free of the path and the build time.
        with gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=9, mtime=0) as gz:
            gz.write(raw.getvalue())
    os.replace(tmp, out)


def write_zip(out: Path, members: list[tuple[str, Path, int]], mtime: int) -> None:
    """A deterministic zip (Windows archives): sorted entries, fixed timestamps, unix modes."""
    stamp = time.gmtime(max(mtime, DEFAULT_EPOCH))[:6]
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for arcname, src, mode in sorted(members):
            if not src.is_file() or src.is_symlink():
                raise SystemExit(f"error: {src} is not a regular file")
            info = zipfile.ZipInfo(arcname, date_time=stamp)
            info.create_system = 3  # unix, so external_attr carries the mode
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, src.read_bytes(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    os.replace(tmp, out)


def package(exe: Path, out_dir: Path, version: str, target_os: str, arch: str, mtime: int,
            license_file: Path = ROOT / "LICENSE") -> Path:
    """Write the release archive and ``<archive>.sha256`` (sha256sum format); return the archive."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / archive_name(version, target_os, arch)
    members = [(exe_name(target_os), exe, 0o755), ("LICENSE", license_file, 0o644)]
    if target_os == "windows":
        write_zip(out, members, mtime)
    else:
        write_tar_gz(out, members, mtime)
    (out_dir / (out.name + ".sha256")).write_text(f"{sha256_file(out)}  {out.name}\n", encoding="utf-8")
    return out


# ----------------------------------------------------------------------------- build steps


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    with open(log, "ab") as fh:
        fh.write(("\n$ " + " ".join(cmd) + "\n").encode())
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise SystemExit(f"error: {cmd[0]} failed (exit {proc.returncode}); end of {log}:\n{tail}")


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_build_venv(build_dir: Path, python: str = sys.executable) -> Path:
    """The pinned build venv (created once per requirements file + interpreter); its python."""
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode() + python.encode()).hexdigest()[:16]
    venv = build_dir / f"venv-{key}"
    py = venv_python(venv)
    if (venv / ".complete").exists() and py.exists():
        return py
    if venv.exists():
        shutil.rmtree(venv)
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "venv.log"
    log.write_text("")
    print(f"creating build venv {venv} ...", file=sys.stderr)
    _run([python, "-m", "venv", str(venv)], log)
    _run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
          "-r", str(REQUIREMENTS)], log)
    _normalize_records(venv)
    (venv / ".complete").write_text("ok\n")
    return py


def _normalize_records(venv: Path) -> None:
    """Drop RECORD lines for files outside site-packages (console scripts).

    Those scripts start with the venv's absolute interpreter path, so their hashes in RECORD differ
    per checkout location; PyInstaller bundles some dist-info directories (tqdm's), which made the
    executable depend on where the repository was cloned.
    """
    for record in venv.glob("**/site-packages/*.dist-info/RECORD"):
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith("../")]
        if kept != lines:
            record.write_text("".join(kept), encoding="utf-8")


def build_env(epoch: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": str(epoch), "PYTHONDONTWRITEBYTECODE": "1"})
    env.pop("PYTHONPATH", None)
    return env


class _BuildLock:
    """An exclusive lock on ``build_dir`` so parallel test runs do not share a work dir."""

    def __init__(self, build_dir: Path) -> None:
        build_dir.mkdir(parents=True, exist_ok=True)
        self.path = build_dir / ".lock"
        self.fh = None

    def __enter__(self) -> "_BuildLock":
        self.fh = open(self.path, "a+")
        try:
            import fcntl

            fcntl.flock(self.fh, fcntl.LOCK_EX)
        except ImportError:  # Windows runner: one build at a time anyway
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()  # closing releases the lock


def build_onefile(build_dir: Path, epoch: int, python: str = sys.executable) -> Path:
    """The PyInstaller ``--onefile`` executable for this host (cached by source hash)."""
    with _BuildLock(build_dir):
        return _build_onefile(build_dir, epoch, python)


def _build_onefile(build_dir: Path, epoch: int, python: str) -> Path:
    target_os, _ = host_target()
    cache = build_dir / "cache" / f"onefile-{source_hash('onefile')}-{epoch}"
    exe = cache / exe_name(target_os)
    if exe.is_file():
        return exe
    py = ensure_build_venv(build_dir, python)
    work = build_dir / "pyinstaller"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log = build_dir / "pyinstaller.log"
    log.write_text("")
    cmd = [str(py), "-m", "PyInstaller", "--onefile", "--noconfirm", "--clean", "--log-level", "WARN",
           "--name", EXE_STEM, "--paths", str(ROOT),
           "--distpath", str(work / "dist"), "--workpath", str(work / "work"), "--specpath", str(work),
           "--collect-submodules", PACKAGE]
    if target_os == "linux":
        # Debug symbols of libpython and friends: -9 MB and ~20 % less start-up (every run of a
        # onefile executable unpacks its libraries). Not on Windows (PyInstaller advises against)
        # nor macOS (stripping after ad-hoc signing invalidates the signature on arm64).
        cmd.append("--strip")
    for mod in HIDDEN_IMPORTS:
        cmd += ["--hidden-import", mod]
    for mod in EXCLUDED_MODULES:
        cmd += ["--exclude-module", mod]
    cmd.append(str(ENTRY))
    print("building the executable with PyInstaller ...", file=sys.stderr)
    _run(cmd, log, env=build_env(epoch), cwd=work)
    built = work / "dist" / exe_name(target_os)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / (exe.name + ".part")
    shutil.copyfile(built, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, exe)
    _prune_cache(build_dir / "cache", "onefile-", keep=cache)
    return exe


def _prune_cache(cache_root: Path, prefix: str, keep: Path, limit: int = 3) -> None:
    """Keep the newest ``limit`` cached builds of one kind (each is ~15-25 MB)."""
    entries = sorted((p for p in cache_root.glob(prefix + "*") if p.is_dir() and p != keep),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[limit - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def build_zipapp(build_dir: Path, epoch: int, python: str = sys.executable) -> Path:
    """The zipapp variant (see :func:`_build_zipapp`), under the build lock."""
    with _BuildLock(build_dir):
        return _build_zipapp(build_dir, epoch, python)


def _build_zipapp(build_dir: Path, epoch: int, python: str) -> Path:
    """The zipapp variant: plugin + pure-Python runtime deps, ``#!/usr/bin/env python3``.

    Deterministic like the archives. Compiled dependencies (cryptography, cffi, PyYAML's C
    loader) cannot be imported from inside a zip, so they are left out: commands that need them
    fail in this variant. It exists to measure the alternative, not to ship.
    """
    cache = build_dir / "cache" / f"zipapp-{source_hash('zipapp')}-{epoch}"
    pyz = cache / f"{EXE_STEM}.pyz"
    if pyz.is_file():
        return pyz
    py = ensure_build_venv(build_dir, python)
    site = cache / "site"
    if cache.exists():
        shutil.rmtree(cache)
    site.mkdir(parents=True)
    log = build_dir / "zipapp.log"
    log.write_text("")
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        name = line.split("#")[0].strip()
        if "==" in name:
            pins[name.split("==")[0].lower()] = name
    pure = [pins[n] for n in ("click", "tqdm", "urllib3", "pyyaml")]
    _run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-deps",
          "--no-compile", "--target", str(site), *pure], log)
    shutil.copytree(ROOT / PACKAGE, site / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    (site / "__main__.py").write_text(
        "import os, sys\n"
        "if os.path.basename(sys.argv[0]).lower().startswith('kubectl_complete-'):\n"
        "    from kubectl_dotnet_monitor.cli.completion import complete_main as _m\n"
        "else:\n"
        "    from kubectl_dotnet_monitor.cli import main as _m\n"
        "_m()\n")
    stamp = time.gmtime(max(epoch, DEFAULT_EPOCH))[:6]
    files = sorted(p for p in site.rglob("*") if p.is_file()
                   and "__pycache__" not in p.parts and ".dist-info" not in str(p)
                   and p.relative_to(site).parts[0] != "bin"
                   and p.suffix not in (".so", ".pyd", ".dylib"))
    tmp = cache / (pyz.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for path in files:
                info = zipfile.ZipInfo(path.relative_to(site).as_posix(), date_time=stamp)
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                zf.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    os.chmod(tmp, 0o755)
    os.replace(tmp, pyz)
    shutil.rmtree(site)
    _prune_cache(build_dir / "cache", "zipapp-", keep=cache)
    return pyz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("onefile", "zipapp"), default="onefile")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "krew", help="archive directory")
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build" / "krew")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the build venv")
    parser.add_argument("--render-manifest", action="store_true",
                        help="re-render plugin.yaml from every archive in --out afterwards")
    args = parser.parse_args(argv)

    epoch = source_date_epoch()
    version = plugin_version()
    target_os, arch = host_target()
    if args.kind == "zipapp":
        pyz = build_zipapp(args.build_dir, epoch, args.python)
        print(pyz)
        return 0
    exe = build_onefile(args.build_dir, epoch, args.python)
    archive = package(exe, args.out, version, target_os, arch, epoch)
    print(f"{sha256_file(archive)}  {archive}")
    if args.render_manifest:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import manifest  # krew/manifest.py

        manifest.main(["--archives", str(args.out), "--output", str(ROOT / "plugin.yaml")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
