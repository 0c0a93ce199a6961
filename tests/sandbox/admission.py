"""PURE: what the API server does to a Pod between "request body" and "stored object".

Three jobs, all on plain dicts (no I/O, no sandbox state):

* **Patching** (`apply_patch`): strategic-merge-patch with the Pod's merge keys and directives,
  RFC 7386 merge-patch, RFC 6902 json-patch (the semantics of the evanphx/json-patch v4 library the
  API server uses), with the API server's status codes and messages for failures
  (`k8s.io/apiserver/pkg/endpoints/handlers/patch.go`).
* **The `ephemeralcontainers` subresource** (`effective_update`, `validate_ephemeral_update`): the
  strategy keeps only `spec.ephemeralContainers` of the new object, the decoder applies the
  container defaults, and `ValidatePodEphemeralContainersUpdate` runs
  (`pkg/apis/core/validation/validation.go`, `pkg/registry/core/pod/strategy.go`).
* **Pod Security admission** (`pod_security_violations`, `format_forbidden`): the checks of
  `k8s.io/pod-security-admission/policy` for `baseline`/`restricted`, in the evaluator's order and
  with its wording.

Errors are `ApiError` subclasses carrying the HTTP code, the Status `reason`, `message` and
`details`; `ApiError.status()` renders the full `Status` body the API server would send.

Deliberate simplifications (each stricter or equal, never easier, unless said):
  * `$setElementOrder` is honoured for the listed elements; elements it does not list keep their
    relative order after them (the real algorithm interleaves them by server position).
  * Only the container fields that matter here are type-checked after a patch (`check_pod_shape`).
  * Pod Security checks are those for containers, host namespaces/ports/paths, volumes, sysctls,
    seLinux and AppArmor annotations; version pinning (`restricted:v1.24`) drops checks newer than
    the pinned version but keeps the latest wording.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

# ================================================================================================
# Errors: the Status bodies of k8s.io/apimachinery/pkg/api/errors


class ApiError(Exception):
    """An error the API server reports as a `Status` (code, reason, message, details)."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def status(self) -> dict:
        """The `Status` body, as the API server serialises it."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


class BadRequest(ApiError):
    """400 BadRequest (`errors.NewBadRequest`): the body could not be decoded or applied."""

    code = 400
    reason = "BadRequest"

    def __init__(self, message: str) -> None:
        super().__init__(message, None)


class Invalid(ApiError):
    """422 Invalid. `causes` are ``{"reason", "message", "field"}`` dicts (StatusCause)."""

    code = 422
    reason = "Invalid"

    def __init__(self, message: str, causes: list[dict] | None = None, *, name: str = "",
                 kind: str = "Pod", group: str = "", details: dict | None = None) -> None:
        self.causes = list(causes or [])
        if details is None:
            details = {}
            if name:
                details["name"] = name
            if group:
                details["group"] = group
            if kind:
                details["kind"] = kind
            if self.causes:
                details["causes"] = self.causes
        super().__init__(message, details)


class Forbidden(ApiError):
    """403 Forbidden (`errors.NewForbidden`), e.g. a Pod Security admission denial."""

    code = 403
    reason = "Forbidden"

    def __init__(self, message: str, *, name: str = "", kind: str = "pods") -> None:
        details: dict[str, Any] = {}
        if name:
            details["name"] = name
        if kind:
            details["kind"] = kind
        super().__init__(message, details)


class RequestEntityTooLarge(ApiError):
    """413: more than 10000 json-patch operations."""

    code = 413
    reason = "RequestEntityTooLarge"

    def __init__(self, message: str) -> None:
        super().__init__(f"Request entity too large: {message}", None)


class UnsupportedMediaType(ApiError):
    """415: a PATCH content type the endpoint does not take."""

    code = 415
    reason = "UnsupportedMediaType"

    def __init__(self, message: str) -> None:
        super().__init__(message, {})


class InternalError(ApiError):
    """500: an error the handler did not map (`errors.NewInternalError`)."""

    code = 500
    reason = "InternalError"

    def __init__(self, err: str) -> None:
        super().__init__(f"Internal error occurred: {err}", {"causes": [{"message": err}]})
        self.err = err


def generic_invalid(detail: str) -> Invalid:
    """`NewGenericServerResponse(422, ...)`: the fixed message; the cause text is *not* sent.

    `detail` (the json-patch library's own error) is kept on the exception for debugging only.
    """
    err = Invalid("the server rejected our request due to an error in our request", details={})
    err.detail = detail  # type: ignore[attr-defined]
    return err


# ================================================================================================
# Field errors (k8s.io/apimachinery/pkg/util/validation/field)

_TYPE_NAMES = {
    "FieldValueNotFound": "Not found",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "InternalError": "Internal error",
}
_NO_VALUE_TYPES = {"FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong", "InternalError"}
_OMIT = object()


def go_quote(s: str) -> str:
    """Go's %q for the strings that occur here (JSON escaping is close enough for ASCII)."""
    return json.dumps(s, ensure_ascii=False)


def go_value(v: Any) -> str:
    """How `field.Error` prints a bad value: %q for strings, %v for numbers/bools."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return go_quote(v)
    # Go prints structs with %#v (type names and all); a JSON rendering is our stand-in.
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class FieldError:
    """One `field.Error`: type (a CauseType such as ``FieldValueForbidden``), field, value, detail."""

    type: str
    field: str
    bad_value: Any = _OMIT
    detail: str = ""

    def body(self) -> str:
        """`ErrorBody()`: the message without the field path."""
        name = _TYPE_NAMES[self.type]
        if self.type in _NO_VALUE_TYPES or self.bad_value is _OMIT:
            s = name
        else:
            s = f"{name}: {go_value(self.bad_value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", field, _OMIT, detail)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, _OMIT, detail)


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", field, value, detail)


def not_found(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueNotFound", field, value, "")


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", field, value, "")


def not_supported(field: str, value: Any, valid: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(go_quote(v) for v in valid) if valid else ""
    return FieldError("FieldValueNotSupported", field, value, detail)


def aggregate_message(errors: list[FieldError]) -> str:
    """`ErrorList.ToAggregate().Error()`: duplicates dropped, one message or ``[a, b]``."""
    seen: list[str] = []
    for e in errors:
        text = str(e)
        if text not in seen:
            seen.append(text)
    if len(seen) == 1:
        return seen[0]
    return "[" + ", ".join(seen) + "]"


def new_invalid(kind: str, name: str, errors: list[FieldError], group: str = "") -> Invalid:
    """`errors.NewInvalid(GroupKind, name, errs)`: message ``Kind "name" is invalid: ...``."""
    qualified = f"{kind}.{group}" if group else kind
    if errors:
        message = f"{qualified} {go_quote(name)} is invalid: {aggregate_message(errors)}"
    else:
        message = f"{qualified} {go_quote(name)} is invalid"
    causes = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errors]
    return Invalid(message, causes, name=name, kind=kind, group=group)


# ================================================================================================
# Patching

CONTENT_TYPE_SMP = "application/strategic-merge-patch+json"
CONTENT_TYPE_MERGE = "application/merge-patch+json"
CONTENT_TYPE_JSON_PATCH = "application/json-patch+json"
CONTENT_TYPE_APPLY = "application/apply-patch+yaml"
MAX_JSON_PATCH_OPERATIONS = 10000

_UNKNOWN_PATCH_TYPE = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, "
    "application/strategic-merge-patch+json"
)

#: Strategic merge keys of the Pod schema. Key: the kind of map the list lives in.
#: Value: field -> merge key ("" = merge a list of primitives as a set). Lists not named replace.
_CONTAINER_LISTS = {"ports": "containerPort", "env": "name", "volumeMounts": "mountPath",
                    "volumeDevices": "devicePath"}
_POD_SPEC_LISTS = {"volumes": "name", "containers": "name", "initContainers": "name",
                   "ephemeralContainers": "name", "imagePullSecrets": "name", "hostAliases": "ip",
                   "topologySpreadConstraints": "topologyKey", "resourceClaims": "name",
                   "schedulingGates": "name"}
_META_LISTS = {"ownerReferences": "uid", "finalizers": ""}
_STATUS_LISTS = {"conditions": "type", "podIPs": "ip", "hostIPs": "ip",
                 "resourceClaimStatuses": "name"}
_CONTAINER_KINDS = ("containers", "initContainers", "ephemeralContainers")


def _list_keys_for(path: tuple[str, ...]) -> dict[str, str]:
    """Merge keys of the lists inside the map found at `path` (list indices omitted).

    A workload's pod template (``spec.template``) has the pod's merge keys; a Pod has no
    ``spec.template``, so the prefix cannot be confused with a pod path."""
    if path[:2] == ("spec", "template") and len(path) > 2:
        return _list_keys_for(path[2:]) if path[2:] != ("status",) else {}
    if path == ("metadata",):
        return _META_LISTS
    if path == ("spec",):
        return _POD_SPEC_LISTS
    if path == ("status",):
        return _STATUS_LISTS
    if len(path) == 2 and path[0] == "spec" and path[1] in _CONTAINER_KINDS:
        return _CONTAINER_LISTS
    return {}


def _patched(obj: dict, body: bytes, content_type: str) -> dict:
    """``obj`` with ``body`` applied by the patch type its content type names (415 otherwise)."""
    media = _media_type(content_type)
    if media == CONTENT_TYPE_SMP:
        return _strategic_merge(obj, body)
    if media == CONTENT_TYPE_MERGE:
        return _merge_patch(obj, body)
    if media == CONTENT_TYPE_JSON_PATCH:
        return _json_patch(obj, body)
    raise UnsupportedMediaType(_UNKNOWN_PATCH_TYPE)


def apply_object_patch(obj: dict, body: bytes, content_type: str) -> dict:
    """Apply a PATCH body to an apps/v1 workload (not modified) and return the patched object.

    Same patch types, errors and strategic merge keys as `apply_patch` (the pod template inside
    ``spec.template`` merges like a pod); no pod shape check and no pod defaulting."""
    result = _patched(obj, body, content_type)
    template = (result.get("spec") or {}).get("template") if isinstance(result, dict) else None
    shape_error = check_pod_shape(template) if isinstance(template, dict) else None
    if shape_error:
        patch_repr = body.decode("utf-8", "replace")
        raise Invalid(
            f'"" is invalid: patch: Invalid value: {go_quote(patch_repr)}: {shape_error}',
            [{"reason": "FieldValueInvalid",
              "message": f"Invalid value: {go_quote(patch_repr)}: {shape_error}",
              "field": "patch"}],
            kind="",
        )
    return result


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def apply_patch(pod: dict, body: bytes, content_type: str) -> dict:
    """Apply a PATCH body to `pod` (not modified) and return the patched object.

    Raises `BadRequest` (undecodable body, bad directives), `Invalid` (json-patch that does not
    apply, patched object of the wrong shape), `RequestEntityTooLarge`, `UnsupportedMediaType`,
    `InternalError` (what the API server reports as 500, e.g. a missing merge key).
    The result is defaulted like the API server's decoder defaults it (`default_pod`).
    """
    result = _patched(pod, body, content_type)
    shape_error = check_pod_shape(result)
    if shape_error:
        patch_repr = body.decode("utf-8", "replace")
        raise Invalid(
            f'"" is invalid: patch: Invalid value: {go_quote(patch_repr)}: {shape_error}',
            [{"reason": "FieldValueInvalid",
              "message": f"Invalid value: {go_quote(patch_repr)}: {shape_error}",
              "field": "patch"}],
            kind="",
        )
    return default_pod(result)


def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequest(f"invalid character in request body: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(_go_json_error(exc)) from None


def _go_json_error(exc: json.JSONDecodeError) -> str:
    """A Go-flavoured decoding message (encoding/json wording where it is easy to match)."""
    if exc.msg.startswith("Expecting value") and exc.pos >= len(exc.doc.strip()):
        return "unexpected end of JSON input"
    ch = exc.doc[exc.pos] if exc.pos < len(exc.doc) else ""
    return f"invalid character {ch!r} looking for beginning of value" if ch else exc.msg


# ---- strategic merge patch (k8s.io/apimachinery/pkg/util/strategicpatch)


def _strategic_merge(pod: dict, body: bytes) -> dict:
    patch = _decode_json(body)
    if not isinstance(patch, dict):
        kind = "array" if isinstance(patch, list) else type(patch).__name__
        raise BadRequest(
            f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}")
    return _smp_map(copy.deepcopy(pod), patch, ())


def strategic_merge_container(container: dict, patch: dict) -> dict:
    """Strategic-merge `patch` onto one container (what kubectl does for ``--custom``):
    ``env`` by name, ``volumeMounts`` by mountPath, ``ports`` by containerPort, other lists
    replace. Neither argument is modified."""
    return _smp_map(copy.deepcopy(container), patch, ("spec", "ephemeralContainers"))


def _go_map(m: Any) -> str:
    """Go's %v of a map[string]interface{} (keys sorted), for error messages."""
    if isinstance(m, dict):
        return "map[" + " ".join(f"{k}:{_go_map(m[k])}" for k in sorted(m)) + "]"
    if isinstance(m, list):
        return "[" + " ".join(_go_map(x) for x in m) + "]"
    if m is None:
        return "<nil>"
    if isinstance(m, bool):
        return "true" if m else "false"
    return str(m)


def _smp_map(original: dict, patch: dict, path: tuple[str, ...]) -> dict:
    if "$patch" in patch:
        directive = patch["$patch"]
        if directive == "replace":
            return {k: v for k, v in patch.items() if k != "$patch"}
        if directive == "delete":
            return {}
        raise InternalError(f"unknown patch type: {directive} in map: {_go_map(patch)}")
    keys = _list_keys_for(path)
    result = original
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list):
            raise BadRequest("invalid patch format of retainKeys")
        for k in list(result):
            if k not in retain:
                del result[k]
    for k, pv in patch.items():
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if not isinstance(pv, list):
                raise BadRequest("invalid patch format of primitive list")
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field] if x not in pv]
    orders = {k.split("/", 1)[1]: v for k, v in patch.items() if k.startswith("$setElementOrder/")}
    for k, pv in patch.items():
        if k.startswith("$"):
            continue
        if pv is None:
            result.pop(k, None)
            continue
        ov = result.get(k)
        if isinstance(pv, dict):
            result[k] = _smp_map(ov if isinstance(ov, dict) else {}, pv, path + (k,))
        elif isinstance(pv, list) and k in keys:
            result[k] = _smp_list(ov if isinstance(ov, list) else [], pv, path + (k,), keys[k],
                                  orders.get(k))
        else:
            result[k] = copy.deepcopy(pv)
    for k, order in orders.items():
        if k not in patch and k in keys and keys[k] and isinstance(result.get(k), list):
            result[k] = _apply_order(result[k], order, keys[k])
    return result


