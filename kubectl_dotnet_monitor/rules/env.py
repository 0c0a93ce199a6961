"""PURE: a rules document -> the monitor container's environment.

dotnet-monitor reads .NET configuration, and environment variables named ``DotnetMonitor_<path>``
are one of its sources: ``__`` separates the levels of the path and list items are numbered from 0
(``DotnetMonitor_CollectionRules__HighCpu__Actions__0__Type=CollectTrace``). Every value is a string:
``true``/``false`` for booleans, numbers as written in invariant form. ``null`` leaves the key out
(dotnet-monitor then uses its default); empty mappings and lists add nothing.

Secrets never become literal values in the pod spec, where anyone who can read pods would see them.
A value may instead refer to a key of an existing Secret (or ConfigMap) in the pod's namespace::

    SecretAccessKey:
      secretKeyRef: {name: s3-creds, key: secretAccessKey}

which becomes ``valueFrom.secretKeyRef`` of that variable, resolved by the kubelet. A literal value
in a setting that holds a secret (``SECRET_SETTINGS``) is refused with an explanation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubectl_dotnet_monitor.errors import UsageError
from kubectl_dotnet_monitor.rules.loader import format_path

ENV_PREFIX = "DotnetMonitor_"
#: The parts of dotnet-monitor's configuration a rules file may set; the plugin owns the rest.
SECTIONS = ("CollectionRules", "Egress", "CollectionRuleDefaults", "Templates")
#: Kinds of reference a value may be, as in a container's ``env[].valueFrom``.
REF_KINDS = ("secretKeyRef", "configMapKeyRef")

# Settings that hold secrets (from the schema's egress provider options), by provider kind. Every
# value under ``Egress.Properties`` is treated as secret too: that map exists to hold keys and
# signatures that providers look up by name (AccountKeyName, SharedAccessSignatureName, ...).
SECRET_SETTINGS: dict[str, tuple[str, ...]] = {
    "AzureBlobStorage": ("AccountKey", "SharedAccessSignature", "QueueSharedAccessSignature"),
    "S3Storage": ("SecretAccessKey",),
}

_REF_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_REF_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_PART_RE = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True)
class ValueRef:
    """A value taken from a key of a Secret or ConfigMap in the pod's namespace."""

    kind: str  # "secretKeyRef" | "configMapKeyRef"
    name: str
    key: str
    optional: bool | None = None

    def value_from(self) -> dict:
        """The ``valueFrom`` of a container env entry (field order as the API server returns it)."""
        selector: dict = {"name": self.name, "key": self.key}
        if self.optional is not None:
            selector["optional"] = self.optional
        return {self.kind: selector}

    def describe(self) -> str:
        """``Secret s3-creds, key secretAccessKey``."""
        kind = "Secret" if self.kind == "secretKeyRef" else "ConfigMap"
        return f"{kind} {self.name}, key {self.key}"


# --------------------------------------------------------------------------------------------
# References and secrets


def is_ref(value: Any) -> bool:
    """True when ``value`` looks like a reference (a mapping whose only key is a REF_KIND)."""
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in REF_KINDS


def parse_ref(value: Any) -> ValueRef | str:
    """The reference ``value`` describes, or a message saying what is wrong with it."""
    kind = next(iter(value))
    body = value[kind]
    example = f"{kind}: {{name: s3-creds, key: secretAccessKey}}"
    if not isinstance(body, Mapping):
        return f"{kind} needs a mapping with 'name' and 'key', for example {example}"
    unknown = sorted(set(body) - {"name", "key", "optional"})
    if unknown:
        return f"{kind} has unknown keys {', '.join(map(repr, unknown))}; it takes name, key and optional"
    name, key, optional = body.get("name"), body.get("key"), body.get("optional")
    if not isinstance(name, str) or not _REF_NAME_RE.match(name) or len(name) > 253:
        return (
            f"{kind}.name must be the name of a {'Secret' if kind == 'secretKeyRef' else 'ConfigMap'} "
            f"(lowercase letters, digits, '-' and '.'), not {name!r}"
        )
    if not isinstance(key, str) or not _REF_KEY_RE.match(key):
        return f"{kind}.key must be a key of that object (letters, digits, '-', '_', '.'), not {key!r}"
    if optional is not None and not isinstance(optional, bool):
        return f"{kind}.optional must be true or false, not {optional!r}"
    return ValueRef(kind=kind, name=name, key=key, optional=optional)


