"""Check a rules document against dotnet-monitor's configuration schema, with messages a person can use.

The schema (``schema.json`` next to this file) is dotnet-monitor's published
``documentation/schema.json`` (dotnet/dotnet-monitor, MIT licence), shipped unchanged. It is
validated with JSON Schema draft 7 semantics (it says draft 4 but uses ``const``), plus what the
schema leaves to dotnet-monitor's own option validation and what only matters here:

* ``format: duration`` is a .NET TimeSpan (``00:01:00``, ``1.00:00:00``); ``format: uri`` an absolute URL;
  enums marked ``x-enumFlags`` (trace ``Profile``) accept ``Cpu,Http``;
* rules may name templates (``Trigger: HighCpu``), which must exist under ``Templates``;
* Collect* actions need an egress provider, and it must be defined in the same file (the injected
  monitor has no other configuration); ``...Name`` settings must name an ``Egress.Properties`` entry;
* ``StatusCodes`` items look like ``500`` or ``500-599``; ``CollectTrace`` has ``Profile`` or
  ``Providers``; ``EventCounter`` has ``GreaterThan`` or ``LessThan``;
* names must survive the trip through environment variables (no ``__``, no spaces), and two keys may
  not differ only in case (dotnet-monitor's configuration ignores case);
* secrets are references to Secrets, never literal values (see ``env.py``).

One ``Problem`` per mistake, each with the key path and line, sorted by line. ``jsonschema`` is
imported lazily: only ``--rules`` and ``rules validate`` need it.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubectl_dotnet_monitor.rules.env import (
    REF_KINDS,
    SECTIONS,
    ValueRef,
    is_ref,
    is_secret_setting,
    parse_ref,
    secret_advice,
)
from kubectl_dotnet_monitor.rules.loader import KeyPath, RulesDocument, format_path

_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping (key: value)",
    "array": "a list",
    "null": "null",
}
_TIMESPAN_RE = re.compile(
    r"^\s*-?(?:(?P<days_only>\d+)|(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})"
    r"(?::(?P<s>\d{1,2})(?:\.(?P<f>\d{1,7}))?)?|(?P<gdays>\d+):(?P<gh>\d{1,2}):(?P<gm>\d{1,2}):(?P<gs>\d{1,2})"
    r"(?:\.\d{1,7})?)\s*$"
)
_STATUS_RE = re.compile(r"^[1-5][0-9]{2}(-[1-5][0-9]{2})?$")
_ENV_PART_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
_TEMPLATE_KINDS = {
    "Trigger": "CollectionRuleTriggers",
    "Actions": "CollectionRuleActions",
    "Filters": "CollectionRuleFilters",
    "Limits": "CollectionRuleLimits",
}
_SECRET_NAME_SETTINGS = ("AccountKeyName", "SharedAccessSignatureName", "QueueSharedAccessSignatureName")
_PROVIDER_KINDS = ("FileSystem", "AzureBlobStorage", "S3Storage")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file, where it is and what is expected instead."""

    path: KeyPath
    message: str
    line: int | None = None

    def format(self, source: str) -> str:
        """``rules.yaml:12: CollectionRules.HighCpu.Trigger.Type: ...``."""
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {format_path(self.path)}: {self.message}"


