"""PURE: ``--config FILE``, a partial container spec merged the way ``kubectl debug --custom`` does.

kubectl unmarshals the file into a Container and strategic-merges it onto the generated one
(kubernetes-notes §3.5): ``env`` by ``name``, ``volumeMounts`` by ``mountPath``, objects such as
``securityContext`` key by key, lists without a merge key (``args``, ``capabilities.add/drop``,
``envFrom``) replaced, ``null`` deletes a key. It refuses ``name``, ``command``, ``image``,
``lifecycle`` and ``volumeDevices``. Unlike kubectl, everything an ephemeral container may not have
(ports, resources, probes, subPath...) is refused here, before any API call, and so are keys that
are not container fields at all (kubectl would silently ignore a typo).

What is allowed but weakens the monitor's safety (binding beyond localhost, ``--no-auth``,
replacing the plugin's API key, extra privileges) is accepted and reported by ``check_custom``,
so the CLI can print it.
"""

from __future__ import annotations

import copy
from pathlib import Path

from kubectl_dotnet_monitor.errors import UsageError
from kubectl_dotnet_monitor.inject.spec import is_loopback_only

# kubectl's own refusal (pkg/cmd/debug/debug.go), word for word.
_KUBECTL_REFUSAL = "name, command, image, lifecycle and volume devices are not modifiable via custom profile"
_KUBECTL_REFUSED = ("name", "command", "image", "lifecycle", "volumeDevices")
# Container fields an ephemeral container may not set (validateEphemeralContainers).
_EPHEMERAL_FORBIDDEN = (
    "ports",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "resizePolicy",
    "restartPolicy",
)
_ALLOWED = frozenset(
    {
        "args",
        "workingDir",
        "envFrom",
        "env",
        "volumeMounts",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "imagePullPolicy",
        "securityContext",
        "stdin",
        "stdinOnce",
        "tty",
    }
)
_BOOLEAN_KEYS = ("stdin", "stdinOnce", "tty")
_STRING_KEYS = ("workingDir", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy")


def load_custom_spec(path: str | Path) -> dict:
    """Read a partial container spec from a JSON or YAML file (JSON first, like kubectl).

    YAML flow style with trailing commas and unquoted keys (the upstream sample) is accepted.
    ``UsageError`` names the file when it is missing, unreadable, not a mapping, or invalid.
    """
    from kubectl_dotnet_monitor.userfiles import load_mapping

    return load_mapping(path, "--config", empty_hint="it should contain a partial container spec",
                        not_a_mapping="does not contain a valid container spec (expected a mapping)")


def check_custom(custom: dict, source: str = "--config") -> list[str]:
    """Validate a partial container spec; return warnings about what weakens safety.

    Raises ``UsageError`` naming ``source`` and the key path (``volumeMounts[0].subPath``) for
    anything kubectl or the API server would refuse, or that is not a container field.
    """
    if not isinstance(custom, dict):
        raise UsageError(f"{source} does not contain a valid container spec (expected a mapping)")
    for key in custom:
        _check_key(source, key)
    for key in _KUBECTL_REFUSED:
        if custom.get(key):
            raise UsageError(f"{source}: {key}: {_KUBECTL_REFUSAL}")
    for key in _EPHEMERAL_FORBIDDEN:
        value = custom.get(key)
        if key == "resources" and _is_empty(value):
            continue
        if value not in (None, "", [], {}):
            raise UsageError(
                f"{source}: {key}: cannot be set for an ephemeral container",
                hint=f"remove {key!r} from the file",
            )
    unknown = sorted(k for k in custom if k not in _ALLOWED and k not in _KUBECTL_REFUSED and k not in _EPHEMERAL_FORBIDDEN)
    if unknown:
        hint = "the monitor's app container is chosen with -c" if "targetContainerName" in unknown else None
        raise UsageError(
            f"{source}: {', '.join(unknown)}: not a field an ephemeral container can set "
            f"(allowed: {', '.join(sorted(_ALLOWED))})",
            hint=hint,
        )

    for key in ("env", "args", "volumeMounts"):
        if key in custom and custom[key] is None:
            raise UsageError(
                f"{source}: {key}: null would delete the plugin's {key}, which the monitor needs",
                hint=f"list the entries to add or replace under {key!r} instead",
            )
    for key in _BOOLEAN_KEYS:
        if key in custom and custom[key] is not None and not isinstance(custom[key], bool):
            raise UsageError(f"{source}: {key}: must be true or false")
    for key in _STRING_KEYS:
        if key in custom and custom[key] is not None and not isinstance(custom[key], str):
            raise UsageError(f"{source}: {key}: must be a string")

    warnings: list[str] = []
    warnings += _check_args(source, custom.get("args"))
    warnings += _check_env(source, custom.get("env"))
    _check_list_of_mappings(source, "envFrom", custom.get("envFrom"))
    _check_mounts(source, custom.get("volumeMounts"))
    warnings += _check_security_context(source, custom.get("securityContext"))
    if "securityContext" in custom and custom["securityContext"] is None:
        warnings.append(
            f"{source} removes the monitor's securityContext: it no longer runs as the app's user "
            "and may not pass the namespace's Pod Security level"
        )
    return warnings


def apply_custom(container: dict, custom: dict, source: str = "--config") -> dict:
    """``container`` with ``custom`` strategic-merged onto it (a new dict; neither is modified).

    Validates first (``check_custom``); call that yourself to get the warnings to print.
    An env entry or volume mount with the same name/mountPath is replaced as a whole (a ``value``
    and a ``valueFrom`` must not end up side by side).
    """
    check_custom(custom, source)
    merged = copy.deepcopy(container)
    for key, value in custom.items():
        if key in _EPHEMERAL_FORBIDDEN or key in _KUBECTL_REFUSED:
            continue  # empty values only (check_custom refused the rest)
        if value is None:
            merged.pop(key, None)
        elif key == "env":
            merged["env"] = _merge_by_key(merged.get("env") or [], value, "name")
        elif key == "volumeMounts":
            merged["volumeMounts"] = _merge_by_key(merged.get("volumeMounts") or [], value, "mountPath")
        elif key == "securityContext":
            merged["securityContext"] = _merge_maps(merged.get("securityContext") or {}, value)
        else:
            merged[key] = copy.deepcopy(value)
    for key in ("env", "volumeMounts", "securityContext"):
        if key in merged and not merged[key]:
            del merged[key]
    return merged


# --------------------------------------------------------------------------------------------
# Validation helpers


def _check_key(source: str, key: object, path: str = "") -> None:
    if not isinstance(key, str):
        raise UsageError(f"{source}: {path}{key!r}: keys must be strings")
    if key.startswith("$"):
        raise UsageError(f"{source}: {path}{key}: strategic-merge directives are not supported")


def _check_args(source: str, args: object) -> list[str]:
    if args is None:
        return []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise UsageError(f"{source}: args: must be a list of strings (quote numbers)")
    warnings = []
    lowered = [a.lower() for a in args]
    if "--no-auth" in lowered:
        warnings.append(f"{source} turns authentication off (--no-auth): anyone who reaches the monitor can take dumps")
    if "--temp-apikey" in lowered:
        warnings.append(
            f"{source} uses --temp-apikey: the monitor prints its token to the pod log, readable by "
            "anyone allowed to read pod logs"
        )
    for flag in ("--urls", "--metricurls"):
        for i, arg in enumerate(lowered):
            value = None
            if arg == flag and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(flag + "="):
                value = args[i].split("=", 1)[1]
            if value is not None and not is_loopback_only(value):
                warnings.append(_wide_warning(source, f"args {flag}", value))
    return warnings


def _check_env(source: str, env: object) -> list[str]:
    _check_list_of_mappings(source, "env", env)
    warnings = []
    for i, entry in enumerate(env or []):
        where = f"env[{i}]"
        for key in entry:
            _check_key(source, key, f"{where}.")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise UsageError(f"{source}: {where}.name: every env entry needs a name")
        if "value" in entry and entry["value"] is not None and not isinstance(entry["value"], str):
            raise UsageError(f"{source}: {where}.value: must be a string (quote {entry['value']!r})")
        if entry.get("value") is not None and entry.get("valueFrom") is not None:
            raise UsageError(f"{source}: {where}: set value or valueFrom, not both")
        value = entry.get("value") or ""
        key = name.lower()
        key = key[len("dotnetmonitor_"):] if key.startswith("dotnetmonitor_") else key
        if key in ("urls", "aspnetcore_urls", "metrics__endpoints") and value and not is_loopback_only(value):
            warnings.append(_wide_warning(source, f"{where} ({name})", value))
        elif key.startswith("authentication__"):
            warnings.append(
                f"{source} sets {name}: it replaces the plugin's API key configuration, so the plugin's "
                "tokens may be refused"
            )
    return warnings


def _check_list_of_mappings(source: str, key: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise UsageError(f"{source}: {key}: must be a list of mappings")


def _check_mounts(source: str, mounts: object) -> None:
    _check_list_of_mappings(source, "volumeMounts", mounts)
    for i, mount in enumerate(mounts or []):
        where = f"volumeMounts[{i}]"
        for key in mount:
            _check_key(source, key, f"{where}.")
        for key in ("subPath", "subPathExpr"):
            if mount.get(key):
                raise UsageError(
                    f"{source}: {where}.{key}: cannot be set for an ephemeral container",
                    hint="mount the whole volume instead (the app must mount it without subPath too)",
                )
        for key in ("name", "mountPath"):
            if not isinstance(mount.get(key), str) or not mount.get(key):
                raise UsageError(f"{source}: {where}.{key}: required")
        if not mount["mountPath"].startswith("/"):
            raise UsageError(f"{source}: {where}.mountPath: must be an absolute path")


def _check_security_context(source: str, context: object) -> list[str]:
    if context is None:
        return []  # a null securityContext is reported by check_custom
    if not isinstance(context, dict):
        raise UsageError(f"{source}: securityContext: must be a mapping")
    _check_keys_deep(source, context, "securityContext.")
    warnings = []
    removed = sorted(k for k, v in context.items() if v is None)
    if removed:
        warnings.append(f"{source} removes securityContext.{', '.join(removed)} from the monitor")
    if context.get("privileged"):
        warnings.append(f"{source} makes the monitor privileged: it does not need it")
    if context.get("allowPrivilegeEscalation"):
        warnings.append(f"{source} allows privilege escalation in the monitor")
    if context.get("runAsUser") == 0 or context.get("runAsNonRoot") is False:
        warnings.append(f"{source} runs the monitor as root: match the app's user instead")
    capabilities = context.get("capabilities")
    if capabilities is not None:
        if not isinstance(capabilities, dict):
            raise UsageError(f"{source}: securityContext.capabilities: must be a mapping")
        for key in ("add", "drop"):
            value = capabilities.get(key)
            if value is not None and (not isinstance(value, list) or not all(isinstance(c, str) for c in value)):
                raise UsageError(f"{source}: securityContext.capabilities.{key}: must be a list of names")
        if capabilities.get("add"):
            warnings.append(
                f"{source} adds capabilities ({', '.join(capabilities['add'])}); dotnet-monitor needs "
                "none, and Pod Security baseline/restricted may refuse them"
            )
        if "drop" in capabilities and "ALL" not in (capabilities.get("drop") or []):
            warnings.append(f"{source} replaces the monitor's 'drop: [ALL]' capabilities list")
    return warnings


def _check_keys_deep(source: str, value: object, path: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _check_key(source, key, path)
            _check_keys_deep(source, item, f"{path}{key}.")


def _is_empty(value: object) -> bool:
    if value is None or value == {} or value == []:
        return True
    return isinstance(value, dict) and all(_is_empty(v) for v in value.values())


def _wide_warning(source: str, where: str, value: str) -> str:
    return (
        f"{source} {where} binds {value}: beyond localhost, anything that reaches the pod's network "
        "can talk to the monitor (port-forward needs only localhost)"
    )


# --------------------------------------------------------------------------------------------
# Merge helpers


def _merge_by_key(base: list, patch: list, key: str) -> list:
    result = [copy.deepcopy(item) for item in base]
    for item in patch:
        for i, existing in enumerate(result):
            if existing.get(key) == item.get(key):
                result[i] = copy.deepcopy(item)
                break
        else:
            result.append(copy.deepcopy(item))
    return result


def _merge_maps(base: dict, patch: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_maps(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