def _smp_list(original: list, patch: list, path: tuple[str, ...], merge_key: str,
              order: list | None) -> list:
    if merge_key == "":
        # A set of primitives (finalizers): union, original order first.
        out = list(original)
        for item in patch:
            if isinstance(item, dict) and item.get("$patch") == "replace":
                return [x for x in patch if not (isinstance(x, dict) and "$patch" in x)]
            if item not in out:
                out.append(item)
        return out
    for item in patch:
        if isinstance(item, dict) and item.get("$patch") == "replace":
            return [_strip_directives(x) for x in patch
                    if not (isinstance(x, dict) and x.get("$patch") == "replace")]
    result = list(original)
    for item in patch:
        if not isinstance(item, dict):
            raise InternalError(
                f"unable to find api field in struct for the list element: {_go_map(item)}")
        if merge_key not in item:
            raise InternalError(
                f"map: {_go_map(item)} does not contain declared merge key: {merge_key}")
        directive = item.get("$patch")
        if directive == "delete":
            result = [x for x in result
                      if not (isinstance(x, dict) and x.get(merge_key) == item[merge_key])]
            continue
        if directive is not None and directive != "merge":
            raise InternalError(f"unknown patch type: {directive} in map: {_go_map(item)}")
        body = {k: v for k, v in item.items() if k != "$patch"}
        for i, existing in enumerate(result):
            if isinstance(existing, dict) and _same_key(existing.get(merge_key), item[merge_key]):
                result[i] = _smp_map(existing, body, path)
                break
        else:
            result.append(_smp_map({}, body, path))
    if order is not None:
        result = _apply_order(result, order, merge_key)
    return result


