"""Request bodies sent as `application/vnd.kubernetes.protobuf`, decoded to their JSON form.

Typed clients (kubectl's `create secret|configmap`, `auth can-i`) send built-in objects in the
Kubernetes protobuf envelope: the 4-byte magic ``k8s\\x00`` followed by a `runtime.Unknown`
message (1: typeMeta {1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding, 4: contentType) whose
`raw` is the object's own message. Field numbers are those of `k8s.io/api/core/v1`,
`k8s.io/api/authorization/v1` and `k8s.io/apimachinery/pkg/apis/meta/v1` `generated.proto`.

The result is the dict the same object has in JSON: `bytes` fields base64-encoded, empty strings
left out (the JSON encoding's `omitempty`), unknown fields skipped (as the generated Go decoders
skip them). Only the kinds in `KINDS` are known here; any other kind raises `UnsupportedKind`,
which the API server answers with 415 (as a real server does for a resource that has no protobuf
form, e.g. a custom resource).

Pure: no I/O, no dependency on the rest of the sandbox.
"""

from __future__ import annotations

import base64
from typing import Any

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"


class DecodeError(ValueError):
    """The body is not a well-formed protobuf object (the server's 400 BadRequest)."""


class UnsupportedKind(Exception):
    """A well-formed envelope around a kind this decoder does not know (the server's 415)."""

    def __init__(self, api_version: str, kind: str) -> None:
        super().__init__(f"no protobuf decoding for {api_version}/{kind}")
        self.api_version, self.kind = api_version, kind


# ---------------------------------------------------------------------------- wire format

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


def fields(data: bytes) -> list[tuple[int, int, Any]]:
    """One message's fields in wire order: ``(number, wire type, value)``; a varint is an int,
    a length-delimited field its bytes, a fixed32/64 its raw bytes."""
    out: list[tuple[int, int, Any]] = []
    i, end = 0, len(data)

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            if i >= end:
                raise DecodeError("unexpected EOF")
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift >= 64:
                raise DecodeError("proto: integer overflow")

    while i < end:
        key = varint()
        number, wire = key >> 3, key & 7
        if number <= 0:
            raise DecodeError(f"proto: illegal tag {number} (wire type {wire})")
        if wire == VARINT:
            value: Any = varint()
        elif wire == LEN:
            n = varint()
            if i + n > end:
                raise DecodeError("unexpected EOF")
            value, i = data[i:i + n], i + n
        elif wire in (FIXED64, FIXED32):
            n = 8 if wire == FIXED64 else 4
            if i + n > end:
                raise DecodeError("unexpected EOF")
            value, i = data[i:i + n], i + n
        else:
            raise DecodeError(f"proto: illegal wireType {wire}")
        out.append((number, wire, value))
    return out


# ---------------------------------------------------------------------------- schemas
#
# A schema maps a field number to (JSON name, type); a type is "string", "bytes", "bool",
# "int64", a nested schema (dict), ("repeated", type) or ("map", key type, value type).
# Fields not in a schema are skipped; so are the ones populated only by the server.

Schema = dict

TYPE_META: Schema = {1: ("apiVersion", "string"), 2: ("kind", "string")}

OWNER_REFERENCE: Schema = {
    5: ("apiVersion", "string"), 1: ("kind", "string"), 3: ("name", "string"),
    4: ("uid", "string"), 6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool"),
}

OBJECT_META: Schema = {
    1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"),
    5: ("uid", "string"), 6: ("resourceVersion", "string"),
    11: ("labels", ("map", "string", "string")),
    12: ("annotations", ("map", "string", "string")),
    13: ("ownerReferences", ("repeated", OWNER_REFERENCE)),
    14: ("finalizers", ("repeated", "string")),
    # 4 selfLink, 7 generation, 8 creationTimestamp, 9 deletionTimestamp,
    # 10 deletionGracePeriodSeconds, 17 managedFields: set by the server, not read here
}

SECRET: Schema = {
    1: ("metadata", OBJECT_META), 2: ("data", ("map", "string", "bytes")),
    3: ("type", "string"), 4: ("stringData", ("map", "string", "string")),
    5: ("immutable", "bool"),
}

CONFIG_MAP: Schema = {
    1: ("metadata", OBJECT_META), 2: ("data", ("map", "string", "string")),
    3: ("binaryData", ("map", "string", "bytes")), 4: ("immutable", "bool"),
}

RESOURCE_ATTRIBUTES: Schema = {
    1: ("namespace", "string"), 2: ("verb", "string"), 3: ("group", "string"),
    4: ("version", "string"), 5: ("resource", "string"), 6: ("subresource", "string"),
    7: ("name", "string"),
}

SELF_SUBJECT_ACCESS_REVIEW: Schema = {
    1: ("metadata", OBJECT_META),
    2: ("spec", {1: ("resourceAttributes", RESOURCE_ATTRIBUTES),
                 2: ("nonResourceAttributes", {1: ("path", "string"), 2: ("verb", "string")})}),
}

SELF_SUBJECT_RULES_REVIEW: Schema = {
    1: ("metadata", OBJECT_META), 2: ("spec", {1: ("namespace", "string")}),
}

