"""krew's validation rules (krew-and-peers.md A.3) on plugin.yaml, the bot template and rendered manifests."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from tests.packaging import krewcheck as kc
from tests.packaging.conftest import ROOT

import kubectl_dotnet_monitor

# The release job points this at the manifest it rendered from all five archives.
PLUGIN_YAML = Path(os.environ.get("KREW_RELEASE_MANIFEST") or ROOT / "plugin.yaml")
TEMPLATE = ROOT / "krew" / ".krew.yaml"
SUBMISSION_PATH = "plugins/dotnet-monitor.yaml"  # where the manifest goes in krew-index


@pytest.fixture(scope="module")
def committed() -> dict:
    return yaml.safe_load(PLUGIN_YAML.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def all_five(tmp_path_factory, krew_build, krew_manifest) -> dict:
    """A manifest rendered the way the release job does, from five (stand-in) archives."""
    out = tmp_path_factory.mktemp("five")
    exe = out / "fake-exe"
    exe.write_bytes(b"#!/bin/sh\necho stand-in\n")
    version = krew_build.plugin_version()
    for target_os, arch in krew_build.TARGETS:
        krew_build.package(exe, out / f"{target_os}-{arch}", version, target_os, arch, 1_700_000_000)
    text = krew_manifest.render_manifest(out, "https://github.com/example/kubectl-dotnet-monitor",
                                         require_all=True)
    return yaml.safe_load(text)


def _rules_ok(doc: dict) -> list[str]:
    errors = []
    for check in kc.STRUCTURAL.values():
        errors += check(doc, "dotnet-monitor")
    errors += kc.c1(SUBMISSION_PATH) + kc.c2(SUBMISSION_PATH, doc) + kc.c3(doc) + kc.c4(doc)
    return errors


# ----------------------------------------------------------------------------- the committed manifest


@pytest.mark.parametrize("rule", sorted(kc.STRUCTURAL, key=lambda r: int(r[1:])))
def test_committed_manifest_passes_structural_rule(committed, rule):
    assert kc.STRUCTURAL[rule](committed, "dotnet-monitor") == []


@pytest.mark.parametrize("rule", ["C1", "C2", "C3", "C4"])
def test_committed_manifest_passes_ci_rule(committed, rule):
    checks = {
        "C1": lambda: kc.c1(SUBMISSION_PATH),
        "C2": lambda: kc.c2(SUBMISSION_PATH, committed),
        "C3": lambda: kc.c3(committed),
        "C4": lambda: kc.c4(committed),
    }
    assert checks[rule]() == []


def test_version_is_v_plus_package_version(committed):
    assert committed["spec"]["version"] == "v" + kubectl_dotnet_monitor.__version__


def test_review_conventions(committed):
    spec = committed["spec"]
    assert len(spec["shortDescription"]) <= 50  # G2: krew search cuts at 50
    for key in ("description", "caveats"):
        assert all(len(line) <= 80 for line in spec[key].splitlines()), key  # G3
        assert "kubectl plugin" not in spec[key].lower()
        assert "k8s" not in spec[key].lower()
    assert "dotnet " not in spec["description"].lower()  # ".NET", not "dotnet" (the tool name is fine)
    assert spec["homepage"].startswith("https://")
    # lines of the file itself fit 80 columns, except the long release URLs
    long_lines = [line for line in PLUGIN_YAML.read_text().splitlines()
                  if len(line) > 80 and not line.strip().startswith("uri:")]
    assert long_lines == []


def test_committed_platforms_have_real_archive_names_and_sums(committed, krew_build):
    """Every platform present carries a real sum; none is a placeholder."""
    version = krew_build.plugin_version()
    for plat in committed["spec"]["platforms"]:
        labels = plat["selector"]["matchLabels"]
        assert (labels["os"], labels["arch"]) in krew_build.TARGETS
        assert plat["uri"].endswith("/" + krew_build.archive_name(version, labels["os"], labels["arch"]))
        assert plat["sha256"] not in ("0" * 64, "f" * 64)
        assert plat["bin"] == krew_build.exe_name(labels["os"])
    assert {"os": "linux", "arch": "amd64"} in [p["selector"]["matchLabels"] for p in committed["spec"]["platforms"]]


def test_committed_manifest_is_a_rendering(committed, krew_manifest):
    """plugin.yaml is exactly what manifest.py writes for the sums it holds: nobody edited it by hand."""
    plats = [(p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"],
              f"uri: {p['uri']}", f"sha256: {p['sha256']}") for p in committed["spec"]["platforms"]]
    text = PLUGIN_YAML.read_text(encoding="utf-8")
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    assert text == krew_manifest.render(committed["spec"]["version"], plats, committed["spec"]["homepage"], header)


# ----------------------------------------------------------------------------- the release-time rendering


def test_release_rendering_has_all_five_platforms(all_five, krew_build):
    pairs = [(p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"])
             for p in all_five["spec"]["platforms"]]
    assert pairs == list(krew_build.TARGETS)
    assert _rules_ok(all_five) == []
    win = all_five["spec"]["platforms"][-1]
    assert win["uri"].endswith("_windows_amd64.zip") and win["bin"].endswith(".exe")
    assert all(p["uri"].endswith(".tar.gz") for p in all_five["spec"]["platforms"][:-1])


def test_release_rendering_refuses_missing_archives(tmp_path, krew_manifest):
    with pytest.raises(SystemExit):
        krew_manifest.render_manifest(tmp_path, "https://example.invalid/x", require_all=True)


def test_bot_template_is_in_sync_and_valid(krew_manifest):
    text = TEMPLATE.read_text(encoding="utf-8")
    assert text == krew_manifest.render_template(krew_manifest.DEFAULT_REPO_URL)
    assert text.count("addURIAndSha") == 5
    # What the bot will produce: substitute the placeholders and run the rules.
    filled = text.replace("{{ .TagName }}", "v" + kubectl_dotnet_monitor.__version__)
    lines = []
    for line in filled.splitlines():
        if "addURIAndSha" in line:
            url = line.split('"')[1]
            lines += [f"    uri: {url}", "    sha256: " + "ab" * 32]
        else:
            lines.append(line)
    assert _rules_ok(yaml.safe_load("\n".join(lines))) == []


# ----------------------------------------------------------------------------- the validator is honest


def _mutated(doc: dict, how) -> dict:
    doc = copy.deepcopy(doc)
    how(doc)
    return doc


def _plat(doc):
    return doc["spec"]["platforms"][0]


MUTATIONS = [
    ("S1", lambda d: d.update(apiVersion="krew.googlecontainertools.github.com/v1alpha1")),
    ("S2", lambda d: d.update(kind="Plugins")),
    ("S3", lambda d: d["metadata"].update(name="dotnet monitor")),
    ("S4", lambda d: d["metadata"].update(name="Com1")),
    ("S5", lambda d: d["metadata"].update(name="dotnet-mon")),
    ("S6", lambda d: d["spec"].update(shortDescription="")),
    ("S7", lambda d: d["spec"].update(shortDescription="two\nlines")),
    ("S8", lambda d: d["spec"].update(platforms=[])),
    ("S9", lambda d: d["spec"].update(version="")),
    ("S10", lambda d: d["spec"].update(version="0.1.0")),
    ("S11", lambda d: _plat(d).update(uri="")),
    ("S12", lambda d: _plat(d).update(sha256="")),
    ("S13", lambda d: _plat(d).update(sha256=_plat(d)["sha256"].upper())),
    ("S14", lambda d: _plat(d).update(bin="")),
    ("S15", lambda d: _plat(d).update(files=[])),
    ("S16", lambda d: _plat(d).update(files=[{"from": "LICENSE"}])),
    ("S17", lambda d: _plat(d).pop("selector")),
    ("S18", lambda d: _plat(d).update(selector={})),
    ("S19", lambda d: _plat(d)["selector"]["matchLabels"].update(distro="debian")),
    ("S20", lambda d: _plat(d).update(selector={"matchLabels": {}})),
]


@pytest.mark.parametrize("rule,how", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_each_structural_rule_catches_its_violation(committed, rule, how):
    errors = kc.STRUCTURAL[rule](_mutated(committed, how), "dotnet-monitor")
    assert errors and all(e.startswith(rule + " ") for e in errors)


@pytest.mark.parametrize("version", ["v1.2.3", "v0.0.0", "v1.2.3-beta.2+foo.bar", "v0.1.0"])
def test_semver_accepts(version):
    assert kc.valid_semver(version)


@pytest.mark.parametrize("version", ["1.0.0", "v1", "v1.2", "v01.2.3", "v1.02.3", "v1.0.1-", "v1.0.1+", "v0.0.0a"])
def test_semver_rejects(version):
    assert not kc.valid_semver(version)


def test_ci_rules_catch_violations(all_five):
    assert kc.c1("plugins/dotnet-monitor.yml")
    assert kc.c2("plugins/dotnet.yaml", all_five)
    bad_op = _mutated(all_five, lambda d: _plat(d).update(
        selector={"matchExpressions": [{"key": "os", "operator": "Is", "values": ["linux"]}]}))
    assert kc.c3(bad_op)
    bad_arch = _mutated(all_five, lambda d: _plat(d)["selector"]["matchLabels"].update(arch="riscv64"))
    assert kc.c3(bad_arch)
    overlap = _mutated(all_five, lambda d: d["spec"]["platforms"].append(
        {"selector": {"matchExpressions": [{"key": "os", "operator": "In", "values": ["linux", "darwin"]}]},
         "uri": "x", "sha256": "a" * 64, "bin": "x"}))
    assert kc.c4(overlap)


def test_release_workflow_submits_under_the_plugin_name():
    """C1/C2 with real input: the release job publishes the manifest as dotnet-monitor.yaml."""
    workflow = (ROOT / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    assert "dotnet-monitor.yaml" in workflow
    assert "--require-all" in workflow
