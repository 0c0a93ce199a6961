"""Read a rules file (YAML or JSON) and remember where every key and value came from.

PyYAML's ``safe_load`` forgets positions, so the file is *composed* into nodes (which carry marks)
and turned into plain Python values here. Every key path (``("CollectionRules", "HighCpu",
"Actions", 0)``) keeps the 1-based line and column of its key (or list item), so a validation
message can say ``rules.yaml:12: CollectionRules.HighCpu.Actions[0].Type: ...``.

Stricter than ``safe_load`` where silence would hurt: a key given twice, a non-string key, or a
document that is not a mapping is an error, not "last one wins". For scalars that YAML 1.1 turns
into something other than the text the user probably meant (``1:30:00`` is the integer 5400,
``no`` is ``False``), the raw text is kept so messages can tell the user to quote it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubectl_dotnet_monitor.errors import UsageError

KeyPath = tuple  # tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class Position:
    """Where something is in the file (both 1-based)."""

    line: int
    column: int


@dataclass
class RulesDocument:
    """A parsed rules file: the data as plain dicts/lists/scalars, plus positions."""

    source: str
    data: Any
    positions: dict[KeyPath, Position] = field(default_factory=dict)
    #: Raw text of plain (unquoted) scalars that YAML resolved to a non-string (int, float, bool, null).
    plain_scalars: dict[KeyPath, str] = field(default_factory=dict)

    def position(self, path: KeyPath) -> Position | None:
        """The position of ``path``, else of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            hit = self.positions.get(path)
            if hit is not None or not path:
                return hit
            path = path[:-1]

    def line(self, path: KeyPath) -> int | None:
        """1-based line of ``path`` (or of its nearest ancestor), ``None`` when unknown."""
        pos = self.position(path)
        return pos.line if pos else None


def format_path(path: KeyPath) -> str:
    """``("CollectionRules", "R", "Actions", 0, "Type")`` -> ``CollectionRules.R.Actions[0].Type``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


def load_document(path: str | Path) -> RulesDocument:
    """Read and parse a rules file. ``UsageError`` (naming the file and line) when it cannot be read
    or is not valid YAML/JSON, or is empty."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{source}: is a directory; give the path of a rules file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{source}: cannot read the file: {exc}") from None
    return parse_document(text, source)


def parse_document(text: str, source: str = "<rules>") -> RulesDocument:
    """Parse YAML (JSON is YAML too) into a ``RulesDocument``. Same errors as ``load_document``."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "not valid YAML"
        raise UsageError(f"{source}{line}: not valid YAML or JSON: {problem}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: not valid YAML or JSON: {exc}") from None
    finally:
        loader.dispose()
    if node is None:
        raise UsageError(
            f"{source} is empty",
            hint="start from a template: kubectl dotnet-monitor rules example high-cpu",
        )
    doc = RulesDocument(source=source, data=None)
    doc.data = _Builder(loader, doc).build(node, ())
    return doc


class _Builder:
    """Nodes -> plain values, recording positions. Errors are ``UsageError`` with the line."""

    def __init__(self, loader: Any, doc: RulesDocument) -> None:
        self.loader = loader
        self.doc = doc
        self.active: set[int] = set()  # node ids on the current branch (recursive aliases)

    def fail(self, node: Any, message: str) -> UsageError:
        return UsageError(f"{self.doc.source}:{node.start_mark.line + 1}: {message}")

    def build(self, node: Any, path: KeyPath) -> Any:
        import yaml

        if id(node) in self.active:
            raise self.fail(node, "a YAML alias refers to itself")
        if isinstance(node, yaml.MappingNode):
            self.active.add(id(node))
            try:
                return self.mapping(node, path)
            finally:
                self.active.discard(id(node))
        if isinstance(node, yaml.SequenceNode):
            self.active.add(id(node))
            try:
                items = []
                for index, item in enumerate(node.value):
                    sub = path + (index,)
                    self.mark(sub, item)
                    items.append(self.build(item, sub))
                return items
            finally:
                self.active.discard(id(node))
        value = self.loader.construct_object(node, deep=True)
        if not isinstance(value, str) and node.style is None:
            self.doc.plain_scalars[path] = node.value
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise self.fail(
                node, f"{format_path(path)}: a {type(value).__name__} value is not allowed here; quote it"
            )
        return value

    def mapping(self, node: Any, path: KeyPath) -> dict:
        out: dict = {}
        seen: dict[str, int] = {}
        merged: list[tuple[Any, Any]] = []
        pairs: list[tuple[Any, Any]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self.merge_pairs(value_node))
            else:
                pairs.append((key_node, value_node))
        # Explicit keys win over merged ones (YAML merge-key semantics).
        explicit = set()
        for key_node, _ in pairs:
            key = self.key(key_node, path)
            if key in seen:
                raise self.fail(
                    key_node,
                    f"{format_path(path + (key,))}: key given twice (first on line {seen[key]}); "
                    "remove one",
                )
            seen[key] = key_node.start_mark.line + 1
            explicit.add(key)
        for key_node, value_node in merged:
            key = self.key(key_node, path)
            if key in explicit or key in out:
                continue
            sub = path + (key,)
            self.mark(sub, key_node)
            out[key] = self.build(value_node, sub)
        for key_node, value_node in pairs:
            key = self.key(key_node, path)
            sub = path + (key,)
            self.mark(sub, key_node)
            out[key] = self.build(value_node, sub)
        return out

    def merge_pairs(self, value_node: Any) -> list[tuple[Any, Any]]:
        import yaml

        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        pairs: list[tuple[Any, Any]] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise self.fail(source, "a YAML merge key (<<) needs a mapping or a list of mappings")
            pairs.extend((k, v) for k, v in source.value if k.tag != _MERGE_TAG)
        return pairs

    def key(self, key_node: Any, path: KeyPath) -> str:
        import yaml

        if not isinstance(key_node, yaml.ScalarNode):
            raise self.fail(key_node, f"{format_path(path)}: keys must be plain names, not lists or mappings")
        value = self.loader.construct_object(key_node)
        if not isinstance(value, str):
            # ``404: ...`` or ``yes: ...``: configuration keys are always names.
            if key_node.style is None and key_node.value:
                return key_node.value
            raise self.fail(key_node, f"{format_path(path)}: an empty key is not allowed")
        if not value:
            raise self.fail(key_node, f"{format_path(path)}: an empty key is not allowed")
        return value

    def mark(self, path: KeyPath, node: Any) -> None:
        self.doc.positions.setdefault(path, Position(node.start_mark.line + 1, node.start_mark.column + 1))
