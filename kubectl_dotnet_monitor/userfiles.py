"""Reading the small JSON/YAML files users hand the plugin (``--config``, ``--providers``).

JSON is tried first, then YAML (as kubectl does for ``--custom``), and every failure names the
file and, for YAML, the line and column.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubectl_dotnet_monitor.errors import UsageError


def load_mapping(path: str | Path, what: str, empty_hint: str = "it should contain an object (a mapping)",
                 not_a_mapping: str | None = None) -> dict:
    """The object in ``path``; ``UsageError`` naming ``what`` and the file for anything else."""
    source = f"{what} {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{source}: cannot read the file: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise UsageError(f"{source}: not valid JSON or YAML{where}: {problem}") from None
    if data is None:
        raise UsageError(f"{source} is empty; {empty_hint}")
    if not isinstance(data, dict):
        raise UsageError(f"{source} " + (not_a_mapping or f"must hold an object (a mapping), not {type(data).__name__}"))
    return data
