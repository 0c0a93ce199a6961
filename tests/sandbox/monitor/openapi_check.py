"""Check simulated responses against dotnet-monitor's OpenAPI 3.0 document.

For a (method, path, status, content type, body): the route must exist, the status must be
documented for it (or be one of the reference's documented-elsewhere cases in :data:`EXTRAS`), the
media type must be one the route lists, and a JSON body must validate against the schema with
``$ref``s resolved and OpenAPI's ``nullable`` turned into JSON-Schema ``null``.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

DEFAULT_SPEC = str(Path(__file__).resolve().parents[2] / "reference" / "dotnet-monitor-openapi.json")

#: Status codes the reference (dotnet-monitor-api.md §1.3, §2, §3) documents but the OpenAPI
#: document omits: (method or "*", route regex, status, reason). Their bodies must be empty unless
#: noted.
EXTRAS = [
    ("*", r".*", 403, "token valid, sub mismatch (§1.3)"),
    ("*", r".*", 404, "host-restricted route on the metrics port (§1.1)"),
    ("*", r".*", 401, "missing/invalid token; /exceptions omits it in the document (§1.3)"),
    ("*", r".*", 500, "unhandled exception, e.g. dump file missing (§1.3, §6.3)"),
    ("*", r".*", 415, "request body with a non-JSON content type (minimal API)"),
    ("GET", r"/logs", 406, "no/unsupported Accept (§1.4)"),
    ("POST", r"/logs", 406, "no/unsupported Accept (§1.4)"),
    ("*", r"/operations.*", 400, "Operation not found / not running / not stoppable (§2, §3)"),
    ("*", r"/(exceptions|stacks|parameters|metrics).*", 429, "per-artifact limits (§1.5)"),
]
#: 400 with an empty body is the 10.x binding failure (§1.3, §1.6).
EMPTY_400_OK = True


def _to_jsonschema(node, components: dict):
    """Resolve $ref and translate nullable (OpenAPI 3.0) → JSON Schema."""
    if isinstance(node, list):
        return [_to_jsonschema(n, components) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        resolved = _to_jsonschema(copy.deepcopy(components[name]), components)
        extra = {k: v for k, v in node.items() if k != "$ref"}
        if extra:
            resolved = {"allOf": [resolved], **_to_jsonschema(extra, components)}
        return resolved
    out = {k: _to_jsonschema(v, components) for k, v in node.items()
           if k not in ("nullable", "example", "description")}
    if "format" in out and out["format"] in ("int32", "int64", "binary", "time-span"):
        out.pop("format")
    if node.get("nullable"):
        if "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
        return {"anyOf": [{"type": "null"}, out]}
    return out


class OpenApiChecker:
    def __init__(self, path: str | None = None) -> None:
        path = path or os.environ.get("DOTNET_MONITOR_OPENAPI", DEFAULT_SPEC)
        with open(path, encoding="utf-8") as f:
            self.doc = json.load(f)
        self.components = self.doc["components"]["schemas"]
        self.responses = self.doc["components"].get("responses", {})
        self.routes = []
        for template, item in self.doc["paths"].items():
            rx = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "/?$"
            self.routes.append((re.compile(rx, re.I), template, item))

    def route(self, method: str, path: str) -> tuple[str, dict] | None:
        path = path.split("?", 1)[0]
        for rx, template, item in self.routes:
            if rx.match(path) and method.lower() in item:
                return template, item[method.lower()]
        return None

    def check(self, method: str, path: str, status: int, content_type: str | None, body: bytes) -> list[str]:
        """Problems found (empty list = conforms)."""

        problems: list[str] = []
        found = self.route(method, path)
        bare = path.split("?", 1)[0]
        if found is None and method.upper() == "GET" and bare in ("", "/"):
            # GET / serves the OpenAPI document itself (8.0+, unauthenticated).
            try:
                ok = status == 200 and "openapi" in json.loads(body)
            except ValueError:
                ok = False
            return [] if ok else [f"GET /: expected the OpenAPI document, got {status}"]
        if found is None:
            if status == 404 or status == 405:
                return []
            return [f"{method} {bare}: no such route in the OpenAPI document"]
        template, op = found
        responses = op.get("responses", {})
        resp = responses.get(str(status))
        if resp is not None and "$ref" in resp:
            resp = self.responses[resp["$ref"].rsplit("/", 1)[1]]
        if resp is None:
            extra = [e for e in EXTRAS if e[2] == status and (e[0] in ("*", method.upper()))
                     and re.fullmatch(e[1], template, re.I)]
            if not extra:
                return [f"{method} {template}: status {status} is not documented"]
            if status in (401, 403, 404, 406, 415, 500) and body:
                problems.append(f"{method} {template}: {status} must have an empty body")
            if status in (400, 429) and body:
                problems += self._check_body(template, status, content_type, body,
                                             {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}})
            return problems
        content = resp.get("content")
        if not content:
            if body:
                problems.append(f"{method} {template}: {status} documents no content but a body was sent")
            return problems
        if status == 400 and not body and EMPTY_400_OK:
            return problems  # 10.x binding failure
        if status == 200 and template == "/metrics" and not body:
            return problems  # "empty 200 if nothing collected"
        return self._check_body(template, status, content_type, body, content)

    def _check_body(self, template, status, content_type, body, content) -> list[str]:
        from jsonschema import Draft7Validator, FormatChecker

        if content_type is None:
            return [f"{template}: {status} has a body but no Content-Type"]
        media = content_type.split(";")[0].strip().lower()
        keys = {k.lower(): k for k in content}
        exact = content_type.replace(" ", "").lower()
        key = keys.get(media)
        if key is None:
            for k, orig in keys.items():
                if k.replace(" ", "") == exact:
                    key = orig
        if key is None:
            return [f"{template}: {status} content type {content_type!r} not in {sorted(content)}"]
        schema = content[key].get("schema")
        if schema is None:
            return []
        js = _to_jsonschema(schema, self.components)
        if js.get("type") == "string" or (js.get("anyOf") and js["anyOf"][1].get("type") == "string"):
            return []  # streamed text/binary
        try:
            data = json.loads(body)
        except ValueError as exc:
            return [f"{template}: {status} body is not JSON: {exc}"]
        checker = FormatChecker()

        @checker.checks("uuid")
        def _uuid(value) -> bool:
            return not isinstance(value, str) or re.fullmatch(
                r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value) is not None

        @checker.checks("date-time")
        def _dt(value) -> bool:
            return not isinstance(value, str) or re.fullmatch(
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value) is not None

        errors = sorted(Draft7Validator(js, format_checker=checker).iter_errors(data), key=str)
        return [f"{template}: {status} body: {e.message} at {list(e.absolute_path)}" for e in errors]
