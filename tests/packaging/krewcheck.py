"""A small re-implementation of krew's manifest checks and its install steps, for the tests.

Written from krew's behaviour as recorded in shared/reference/krew-and-peers.md A.3 (krew
``internal/index/validation/validate.go``, ``cmd/validate-krew-manifest``,
``internal/installation``, ``internal/download``); rule ids (S1..S20, C1..C6, I1..I10) are the
ones used there. Each check returns a list of error strings, empty when the rule holds, so a test
can show exactly which rule failed.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Any

API_VERSION = "krew.googlecontainertools.github.com/v1alpha2"
SAFE_NAME = re.compile(r"^[\w-]+$", re.ASCII)
WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                    *(f"lpt{i}" for i in range(1, 10))}
SHA256 = re.compile(r"^[a-f0-9]{64}$")
# Strict semver 2.0.0 as k8s.io/apimachinery ParseSemantic accepts it (no leading zeros).
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
SEMVER = re.compile(
    rf"^{_NUM}\.{_NUM}\.{_NUM}(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$"
)
SUPPORTED = [("windows", a) for a in ("386", "amd64", "arm64")] + \
            [("linux", a) for a in ("386", "amd64", "arm", "arm64", "ppc64le")] + \
            [("darwin", a) for a in ("386", "amd64", "arm64")]
LICENSE_NAMES = {"license", "license.txt", "license.md", "licenses", "licenses.txt", "licenses.md",
                 "copying", "copying.txt"}


class KrewError(Exception):
    """An install step failed the way krew would fail it."""


# ----------------------------------------------------------------------------- structural (S*)


def _spec(doc: dict) -> dict:
    return doc.get("spec") or {}


def _platforms(doc: dict) -> list[dict]:
    return _spec(doc).get("platforms") or []


def valid_semver(version: str) -> bool:
    """krew's ``semver.Parse``: a ``v`` prefix, then strict semver."""
    return version.startswith("v") and bool(SEMVER.match(version[1:]))


def s1(doc, name=None):
    return [] if doc.get("apiVersion") == API_VERSION else [f"S1 apiVersion {doc.get('apiVersion')!r}"]


def s2(doc, name=None):
    return [] if doc.get("kind") == "Plugin" else [f"S2 kind {doc.get('kind')!r}"]


def _name(doc) -> str:
    return str((doc.get("metadata") or {}).get("name") or "")


def s3(doc, name=None):
    return [] if SAFE_NAME.match(_name(doc)) else [f"S3 unsafe name {_name(doc)!r}"]


def s4(doc, name=None):
    return [f"S4 reserved name {_name(doc)!r}"] if _name(doc).lower() in WINDOWS_RESERVED else []


def s5(doc, name=None):
    expected = name if name is not None else _name(doc)
    return [] if _name(doc) == expected else [f"S5 name {_name(doc)!r} != {expected!r}"]


def s6(doc, name=None):
    return [] if _spec(doc).get("shortDescription") else ["S6 empty shortDescription"]


def s7(doc, name=None):
    text = str(_spec(doc).get("shortDescription") or "")
    return ["S7 shortDescription has a line break"] if ("\n" in text or "\r" in text) else []


def s8(doc, name=None):
    return [] if _platforms(doc) else ["S8 no platforms"]


def s9(doc, name=None):
    return [] if _spec(doc).get("version") else ["S9 empty version"]


def s10(doc, name=None):
    version = str(_spec(doc).get("version") or "")
    return [] if valid_semver(version) else [f"S10 version {version!r} is not v+semver"]


def _each(doc, check):
    errors = []
    for i, plat in enumerate(_platforms(doc)):
        errors += [f"{e} (platform {i})" for e in check(plat or {})]
    return errors


def s11(doc, name=None):
    return _each(doc, lambda p: [] if p.get("uri") else ["S11 empty uri"])


def s12(doc, name=None):
    return _each(doc, lambda p: [] if p.get("sha256") else ["S12 empty sha256"])


def s13(doc, name=None):
    return _each(doc, lambda p: [] if SHA256.match(str(p.get("sha256") or "")) else
                 [f"S13 sha256 {p.get('sha256')!r} not 64 lower-case hex"])


