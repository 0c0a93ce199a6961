"""Session fixtures: build the release executable once (cached on disk by source hash), package it."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_krew_module(name: str):
    """Import krew/<name>.py (the build scripts are not a package)."""
    key = f"_krew_{name}"
    if key in sys.modules:
        return sys.modules[key]
    krew_dir = str(ROOT / "krew")
    if krew_dir not in sys.path:
        sys.path.insert(0, krew_dir)  # manifest.py imports build.py by name
    spec = importlib.util.spec_from_file_location(key, ROOT / "krew" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def krew_build():
    return load_krew_module("build")


@pytest.fixture(scope="session")
def krew_manifest():
    return load_krew_module("manifest")


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None)
    if path is None:
        pytest.skip("kubectl is not installed")
    return path


@pytest.fixture(scope="session")
def onefile_exe(krew_build) -> Path:
    """The PyInstaller executable for this host; builds it (~30 s) unless the cache has it."""
    epoch = krew_build.source_date_epoch()
    return krew_build.build_onefile(ROOT / "build" / "krew", epoch)


@pytest.fixture(scope="session")
def release_dir(tmp_path_factory, krew_build, onefile_exe) -> Path:
    out = tmp_path_factory.mktemp("release")
    target_os, arch = krew_build.host_target()
    krew_build.package(onefile_exe, out, krew_build.plugin_version(), target_os, arch,
                       krew_build.source_date_epoch())
    return out


@pytest.fixture(scope="session")
def release_archive(release_dir, krew_build) -> Path:
    target_os, arch = krew_build.host_target()
    return release_dir / krew_build.archive_name(krew_build.plugin_version(), target_os, arch)


@pytest.fixture(scope="session")
def release_manifest(release_dir, krew_manifest) -> dict:
    """The manifest the release job would render for the archive built in this session."""
    import yaml

    return yaml.safe_load(krew_manifest.render_manifest(release_dir, krew_manifest.DEFAULT_REPO_URL))