SELF_SUBJECT_REVIEW: Schema = {1: ("metadata", OBJECT_META)}

KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "Secret"): SECRET,
    ("v1", "ConfigMap"): CONFIG_MAP,
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): SELF_SUBJECT_ACCESS_REVIEW,
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): SELF_SUBJECT_RULES_REVIEW,
    ("authentication.k8s.io/v1", "SelfSubjectReview"): SELF_SUBJECT_REVIEW,
}


# ---------------------------------------------------------------------------- decoding

def _scalar(kind: str, wire: int, value: Any, where: str) -> Any:
    if kind in ("string", "bytes"):
        if wire != LEN:
            raise DecodeError(f"proto: wrong wireType = {wire} for field {where}")
        if kind == "bytes":
            return base64.b64encode(value).decode("ascii")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"proto: field {where} is not valid UTF-8") from None
    if kind in ("bool", "int64"):
        if wire != VARINT:
            raise DecodeError(f"proto: wrong wireType = {wire} for field {where}")
        if kind == "bool":
            return value != 0
        return value - (1 << 64) if value >= 1 << 63 else value
    raise AssertionError(kind)


def _map_entry(key_type: str, value_type: str, data: bytes, where: str) -> tuple[Any, Any]:
    # An absent key or value is the type's zero value (proto map entry semantics).
    key: Any = "" if key_type == "string" else None
    value: Any = "" if value_type in ("string", "bytes") else None
    for number, wire, raw in fields(data):
        if number == 1:
            key = _scalar(key_type, wire, raw, where + ".key")
        elif number == 2:
            value = _scalar(value_type, wire, raw, where + ".value")
    return key, value


def decode_message(data: bytes, schema: Schema, where: str = "") -> dict:
    """A message's JSON form by `schema` (see the schema notes above)."""
    out: dict = {}
    for number, wire, value in fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        path = f"{where}.{name}" if where else name
        if isinstance(kind, dict):
            if wire != LEN:
                raise DecodeError(f"proto: wrong wireType = {wire} for field {path}")
            sub = decode_message(value, kind, path)
            if name in out:  # a repeated occurrence of a message field merges into it
                out[name].update(sub)
            else:
                out[name] = sub
        elif isinstance(kind, tuple) and kind[0] == "map":
            if wire != LEN:
                raise DecodeError(f"proto: wrong wireType = {wire} for field {path}")
            k, v = _map_entry(kind[1], kind[2], value, path)
            out.setdefault(name, {})[k] = v
        elif isinstance(kind, tuple) and kind[0] == "repeated":
            item = kind[1]
            if isinstance(item, dict):
                if wire != LEN:
                    raise DecodeError(f"proto: wrong wireType = {wire} for field {path}")
                out.setdefault(name, []).append(decode_message(value, item, path))
            else:
                out.setdefault(name, []).append(_scalar(item, wire, value, path))
        else:
            scalar = _scalar(kind, wire, value, path)
            if scalar == "" and kind == "string":
                out.pop(name, None)  # omitempty
            else:
                out[name] = scalar
    return out


def envelope(body: bytes) -> tuple[str, str, bytes]:
    """``(apiVersion, kind, raw)`` of a `k8s\\x00` + `runtime.Unknown` body."""
    if not body.startswith(MAGIC):
        raise DecodeError("provided data does not appear to be a protobuf message, expected "
                          "prefix [107 56 115 0]")
    api_version = kind = ""
    raw = b""
    for number, wire, value in fields(body[len(MAGIC):]):
        if number == 1 and wire == LEN:
            meta = decode_message(value, TYPE_META)
            api_version, kind = meta.get("apiVersion", ""), meta.get("kind", "")
        elif number == 2 and wire == LEN:
            raw = value
    return api_version, kind, raw


def decode(body: bytes) -> dict:
    """The JSON form (with apiVersion and kind) of an object sent as
    `application/vnd.kubernetes.protobuf`. Raises `DecodeError` or `UnsupportedKind`."""
    api_version, kind, raw = envelope(body)
    if not kind:
        raise DecodeError("Object 'Kind' is missing in protobuf envelope")
    schema = KINDS.get((api_version, kind))
    if schema is None:
        raise UnsupportedKind(api_version, kind)
    obj = decode_message(raw, schema)
    return {"apiVersion": api_version, "kind": kind, **obj}


# ---------------------------------------------------------------------------- encoding (tests)

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number: int, value: bytes | str | int | bool) -> bytes:
    """One encoded field: bytes/str length-delimited, int/bool as a varint."""
    if isinstance(value, (bool, int)):
        return _varint(number << 3 | VARINT) + _varint(int(value))
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | LEN) + _varint(len(data)) + data


def wrap(api_version: str, kind: str, raw: bytes) -> bytes:
    """`raw` in the `k8s\\x00` + `runtime.Unknown` envelope (what typed clients send)."""
    type_meta = field(1, api_version) + field(2, kind)
    return MAGIC + field(1, type_meta) + field(2, raw) + field(3, "") + field(4, "")