def s14(doc, name=None):
    return _each(doc, lambda p: [] if p.get("bin") else ["S14 empty bin"])


def s15(doc, name=None):
    return _each(doc, lambda p: ["S15 files: [] is not allowed"] if "files" in p and not p["files"] else [])


def s16(doc, name=None):
    def check(p):
        return [f"S16 files entry {f!r} lacks from/to" for f in p.get("files") or []
                if not (isinstance(f, dict) and f.get("from") and f.get("to"))]
    return _each(doc, check)


def s17(doc, name=None):
    return _each(doc, lambda p: [] if p.get("selector") is not None else ["S17 no selector"])


def s18(doc, name=None):
    def check(p):
        sel = p.get("selector")
        if sel is None:
            return []
        return [] if ("matchLabels" in sel or "matchExpressions" in sel) else ["S18 empty selector"]
    return _each(doc, check)


def s19(doc, name=None):
    def check(p):
        sel = p.get("selector") or {}
        keys = list((sel.get("matchLabels") or {}).keys())
        keys += [e.get("key") for e in sel.get("matchExpressions") or [] if isinstance(e, dict)]
        return [f"S19 selector key {k!r} is not os/arch" for k in keys if k not in ("os", "arch")]
    return _each(doc, check)


def s20(doc, name=None):
    def check(p):
        sel = p.get("selector") or {}
        errors = []
        if "matchLabels" in sel and not sel["matchLabels"]:
            errors.append("S20 matchLabels is empty")
        if "matchExpressions" in sel and not sel["matchExpressions"]:
            errors.append("S20 matchExpressions is empty")
        return errors
    return _each(doc, check)


STRUCTURAL = {f"S{i}": globals()[f"s{i}"] for i in range(1, 21)}


# ----------------------------------------------------------------------------- CI (C*)


def selector_matches(selector: dict, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics for the os/arch label set."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            return False  # invalid operator: matches nothing (C3)
        if not ok:
            return False
    return True


def matched_pairs(platform: dict) -> list[tuple[str, str]]:
    sel = platform.get("selector") or {}
    return [(o, a) for o, a in SUPPORTED if selector_matches(sel, {"os": o, "arch": a})]


def c1(path: str) -> list[str]:
    return [] if path.endswith(".yaml") else [f"C1 {path} does not end in .yaml"]


def c2(path: str, doc: dict) -> list[str]:
    stem = posixpath.basename(path)[: -len(".yaml")] if path.endswith(".yaml") else path
    return [] if stem == _name(doc) else [f"C2 file {path} != metadata.name {_name(doc)!r}"]


def c3(doc: dict) -> list[str]:
    return _each(doc, lambda p: [] if matched_pairs(p) else ["C3 selector matches no supported os/arch"])


def c4(doc: dict) -> list[str]:
    seen: dict[tuple[str, str], int] = {}
    errors = []
    for i, plat in enumerate(_platforms(doc)):
        for pair in matched_pairs(plat):
            if pair in seen:
                errors.append(f"C4 {pair[0]}/{pair[1]} matched by platforms {seen[pair]} and {i}")
            seen.setdefault(pair, i)
    return errors


def c6(install_dir: Path) -> list[str]:
    for path in install_dir.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.name.lower() in LICENSE_NAMES:
            return []
    return ["C6 no LICENSE file among the installed files"]


# ----------------------------------------------------------------------------- install (I*)


def sniff(path: Path) -> str:
    """http.DetectContentType's answer for the two archive kinds krew accepts (I1)."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"\x1f\x8b\x08"):
        return "application/x-gzip"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    return "application/octet-stream"


def _unsafe(name: str) -> bool:
    return ".." in name or name.startswith(("/", "\\"))


def extract(archive: Path, dest: Path) -> None:
    """Unpack like krew: refuse ``..``/absolute names (I3) and non-regular tar entries (I4); keep modes (I5)."""
    kind = sniff(archive)
    dest.mkdir(parents=True, exist_ok=True)
    if kind == "application/x-gzip":
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if _unsafe(member.name):
                    raise KrewError(f"I3 not allowed relative path in archive: {member.name}")
                target = dest / member.name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isreg():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                    os.chmod(target, member.mode & 0o7777)
                else:
                    raise KrewError(f"I4 unable to handle file type {member.type!r} for {member.name}")
    elif kind == "application/zip":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if _unsafe(info.filename):
                    raise KrewError(f"I3 not allowed relative path in archive: {info.filename}")
                target = dest / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
                mode = (info.external_attr >> 16) & 0o7777
                if mode:
                    os.chmod(target, mode)
    else:
        raise KrewError(f"I1 cannot infer an archive type from {kind}")


def apply_files(files: list[dict] | None, src: Path, install_dir: Path) -> None:
    """krew's ``files`` moves (I6, I7); default ``[{from: "*", to: "."}]``."""
    files = files or [{"from": "*", "to": "."}]
    install_dir.mkdir(parents=True, exist_ok=True)
    for entry in files:
        frm, to = entry["from"], entry["to"]
        if posixpath.normpath(to) != to:
            raise KrewError(f"I6 files.to {to!r} is not a clean path")
        is_glob = any(c in frm for c in "*?[")
        matches = sorted(src.glob(frm)) if is_glob else ([src / frm] if (src / frm).exists() else [])
        if not matches:
            raise KrewError(f"I7 files.from {frm!r} matched nothing")
        for match in matches:
            dst = (install_dir / to).resolve()
            if install_dir.resolve() not in (dst, *dst.parents):
                raise KrewError(f"I7 files.to {to!r} leaves the install dir")
            target = dst / match.name if (to == "." or is_glob or dst.is_dir()) else dst
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(match), str(target))


