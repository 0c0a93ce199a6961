"""Collection rules and egress, set at injection time (``inject --rules FILE``).

A rules file is YAML (or JSON) in dotnet-monitor's own configuration shape, limited to the sections
``CollectionRules``, ``Egress``, ``CollectionRuleDefaults`` and ``Templates``. It is

1. read keeping line numbers (``loader.py``),
2. validated against dotnet-monitor's published configuration schema (``validate.py``; the schema is
   ``schema.json``, copied unchanged from dotnet/dotnet-monitor ``documentation/schema.json``,
   MIT licence, Copyright (c) .NET Foundation and Contributors),
3. turned into the monitor container's env, with secrets as ``valueFrom.secretKeyRef`` (``env.py``).

An ephemeral container can never be changed, so this happens before anything is sent, and rules
need Listen mode (dotnet-monitor runs no rules in Connect mode). ``templates.py`` holds the ready
examples printed by ``rules example NAME``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kubectl_dotnet_monitor.errors import UsageError

if TYPE_CHECKING:
    from kubectl_dotnet_monitor.rules.loader import RulesDocument


@dataclass(frozen=True)
class RulesConfig:
    """A validated rules file, ready for ``MonitorOptions(extra_env=cfg.env, needs_listen_mode=True)``."""

    source: str
    env: tuple[dict, ...]
    rules: tuple[str, ...] = ()  # collection rule names, as /collectionrules will list them
    egress_providers: tuple[str, ...] = ()
    #: (Secret name, key) pairs the pod's namespace must have, else the monitor never starts
    #: (the kubelet reports CreateContainerConfigError). Check them before injecting.
    secret_refs: tuple[tuple[str, str], ...] = ()
    config_map_refs: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = field(default=())
    needs_listen_mode: bool = True


class RulesValidationError(UsageError):
    """The rules file has mistakes; ``problems`` lists them as ``file:line: key.path: message``."""

    def __init__(self, source: str, problems: tuple[str, ...]) -> None:
        count = len(problems)
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"{source} is not a valid rules file ({count} problem{'s' if count != 1 else ''}):\n{lines}",
            hint="compare with a working example: kubectl dotnet-monitor rules example high-cpu",
        )
        self.problems = problems


def load_rules(path: str | Path) -> RulesConfig:
    """Read, validate and render a rules file. Pure apart from reading the file.

    Raises ``UsageError`` when the file cannot be read or parsed, ``RulesValidationError`` (a
    ``UsageError``) listing every problem with its line when it is not valid.
    """
    from kubectl_dotnet_monitor.rules.loader import load_document

    return rules_from_document(load_document(path))


def rules_from_text(text: str, source: str = "<rules>") -> RulesConfig:
    """Like ``load_rules`` for text already in memory (templates, tests)."""
    from kubectl_dotnet_monitor.rules.loader import parse_document

    return rules_from_document(parse_document(text, source))


def rules_from_document(doc: RulesDocument) -> RulesConfig:
    """Validate a parsed document and build its ``RulesConfig``."""
    from kubectl_dotnet_monitor.rules.env import SECTIONS, render_env
    from kubectl_dotnet_monitor.rules.validate import validate_document

    result = validate_document(doc)
    if result.problems:
        raise RulesValidationError(doc.source, tuple(p.format(doc.source) for p in result.problems))
    data = {k: v for k, v in doc.data.items() if k in SECTIONS}
    rules = data.get("CollectionRules") or {}
    egress = data.get("Egress") or {}
    providers = [name for kind in ("FileSystem", "AzureBlobStorage", "S3Storage") for name in (egress.get(kind) or {})]
    secret_refs = tuple(dict.fromkeys((r.name, r.key) for r in result.refs if r.kind == "secretKeyRef"))
    config_refs = tuple(dict.fromkeys((r.name, r.key) for r in result.refs if r.kind == "configMapKeyRef"))
    return RulesConfig(
        source=doc.source,
        env=render_env(data),
        rules=tuple(rules),
        egress_providers=tuple(providers),
        secret_refs=secret_refs,
        config_map_refs=config_refs,
        warnings=tuple(p.format(doc.source) for p in result.warnings),
    )


__all__ = ["RulesConfig", "RulesValidationError", "load_rules", "rules_from_document", "rules_from_text"]
