"""The release archive: krew's archive rules (I1, I3-I5, C6) and byte-for-byte reproducibility."""

from __future__ import annotations

import gzip
import tarfile
import zipfile

import pytest

from tests.packaging import krewcheck as kc


def test_archive_is_a_gzip_krew_accepts(release_archive):  # I1
    assert kc.sniff(release_archive) == "application/x-gzip"


def test_archive_layout(release_archive, krew_build):  # I3, I4, I5
    members = kc.archive_members(release_archive)
    names = [m["name"] for m in members]
    exe = krew_build.exe_name(krew_build.host_target()[0])
    assert names == sorted([exe, "LICENSE"])
    for m in members:
        assert m["regular"], m
        assert ".." not in m["name"] and not m["name"].startswith(("/", "\\"))
        assert (m["uid"], m["gid"], m["uname"], m["gname"]) == (0, 0, "", "")
        assert m["mtime"] == krew_build.source_date_epoch()
    modes = {m["name"]: m["mode"] for m in members}
    assert modes[exe] == 0o755 and modes["LICENSE"] == 0o644


def test_gzip_header_has_no_name_or_time(release_archive):
    head = release_archive.read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08"
    assert head[3] & 0x08 == 0, "FNAME flag set"
    assert head[4:8] == b"\0\0\0\0", "MTIME set"


def test_license_is_installed(tmp_path, release_archive, release_manifest, krew_build):  # C6
    target_os, arch = krew_build.host_target()
    kc.install(release_manifest, release_archive, tmp_path, target_os, arch)
    assert kc.c6(tmp_path / "store" / "dotnet-monitor") == []


def test_sha256_file_matches(release_dir, release_archive, krew_build):
    line = (release_dir / (release_archive.name + ".sha256")).read_text()
    assert line == f"{krew_build.sha256_file(release_archive)}  {release_archive.name}\n"


def test_same_executable_gives_the_same_archive(tmp_path, onefile_exe, release_archive, krew_build):
    """Two packagings of one executable are byte-identical (and equal to the session's)."""
    target_os, arch = krew_build.host_target()
    version, epoch = krew_build.plugin_version(), krew_build.source_date_epoch()
    a = krew_build.package(onefile_exe, tmp_path / "a", version, target_os, arch, epoch)
    b = krew_build.package(onefile_exe, tmp_path / "b", version, target_os, arch, epoch)
    assert krew_build.sha256_file(a) == krew_build.sha256_file(b) == krew_build.sha256_file(release_archive)
    c = krew_build.package(onefile_exe, tmp_path / "c", version, target_os, arch, epoch + 1)
    assert krew_build.sha256_file(c) != krew_build.sha256_file(a)  # the mtime is really used


def test_windows_zip_is_deterministic_and_krew_shaped(tmp_path, krew_build):
    exe = tmp_path / "stand-in.exe"
    exe.write_bytes(b"MZ" + bytes(100))
    lic = tmp_path / "LICENSE"
    lic.write_text("MIT\n")
    a = krew_build.package(exe, tmp_path / "a", "0.1.0", "windows", "amd64", 1_700_000_000, lic)
    b = krew_build.package(exe, tmp_path / "b", "0.1.0", "windows", "amd64", 1_700_000_000, lic)
    assert a.name == "kubectl-dotnet-monitor_v0.1.0_windows_amd64.zip"
    assert a.read_bytes() == b.read_bytes()
    assert kc.sniff(a) == "application/zip"
    with zipfile.ZipFile(a) as zf:
        assert zf.namelist() == ["LICENSE", "kubectl-dotnet_monitor.exe"]
        assert (zf.getinfo("kubectl-dotnet_monitor.exe").external_attr >> 16) & 0o777 == 0o755


def test_packaging_refuses_symlinks(tmp_path, krew_build):  # I4 by construction
    real = tmp_path / "real"
    real.write_bytes(b"x")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(SystemExit):
        krew_build.package(link, tmp_path / "out", "0.1.0", "linux", "amd64", 1_700_000_000)


# ----------------------------------------------------------------------------- the extractor is honest


def _tar(path, add):
    with tarfile.open(path, "w:gz") as tar:
        add(tar)
    return path


def _file(tar, name, data=b"x", **kw):
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/etc/evil", "\\evil"])
def test_extract_refuses_escaping_names(tmp_path, name):  # I3
    archive = _tar(tmp_path / "a.tar.gz", lambda t: _file(t, name))
    with pytest.raises(kc.KrewError, match="I3"):
        kc.extract(archive, tmp_path / "out")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_extract_refuses_links(tmp_path, kind):  # I4
    def add(tar):
        info = tarfile.TarInfo("kubectl-dotnet_monitor")
        info.type = kind
        info.linkname = "LICENSE"
        tar.addfile(info)
    archive = _tar(tmp_path / "a.tar.gz", add)
    with pytest.raises(kc.KrewError, match="I4"):
        kc.extract(archive, tmp_path / "out")


@pytest.mark.parametrize("payload", [b"\x7fELF" + bytes(600), b"BZh91AY&SY" + bytes(600)])
def test_extract_refuses_what_is_not_zip_or_gzip(tmp_path, payload):  # I1
    path = tmp_path / "plugin.tar.gz"  # the name does not matter, the bytes do
    path.write_bytes(payload)
    with pytest.raises(kc.KrewError, match="I1"):
        kc.extract(path, tmp_path / "out")


def test_gzip_of_plain_tar_is_accepted(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", lambda t: _file(t, "x", mode=0o755))
    kc.extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "x").stat().st_mode & 0o777 == 0o755  # I5: mode from the archive
    assert gzip.open(archive).read(1)  # sanity


def _tree_bytes(root):
    files = sorted(p for d in ("kubectl_dotnet_monitor", "krew") for p in (root / d).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".txt"))
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_pyinstaller_output_is_reproducible_from_another_checkout(tmp_path, krew_build):
    """A build from a copy of the sources at another path gives the same executable bytes.

    Shares the pinned build venv (linked) so only PyInstaller runs again (~20 s). Other people
    may edit the tree meanwhile: the comparison is only made when the copy still equals it.
    """
    import os
    import shutil
    import subprocess
    import sys

    from tests.packaging.conftest import ROOT

    epoch = krew_build.source_date_epoch()
    target_os, arch = krew_build.host_target()
    for attempt in range(2):
        src = tmp_path / f"elsewhere-{attempt}" / "checkout"
        for part in ("kubectl_dotnet_monitor", "krew"):
            shutil.copytree(ROOT / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "LICENSE", src / "LICENSE")
        build_dir = src / "build" / "krew"
        build_dir.mkdir(parents=True)
        for venv in (ROOT / "build" / "krew").glob("venv-*"):
            if (venv / ".complete").exists():
                (build_dir / venv.name).symlink_to(venv)
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
        proc = subprocess.run([sys.executable, str(src / "krew" / "build.py"), "--out", str(src / "dist")],
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        reference = krew_build.build_onefile(ROOT / "build" / "krew", epoch)  # cached when unchanged
        if _tree_bytes(src) == _tree_bytes(ROOT):
            break
    else:
        pytest.skip("the source tree kept changing during the test")
    ref_archive = krew_build.package(reference, tmp_path / "ref", krew_build.plugin_version(), target_os, arch, epoch)
    rebuilt = src / "dist" / ref_archive.name
    assert krew_build.sha256_file(rebuilt) == krew_build.sha256_file(ref_archive)