def select_platform(doc: dict, target_os: str, arch: str) -> dict:
    """The first platform whose selector matches (I10)."""
    for plat in _platforms(doc):
        if selector_matches(plat.get("selector") or {}, {"os": target_os, "arch": arch}):
            return plat
    raise KrewError(f"I10 plugin does not offer installation for this platform ({target_os}/{arch})")


def link_name(plugin_name: str, target_os: str) -> str:
    """I9: ``kubectl-<name with - as _>`` (+ .exe on Windows)."""
    return "kubectl-" + plugin_name.replace("-", "_") + (".exe" if target_os == "windows" else "")


def install(doc: dict, archive: Path, krew_root: Path, target_os: str, arch: str) -> Path:
    """``kubectl krew install --manifest M --archive A``: returns the linked path in ``bin/``."""
    plat = select_platform(doc, target_os, arch)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != plat["sha256"]:
        raise KrewError(f"I2 checksum does not match: want {plat['sha256']}, got {digest}")
    name, version = _name(doc), _spec(doc)["version"]
    staging = krew_root / "downloads" / name
    if staging.exists():
        shutil.rmtree(staging)
    extract(archive, staging)
    install_dir = krew_root / "store" / name / version
    apply_files(plat.get("files"), staging, install_dir)
    bin_path = (install_dir / plat["bin"]).resolve()
    if install_dir.resolve() not in bin_path.parents or not bin_path.is_file():
        raise KrewError(f"I8 bin {plat['bin']!r} missing or outside the install dir")
    if not os.access(bin_path, os.X_OK):
        raise KrewError(f"I5 bin {plat['bin']!r} is not executable")
    link = krew_root / "bin" / link_name(name, target_os)
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(bin_path)
    return link


def archive_members(archive: Path) -> list[dict[str, Any]]:
    """Entries of a tar.gz or zip as dicts (name, type, mode, mtime, uid, gid, uname, gname)."""
    out = []
    if sniff(archive) == "application/x-gzip":
        with tarfile.open(archive, "r:gz") as tar:
            for m in tar:
                out.append({"name": m.name, "regular": m.isreg(), "dir": m.isdir(), "mode": m.mode,
                            "mtime": m.mtime, "uid": m.uid, "gid": m.gid, "uname": m.uname,
                            "gname": m.gname, "size": m.size})
    else:
        with zipfile.ZipFile(archive) as zf:
            for i in zf.infolist():
                mode = (i.external_attr >> 16)
                out.append({"name": i.filename, "regular": stat.S_ISREG(mode) or not i.is_dir(),
                            "dir": i.is_dir(), "mode": mode & 0o7777, "mtime": i.date_time,
                            "uid": 0, "gid": 0, "uname": "", "gname": "", "size": i.file_size})
    return out