def _same_key(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _strip_directives(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip_directives(x) for k, x in v.items() if not k.startswith("$")}
    if isinstance(v, list):
        return [_strip_directives(x) for x in v]
    return v


def _apply_order(items: list, order: list, merge_key: str) -> list:
    if not isinstance(order, list):
        raise BadRequest("invalid patch format of setElementOrder list")
    rank = {}
    for i, o in enumerate(order):
        if isinstance(o, dict) and merge_key in o:
            rank[json.dumps(o[merge_key])] = i
    listed = [x for x in items if isinstance(x, dict) and json.dumps(x.get(merge_key)) in rank]
    listed.sort(key=lambda x: rank[json.dumps(x.get(merge_key))])
    rest = [x for x in items if x not in listed]
    return listed + rest


# ---- RFC 7386 merge patch


def _merge_patch(pod: dict, body: bytes) -> dict:
    try:
        patch = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("Invalid JSON Patch") from None
    if not isinstance(patch, dict):
        # evanphx MergePatch: errBadMergeTypes, not mapped to a Status -> 500.
        raise InternalError("Mismatched JSON Documents")
    return _merge_value(copy.deepcopy(pod), patch)


def _merge_value(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = _merge_value(result.get(k), v)
    return result


# ---- RFC 6902 json patch (evanphx/json-patch v4 semantics)


class _PatchFailed(Exception):
    pass


def _json_patch(pod: dict, body: bytes) -> dict:
    ops = _decode_json(body)
    if not isinstance(ops, list):
        kind = "object" if isinstance(ops, dict) else type(ops).__name__
        raise BadRequest(f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch")
    if any(not isinstance(op, dict) for op in ops):
        raise BadRequest("json: cannot unmarshal array into Go value of type jsonpatch.Operation")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise RequestEntityTooLarge(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
            f"got {len(ops)}")
    doc: Any = copy.deepcopy(pod)
    try:
        for op in ops:
            doc = _apply_op(doc, op)
    except _PatchFailed as exc:
        raise generic_invalid(str(exc)) from None
    if not isinstance(doc, dict):
        raise generic_invalid("patched document is not an object")
    return doc


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise _PatchFailed("operation missing path")
    if path == "":
        return []
    if not path.startswith("/"):
        raise _PatchFailed(f"Unable to find path: {path}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(key: str, size: int, allow_end: bool) -> int:
    if not re.fullmatch(r"-?[0-9]+", key):
        raise _PatchFailed(f"Unable to access invalid index: {key}")
    idx = int(key)
    limit = size + 1 if allow_end else size
    if idx >= limit or idx < -limit:
        raise _PatchFailed(f"Unable to access invalid index: {idx}")
    if idx < 0:
        idx += limit
    return idx


def _container(doc: Any, parts: list[str], op: str, path: str) -> Any:
    cur = doc
    for key in parts[:-1]:
        if isinstance(cur, dict):
            if key not in cur:
                raise _PatchFailed(f"{op} operation does not apply: doc is missing path: {path}")
            cur = cur[key]
        elif isinstance(cur, list):
            if key == "-":
                raise _PatchFailed(f"{op} operation does not apply: doc is missing path: {path}")
            cur = cur[_index(key, len(cur), False)]
        else:
            raise _PatchFailed(f"{op} operation does not apply: doc is missing path: {path}")
    if not isinstance(cur, (dict, list)):
        raise _PatchFailed(f"{op} operation does not apply: doc is missing path: {path}")
    return cur


def _get(doc: Any, parts: list[str], op: str, path: str) -> Any:
    if not parts:
        return doc
    con = _container(doc, parts, op, path)
    key = parts[-1]
    if isinstance(con, dict):
        if key not in con:
            raise _PatchFailed(f"{op} operation does not apply: doc is missing key: {path}")
        return con[key]
    if key == "-":
        raise _PatchFailed(f"{op} operation does not apply: doc is missing key: {path}")
    return con[_index(key, len(con), False)]


def _add(doc: Any, parts: list[str], value: Any, path: str) -> Any:
    if not parts:
        return value
    con = _container(doc, parts, "add", path)
    key = parts[-1]
    if isinstance(con, dict):
        con[key] = value
    elif key == "-":
        con.append(value)
    else:
        con.insert(_index(key, len(con), True), value)
    return doc


def _remove(doc: Any, parts: list[str], op: str, path: str) -> Any:
    if not parts:
        raise _PatchFailed(f"{op} operation does not apply: doc is missing path: {path}")
    con = _container(doc, parts, op, path)
    key = parts[-1]
    if isinstance(con, dict):
        if key not in con:
            raise _PatchFailed(f"{op} operation does not apply: doc is missing key: {path}")
        del con[key]
    else:
        if key == "-":
            raise _PatchFailed(f"{op} operation does not apply: doc is missing key: {path}")
        del con[_index(key, len(con), False)]
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _apply_op(doc: Any, op: dict) -> Any:
    kind = op.get("op")
    path = op.get("path")
    parts = _pointer(path)
    value = copy.deepcopy(op.get("value"))
    if kind == "add":
        return _add(doc, parts, value, path)
    if kind == "remove":
        return _remove(doc, parts, "remove", path)
    if kind == "replace":
        _get(doc, parts, "replace", path)
        if not parts:
            return value
        con = _container(doc, parts, "replace", path)
        if isinstance(con, dict):
            con[parts[-1]] = value
        else:
            con[_index(parts[-1], len(con), False)] = value
        return doc
    if kind in ("move", "copy"):
        from_path = op.get("from")
        from_parts = _pointer(from_path)
        moved = copy.deepcopy(_get(doc, from_parts, kind, from_path))
        if kind == "move":
            doc = _remove(doc, from_parts, "move", from_path)
        return _add(doc, parts, moved, path)
    if kind == "test":
        try:
            current = _get(doc, parts, "test", path)
        except _PatchFailed:
            current = _PatchFailed
        if current is _PatchFailed or not _json_equal(current, value):
            raise _PatchFailed(f"testing value {path} failed: test failed")
        return doc
    raise _PatchFailed(f"Unexpected kind: {kind if kind is not None else 'unknown'}")


# ================================================================================================
# Shape checks and defaults (what decoding into the typed object does)

_STRING_FIELDS = ("name", "image", "workingDir", "terminationMessagePath",
                  "terminationMessagePolicy", "imagePullPolicy", "targetContainerName")
_BOOL_FIELDS = ("stdin", "stdinOnce", "tty")
_LIST_FIELDS = ("command", "args", "env", "envFrom", "volumeMounts", "volumeDevices", "ports",
                "resizePolicy")
_OBJECT_FIELDS = ("securityContext", "resources", "lifecycle", "livenessProbe",
                  "readinessProbe", "startupProbe")


def check_pod_shape(pod: Any) -> str | None:
    """A Go-decoder-like type error for the pod's container lists, or None when decodable."""
    if not isinstance(pod, dict):
        return "json: cannot unmarshal into Go value of type v1.Pod"
    spec = pod.get("spec")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        return f"json: cannot unmarshal {_json_kind(spec)} into Go struct field Pod.spec of type v1.PodSpec"
    for kind in _CONTAINER_KINDS:
        items = spec.get(kind)
        if items is None:
            continue
        go_type = "v1.EphemeralContainer" if kind == "ephemeralContainers" else "v1.Container"
        if not isinstance(items, list):
            return (f"json: cannot unmarshal {_json_kind(items)} into Go struct field "
                    f"PodSpec.spec.{kind} of type []{go_type}")
        for c in items:
            if not isinstance(c, dict):
                return (f"json: cannot unmarshal {_json_kind(c)} into Go struct field "
                        f"PodSpec.spec.{kind} of type {go_type}")
            for f in _STRING_FIELDS:
                if c.get(f) is not None and not isinstance(c[f], str):
                    return _field_type_error(kind, f, c[f], "string")
            for f in _BOOL_FIELDS:
                if c.get(f) is not None and not isinstance(c[f], bool):
                    return _field_type_error(kind, f, c[f], "bool")
            for f in _LIST_FIELDS:
                if c.get(f) is not None and not isinstance(c[f], list):
                    return _field_type_error(kind, f, c[f], "[]")
            for f in _OBJECT_FIELDS:
                if c.get(f) is not None and not isinstance(c[f], dict):
                    return _field_type_error(kind, f, c[f], "struct")
            for f in ("command", "args"):
                if any(not isinstance(x, str) for x in c.get(f) or []):
                    return _field_type_error(kind, f, c[f], "[]string")
            for f in ("env", "volumeMounts", "ports", "envFrom", "volumeDevices"):
                if any(not isinstance(x, dict) for x in c.get(f) or []):
                    return _field_type_error(kind, f, c[f], "[]struct")
            for p in c.get("ports") or []:
                if p.get("containerPort") is not None and (
                        isinstance(p["containerPort"], bool)
                        or not isinstance(p["containerPort"], int)):
                    return _field_type_error(kind, "ports.containerPort", p["containerPort"],
                                             "int32")
    return None


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _field_type_error(kind: str, field: str, value: Any, go_type: str) -> str:
    return (f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
            f"{'EphemeralContainer' if kind == 'ephemeralContainers' else 'Container'}"
            f".spec.{kind}.{field} of type {go_type}")


def image_tag(image: str) -> str:
    """The tag `parsers.ParseImageName` finds: explicit tag, "" with a digest, else "latest"."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "" if digest else "latest"


def default_container(c: dict) -> dict:
    """`SetDefaults_Container` (also used for ephemeral containers) plus nested defaults."""
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = "Always" if image_tag(c.get("image") or "") == "latest" \
            else "IfNotPresent"
    if not c.get("terminationMessagePath"):
        c["terminationMessagePath"] = "/dev/termination-log"
    if not c.get("terminationMessagePolicy"):
        c["terminationMessagePolicy"] = "File"
    for p in c.get("ports") or []:
        if isinstance(p, dict) and not p.get("protocol"):
            p["protocol"] = "TCP"
    for e in c.get("env") or []:
        ref = ((e.get("valueFrom") or {}).get("fieldRef") if isinstance(e, dict) else None)
        if isinstance(ref, dict) and not ref.get("apiVersion"):
            ref["apiVersion"] = "v1"
    return c


def default_pod(pod: dict) -> dict:
    """Apply the container defaults the decoder applies to every container list (in place)."""
    spec = pod.get("spec")
    if isinstance(spec, dict):
        for kind in _CONTAINER_KINDS:
            for c in spec.get(kind) or []:
                if isinstance(c, dict):
                    default_container(c)
    return pod


# ================================================================================================
# The ephemeralcontainers subresource


def effective_update(old_pod: dict, new_pod: dict) -> dict:
    """What the `ephemeralcontainers` strategy stores: the old pod with only the new
    `spec.ephemeralContainers` (defaulted); name, namespace, resourceVersion and uid come from
    the new object (uid falls back to the old one when absent, as `rest.BeforeUpdate` does).
    Every other change in `new_pod` is silently dropped (`dropNonEphemeralContainerUpdates`)."""
    pod = copy.deepcopy(old_pod)
    new_meta = new_pod.get("metadata") or {}
    meta = pod.setdefault("metadata", {})
    for key in ("name", "namespace", "resourceVersion"):
        if new_meta.get(key):
            meta[key] = new_meta[key]
        else:
            meta.pop(key, None)
    if new_meta.get("uid"):
        meta["uid"] = new_meta["uid"]
    ecs = copy.deepcopy((new_pod.get("spec") or {}).get("ephemeralContainers"))
    spec = pod.setdefault("spec", {})
    if ecs:
        spec["ephemeralContainers"] = [default_container(c) if isinstance(c, dict) else c
                                       for c in ecs]
    else:
        spec.pop("ephemeralContainers", None)
    return pod


#: `allowedEphemeralContainerFields`, in EphemeralContainerCommon declaration order.
EPHEMERAL_FIELDS: tuple[tuple[str, bool], ...] = (
    ("name", True), ("image", True), ("command", True), ("args", True), ("workingDir", True),
    ("ports", False), ("envFrom", True), ("env", True), ("resources", False),
    ("resizePolicy", False), ("restartPolicy", False), ("restartPolicyRules", False),
    ("volumeMounts", True), ("volumeDevices", True), ("livenessProbe", False),
    ("readinessProbe", False), ("startupProbe", False), ("lifecycle", False),
    ("terminationMessagePath", True), ("terminationMessagePolicy", True),
    ("imagePullPolicy", True), ("securityContext", True), ("stdin", True), ("stdinOnce", True),
    ("tty", True),
)
_EPHEMERAL_ONLY = ("targetContainerName",)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
              "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
              "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"


def _is_go_zero(value: Any) -> bool:
    """Whether a JSON value decodes to Go's zero value for its field (`reflect.DeepEqual`).

    Absent/null is zero; an empty *list* or *map* is not (a non-nil empty slice/map), except
    that a struct-valued field (``resources``) is zero when all of its own fields are zero.
    """
    return value is None


def _resources_is_zero(res: Any) -> bool:
    if res is None:
        return True
    if not isinstance(res, dict):
        return False
    return all(v is None for v in res.values())


def dns1123_label_errors(value: str) -> list[str]:
    """`validation.IsDNS1123Label` messages."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(value):
        if len(value) <= 253 and _DNS1123_SUBDOMAIN.match(value):
            errs.append("must not contain dots")
        else:
            errs.append(_LABEL_MSG)
    return errs


def _validate_container_common(c: dict, volumes: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = c.get("name") or ""
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        errs.extend(invalid(f"{path}.name", name, m) for m in dns1123_label_errors(name))
    if not c.get("image"):
        errs.append(required(f"{path}.image"))
    policy = c.get("terminationMessagePolicy") or ""
    if policy == "":
        errs.append(required(f"{path}.terminationMessagePolicy"))
    elif policy not in ("File", "FallbackToLogsOnError"):
        errs.append(not_supported(f"{path}.terminationMessagePolicy", policy,
                                  ["File", "FallbackToLogsOnError"]))
    for i, e in enumerate(c.get("env") or []):
        ename = e.get("name") or ""
        epath = f"{path}.env[{i}]"
        if not ename:
            errs.append(required(f"{epath}.name"))
        elif any(ord(ch) > 126 or ord(ch) < 32 or ch == "=" for ch in ename):
            errs.append(invalid(f"{epath}.name", ename,
                                "a valid environment variable name must consist only of "
                                "printable ASCII characters other than '='"))
        if e.get("valueFrom") is not None and e.get("value"):
            errs.append(invalid(f"{epath}.valueFrom", "",
                                "may not be specified when `value` is not empty"))
    mount_paths: set[str] = set()
    for i, m in enumerate(c.get("volumeMounts") or []):
        mpath = f"{path}.volumeMounts[{i}]"
        mname = m.get("name") or ""
        if not mname:
            errs.append(required(f"{mpath}.name"))
        if mname not in volumes:
            errs.append(not_found(f"{mpath}.name", mname))
        mp = m.get("mountPath") or ""
        if not mp:
            errs.append(required(f"{mpath}.mountPath"))
        if mp in mount_paths:
            errs.append(invalid(f"{mpath}.mountPath", mp, "must be unique"))
        mount_paths.add(mp)
    pull = c.get("imagePullPolicy") or ""
    if pull == "":
        errs.append(required(f"{path}.imagePullPolicy"))
    elif pull not in ("Always", "IfNotPresent", "Never"):
        errs.append(not_supported(f"{path}.imagePullPolicy", pull,
                                  ["Always", "IfNotPresent", "Never"]))
    errs.extend(_validate_security_context(c.get("securityContext"), f"{path}.securityContext"))
    return errs


def _validate_security_context(sc: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(sc, dict):
        return errs
    for key in ("runAsUser", "runAsGroup"):
        v = sc.get(key)
        if v is not None and not (0 <= v <= 0xFFFFFFFF):
            errs.append(invalid(f"{path}.{key}", v, "must be between 0 and 4294967295, inclusive"))
    seccomp = sc.get("seccompProfile")
    if isinstance(seccomp, dict):
        t = seccomp.get("type") or ""
        if t == "":
            errs.append(required(f"{path}.seccompProfile.type",
                                 "type is required when seccompProfile is set"))
        elif t not in ("Localhost", "RuntimeDefault", "Unconfined"):
            errs.append(not_supported(f"{path}.seccompProfile.type", t,
                                      ["Localhost", "RuntimeDefault", "Unconfined"]))
        elif t == "Localhost" and not seccomp.get("localhostProfile"):
            errs.append(required(f"{path}.seccompProfile.localhostProfile",
                                 "must be set when seccomp type is Localhost"))
    ape = sc.get("allowPrivilegeEscalation")
    if ape is False:
        if sc.get("privileged"):
            errs.append(invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and "
                                          "`privileged` to true"))
        adds = ((sc.get("capabilities") or {}).get("add") or [])
        if "SYS_ADMIN" in adds or "CAP_SYS_ADMIN" in adds:
            errs.append(invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and "
                                          "`capabilities.Add` CAP_SYS_ADMIN"))
    pm = sc.get("procMount")
    if pm is not None and pm not in ("Default", "Unmasked"):
        errs.append(not_supported(f"{path}.procMount", pm, ["Default", "Unmasked"]))
    return errs


def validate_ephemeral_containers(pod: dict) -> list[FieldError]:
    """`validateEphemeralContainers` for every ephemeral container of `pod` (Go order)."""
    spec = pod.get("spec") or {}
    ecs = spec.get("ephemeralContainers") or []
    errs: list[FieldError] = []
    if not ecs:
        return errs
    volumes = {v.get("name") for v in spec.get("volumes") or [] if isinstance(v, dict)}
    other_names: set[str] = set()
    for kind in ("containers", "initContainers"):
        for c in spec.get(kind) or []:
            other_names.add(c.get("name"))
    all_names = set(other_names)
    for i, ec in enumerate(ecs):
        path = f"spec.ephemeralContainers[{i}]"
        errs.extend(_validate_container_common(ec, volumes, path))
        image = ec.get("image") or ""
        if image and image != image.strip():
            errs.append(invalid(f"{path}.image", image,
                                "must not have leading or trailing whitespace"))
        name = ec.get("name") or ""
        if name in all_names:
            errs.append(duplicate(f"{path}.name", name))
        else:
            all_names.add(name)
        target = ec.get("targetContainerName") or ""
        if target and target not in other_names:
            errs.append(not_found(f"{path}.targetContainerName", target))
        for field, allowed in EPHEMERAL_FIELDS:
            if allowed:
                continue
            value = ec.get(field)
            zero = _resources_is_zero(value) if field == "resources" else _is_go_zero(value)
            if not zero:
                errs.append(forbidden(f"{path}.{field}",
                                      "cannot be set for an Ephemeral Container"))
        for j, vm in enumerate(ec.get("volumeMounts") or []):
            if vm.get("subPath"):
                errs.append(forbidden(f"{path}.volumeMounts[{j}].subPath",
                                      "cannot be set for an Ephemeral Container"))
            if vm.get("subPathExpr"):
                errs.append(forbidden(f"{path}.volumeMounts[{j}].subPathExpr",
                                      "cannot be set for an Ephemeral Container"))
    return errs


def _canonical(c: dict) -> str:
    return json.dumps(c, sort_keys=True)


def _pseudo_diff(old: dict, new: dict) -> str:
    """A `cmp.Diff`-shaped rendering: ``-`` old and ``+`` new values of the fields that differ."""
    lines = ["  core.EphemeralContainer{"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if key in old:
                lines.append(f"- \t{key}: {json.dumps(old[key], sort_keys=True)},")
            if key in new:
                lines.append(f"+ \t{key}: {json.dumps(new[key], sort_keys=True)},")
    lines.append("  }")
    return "\n".join(lines) + "\n"


def validate_ephemeral_update(old_pod: dict, new_pod: dict) -> None:
    """`ValidatePodEphemeralContainersUpdate`: raise `Invalid` (422) when the update is refused.

    `new_pod` must be the result of `effective_update` (only ephemeral containers differ).
    """
    errs: list[FieldError] = []
    old_meta = old_pod.get("metadata") or {}
    new_meta = new_pod.get("metadata") or {}
    for key in ("name", "namespace", "uid"):
        if (new_meta.get(key) or "") != (old_meta.get(key) or ""):
            errs.append(invalid(f"metadata.{key}", new_meta.get(key) or "",
                                "field is immutable"))
    errs.extend(validate_ephemeral_containers(new_pod))
    name = new_meta.get("name") or old_meta.get("name") or ""
    if MIRROR_POD_ANNOTATION in (old_meta.get("annotations") or {}):
        raise new_invalid("Pod", name, [forbidden("", "static pods do not support ephemeral "
                                                      "containers")])
    new_index = {c.get("name"): c for c in (new_pod.get("spec") or {}).get("ephemeralContainers")
                 or []}
    for old in (old_pod.get("spec") or {}).get("ephemeralContainers") or []:
        new = new_index.get(old.get("name"))
        if new is None:
            errs.append(forbidden("spec.ephemeralContainers",
                                  f"existing ephemeral containers {go_quote(old.get('name'))} "
                                  "may not be removed\n"))
        elif _canonical(_semantic(old)) != _canonical(_semantic(new)):
            errs.append(forbidden("spec.ephemeralContainers",
                                  f"existing ephemeral containers {go_quote(old.get('name'))} "
                                  f"may not be changed\n{_pseudo_diff(old, new)}"))
    if errs:
        raise new_invalid("Pod", name, errs)


def _semantic(c: dict) -> dict:
    """Drop top-level fields that `apiequality.Semantic.DeepEqual` treats as unset: Go zero
    values, and empty slices (equal to nil slices there); ``resources: {}`` is a zero struct."""
    out = {}
    for k, v in c.items():
        if v is None or v == "" or v is False or (isinstance(v, list) and not v):
            continue
        if k == "resources" and _resources_is_zero(v):
            continue
        out[k] = v
    return out


# ================================================================================================
# Pod Security admission (k8s.io/pod-security-admission)

LEVELS = ("privileged", "baseline", "restricted")
_BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                  "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
_SYSCTLS_BY_VERSION = (
    (0, ("kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
         "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start")),
    (27, ("net.ipv4.ip_local_reserved_ports",)),
    (29, ("net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
          "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes")),
    (32, ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem")),
)
_SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
_RESTRICTED_VOLUME_TYPES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                            "persistentVolumeClaim", "projected", "secret", "image")
_APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
LATEST_MINOR = 99


def _join_quote(items: list[str]) -> str:
    return '"' + '", "'.join(items) + '"' if items else ""


def _plural(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


def _containers(spec: dict) -> list[dict]:
    """`visitContainers`: init containers, containers, ephemeral containers."""
    out = []
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        out.extend(c for c in spec.get(kind) or [] if isinstance(c, dict))
    return out


def _sc(c: dict) -> dict:
    sc = c.get("securityContext")
    return sc if isinstance(sc, dict) else {}


def parse_level(level: str) -> tuple[str, int]:
    """``"restricted"``, ``"restricted:latest"``, ``"baseline:v1.24"`` -> (level, minor)."""
    name, _, version = level.partition(":")
    name = name.strip()
    if name not in LEVELS:
        raise ValueError(f"unknown Pod Security level {level!r}")
    version = version.strip() or "latest"
    if version == "latest":
        return name, LATEST_MINOR
    m = re.fullmatch(r"v1\.(\d+)", version)
    if not m:
        raise ValueError(f"unknown Pod Security version {version!r}")
    return name, int(m.group(1))


def policy_from_labels(labels: dict | None, mode: str = "enforce") -> str:
    """The ``level:version`` a namespace's ``pod-security.kubernetes.io/<mode>`` labels select."""
    labels = labels or {}
    level = labels.get(f"pod-security.kubernetes.io/{mode}", "privileged")
    version = labels.get(f"pod-security.kubernetes.io/{mode}-version", "latest")
    return f"{level}:{version}"


def _check_apparmor(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    bad = []
    for k, val in (meta.get("annotations") or {}).items():
        if k.startswith(_APPARMOR_PREFIX) and val and val != "runtime/default" \
                and not val.startswith("localhost/"):
            bad.append(f"{k}={go_quote(val)}")
    for c in [{"securityContext": spec.get("securityContext")}] + _containers(spec):
        prof = _sc(c).get("appArmorProfile")
        if isinstance(prof, dict) and prof.get("type") == "Unconfined" and v >= 30:
            bad.append('securityContext.appArmorProfile.type="Unconfined"')
    if bad:
        bad = sorted(set(bad))
        return (_plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(bad)),
                ", ".join(bad))
    return None


def _check_host_namespaces(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    found = sorted(k for k in ("hostIPC", "hostNetwork", "hostPID") if spec.get(k))
    return ("host namespaces", ", ".join(found)) if found else None


def _check_host_path_volumes(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    names = [vol.get("name") for vol in spec.get("volumes") or [] if vol.get("hostPath") is not None]
    if names:
        return "hostPath volumes", f"{_plural('volume', 'volumes', len(names))} {_join_quote(names)}"
    return None


def _check_host_ports(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    bad, ports = [], set()
    for c in _containers(spec):
        hp = [p.get("hostPort") for p in c.get("ports") or [] if p.get("hostPort")]
        if hp:
            bad.append(c.get("name"))
            ports.update(str(p) for p in hp)
    if bad:
        return "hostPort", (f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} "
                            f"{_plural('uses', 'use', len(bad))} "
                            f"{_plural('hostPort', 'hostPorts', len(ports))} "
                            f"{', '.join(sorted(ports))}")
    return None


def _check_privileged(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    bad = [c.get("name") for c in _containers(spec) if _sc(c).get("privileged") is True]
    if bad:
        return "privileged", (f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} "
                              "must not set securityContext.privileged=true")
    return None


def _check_proc_mount(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    bad, types = [], set()
    for c in _containers(spec):
        pm = _sc(c).get("procMount")
        if pm is not None and pm != "Default":
            bad.append(c.get("name"))
            types.add(pm)
    if bad:
        return "procMount", (f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} "
                             f"must not set securityContext.procMount to "
                             f"{_join_quote(sorted(types))}")
    return None


def _check_selinux(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    setters, bad_types, state = [], set(), {"user": False, "role": False}
    allowed = _SELINUX_TYPES if v >= 31 else _SELINUX_TYPES - {"container_engine_t"}

    def ok(opts: dict) -> bool:
        good = True
        if (opts.get("type") or "") not in allowed:
            good = False
            bad_types.add(opts.get("type") or "")
        for key in ("user", "role"):
            if opts.get(key):
                good = False
                state[key] = True
        return good

    pod_opts = (spec.get("securityContext") or {}).get("seLinuxOptions")
    if isinstance(pod_opts, dict) and not ok(pod_opts):
        setters.append("pod")
    bad = [c.get("name") for c in _containers(spec)
           if isinstance(_sc(c).get("seLinuxOptions"), dict) and not ok(_sc(c)["seLinuxOptions"])]
    if bad:
        setters.append(f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)}")
    if setters:
        data = []
        if bad_types:
            data.append(f"{_plural('type', 'types', len(bad_types))} "
                        f"{_join_quote(sorted(bad_types))}")
            if state["user"]:
                data.append("user may not be set")
            if state["role"]:
                data.append("role may not be set")
        return "seLinuxOptions", (f"{' and '.join(setters)} set forbidden "
                                  f"securityContext.seLinuxOptions: {'; '.join(data)}")
    return None


def _check_sysctls(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    allowed = {s for since, names in _SYSCTLS_BY_VERSION if v >= since for s in names}
    bad = [s.get("name") for s in (spec.get("securityContext") or {}).get("sysctls") or []
           if s.get("name") not in allowed]
    return ("forbidden sysctls", ", ".join(bad)) if bad else None


def _check_host_process(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    setters = []
    if ((spec.get("securityContext") or {}).get("windowsOptions") or {}).get("hostProcess"):
        setters.append("pod")
    bad = [c.get("name") for c in _containers(spec)
           if (_sc(c).get("windowsOptions") or {}).get("hostProcess")]
    if bad:
        setters.append(f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)}")
    if setters:
        return "hostProcess", (f"{' and '.join(setters)} must not set "
                               "securityContext.windowsOptions.hostProcess=true")
    return None


def _check_capabilities_baseline(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    bad, caps = [], set()
    for c in _containers(spec):
        adds = (_sc(c).get("capabilities") or {}).get("add") or []
        extra = [a for a in adds if a not in _BASELINE_CAPS]
        if extra:
            bad.append(c.get("name"))
            caps.update(extra)
    if bad:
        return "non-default capabilities", (
            f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} must not include "
            f"{_join_quote(sorted(caps))} in securityContext.capabilities.add")
    return None


def _check_seccomp_baseline(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    setters, values = [], set()
    pod_profile = (spec.get("securityContext") or {}).get("seccompProfile")
    if isinstance(pod_profile, dict) and pod_profile.get("type") not in ("RuntimeDefault",
                                                                         "Localhost"):
        setters.append("pod")
        values.add(pod_profile.get("type") or "")
    bad = []
    for c in _containers(spec):
        prof = _sc(c).get("seccompProfile")
        if isinstance(prof, dict) and prof.get("type") not in ("RuntimeDefault", "Localhost"):
            bad.append(c.get("name"))
            values.add(prof.get("type") or "")
    if bad:
        setters.append(f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)}")
    if setters:
        return "seccompProfile", (f"{' and '.join(setters)} must not set "
                                  f"securityContext.seccompProfile.type to "
                                  f"{_join_quote(sorted(values))}")
    return None


def _windows(spec: dict, v: int) -> bool:
    return v >= 25 and (spec.get("os") or {}).get("name") == "windows"


def _check_allow_privilege_escalation(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    if _windows(spec, v):
        return None
    bad = [c.get("name") for c in _containers(spec)
           if _sc(c).get("allowPrivilegeEscalation") is not False]
    if bad:
        return "allowPrivilegeEscalation != false", (
            f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)} must set "
            "securityContext.allowPrivilegeEscalation=false")
    return None


def _check_capabilities_restricted(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    if v < 22 or _windows(spec, v):
        return None
    missing_drop, adding, caps = [], [], set()
    for c in _containers(spec):
        capabilities = _sc(c).get("capabilities")
        if not isinstance(capabilities, dict):
            missing_drop.append(c.get("name"))
            continue
        if "ALL" not in (capabilities.get("drop") or []):
            missing_drop.append(c.get("name"))
        extra = [a for a in capabilities.get("add") or [] if a != "NET_BIND_SERVICE"]
        if extra:
            adding.append(c.get("name"))
            caps.update(extra)
    details = []
    if missing_drop:
        details.append(f"{_plural('container', 'containers', len(missing_drop))} "
                       f"{_join_quote(missing_drop)} must set "
                       'securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(f"{_plural('container', 'containers', len(adding))} {_join_quote(adding)} "
                       f"must not include {_join_quote(sorted(caps))} in "
                       "securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(details)) if details else None


def _volume_type(vol: dict) -> str:
    for k in vol:
        if k != "name":
            return k
    return ""


def _check_restricted_volumes(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    bad, types = [], set()
    for vol in spec.get("volumes") or []:
        t = _volume_type(vol)
        if t not in _RESTRICTED_VOLUME_TYPES or (t == "image" and v < 33):
            bad.append(vol.get("name"))
            types.add(t or "unknown")
    if bad:
        return "restricted volume types", (
            f"{_plural('volume', 'volumes', len(bad))} {_join_quote(bad)} "
            f"{_plural('uses', 'use', len(bad))} "
            f"{_plural('restricted volume type', 'restricted volume types', len(types))} "
            f"{_join_quote(sorted(types))}")
    return None


def _check_run_as_non_root(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    setters, pod_ok = [], False
    pod_value = (spec.get("securityContext") or {}).get("runAsNonRoot")
    if pod_value is not None:
        if not pod_value:
            setters.append("pod")
        else:
            pod_ok = True
    explicit, implicit = [], []
    for c in _containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is not None:
            if not value:
                explicit.append(c.get("name"))
        elif not pod_ok:
            implicit.append(c.get("name"))
    if explicit:
        setters.append(f"{_plural('container', 'containers', len(explicit))} "
                       f"{_join_quote(explicit)}")
    if setters:
        return "runAsNonRoot != true", (f"{' and '.join(setters)} must not set "
                                        "securityContext.runAsNonRoot=false")
    if implicit:
        return "runAsNonRoot != true", (f"pod or {_plural('container', 'containers', len(implicit))} "
                                        f"{_join_quote(implicit)} must set "
                                        "securityContext.runAsNonRoot=true")
    return None


def _check_run_as_user(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    if v < 23:
        return None
    setters = []
    if (spec.get("securityContext") or {}).get("runAsUser") == 0:
        setters.append("pod")
    bad = [c.get("name") for c in _containers(spec) if _sc(c).get("runAsUser") == 0]
    if bad:
        setters.append(f"{_plural('container', 'containers', len(bad))} {_join_quote(bad)}")
    if setters:
        return "runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0"
    return None


def _check_seccomp_restricted(meta: dict, spec: dict, v: int) -> tuple[str, str] | None:
    if v < 19 or _windows(spec, v):
        return None
    setters, values, pod_set = [], set(), False
    pod_profile = (spec.get("securityContext") or {}).get("seccompProfile")
    if isinstance(pod_profile, dict):
        if pod_profile.get("type") not in ("RuntimeDefault", "Localhost"):
            setters.append("pod")
            values.add(pod_profile.get("type") or "")
        else:
            pod_set = True
    explicit, implicit = [], []
    for c in _containers(spec):
        prof = _sc(c).get("seccompProfile")
        if isinstance(prof, dict):
            if prof.get("type") not in ("RuntimeDefault", "Localhost"):
                explicit.append(c.get("name"))
                values.add(prof.get("type") or "")
        elif not pod_set:
            implicit.append(c.get("name"))
    if explicit:
        setters.append(f"{_plural('container', 'containers', len(explicit))} "
                       f"{_join_quote(explicit)}")
    if setters:
        return "seccompProfile", (f"{' and '.join(setters)} must not set "
                                  f"securityContext.seccompProfile.type to "
                                  f"{_join_quote(sorted(values))}")
    if implicit:
        return "seccompProfile", (f"pod or {_plural('container', 'containers', len(implicit))} "
                                  f"{_join_quote(implicit)} must set securityContext.seccompProfile"
                                  '.type to "RuntimeDefault" or "Localhost"')
    return None


#: The evaluator's order: baseline checks (by file name), then either the overlapping baseline
#: checks (baseline level) or the restricted checks (restricted level).
_BASELINE_CHECKS = (_check_apparmor, _check_host_namespaces, _check_host_ports,
                    _check_privileged, _check_proc_mount, _check_selinux, _check_sysctls,
                    _check_host_process)
_OVERLAP_BASELINE_CHECKS = (_check_capabilities_baseline, _check_host_path_volumes,
                            _check_seccomp_baseline)
_RESTRICTED_CHECKS = (_check_allow_privilege_escalation, _check_capabilities_restricted,
                      _check_restricted_volumes, _check_run_as_non_root, _check_run_as_user,
                      _check_seccomp_restricted)


def pod_security_violations(level: str, pod: dict,
                            new_containers: list[dict] | None = None) -> list[str]:
    """The forbidden reasons (``reason (detail)``) of `pod` at `level`; empty = allowed.

    `level` is ``privileged``/``baseline``/``restricted``, optionally ``:latest`` or ``:v1.NN``.
    Like the real admission plugin, the whole pod is evaluated (init, regular and ephemeral
    containers): an app container that violates the level blocks an ephemeral-container patch too.
    `new_containers`, when given, are ephemeral containers appended to the pod before evaluating.
    """
    name, minor = parse_level(level)
    if name == "privileged":
        return []
    spec = copy.deepcopy(pod.get("spec") or {})
    if new_containers:
        spec["ephemeralContainers"] = list(spec.get("ephemeralContainers") or []) + \
            copy.deepcopy(list(new_containers))
    meta = pod.get("metadata") or {}
    checks = _BASELINE_CHECKS + (_OVERLAP_BASELINE_CHECKS if name == "baseline"
                                 else _RESTRICTED_CHECKS)
    out = []
    for check in checks:
        result = check(meta, spec, minor)
        if result:
            reason, detail = result
            out.append(f"{reason} ({detail})" if detail else reason)
    return out


def is_significant_pod_update(new_pod: dict, old_pod: dict) -> bool:
    """`isSignificantPodUpdate`: whether admission re-evaluates an update (an ephemeral
    container added, an image changed, a seccomp annotation changed)."""
    seccomp_pod = "seccomp.security.alpha.kubernetes.io/pod"
    new_ann = (new_pod.get("metadata") or {}).get("annotations") or {}
    old_ann = (old_pod.get("metadata") or {}).get("annotations") or {}
    if new_ann.get(seccomp_pod) != old_ann.get(seccomp_pod):
        return True
    new_spec, old_spec = new_pod.get("spec") or {}, old_pod.get("spec") or {}

    def significant(c: dict, o: dict) -> bool:
        key = "container.seccomp.security.alpha.kubernetes.io/" + (c.get("name") or "")
        return c.get("image") != o.get("image") or new_ann.get(key) != old_ann.get(key)

    for kind in ("containers", "initContainers"):
        new_list, old_list = new_spec.get(kind) or [], old_spec.get(kind) or []
        if len(new_list) != len(old_list):
            return True
        if any(significant(c, o) for c, o in zip(new_list, old_list)):
            return True
    old_ecs = {c.get("name"): c for c in old_spec.get("ephemeralContainers") or []}
    for c in new_spec.get("ephemeralContainers") or []:
        o = old_ecs.get(c.get("name"))
        if o is None or significant(c, o):
            return True
    return False


def format_forbidden(pod_name: str, level: str, violations: list[str]) -> str:
    """The admission denial message: ``pods "NAME" is forbidden: violates PodSecurity
    "restricted:latest": reason (detail), ...``."""
    name, _, version = level.partition(":")
    lv = f"{name}:{version or 'latest'}"
    return f"pods {go_quote(pod_name)} is forbidden: violates PodSecurity {go_quote(lv)}: " \
        + ", ".join(violations)


def pod_security_forbidden(pod_name: str, level: str, violations: list[str]) -> Forbidden:
    """The 403 `Forbidden` error carrying `format_forbidden`'s message."""
    return Forbidden(format_forbidden(pod_name, level, violations), name=pod_name, kind="pods")