def is_secret_setting(path: tuple) -> bool:
    """True for the key paths whose value is a secret (storage keys, signatures, Egress.Properties)."""
    if len(path) < 3 or path[0] != "Egress":
        return False
    if path[1] == "Properties":
        return len(path) == 3
    return len(path) == 4 and path[3] in SECRET_SETTINGS.get(str(path[1]), ())


def secret_advice(path: tuple, one_line: bool = False) -> str:
    """How to move the secret at ``path`` into a Secret, with commands to copy."""
    setting = str(path[-1])
    key = setting[:1].lower() + setting[1:]
    create = f"kubectl create secret generic egress-credentials -n NAMESPACE --from-literal={key}=VALUE"
    if one_line:
        return (f"store it in a Secret ({create}) and write "
                f"{setting}: {{secretKeyRef: {{name: egress-credentials, key: {key}}}}}")
    return (
        f"put the value in a Secret in the pod's namespace and refer to it:\n"
        f"  {create}\n"
        f"and in the rules file:\n"
        f"  {setting}:\n"
        f"    secretKeyRef: {{name: egress-credentials, key: {key}}}"
    )


# --------------------------------------------------------------------------------------------
# Rendering


def render_env(data: Mapping) -> tuple[dict, ...]:
    """The container env entries for a (validated) rules document, in document order.

    Raises ``UsageError`` for what cannot be expressed as environment (a name with ``__`` or
    characters an env var cannot have, a non-finite number), for a reference that is malformed, and
    for a literal secret.
    """
    if not isinstance(data, Mapping):
        raise UsageError("a rules document must be a mapping of configuration sections")
    for section in data:
        if section not in SECTIONS:
            raise UsageError(f"{section}: not a section a rules file can set (allowed: {', '.join(SECTIONS)})")
    env: list[dict] = []
    for path, value in _leaves(data, ()):
        if value is None:
            continue
        name = ENV_PREFIX + "__".join(_env_part(path, part) for part in path)
        if isinstance(value, ValueRef):
            env.append({"name": name, "valueFrom": value.value_from()})
            continue
        if is_secret_setting(path):
            raise UsageError(
                f"{format_path(path)}: a secret must not be written into the rules file: it would be "
                "stored in the pod spec, readable by anyone who may read pods",
                hint=secret_advice(path),
            )
        env.append({"name": name, "value": scalar_text(value, path)})
    return tuple(env)


def scalar_text(value: Any, path: tuple = ()) -> str:
    """A scalar as .NET configuration reads it: ``true``/``false``, ``80``, ``0.5``, text as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"{format_path(path)}: {value} is not a number dotnet-monitor can read")
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, str):
        return value
    raise UsageError(f"unexpected value {value!r}")


def _env_part(path: tuple, part: Any) -> str:
    if isinstance(part, int):
        return str(part)
    if not _ENV_PART_RE.match(part) or "__" in part:
        raise UsageError(
            f"{format_path(path)}: the name {part!r} cannot be passed to dotnet-monitor in an environment "
            "variable; use letters, digits, '-', '.' and single '_'"
        )
    return part


def _leaves(value: Any, path: tuple) -> Iterator[tuple[tuple, Any]]:
    """(path, scalar or ValueRef) for every leaf, depth first, in document order."""
    if is_ref(value):
        ref = parse_ref(value)
        if isinstance(ref, str):
            raise UsageError(f"{format_path(path)}: {ref}")
        yield path, ref
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))
    else:
        yield path, value
