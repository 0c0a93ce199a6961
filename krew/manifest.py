#!/usr/bin/env python3
"""Render the krew manifest (``plugin.yaml``) and the krew-release-bot template (``krew/.krew.yaml``).

    python3 krew/manifest.py --archives dist/krew                 # plugin.yaml from the archives there
    python3 krew/manifest.py --archives dist/ --require-all       # release job: all five or fail
    python3 krew/manifest.py --template --output krew/.krew.yaml  # the bot's template

A platform appears in ``plugin.yaml`` only when its archive was really built and hashed: a
manifest never carries a made-up checksum. Locally that is linux/amd64; the release workflow
renders the manifest from all five archives (``--require-all``). The bot's template lists all
five with ``addURIAndSha`` placeholders the bot fills from the published release assets.

Standard library only; the YAML is written by hand so its layout is stable and reviewable.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build  # noqa: E402  (krew/build.py: names, version, hashing)

ROOT = build.ROOT
NAME = "dotnet-monitor"
API_VERSION = "krew.googlecontainertools.github.com/v1alpha2"
# Where the source lives; the release workflow passes the real one (--repo-url). Krew's release
# bot trusts the repository named in `homepage`.
DEFAULT_REPO_URL = "https://github.com/kubectl-dotnet-monitor/kubectl-dotnet-monitor"

SHORT_DESCRIPTION = "Collect .NET dumps, traces and logs from pods"

DESCRIPTION = (
    "Injects dotnet-monitor into a running pod as an ephemeral container and "
    "downloads GC dumps, memory dumps, traces, logs and metrics from the .NET "
    "processes in that pod to the local machine. The pod is not restarted; "
    "artifacts are streamed through the API server's port-forward."
)

CAVEATS = (
    "Needs Kubernetes 1.25 or later and permission to patch "
    "pods/ephemeralcontainers and to create pods/portforward in the pod's "
    "namespace; the cluster must be able to pull the dotnet-monitor image. "
    "Linux builds require a glibc-based distribution (not Alpine/musl)."
)


def wrap(text: str, indent: int) -> list[str]:
    """Wrap ``text`` so that each line, indented, fits in 80 columns."""
    return textwrap.wrap(text, width=80 - indent, break_on_hyphens=False)


def _block(key: str, text: str) -> list[str]:
    return [f"  {key}: |"] + ["    " + line for line in wrap(text, 4)]


def _platform(target_os: str, arch: str, uri: str, sha256: str) -> list[str]:
    exe = build.exe_name(target_os)
    return [
        "  - selector:",
        "      matchLabels:",
        f"        os: {target_os}",
        f"        arch: {arch}",
        f"    {uri}",
        f"    {sha256}",
        f"    bin: {exe}",
        "    files:",
        f"    - from: {exe}",
        "      to: .",
        "    - from: LICENSE",
        "      to: .",
    ]


def render(version: str, platforms: list[tuple[str, str, str, str]], repo_url: str, header: str = "") -> str:
    """The manifest text. ``platforms``: (os, arch, ``uri: ...`` line, ``sha256: ...`` line)."""
    lines = header.splitlines() + [
        f"apiVersion: {API_VERSION}",
        "kind: Plugin",
        "metadata:",
        f"  name: {NAME}",
        "spec:",
        f"  version: {version}",
        f"  homepage: {repo_url}",
        f"  shortDescription: {SHORT_DESCRIPTION}",
        *_block("description", DESCRIPTION),
        *_block("caveats", CAVEATS),
        "  platforms:",
    ]
    for target_os, arch, uri_line, sha_line in platforms:
        lines += _platform(target_os, arch, uri_line, sha_line)
    return "\n".join(lines) + "\n"


def release_url(repo_url: str, tag: str, asset: str) -> str:
    return f"{repo_url.rstrip('/')}/releases/download/{tag}/{asset}"


def render_manifest(archive_dir: Path, repo_url: str, version: str | None = None,
                    require_all: bool = False) -> str:
    """``plugin.yaml`` from the archives of ``version`` found in ``archive_dir`` (searched recursively)."""
    version = version or build.plugin_version()
    tag = f"v{version}"
    found: list[tuple[str, str, str, str]] = []
    missing = []
    for target_os, arch in build.TARGETS:
        asset = build.archive_name(version, target_os, arch)
        hits = sorted(archive_dir.rglob(asset))
        if not hits:
            missing.append(f"{target_os}/{arch}")
            continue
        digest = build.sha256_file(hits[0])
        found.append((target_os, arch, f"uri: {release_url(repo_url, tag, asset)}", f"sha256: {digest}"))
    if require_all and missing:
        raise SystemExit(f"error: no archive for {', '.join(missing)} in {archive_dir}")
    if not found:
        raise SystemExit(f"error: no archive for {tag} in {archive_dir}; run krew/build.py first")
    built = ", ".join(f"{o}/{a}" for o, a, _, _ in found)
    header = (
        "# Rendered by krew/manifest.py from the release archives; do not edit by hand.\n"
        f"# Platforms with a built and hashed archive: {built}.\n"
    )
    if missing:
        header += (
            "# Not built here, so absent rather than guessed (the release workflow renders\n"
            "# all five, krew/PACKAGING.md):\n"
            f"#   {', '.join(missing)}.\n"
        )
    return render(tag, found, repo_url, header)


def render_template(repo_url: str) -> str:
    """krew-release-bot template: Go-template placeholders instead of the version and sums."""
    platforms = []
    for target_os, arch in build.TARGETS:
        ext = "zip" if target_os == "windows" else "tar.gz"
        asset = f"{build.PROJECT}_{{{{ .TagName }}}}_{target_os}_{arch}.{ext}"
        url = f"{repo_url.rstrip('/')}/releases/download/{{{{ .TagName }}}}/{asset}"
        platforms.append((target_os, arch, f'{{{{ addURIAndSha "{url}" .TagName }}}}', ""))
    text = render("{{ .TagName }}", platforms, repo_url,
                  "# krew-release-bot template (rendered by krew/manifest.py --template).\n")
    # addURIAndSha expands to both the `uri:` and the `sha256:` line; drop the empty sha line.
    return "\n".join(line for line in text.splitlines() if line.strip() != "") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archives", type=Path, default=ROOT / "dist" / "krew")
    parser.add_argument("--output", type=Path, default=None, help="default: plugin.yaml (or stdout)")
    parser.add_argument("--repo-url", default=DEFAULT_REPO_URL)
    parser.add_argument("--version", default=None, help="default: the package's __version__")
    parser.add_argument("--require-all", action="store_true", help="fail unless all five archives exist")
    parser.add_argument("--template", action="store_true", help="render the release-bot template")
    parser.add_argument("--check", action="store_true", help="fail if --output differs from the rendering")
    args = parser.parse_args(argv)

    if args.template:
        text = render_template(args.repo_url)
    else:
        text = render_manifest(args.archives, args.repo_url, args.version, args.require_all)
    if args.check:
        target = args.output or ROOT / ("krew/.krew.yaml" if args.template else "plugin.yaml")
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            print(f"error: {target} is out of date; re-render it with krew/manifest.py", file=sys.stderr)
            return 1
        return 0
    if args.output is None and not args.template:
        args.output = ROOT / "plugin.yaml"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