@dataclass(frozen=True)
class ValidationResult:
    """Problems (the file is refused when there is any) and warnings (it is accepted)."""

    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    refs: tuple[ValueRef, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


class _RefValue(str):
    """Stands in for a Secret/ConfigMap reference while the schema is checked (it is a string)."""

    ref: ValueRef


def load_schema() -> dict:
    """dotnet-monitor's configuration schema, shipped with the package."""
    from importlib import resources

    return json.loads(resources.files("kubectl_dotnet_monitor.rules").joinpath("schema.json").read_text("utf-8"))


def validate_document(doc: RulesDocument, schema: dict | None = None) -> ValidationResult:
    """Validate ``doc`` (see the module docstring for what is checked)."""
    checker = _Checker(doc, schema or load_schema())
    checker.run()
    problems = _dedupe(checker.problems)
    warnings = _dedupe(checker.warnings)
    return ValidationResult(problems=problems, warnings=warnings, refs=tuple(checker.refs))


def is_timespan(text: str) -> bool:
    """True when .NET's TimeSpan.Parse (invariant culture) would read ``text``."""
    match = _TIMESPAN_RE.match(text)
    if not match:
        return False
    if match.group("days_only") is not None:
        return True
    if match.group("gdays") is not None:  # the general form d:hh:mm:ss
        hours, minutes, seconds = int(match.group("gh")), int(match.group("gm")), int(match.group("gs"))
    else:
        hours, minutes = int(match.group("h")), int(match.group("m"))
        seconds = int(match.group("s") or 0)
    return hours < 24 and minutes < 60 and seconds < 60


# --------------------------------------------------------------------------------------------


class _Checker:
    def __init__(self, doc: RulesDocument, schema: dict) -> None:
        self.doc = doc
        self.schema = schema
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.refs: list[ValueRef] = []

    # -- reporting ---------------------------------------------------------------------------

    def problem(self, path: Iterable, message: str) -> None:
        path = tuple(path)
        self.problems.append(Problem(path, message, self.doc.line(path)))

    def warning(self, path: Iterable, message: str) -> None:
        path = tuple(path)
        self.warnings.append(Problem(path, message, self.doc.line(path)))

    # -- the steps ---------------------------------------------------------------------------

    def run(self) -> None:
        data = self.doc.data
        if not isinstance(data, dict):
            self.problem((), "a rules file is a mapping with the sections " + ", ".join(SECTIONS)
                         + "; start from: kubectl dotnet-monitor rules example high-cpu")
            return
        for key in data:
            if key in SECTIONS:
                continue
            same = [s for s in SECTIONS if s.lower() == key.lower()]
            if same:
                self.problem((key,), f"write {same[0]!r} (spelled exactly so)")
            else:
                self.problem((key,), "not a section a rules file can set; allowed: " + ", ".join(SECTIONS)
                             + " (the plugin sets Authentication, DiagnosticPort, Storage and Urls itself)")
        if not any(key in data for key in SECTIONS):
            if not self.problems:
                self.problem((), "the file sets none of " + ", ".join(SECTIONS))
            return
        if not data.get("CollectionRules"):
            self.warning(("CollectionRules",), "no collection rules: the monitor will not collect anything by itself")
        sections = {k: v for k, v in data.items() if k in SECTIONS}
        self.check_names(sections, ())
        checked = self.prepare(sections, ())  # references -> placeholders, nulls dropped, secrets
        resolved, substituted = self.resolve_templates(checked)
        self.check_schema(resolved, substituted)
        self.check_semantics(checked)

    def check_names(self, value: Any, path: KeyPath) -> None:
        """Keys must be usable in env var names and unique ignoring case."""
        if is_ref(value):
            return
        if isinstance(value, dict):
            seen: dict[str, str] = {}
            for key, item in value.items():
                sub = path + (key,)
                if not _ENV_PART_RE.match(key) or "__" in key:
                    self.problem(sub, f"the name {key!r} cannot be passed to dotnet-monitor in an environment "
                                      "variable; use letters, digits, '-', '.' and single '_'")
                other = seen.get(key.lower())
                if other is not None:
                    self.problem(sub, f"{key!r} and {other!r} are the same key to dotnet-monitor, whose "
                                      "configuration ignores case; keep one")
                seen.setdefault(key.lower(), key)
                self.check_names(item, sub)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.check_names(item, path + (index,))

    def prepare(self, value: Any, path: KeyPath) -> Any:
        """A copy for the schema: references become placeholder strings, ``null`` entries of
        mappings are dropped (they are left out of the environment), literal secrets reported."""
        if is_ref(value):
            ref = parse_ref(value)
            if isinstance(ref, str):
                self.problem(path + (next(iter(value)),), ref)
                return None
            if ref.kind == "configMapKeyRef" and is_secret_setting(path):
                self.problem(path, "a secret belongs in a Secret, not a ConfigMap: use secretKeyRef")
            self.refs.append(ref)
            placeholder = _RefValue(f"<{ref.describe()}>")
            placeholder.ref = ref
            return placeholder
        if isinstance(value, dict) and is_secret_setting(path):
            self.problem(path, "a secret is given as a reference to a Secret: " + secret_advice(path, one_line=True))
            return None
        if isinstance(value, dict):
            if any(k in REF_KINDS for k in value) and len(value) > 1:
                kind = next(k for k in value if k in REF_KINDS)
                self.problem(path + (kind,), f"a {kind} must be the only key of its mapping")
            out = {}
            for key, item in value.items():
                if item is None:
                    continue
                out[key] = self.prepare(item, path + (key,))
            return out
        if isinstance(value, list):
            return [self.prepare(item, path + (index,)) for index, item in enumerate(value)]
        if is_secret_setting(path) and value is not None:
            self.problem(path, "a literal secret is refused: it would be stored in the pod spec, readable by "
                               "anyone who may read pods; " + secret_advice(path, one_line=True))
        return value

    def resolve_templates(self, sections: dict) -> tuple[dict, set[KeyPath]]:
        """Rules with template names replaced by the templates (for the schema check). Returns the
        copy and the paths that were replaced (errors inside them are reported at the template)."""
        resolved = copy.deepcopy(sections)
        substituted: set[KeyPath] = set()
        rules = resolved.get("CollectionRules")
        templates = sections.get("Templates") if isinstance(sections.get("Templates"), dict) else {}
        if not isinstance(rules, dict):
            return resolved, substituted
        for rule_name, rule in rules.items():
            if not isinstance(rule, dict):
                continue
            for part, kind in _TEMPLATE_KINDS.items():
                value = rule.get(part)
                base = ("CollectionRules", rule_name, part)
                if isinstance(value, list) and part in ("Actions", "Filters"):
                    for index, item in enumerate(value):
                        if isinstance(item, str) and not isinstance(item, _RefValue):
                            found = self.template(templates, kind, item, base + (index,))
                            if found is not None:
                                value[index] = copy.deepcopy(found)
                            substituted.add(base + (index,))
                elif isinstance(value, str) and part in ("Trigger", "Limits") and not isinstance(value, _RefValue):
                    found = self.template(templates, kind, value, base)
                    if found is not None:
                        rule[part] = copy.deepcopy(found)
                    else:
                        rule.pop(part)
                        if part == "Trigger":
                            rule[part] = {"Type": "Startup"}  # reported already; keep "required" quiet
                    substituted.add(base)
        return resolved, substituted

    def template(self, templates: Any, kind: str, name: str, path: KeyPath) -> Any:
        group = templates.get(kind) if isinstance(templates, dict) else None
        group = group if isinstance(group, dict) else {}
        if name in group:
            return group[name]
        for key, value in group.items():  # dotnet-monitor looks names up ignoring case
            if key.lower() == name.lower():
                return value
        defined = ", ".join(group) if group else "none are defined"
        self.problem(path, f"no template named {name!r} under Templates.{kind} ({defined}); "
                           "write the object here or define the template")
        return None

    def check_schema(self, resolved: dict, substituted: set[KeyPath]) -> None:
        validator = _make_validator(self.schema)
        for error in validator.iter_errors(resolved):
            for path, message in _explain(error, self.doc):
                if any(path[: len(s)] == s for s in substituted):
                    continue  # inside a template: reported under Templates
                self.problem(path, message)

    def check_semantics(self, sections: dict) -> None:
        egress = sections.get("Egress") if isinstance(sections.get("Egress"), dict) else {}
        providers: dict[str, str] = {}
        for kind in _PROVIDER_KINDS:
            group = egress.get(kind)
            if isinstance(group, dict):
                for name in group:
                    if name in providers:
                        self.problem(("Egress", kind, name), f"egress provider {name!r} is also defined under "
                                                             f"Egress.{providers[name]}; names must be unique")
                    providers.setdefault(name, kind)
        properties = egress.get("Properties") if isinstance(egress.get("Properties"), dict) else {}
        blob = egress.get("AzureBlobStorage")
        if isinstance(blob, dict):
            for name, options in blob.items():
                if not isinstance(options, dict):
                    continue
                for setting in _SECRET_NAME_SETTINGS:
                    ref = options.get(setting)
                    if isinstance(ref, str) and ref not in properties:
                        self.problem(("Egress", "AzureBlobStorage", name, setting),
                                     f"names {ref!r}, which is not under Egress.Properties; define it there "
                                     "(as a secretKeyRef)")

        defaults = sections.get("CollectionRuleDefaults")
        default_egress = None
        if isinstance(defaults, dict) and isinstance(defaults.get("Actions"), dict):
            default_egress = defaults["Actions"].get("Egress")
            if isinstance(default_egress, str) and default_egress not in providers:
                self.problem(("CollectionRuleDefaults", "Actions", "Egress"), self.unknown_provider(default_egress, providers))

        def actions() -> Iterable[tuple[KeyPath, Any]]:
            rules = sections.get("CollectionRules")
            if isinstance(rules, dict):
                for rule_name, rule in rules.items():
                    if isinstance(rule, dict) and isinstance(rule.get("Actions"), list):
                        for index, action in enumerate(rule["Actions"]):
                            yield ("CollectionRules", rule_name, "Actions", index), action
            templates = sections.get("Templates")
            if isinstance(templates, dict) and isinstance(templates.get("CollectionRuleActions"), dict):
                for name, action in templates["CollectionRuleActions"].items():
                    yield ("Templates", "CollectionRuleActions", name), action

        for path, action in actions():
            if not isinstance(action, dict):
                continue
            kind = action.get("Type")
            settings = action.get("Settings") if isinstance(action.get("Settings"), dict) else {}
            if isinstance(kind, str) and kind.startswith("Collect"):
                target = settings.get("Egress")
                if target is None and default_egress is None:
                    if providers:
                        hint = f"one of: {', '.join(providers)}"
                    else:
                        hint = "define a provider under Egress first (for example Egress.FileSystem)"
                    self.problem(path + ("Settings",) if "Settings" in action else path,
                                 f"{kind} needs Settings.Egress, the egress provider that stores the artifact; {hint}")
                elif isinstance(target, str) and not isinstance(target, _RefValue) and target not in providers:
                    self.problem(path + ("Settings", "Egress"), self.unknown_provider(target, providers))
            if kind == "CollectTrace":
                has_profile, has_providers = "Profile" in settings, bool(settings.get("Providers"))
                if has_profile == has_providers:
                    self.problem(path + ("Settings",) if "Settings" in action else path,
                                 "CollectTrace needs either Profile (for example Cpu or Cpu,Http) or Providers, not "
                                 + ("both" if has_profile else "neither"))

        for path, trigger in self.triggers(sections):
            if not isinstance(trigger, dict):
                continue
            settings = trigger.get("Settings") if isinstance(trigger.get("Settings"), dict) else {}
            if (trigger.get("Type") == "EventCounter" and "Settings" in trigger
                    and settings.get("GreaterThan") is None and settings.get("LessThan") is None):
                self.problem(path + ("Settings",), "EventCounter needs GreaterThan or LessThan (or both)")
            codes = settings.get("StatusCodes")
            if trigger.get("Type") == "AspNetResponseStatus" and isinstance(codes, list):
                for index, code in enumerate(codes):
                    if isinstance(code, str) and not _STATUS_RE.match(code):
                        self.problem(path + ("Settings", "StatusCodes", index),
                                     f"{code!r} is not a status code or range; write for example \"500\" or \"500-599\"")
        rules = sections.get("CollectionRules")
        if isinstance(rules, dict):
            for name, rule in rules.items():
                if isinstance(rule, dict) and not rule.get("Actions"):
                    self.warning(("CollectionRules", name), "no Actions: the rule only counts its trigger")

    def triggers(self, sections: dict) -> Iterable[tuple[KeyPath, Any]]:
        rules = sections.get("CollectionRules")
        if isinstance(rules, dict):
            for name, rule in rules.items():
                if isinstance(rule, dict):
                    yield ("CollectionRules", name, "Trigger"), rule.get("Trigger")
        templates = sections.get("Templates")
        if isinstance(templates, dict) and isinstance(templates.get("CollectionRuleTriggers"), dict):
            for name, trigger in templates["CollectionRuleTriggers"].items():
                yield ("Templates", "CollectionRuleTriggers", name), trigger

    @staticmethod
    def unknown_provider(name: str, providers: dict[str, str]) -> str:
        if not providers:
            return f"egress provider {name!r} is not defined: add it under Egress (FileSystem, AzureBlobStorage or S3Storage)"
        return f"egress provider {name!r} is not defined under Egress{_did_you_mean(name, providers)}; defined: {', '.join(providers)}"


# --------------------------------------------------------------------------------------------
# jsonschema: validator and turning its errors into messages


def _make_validator(schema: dict) -> Any:
    import jsonschema
    from jsonschema import validators

    base = validators.Draft7Validator
    plain_enum = base.VALIDATORS["enum"]

    def enum(validator: Any, enums: Any, instance: Any, subschema: dict) -> Any:
        if subschema.get("x-enumFlags") and isinstance(instance, str):
            parts = [p.strip() for p in instance.split(",")]
            if parts and all(p in enums for p in parts):
                return
        yield from plain_enum(validator, enums, instance, subschema)

    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("duration")
    def _duration(value: object) -> bool:
        return not isinstance(value, str) or isinstance(value, _RefValue) or is_timespan(value)

    @checker.checks("uri")
    def _uri(value: object) -> bool:
        if not isinstance(value, str) or isinstance(value, _RefValue):
            return True
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        return bool(parts.scheme and parts.netloc)

    cls = validators.extend(base, {"enum": enum})
    return cls(schema, format_checker=checker)


def _explain(error: Any, doc: RulesDocument) -> list[tuple[KeyPath, str]]:
    """One schema error -> (path, message) pairs for the user, following the branch that applies."""
    path = tuple(error.absolute_path)
    if error.validator in ("oneOf", "anyOf") and error.context:
        branches: dict[int, list] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        candidates = [subs for subs in branches.values() if not any(_discriminator_miss(s) for s in subs)]
        if not candidates:
            return []  # the Type itself is wrong; its own enum check says so
        if len(candidates) > 1:
            fitting = [subs for subs in candidates
                       if not any(s.validator == "type" and tuple(s.absolute_path) == path for s in subs)]
            if not fitting:
                wanted: list[str] = []
                for subs in candidates:
                    for s in subs:
                        if s.validator == "type":
                            wanted += [s.validator_value] if isinstance(s.validator_value, str) else s.validator_value
                return [(path, _type_message(wanted, error.instance, path, doc))]
            candidates = fitting
        best = min(candidates, key=len)
        out: list[tuple[KeyPath, str]] = []
        for sub in best:
            out += _explain(sub, doc)
        return out
    return _leaf(error, path, doc)


def _discriminator_miss(error: Any) -> bool:
    return error.validator == "const" and len(error.relative_path) == 1 and error.relative_path[0] == "Type"


def _leaf(error: Any, path: KeyPath, doc: RulesDocument) -> list[tuple[KeyPath, str]]:
    kind, value, schema, instance = error.validator, error.validator_value, error.schema, error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties") or {})
        out = []
        for key in instance:
            if key in allowed:
                continue
            if not allowed:
                out.append((path + (key,), "unknown key; this mapping takes no keys here"))
                continue
            out.append((path + (key,), f"unknown key{_did_you_mean(key, allowed)}; expected one of: {', '.join(allowed)}"))
        return out
    if kind == "required" and isinstance(instance, dict):
        out = []
        for key in value:
            if key in instance:
                continue
            described = ((schema.get("properties") or {}).get(key) or {}).get("description")
            out.append((path, f"missing {key!r}" + (f" ({described.rstrip('.')})" if described else "")))
        return out
    if kind == "type":
        wanted = [value] if isinstance(value, str) else list(value)
        return [(path, _type_message(wanted, instance, path, doc))]
    if kind == "enum":
        options = [str(v) for v in value]
        flags = " (several may be joined with commas, e.g. Cpu,Http)" if schema.get("x-enumFlags") else ""
        return [(path, (f"{_show(instance)} is not a valid value{_did_you_mean(str(instance), options)}; "
                        f"expected one of: {', '.join(options)}{flags}"))]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = _number(value)
        words = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
                 "exclusiveMaximum": "less than"}[kind]
        return [(path, f"{_show(instance)} is out of range; expected a value {words} {bound}")]
    if kind == "minLength":
        return [(path, "must not be empty")]
    if kind == "minItems":
        return [(path, f"needs at least {value} item{'s' if value != 1 else ''}")]
    if kind == "pattern":
        return [(path, f"{_show(instance)} does not have the expected form ({value})")]
    if kind == "format" and value == "duration":
        return [(path, (f"{_show(instance)} is not a duration; write [d.]hh:mm:ss, e.g. \"00:00:30\" "
                        "(30 seconds), \"00:05:00\" (5 minutes), \"1.00:00:00\" (1 day)"))]
    if kind == "format" and value == "uri":
        return [(path, f"{_show(instance)} is not an absolute URL; write e.g. https://ACCOUNT.blob.core.windows.net")]
    if kind == "const":
        return [(path, f"expected {_show(value)}, not {_show(instance)}")]
    return [(path, error.message)]


def _type_message(wanted: list[str], instance: Any, path: KeyPath, doc: RulesDocument) -> str:
    words = [_TYPE_WORDS.get(w, w) for w in dict.fromkeys(wanted) if w != "null"] or ["null"]
    expected = " or ".join(words)
    if isinstance(instance, _RefValue):
        return f"expected {expected}; this setting cannot come from a Secret or ConfigMap"
    message = f"expected {expected}, not {_describe(instance)}"
    raw = doc.plain_scalars.get(path)
    if raw is not None and "string" in wanted and not isinstance(instance, str):
        message += f"; YAML reads the unquoted {raw} as {_describe(instance)}: quote it, \"{raw}\""
    return message


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {_number(value)}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _show(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(value)
    if isinstance(value, (dict, list)):
        return _describe(value)
    return repr(value)


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    options = list(options)
    for option in options:
        if option.lower() == word.lower():
            return f" (did you mean {option!r}? names are spelled exactly so)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _dedupe(problems: list[Problem]) -> tuple[Problem, ...]:
    seen = set()
    out = []
    for p in problems:
        if (p.path, p.message) in seen:
            continue
        seen.add((p.path, p.message))
        out.append(p)
    return tuple(sorted(out, key=lambda p: (p.line or 0, format_path(p.path))))
