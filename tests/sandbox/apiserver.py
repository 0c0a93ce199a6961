"""The simulated kube-apiserver: HTTPS, bearer/x509 authn, RBAC-like authz, REST, watch, tables.

Served on 127.0.0.1 with the sandbox CA's certificate, HTTP/1.1 only (ALPN `http/1.1`, as an API
server behind a proxy that does not speak h2). Every request is authenticated (bearer token, else
client certificate, else `system:anonymous`), authorised against the user's scenario rules with the
real Forbidden texts, then routed. Answers are what a v1.2x API server answers: Status bodies for
errors, Table output when asked with `as=Table`, chunked JSON-lines watches, discovery documents in
the legacy form and — for clusters >= 1.27 — the aggregated form. Port-forward upgrades are handed to
`tests.sandbox.portforward.serve` after the same authorisation and pod checks the real server does.

Set ``SANDBOX_LOG=1`` to log every request to stderr.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import protobuf as pb
from . import store as st
from .scenario import Scenario, UserSpec

JSON = "application/json"
DISCOVERY_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
DISCOVERY_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

GROUPS = {"": "v1", "apps": "v1", "authorization.k8s.io": "v1", "authentication.k8s.io": "v1"}


class ApiError(Exception):
    """An error answered as a `Status` body."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason}
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(group: str, resource: str, name: str) -> ApiError:
    details = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return ApiError(404, "NotFound", f'{qualified(group, resource)} "{name}" not found', details)


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed(group: str, resource: str, verb: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed",
                    "the server does not allow this method on the requested resource", {})


def unsupported_media_type(accepted: list[str]) -> ApiError:
    """The serializer negotiation's 415 for a request body it cannot decode."""
    return ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown "
                    "format - accepted media types include: " + ", ".join(accepted))


class User:
    """An authenticated user."""

    def __init__(self, name: str, groups: tuple[str, ...], rules: tuple[dict, ...]) -> None:
        self.name, self.groups, self.rules = name, groups, rules

    @classmethod
    def from_spec(cls, spec: UserSpec) -> "User":
        groups = tuple(spec.groups) or ("system:authenticated",)
        if "system:authenticated" not in groups:
            groups = groups + ("system:authenticated",)
        return cls(spec.name, groups, spec.rules)


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",), ())


def _matches(values: list, wanted: str) -> bool:
    return "*" in values or wanted in values


def _resource_matches(rule_resources: list, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule_resources:
        if r == "*" or r == combined:
            return True
        if subresource and (r == f"*/{subresource}" or r == f"{resource}/*"):
            return True
    return False


def authorize(user: User, verb: str, group: str, resource: str, subresource: str,
              namespace: str, name: str) -> tuple[bool, str]:
    """RBAC semantics over the scenario rules; returns (allowed, reason)."""
    if group == "authorization.k8s.io" and resource in ("selfsubjectaccessreviews",
                                                        "selfsubjectrulesreviews"):
        if verb == "create" and user is not ANONYMOUS:
            return True, 'RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole ' \
                         '"system:basic-user" to Group "system:authenticated"'
    if group == "authentication.k8s.io" and resource == "selfsubjectreviews" and verb == "create" \
            and user is not ANONYMOUS:
        return True, ""
    for rule in user.rules:
        if not _matches(rule.get("verbs", []), verb):
            continue
        if not _matches(rule.get("apiGroups", []), group):
            continue
        if not _resource_matches(rule.get("resources", []), resource, subresource):
            continue
        names = rule.get("resourceNames")
        if names and name not in names:
            continue
        scoped = rule.get("namespaces")
        if scoped is not None and (not namespace or namespace not in scoped):
            continue
        if scoped is None:
            binding = f'ClusterRoleBinding "sandbox:{user.name}" of ClusterRole "sandbox:{user.name}"'
        else:
            binding = f'RoleBinding "sandbox:{user.name}/{namespace}" of ClusterRole "sandbox:{user.name}"'
        return True, f'RBAC: allowed by {binding} to User "{user.name}"'
    return False, ""


def forbidden(user: User, verb: str, group: str, resource: str, subresource: str,
              namespace: str, name: str) -> ApiError:
    full = f"{resource}/{subresource}" if subresource else resource
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    text = f'User "{user.name}" cannot {verb} resource "{full}" in API group "{group}" {scope}'
    details: dict = {"kind": resource}
    if group:
        details["group"] = group
    if name:
        details["name"] = name
        msg = f'{qualified(group, resource)} "{name}" is forbidden: {text}'
    else:
        msg = f"{qualified(group, resource)} is forbidden: {text}"
    return ApiError(403, "Forbidden", msg, details)


PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz")


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    api: "ApiServer"


class ApiServer:
    """Owns the listening socket and the state a request needs."""

    def __init__(self, scenario: Scenario, store: st.Store, network: Any, tls: ssl.SSLContext,
                 tokens: dict[str, UserSpec], kubelet: Any = None, log: bool | None = None) -> None:
        self.scenario = scenario
        self.store = store
        self.network = network
        self.tls = tls
        self.tokens = {tok: User.from_spec(spec) for tok, spec in tokens.items()}
        self.cert_users = {spec.name: User.from_spec(spec) for spec in scenario.users}
        self.kubelet = kubelet
        self.log = bool(os.environ.get("SANDBOX_LOG")) if log is None else log
        self.start_time = time.time()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self._server = _Server((host, port), _Handler)
        self._server.api = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="sandbox-apiserver", daemon=True)
        self._thread.start()
        return self._server.server_address[:2]

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ------------------------------------------------------------------ helpers for handlers

    def namespace_exists(self, ns: str) -> bool:
        return self.store.snapshot("namespaces", None, ns) is not None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandbox-apiserver"
    sys_version = ""
    server: _Server

    # ---------------------------------------------------------------- connection setup

    def setup(self) -> None:
        raw = self.request
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.settimeout(30)
        try:
            self.request = self.server.api.tls.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            raise
        self.request.settimeout(None)
        self.connection = self.request
        self.rfile = self.connection.makefile("rb", 65536)
        self.wfile = self.connection.makefile("wb", 0)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.api.log:
            sys.stderr.write("apiserver: " + (format % args) + "\n")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---------------------------------------------------------------- response helpers

    def send_json(self, code: int, body: Any, content_type: str = JSON,
                  extra: dict | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", os.urandom(16).hex())
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_status(self, err: ApiError) -> None:
        self.send_json(err.code, err.status())

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                out += self.rfile.read(size)
                self.rfile.readline()
            return bytes(out)
        return b""

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self, method: str) -> None:
        api = self.server.api
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        path = url.path.rstrip("/") or "/"
        body: bytes = b""
        try:
            user = self._authenticate()
            if method in ("POST", "PUT", "PATCH", "DELETE") and not self._is_upgrade():
                body = self.read_body()
            req = Request(api, self, method, path, query, user, body)
            req.serve()
        except ApiError as err:
            if method in ("POST", "PUT", "PATCH", "DELETE") and not body and not self._is_upgrade():
                try:
                    self.read_body()
                except Exception:
                    pass
            self.send_status(err)
        except (ConnectionError, ssl.SSLError, BrokenPipeError):
            self.close_connection = True
        except Exception as exc:  # pragma: no cover - a bug: answer like a real 500
            import traceback

            traceback.print_exc()
            try:
                self.send_status(ApiError(500, "InternalError",
                                          f"Internal error occurred: {exc}",
                                          {"causes": [{"message": str(exc)}]}))
            except Exception:
                self.close_connection = True

    def _is_upgrade(self) -> bool:
        return "upgrade" in (self.headers.get("Connection") or "").lower()

    def _authenticate(self) -> User:
        api = self.server.api
        auth = self.headers.get("Authorization")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer" and token.strip() in api.tokens:
                return api.tokens[token.strip()]
            raise ApiError(401, "Unauthorized", "Unauthorized")
        cert = None
        try:
            cert = self.connection.getpeercert()
        except (ValueError, AttributeError):
            cert = None
        if cert:
            cn = None
            for rdn in cert.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        cn = value
            if cn and cn in api.cert_users:
                return api.cert_users[cn]
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return ANONYMOUS


class Request:
    """One API request: parsing of the path, authorisation, and the REST semantics."""

    def __init__(self, api: ApiServer, h: _Handler, method: str, path: str,
                 query: dict[str, list[str]], user: User, body: bytes) -> None:
        self.api, self.h, self.method, self.path = api, h, method, path
        self.query, self.user, self.body = query, user, body
        self.s = api.scenario

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    # ------------------------------------------------------------------ routing

    def serve(self) -> None:
        path = self.path
        if path in PUBLIC_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            if path == "/version":
                return self.h.send_json(200, self.s.version)
            return self._plain(200, b"ok")
        if self.user is ANONYMOUS:
            raise ApiError(403, "Forbidden",
                           f'forbidden: User "system:anonymous" cannot {self._nonresource_verb()} '
                           f'path "{path}"', {})
        if path == "/api":
            return self._discovery_core_root()
        if path == "/apis":
            return self._discovery_groups_root()
        if path.startswith("/openapi/"):
            raise path_not_found()
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        elif parts[0] == "apis" and len(parts) == 2:
            return self._discovery_group(parts[1])
        else:
            raise path_not_found()
        if GROUPS.get(group) != version:
            raise path_not_found()
        if not rest:
            return self._discovery_resources(group)
        self._resource_request(group, rest)

    def _nonresource_verb(self) -> str:
        return {"GET": "get", "POST": "post", "PUT": "put", "PATCH": "patch",
                "DELETE": "delete"}.get(self.method, self.method.lower())

    def _plain(self, code: int, data: bytes) -> None:
        self.h.send_response(code)
        self.h.send_header("Content-Type", "text/plain; charset=utf-8")
        self.h.send_header("Content-Length", str(len(data)))
        self.h.end_headers()
        self.h.wfile.write(data)

    def _resource_request(self, group: str, rest: list[str]) -> None:
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        resource = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        if len(rest) > 3:
            raise path_not_found()
        if resource == "namespaces" and len(rest) >= 2 and not namespace:
            pass
        known = discovery_resources(self.s).get(group, {})
        if resource not in known:
            raise path_not_found()
        info = known[resource]
        if subresource and subresource not in info.get("subresources", {}):
            raise path_not_found()
        if info["namespaced"] is False and namespace:
            raise path_not_found()
        watch = (self.q("watch") or "").lower() in ("1", "true")
        verb = {
            "GET": "watch" if watch else ("get" if name else "list"),
            "POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }[self.method]
        ok, _ = authorize(self.user, verb, group, resource, subresource, namespace, name)
        if not ok:
            raise forbidden(self.user, verb, group, resource, subresource, namespace, name)
        handler = Rest(self, group, resource, namespace, name, subresource, verb)
        handler.run()

    # ------------------------------------------------------------------ discovery

    def _wants_aggregated(self) -> str | None:
        if not self.s.features.get("AggregatedDiscovery"):
            return None
        accept = self.h.headers.get("Accept") or ""
        for part in accept.split(","):
            part = part.replace(" ", "")
            if "g=apidiscovery.k8s.io" in part and "as=APIGroupDiscoveryList" in part:
                if "v=v2;" in part + ";" and self.s.minor >= 30:
                    return "v2"
                if "v=v2beta1" in part and self.s.minor < 33:
                    return "v2beta1"
        return None

    def _discovery_core_root(self) -> None:
        agg = self._wants_aggregated()
        if agg:
            return self._aggregated(agg, [""])
        self.h.send_json(200, {
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": "172.18.0.2:6443"}]})

    def _discovery_groups_root(self) -> None:
        agg = self._wants_aggregated()
        groups = [g for g in GROUPS if g and (g != "authentication.k8s.io" or self.s.minor >= 28)]
        if agg:
            return self._aggregated(agg, groups)
        self.h.send_json(200, {
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": [self._group_doc(g) for g in groups]})

    def _group_doc(self, group: str) -> dict:
        gv = {"groupVersion": f"{group}/{GROUPS[group]}", "version": GROUPS[group]}
        return {"name": group, "versions": [gv], "preferredVersion": gv}

    def _discovery_group(self, group: str) -> None:
        if group not in GROUPS or not group:
            raise path_not_found()
        self.h.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", **self._group_doc(group)})

    def _discovery_resources(self, group: str) -> None:
        resources = []
        for name, info in discovery_resources(self.s)[group].items():
            resources.append(_legacy_resource(name, info))
            for sub, verbs in info.get("subresources", {}).items():
                resources.append({"name": f"{name}/{sub}", "singularName": "",
                                  "namespaced": info["namespaced"], "kind": info["kind"]
                                  if sub not in ("eviction", "binding") else
                                  {"eviction": "Eviction", "binding": "Binding"}[sub],
                                  "verbs": verbs, **({"group": "policy", "version": "v1"}
                                                     if sub == "eviction" else {})})
        gv = f"{group}/{GROUPS[group]}" if group else "v1"
        self.h.send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                               "groupVersion": gv, "resources": resources})

    def _aggregated(self, version: str, groups: list[str]) -> None:
        items = []
        for group in groups:
            res = []
            for name, info in discovery_resources(self.s)[group].items():
                entry = {
                    "resource": name,
                    "responseKind": {"group": "", "version": "", "kind": info["kind"]},
                    "scope": "Namespaced" if info["namespaced"] else "Cluster",
                    "singularResource": info["singular"],
                    "verbs": info["verbs"],
                }
                if info.get("shortNames"):
                    entry["shortNames"] = info["shortNames"]
                if info.get("categories"):
                    entry["categories"] = info["categories"]
                subs = []
                for sub, verbs in info.get("subresources", {}).items():
                    kind = {"eviction": "Eviction", "binding": "Binding",
                            "scale": "Scale"}.get(sub, info["kind"])
                    rk = {"group": "", "version": "", "kind": kind}
                    if sub == "eviction":
                        rk = {"group": "policy", "version": "v1", "kind": kind}
                    if sub == "scale":
                        rk = {"group": "autoscaling", "version": "v1", "kind": kind}
                    subs.append({"subresource": sub, "responseKind": rk, "verbs": verbs})
                if subs:
                    entry["subresources"] = subs
                res.append(entry)
            item = {"metadata": {"creationTimestamp": None},
                    "versions": [{"version": GROUPS[group], "resources": res,
                                  "freshness": "Current"}]}
            if group:
                item["metadata"]["name"] = group
            items.append(item)
        ctype = DISCOVERY_V2 if version == "v2" else DISCOVERY_V2BETA1
        self.h.send_json(200, {"kind": "APIGroupDiscoveryList",
                               "apiVersion": f"apidiscovery.k8s.io/{version}",
                               "metadata": {}, "items": items}, content_type=ctype,
                         extra={"Vary": "Accept"})


def _legacy_resource(name: str, info: dict) -> dict:
    out = {"name": name, "singularName": info["singular"], "namespaced": info["namespaced"],
           "kind": info["kind"], "verbs": info["verbs"]}
    if info.get("shortNames"):
        out["shortNames"] = info["shortNames"]
    if info.get("categories"):
        out["categories"] = info["categories"]
    out["storageVersionHash"] = _hash8(name)
    return out


def _hash8(text: str) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(text.encode()).digest()[:8]).decode()


_RW = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def discovery_resources(s: Scenario) -> dict[str, dict[str, dict]]:
    """What this cluster serves, by group (depends on version and features)."""
    pod_subs = {"attach": ["create", "get"], "binding": ["create"],
                "eviction": ["create"], "exec": ["create", "get"], "log": ["get"],
                "portforward": ["create", "get"], "proxy": _PROXY_VERBS,
                "status": ["get", "patch", "update"]}
    if s.features.get("EphemeralContainers"):
        pod_subs["ephemeralcontainers"] = ["get", "patch", "update"]
    if s.minor >= 33:
        pod_subs["resize"] = ["get", "patch", "update"]
    pod_subs = dict(sorted(pod_subs.items()))
    core = {
        "configmaps": _r("ConfigMap", "configmap", ["cm"]),
        "events": _r("Event", "event", ["ev"]),
        "namespaces": {**_r("Namespace", "namespace", ["ns"], namespaced=False,
                            verbs=["create", "delete", "get", "list", "patch", "update", "watch"]),
                       "subresources": {"finalize": ["update"], "status": ["get", "patch", "update"]}},
        "nodes": {**_r("Node", "node", ["no"], namespaced=False),
                  "subresources": {"proxy": _PROXY_VERBS, "status": ["get", "patch", "update"]}},
        "pods": {**_r("Pod", "pod", ["po"], categories=["all"]), "subresources": pod_subs},
        "secrets": _r("Secret", "secret"),
        "serviceaccounts": _r("ServiceAccount", "serviceaccount", ["sa"]),
        "services": {**_r("Service", "service", ["svc"], categories=["all"],
                          verbs=["create", "delete", "deletecollection", "get", "list", "patch",
                                 "update", "watch"]),
                     "subresources": {"proxy": _PROXY_VERBS, "status": ["get", "patch", "update"]}},
    }
    scale = {"scale": ["get", "patch", "update"], "status": ["get", "patch", "update"]}
    apps = {
        "daemonsets": {**_r("DaemonSet", "daemonset", ["ds"], categories=["all"]),
                       "subresources": {"status": ["get", "patch", "update"]}},
        "deployments": {**_r("Deployment", "deployment", ["deploy"], categories=["all"]),
                        "subresources": scale},
        "replicasets": {**_r("ReplicaSet", "replicaset", ["rs"], categories=["all"]),
                        "subresources": scale},
        "statefulsets": {**_r("StatefulSet", "statefulset", ["sts"], categories=["all"]),
                         "subresources": scale},
    }
    authz = {
        "localsubjectaccessreviews": _r("LocalSubjectAccessReview", "localsubjectaccessreview",
                                        verbs=["create"]),
        "selfsubjectaccessreviews": _r("SelfSubjectAccessReview", "selfsubjectaccessreview",
                                       namespaced=False, verbs=["create"]),
        "selfsubjectrulesreviews": _r("SelfSubjectRulesReview", "selfsubjectrulesreview",
                                      namespaced=False, verbs=["create"]),
        "subjectaccessreviews": _r("SubjectAccessReview", "subjectaccessreview",
                                   namespaced=False, verbs=["create"]),
    }
    authn = {
        "selfsubjectreviews": _r("SelfSubjectReview", "selfsubjectreview", namespaced=False,
                                 verbs=["create"]),
        "tokenreviews": _r("TokenReview", "tokenreview", namespaced=False, verbs=["create"]),
    }
    return {"": core, "apps": apps, "authorization.k8s.io": authz, "authentication.k8s.io": authn}


_PROXY_VERBS = ["create", "delete", "get", "patch", "update"]


def _r(kind: str, singular: str, short: list[str] | None = None, namespaced: bool = True,
       verbs: list[str] | None = None, categories: list[str] | None = None) -> dict:
    return {"kind": kind, "singular": singular, "shortNames": short or [], "namespaced": namespaced,
            "verbs": verbs or _RW, "categories": categories or []}


class Rest:
    """REST semantics of one resource request (after authorisation)."""

    def __init__(self, req: Request, group: str, resource: str, namespace: str, name: str,
                 subresource: str, verb: str) -> None:
        self.req, self.group, self.resource = req, group, resource
        self.ns, self.name, self.sub, self.verb = namespace, name, subresource, verb
        self.api = req.api
        self.store = req.api.store
        self.h = req.h

    def run(self) -> None:
        r, sub = self.resource, self.sub
        if self.group == "authorization.k8s.io":
            if r == "selfsubjectaccessreviews" and self.verb == "create":
                return self.self_subject_access_review()
            if r == "selfsubjectrulesreviews" and self.verb == "create":
                return self.self_subject_rules_review()
            raise method_not_allowed(self.group, r, self.verb)
        if self.group == "authentication.k8s.io":
            if r == "selfsubjectreviews" and self.verb == "create":
                return self.self_subject_review()
            raise method_not_allowed(self.group, r, self.verb)
        if r == "pods" and sub == "portforward":
            return self.portforward()
        if r == "pods" and sub == "ephemeralcontainers":
            return self.ephemeral_containers()
        if r == "pods" and sub == "log":
            return self.pod_log()
        if sub == "status" and self.verb == "get":
            return self.get()
        if sub:
            raise method_not_allowed(self.group, r, self.verb)
        if self.verb == "get":
            return self.get()
        if self.verb in ("list", "watch"):
            return self.watch() if self.verb == "watch" else self.list()
        if self.verb == "create":
            return self.create()
        if self.verb == "delete":
            return self.delete()
        if self.verb in ("patch", "update") and self.group == "apps":
            return self.workload_write()
        raise method_not_allowed(self.group, r, self.verb)

    # ------------------------------------------------------------------ reading

    def _lookup(self) -> dict:
        obj = self.store.snapshot(self.resource, self.ns or None, self.name)
        if obj is None:
            raise not_found(self.group, self.resource, self.name)
        return obj

    def _wants_table(self) -> bool:
        accept = self.h.headers.get("Accept") or ""
        first = accept.split(",")[0].replace(" ", "")
        return "as=Table" in first and "g=meta.k8s.io" in first

    def _include(self) -> str:
        return self.req.q("includeObject") or "Metadata"

    def get(self) -> None:
        obj = self._lookup()
        if self._wants_table():
            return self.h.send_json(200, table(self.resource, [obj], self._include(),
                                                      obj["metadata"]["resourceVersion"],
                                                      self.api.scenario))
        self.h.send_json(200, obj)

    def _selectors(self) -> tuple[list, list]:
        try:
            labels = st.parse_label_selector(self.req.q("labelSelector") or "")
            fields = st.parse_field_selector(self.resource, self.req.q("fieldSelector") or "")
        except st.SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        return labels, fields

    def _filtered(self) -> tuple[list[dict], str]:
        labels, fields = self._selectors()
        items, rv = self.store.list(self.resource, self.ns or None)
        items = [o for o in items if st.labels_match(labels, o["metadata"].get("labels"))
                 and st.fields_match(fields, o)]
        return items, rv

    def list(self) -> None:
        items, rv = self._filtered()
        api_version, kind, _ = st.RESOURCES[self.resource]
        if self._wants_table():
            return self.h.send_json(200, table(self.resource, items, self._include(), rv,
                                                      self.api.scenario))
        self.h.send_json(200, {"kind": f"{kind}List", "apiVersion": api_version,
                               "metadata": {"resourceVersion": rv}, "items": items})

    def watch(self) -> None:
        labels, fields = self._selectors()
        since = self.req.q("resourceVersion")
        timeout = self.req.q("timeoutSeconds")
        deadline = time.monotonic() + (float(timeout) if timeout else 1800.0)
        bookmarks = (self.req.q("allowWatchBookmarks") or "").lower() in ("1", "true")
        initial = (self.req.q("sendInitialEvents") or "").lower() in ("1", "true")
        as_table = self._wants_table()
        include = self._include()
        api_version, kind, _ = st.RESOURCES[self.resource]
        try:
            watcher, backlog = self.store.watch(self.resource, self.ns or None, since)
        except st.Gone as exc:
            watcher, backlog = None, []
            gone = {"type": "ERROR", "object": ApiError(410, "Expired", str(exc)).status()}
        self.h.send_response(200)
        self.h.send_header("Content-Type", JSON)
        self.h.send_header("Cache-Control", "no-cache, private")
        self.h.send_header("Transfer-Encoding", "chunked")
        self.h.end_headers()
        first_table = [True]

        def send(event: dict) -> None:
            data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
            self.h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        def shown(obj: dict | None) -> bool:
            return obj is not None and st.labels_match(labels, obj["metadata"].get("labels")) \
                and st.fields_match(fields, obj)

        def encode(type_: str, obj: dict) -> dict:
            if as_table:
                t = table(self.resource, [obj], include, obj["metadata"]["resourceVersion"],
                                 self.api.scenario)
                if not first_table[0]:
                    t["columnDefinitions"] = None
                first_table[0] = False
                return {"type": type_, "object": t}
            return {"type": type_, "object": obj}

        def bookmark(rv: str, initial_end: bool = False) -> dict:
            meta: dict = {"resourceVersion": rv, "creationTimestamp": None}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return {"type": "BOOKMARK",
                    "object": {"kind": kind, "apiVersion": api_version, "metadata": meta}}

        try:
            if watcher is None:
                send(gone)
                return
            try:
                if since in (None, "", "0") or initial:
                    items, rv = self.store.list(self.resource, self.ns or None)
                    for obj in items:
                        if shown(obj) and (initial or since in (None, "", "0")):
                            send(encode("ADDED", obj))
                    if initial and bookmarks:
                        send(bookmark(rv, initial_end=True))
                    backlog = [e for e in backlog if e.rv > int(rv)]
                for event in backlog:
                    self._send_event(event, shown, encode, send)
                last_bookmark = time.monotonic()
                while not self.api.stopping.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    event = watcher.get(timeout=min(remaining, 1.0))
                    if event is None:
                        if watcher.events.empty() and self.api.stopping.is_set():
                            break
                        if bookmarks and time.monotonic() - last_bookmark > 5:
                            send(bookmark(self.store.resource_version))
                            last_bookmark = time.monotonic()
                        continue
                    self._send_event(event, shown, encode, send)
            finally:
                watcher.close()
            self.h.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, ssl.SSLError, OSError):
            self.h.close_connection = True
        except Exception:  # a bug mid-stream: the status line is gone, so just drop the stream
            import traceback

            traceback.print_exc()
            self.h.close_connection = True

    @staticmethod
    def _send_event(event: st.Event, shown, encode, send) -> None:
        now_shown, was_shown = shown(event.obj), shown(event.old)
        if event.type == "ADDED" and now_shown:
            send(encode("ADDED", event.obj))
        elif event.type == "DELETED" and (now_shown or was_shown):
            send(encode("DELETED", event.obj))
        elif event.type == "MODIFIED":
            if now_shown and was_shown:
                send(encode("MODIFIED", event.obj))
            elif now_shown:
                send(encode("ADDED", event.obj))
            elif was_shown:
                send(encode("DELETED", event.obj))

    # ------------------------------------------------------------------ writing

    def _body(self) -> dict:
        """The request's object in its JSON form, decoded by Content-Type as the API server's
        serializers do: JSON (also when no Content-Type is sent), YAML, or the protobuf envelope
        (protobuf.py). Another media type, or a protobuf kind the sandbox cannot decode, is the
        server's 415 UnsupportedMediaType."""
        ctype = (self.h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype in ("", "application/json"):
            try:
                body = json.loads(self.req.body or b"null")
            except ValueError as exc:
                raise ApiError(400, "BadRequest",
                               f"couldn't get version/kind; json parse error: {exc}") from None
        elif ctype == "application/yaml":
            import yaml

            try:
                body = yaml.safe_load(self.req.body or b"") if self.req.body else None
            except yaml.YAMLError as exc:
                raise ApiError(400, "BadRequest", "error converting YAML to JSON: yaml: "
                               + str(exc).replace("\n", " ")) from None
        elif ctype == pb.MEDIA_TYPE:
            try:
                body = pb.decode(self.req.body)
            except pb.UnsupportedKind:
                # A real server decodes every built-in kind; what the sandbox cannot, it refuses
                # as a real server refuses protobuf for a resource without a protobuf form.
                raise unsupported_media_type(["application/json", "application/yaml"]) from None
            except pb.DecodeError as exc:
                raise ApiError(400, "BadRequest", str(exc)) from None
        else:
            raise unsupported_media_type(["application/json", "application/yaml", pb.MEDIA_TYPE])
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "Object 'Kind' is missing in 'null'")
        return body

    def _dry_run(self) -> bool:
        values = self.req.query.get("dryRun", [])
        for v in values:
            if v != "All":
                raise ApiError(400, "BadRequest", f'Invalid dry run value "{v}"')
        return bool(values)

    def create(self) -> None:
        if self.name:
            raise method_not_allowed(self.group, self.resource, "create")
        if self.resource not in ("secrets", "configmaps", "events"):
            raise method_not_allowed(self.group, self.resource, "create")
        body = self._body()
        api_version, kind, _ = st.RESOURCES[self.resource]
        if body.get("kind") not in (None, kind):
            raise ApiError(400, "BadRequest",
                           f"the API version in the data ({body.get('apiVersion')}) does not match "
                           f"the expected API version ({api_version})")
        meta = body.setdefault("metadata", {})
        if meta.get("namespace") and meta["namespace"] != self.ns:
            raise ApiError(400, "BadRequest",
                           "the namespace of the provided object does not match the namespace "
                           "sent on the request")
        meta["namespace"] = self.ns
        if not meta.get("name") and meta.get("generateName"):
            from .scenario import stable_suffix

            meta["name"] = meta["generateName"] + stable_suffix(os.urandom(8).hex())
        name = meta.get("name", "")
        causes = _validate_name(name, kind)
        if self.resource == "secrets":
            body.setdefault("type", "Opaque")
            for key in ("data",):
                for k, v in (body.get(key) or {}).items():
                    import base64
                    import binascii

                    try:
                        base64.b64decode(v, validate=True)
                    except (binascii.Error, ValueError, TypeError):
                        raise ApiError(400, "BadRequest",
                                       "illegal base64 data at input byte 0") from None
            if body.get("stringData"):
                import base64

                data = body.setdefault("data", {}) or {}
                for k, v in body.pop("stringData").items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
                body["data"] = data
        if causes:
            raise _invalid(kind, name, causes)
        if not self.api.namespace_exists(self.ns):
            raise not_found("", "namespaces", self.ns)
        for ref in meta.get("ownerReferences") or []:
            missing = [f for f in ("apiVersion", "kind", "name", "uid") if not ref.get(f)]
            if missing:
                raise _invalid(kind, name, [{
                    "reason": "FieldValueRequired", "message": "Required value",
                    "field": f"metadata.ownerReferences.{missing[0]}"}])
        try:
            created = self.store.create(self.resource, body, dry_run=self._dry_run())
        except st.AlreadyExists:
            raise ApiError(409, "AlreadyExists",
                           f'{qualified(self.group, self.resource)} "{name}" already exists',
                           {"name": name, "kind": self.resource}) from None
        self.h.send_json(201, created)

    def delete(self) -> None:
        grace = None
        opts: dict = {}
        if self.req.body:
            try:
                opts = json.loads(self.req.body) or {}
            except ValueError:
                raise ApiError(400, "BadRequest", "invalid DeleteOptions") from None
        if opts.get("gracePeriodSeconds") is not None:
            grace = int(opts["gracePeriodSeconds"])
        if self.req.q("gracePeriodSeconds") is not None:
            grace = int(self.req.q("gracePeriodSeconds"))
        uid = (opts.get("preconditions") or {}).get("uid")
        if self.resource not in ("pods", "secrets", "configmaps", "events", "deployments",
                                 "replicasets", "statefulsets", "daemonsets"):
            raise method_not_allowed(self.group, self.resource, "delete")
        if self._dry_run():
            obj = self._lookup()
            return self.h.send_json(200, obj)
        try:
            obj, finished = self.store.delete(self.resource, self.ns or None, self.name,
                                              grace_seconds=grace, expect_uid=uid)
        except st.NotFound:
            raise not_found(self.group, self.resource, self.name) from None
        except st.Conflict:
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on {qualified(self.group, self.resource)} '
                           f'"{self.name}": Precondition failed: UID in precondition: {uid}, '
                           f'UID in object meta: ', {"name": self.name, "kind": self.resource}) from None
        if self.resource == "pods":
            if not finished and self.api.kubelet is not None:
                self.api.kubelet.on_pod_changed(obj)
            return self.h.send_json(200, obj)
        self.h.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Success",
                               "details": {"name": self.name, "kind": self.resource,
                                           "uid": obj["metadata"].get("uid")}})

    def workload_write(self) -> None:
        """PATCH / PUT of a Deployment, StatefulSet, DaemonSet or ReplicaSet (see workloads.py)."""
        from . import admission
        from . import workloads as wl

        kind = st.RESOURCES[self.resource][1]
        old = self._lookup()
        try:
            if self.verb == "patch":
                ctype = self.h.headers.get("Content-Type") or ""
                patched = admission.apply_object_patch(old, self.req.body, ctype)
            else:
                patched = self._body()
                if patched.get("kind") not in (None, kind) or \
                        patched.get("apiVersion") not in (None, "apps/v1"):
                    raise ApiError(400, "BadRequest",
                                   f"the API version in the data ({patched.get('apiVersion')}) "
                                   f"does not match the expected API version (apps/v1)")
        except admission.ApiError as exc:
            raise ApiError(exc.code, exc.reason, exc.message, exc.details) from None
        if not isinstance(patched, dict):
            raise ApiError(422, "Invalid", f'{kind}.apps "{self.name}" is invalid', {})
        meta = patched.get("metadata") or {}
        if meta.get("name") and meta["name"] != self.name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta['name']}) does not "
                           f"match the name on the URL ({self.name})")
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on {self.resource}.apps "{self.name}": '
                           "the object has been modified; please apply your changes to the latest "
                           "version and try again", {"name": self.name, "group": "apps",
                                                     "kind": self.resource})
        new = wl.prepare_update(self.resource, old, patched)
        causes = wl.validate_workload(self.resource, old, new)
        if causes:
            parts = [f"{c['field']}: {c['message']}" for c in causes]
            summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
            raise ApiError(422, "Invalid", f'{kind}.apps "{self.name}" is invalid: {summary}',
                           {"name": self.name, "group": "apps", "kind": kind, "causes": causes})
        headers: dict[str, str] = {}
        ns_obj = self.store.snapshot("namespaces", None, self.ns) or {"metadata": {}}
        level = admission.policy_from_labels(ns_obj["metadata"].get("labels"))
        warnings = wl.pod_security_warnings(level, new["spec"]["template"], self.name)
        if warnings:
            headers["Warning"] = ", ".join(
                '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"'
                for w in warnings)
        if self._dry_run():
            return self.h.send_json(200, new, extra=headers)
        if new == old:
            return self.h.send_json(200, old, extra=headers)
        expect = old["metadata"]["resourceVersion"]

        def write(current: dict) -> dict:
            # A PATCH is retried on the latest object by the real server; here the patch was
            # computed on `old`, so a concurrent write (e.g. a status update) is a retry.
            if current["metadata"]["resourceVersion"] != expect:
                raise st.Conflict(self.name)
            return new

        for _attempt in range(5):
            try:
                stored = self.store.mutate(self.resource, self.ns, self.name, write)
                break
            except st.Conflict:
                if self.verb == "update" and rv:
                    raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on '
                                   f'{self.resource}.apps "{self.name}": the object has been '
                                   "modified; please apply your changes to the latest version "
                                   "and try again", {"name": self.name, "group": "apps",
                                                     "kind": self.resource}) from None
                old = self._lookup()
                expect = old["metadata"]["resourceVersion"]
                try:
                    if self.verb == "patch":
                        patched = admission.apply_object_patch(
                            old, self.req.body, self.h.headers.get("Content-Type") or "")
                except admission.ApiError as exc:
                    raise ApiError(exc.code, exc.reason, exc.message, exc.details) from None
                new = wl.prepare_update(self.resource, old, patched)
        else:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {self.resource}.apps '
                           f'"{self.name}": the object has been modified; please apply your '
                           "changes to the latest version and try again",
                           {"name": self.name, "group": "apps", "kind": self.resource})
        if stored is None:
            raise not_found(self.group, self.resource, self.name)
        self.h.send_json(200, stored, extra=headers)

    # ------------------------------------------------------------------ subresources

    def pod_log(self) -> None:
        pod = self._lookup()
        container = self.req.q("container")
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        eph = [c["name"] for c in pod["spec"].get("ephemeralContainers", []) or []]
        if container is None:
            if len(names) > 1:
                raise ApiError(400, "BadRequest",
                               f"a container name must be specified for pod {self.name}, choose one "
                               f"of: [{' '.join(names)}] or one of the ephemeral containers: "
                               f"[{' '.join(eph)}]")
            container = names[0]
        if container not in names + eph:
            raise ApiError(400, "BadRequest",
                           f"container {container} is not valid for pod {self.name}")
        text = b""
        kubelet = self.api.kubelet
        if kubelet is not None and hasattr(kubelet, "logs"):
            text = kubelet.logs(pod, container) or b""
            if isinstance(text, str):
                text = text.encode()
        self.h.send_response(200)
        self.h.send_header("Content-Type", "text/plain")
        self.h.send_header("Content-Length", str(len(text)))
        self.h.end_headers()
        self.h.wfile.write(text)

    def ephemeral_containers(self) -> None:
        if self.verb not in ("get", "patch", "update"):
            raise method_not_allowed(self.group, "pods", self.verb)
        pod = self._lookup()
        if self.verb == "get":
            return self.h.send_json(200, pod)
        from . import admission

        old = pod
        try:
            if self.verb == "patch":
                ctype = self.h.headers.get("Content-Type") or ""
                patched = admission.apply_patch(old, self.req.body, ctype)
            else:
                patched = self._body()
                meta = patched.get("metadata") or {}
                if meta.get("name") and meta["name"] != self.name:
                    raise ApiError(400, "BadRequest",
                                   f"the name of the object ({meta['name']}) does not match the "
                                   f"name on the URL ({self.name})")
                if not meta.get("resourceVersion"):
                    raise _invalid("Pod", self.name, [{
                        "reason": "FieldValueInvalid",
                        "message": "Invalid value: 0x0: must be specified for an update",
                        "field": "metadata.resourceVersion"}])
            rv = (patched.get("metadata") or {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise _conflict(self.name)
            new = admission.effective_update(old, patched)
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            admission.validate_ephemeral_update(old, new)
            if admission.is_significant_pod_update(new, old):
                ns_obj = self.store.snapshot("namespaces", None, self.ns) or {"metadata": {}}
                level = admission.policy_from_labels(ns_obj["metadata"].get("labels"))
                old_names = {c.get("name") for c in old["spec"].get("ephemeralContainers") or []}
                added = [c for c in new["spec"].get("ephemeralContainers") or []
                         if c.get("name") not in old_names]
                violations = admission.pod_security_violations(level, old, added)
                if violations:
                    raise admission.pod_security_forbidden(self.name, level, violations)
        except admission.ApiError as exc:
            raise ApiError(exc.code, exc.reason, exc.message, exc.details) from None
        if self._dry_run():
            return self.h.send_json(200, new)
        if new == old:
            return self.h.send_json(200, old)
        expect = old["metadata"]["resourceVersion"]

        is_put = self.verb == "update"

        def write(current: dict) -> dict:
            # A PATCH is retried on the latest object by the real server (GuaranteedUpdate), so
            # only a concurrent change of the ephemeral containers themselves conflicts; a PUT
            # carries its resourceVersion precondition.
            if is_put and current["metadata"]["resourceVersion"] != expect:
                raise st.Conflict(self.name)
            if current["spec"].get("ephemeralContainers") != old["spec"].get("ephemeralContainers"):
                raise st.Conflict(self.name)
            current["spec"] = new["spec"]
            return current

        try:
            stored = self.store.mutate("pods", self.ns, self.name, write)
        except st.Conflict:
            raise _conflict(self.name) from None
        if stored is None:
            raise not_found("", "pods", self.name)
        if self.api.kubelet is not None:
            self.api.kubelet.on_pod_changed(stored)
        self.h.send_json(200, stored)

    def portforward(self) -> None:
        s = self.api.scenario
        if self.req.method == "GET" and s.features.get("AuthorizePodWebsocketUpgradeCreatePermission"):
            ok, _ = authorize(self.req.user, "create", "", "pods", "portforward", self.ns, self.name)
            if not ok:
                raise forbidden(self.req.user, "create", "", "pods", "portforward", self.ns,
                                self.name)
        if self.req.method not in ("GET", "POST"):
            raise method_not_allowed("", "pods", self.verb)
        pod = self._lookup()
        if not pod["spec"].get("nodeName"):
            raise ApiError(400, "BadRequest",
                           f'pod {self.name} does not have a host assigned')
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise ApiError(400, "BadRequest",
                           f"cannot connect to a completed pod; current phase is {phase}")
        from . import portforward as pf

        headers = _CaseInsensitive(self.h.headers.items())
        ns, name = self.ns, self.name
        network = self.api.network

        def dial(port: int) -> socket.socket:
            current = self.store.snapshot("pods", ns, name)
            if current is None or current["metadata"].get("uid") != pod["metadata"].get("uid"):
                raise ConnectionRefusedError(f'pod "{name}" not found')
            return network.dial(ns, name, port)

        if not s.features.get("PortForwardWebsockets"):
            # Without the feature the API server proxies every websocket to the kubelet as is, and
            # the kubelet knows no `SPDY/3.1+portforward.k8s.io` subprotocol.
            offered = [p.strip() for p in (headers.get("Sec-WebSocket-Protocol") or "").split(",")]
            kept = [p for p in offered if p and not p.startswith("SPDY/3.1+")]
            if "sec-websocket-protocol" in headers:
                if kept:
                    headers["sec-websocket-protocol"] = ", ".join(kept)
                else:
                    del headers["sec-websocket-protocol"]
        from .network import sandbox_id

        self.h.wfile.flush()
        self.h.close_connection = True
        pf.serve(self.req.method, headers, self.req.query, self.h.rfile, self.h.connection, dial,
                 pod_sandbox_id=sandbox_id(ns, name))

    # ------------------------------------------------------------------ reviews

    def self_subject_access_review(self) -> None:
        body = self._body()
        spec = body.get("spec") or {}
        ra = spec.get("resourceAttributes")
        nra = spec.get("nonResourceAttributes")
        if ra:
            allowed, reason = authorize(self.req.user, ra.get("verb", ""), ra.get("group", ""),
                                        ra.get("resource", ""), ra.get("subresource", ""),
                                        ra.get("namespace", ""), ra.get("name", ""))
        elif nra:
            allowed = nra.get("path", "").startswith(("/api", "/version", "/healthz", "/openapi"))
            reason = ""
        else:
            raise _invalid("SelfSubjectAccessReview", "", [{
                "reason": "FieldValueRequired",
                "message": "Required value: exactly one of nonResourceAttributes or "
                           "resourceAttributes must be specified",
                "field": "spec.resourceAttributes"}])
        status: dict = {"allowed": allowed}
        if reason:
            status["reason"] = reason
        out = {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}
        self.h.send_json(201, out)

    def self_subject_rules_review(self) -> None:
        body = self._body()
        ns = (body.get("spec") or {}).get("namespace", "")
        rules = []
        for rule in self.req.user.rules:
            if rule.get("namespaces") is not None and ns not in rule["namespaces"]:
                continue
            rules.append({k: rule[k] for k in ("verbs", "apiGroups", "resources", "resourceNames")
                          if k in rule})
        rules.append({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                      "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]})
        self.h.send_json(201, {"kind": "SelfSubjectRulesReview",
                               "apiVersion": "authorization.k8s.io/v1",
                               "metadata": {"creationTimestamp": None}, "spec": {"namespace": ns},
                               "status": {"resourceRules": rules, "nonResourceRules": [
                                   {"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis",
                                                                          "/apis/*", "/version"]}],
                                   "incomplete": False}})

    def self_subject_review(self) -> None:
        u = self.req.user
        self.h.send_json(201, {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                               "metadata": {"creationTimestamp": None},
                               "status": {"userInfo": {"username": u.name,
                                                       "groups": list(u.groups)}}})


class _CaseInsensitive(dict):
    def __init__(self, items) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key.lower())


def _validate_name(name: str, kind: str) -> list[dict]:
    import re

    if not name:
        return [{"reason": "FieldValueRequired", "message": "Required value: name or generateName "
                 "is required", "field": "metadata.name"}]
    if len(name) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name):
        return [{"reason": "FieldValueInvalid",
                 "message": f"Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist "
                            "of lower case alphanumeric characters, '-' or '.', and must start and end "
                            "with an alphanumeric character (e.g. 'example.com', regex used for "
                            "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                 "field": "metadata.name"}]
    return []


def _invalid(kind: str, name: str, causes: list[dict]) -> ApiError:
    parts = [f"{c['field']}: {c['message']}" for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {summary}',
                    {"name": name, "kind": kind, "causes": causes})


def _conflict(name: str) -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on pods "{name}": the object has been '
                    f'modified; please apply your changes to the latest version and try again',
                    {"name": name, "kind": "pods"})


# ---------------------------------------------------------------------------------------------
# Table output (what `kubectl get` prints), as the API server's printers compute it.


def _col(name: str, type_: str = "string", priority: int = 0, fmt: str = "") -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": _COLUMN_DOC.get(name, name),
            "priority": priority}


_COLUMN_DOC = {
    "Name": "Name must be unique within a namespace. Is required when creating resources, although "
            "some resources may allow a client to request the generation of an appropriate name "
            "automatically. Name is primarily intended for creation idempotence and configuration "
            "definition. Cannot be updated. More info: "
            "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    "Age": "CreationTimestamp is a timestamp representing the server time when this object was "
           "created.",
}


def _age(ts: str | None, now: float) -> str:
    if not ts:
        return "<unknown>"
    import calendar

    t = calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))
    return human_duration(max(0.0, now - t))


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        rem = s % 60
        return f"{m}m{rem}s" if rem else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        rem = m % 60
        return f"{h}h{rem}m" if rem else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        rem = h % 24
        return f"{h // 24}d{rem}h" if rem else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        dy = (h // 24) % 365
        return f"{h // 24 // 365}y{dy}d" if dy else f"{h // 24 // 365}y"
    return f"{h // 24 // 365}y"


def pod_status_reason(pod: dict) -> tuple[str, int, int, int, str]:
    """(STATUS, ready, total, restarts, last-restart-suffix) as kubectl's pod printer computes."""
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    reason = status.get("phase") or "Pending"
    if status.get("reason"):
        reason = status["reason"]
    total = len(spec.get("containers") or [])
    ready = restarts = 0
    init_statuses = status.get("initContainerStatuses") or []
    initializing = False
    for i, cs in enumerate(init_statuses):
        restarts += cs.get("restartCount", 0)
        term = (cs.get("state") or {}).get("terminated")
        wait = (cs.get("state") or {}).get("waiting")
        if term and term.get("exitCode", 0) == 0:
            continue
        if term:
            reason = "Init:" + (term.get("reason") or (f"Signal:{term['signal']}" if term.get("signal")
                                                      else f"ExitCode:{term.get('exitCode')}"))
        elif wait and wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            state = cs.get("state") or {}
            if state.get("waiting", {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif state.get("terminated", {}).get("reason"):
                reason = state["terminated"]["reason"]
            elif "terminated" in state:
                t = state["terminated"]
                reason = f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode')}"
            elif "running" in state and cs.get("ready"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_cond = any(c.get("type") == "Ready" and c.get("status") == "True"
                             for c in status.get("conditions") or [])
            reason = "Running" if ready_cond else "NotReady"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason, ready, total, restarts, ""


def _pod_row(pod: dict, now: float) -> list:
    reason, ready, total, restarts, _ = pod_status_reason(pod)
    status = pod.get("status") or {}
    gates = pod["spec"].get("readinessGates") or []
    return [pod["metadata"]["name"], f"{ready}/{total}", reason, str(restarts),
            _age(pod["metadata"].get("creationTimestamp"), now),
            status.get("podIP") or "<none>", pod["spec"].get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>",
            "<none>" if not gates else f"0/{len(gates)}"]


def _selector_text(sel: dict | None) -> str:
    if not sel:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or []:
        parts.append(f"{expr['key']} {expr['operator'].lower()} ({','.join(expr.get('values') or [])})")
    return ",".join(parts) or "<none>"


def _containers_images(spec: dict) -> tuple[str, str]:
    cs = (spec.get("template") or {}).get("spec", {}).get("containers") or []
    return ",".join(c["name"] for c in cs), ",".join(c.get("image", "") for c in cs)


def _table_spec(resource: str, now: float):
    name = _col("Name", fmt="name")
    age = _col("Age")
    if resource == "pods":
        cols = [name, _col("Ready"), _col("Status"), _col("Restarts", "string"), age,
                _col("IP", priority=1), _col("Node", priority=1),
                _col("Nominated Node", priority=1), _col("Readiness Gates", priority=1)]
        return cols, lambda o: _pod_row(o, now)
    if resource == "namespaces":
        return [name, _col("Status"), age], lambda o: [
            o["metadata"]["name"], (o.get("status") or {}).get("phase", ""),
            _age(o["metadata"].get("creationTimestamp"), now)]
    if resource == "nodes":
        def node_row(o: dict) -> list:
            ready = next((c for c in (o.get("status") or {}).get("conditions", [])
                          if c["type"] == "Ready"), None)
            state = "Ready" if ready and ready["status"] == "True" else "NotReady"
            roles = sorted(k.split("/", 1)[1] for k in (o["metadata"].get("labels") or {})
                           if k.startswith("node-role.kubernetes.io/"))
            info = (o.get("status") or {}).get("nodeInfo") or {}
            return [o["metadata"]["name"], state, ",".join(roles) or "<none>",
                    _age(o["metadata"].get("creationTimestamp"), now), info.get("kubeletVersion", "")]
        return [name, _col("Status"), _col("Roles"), age, _col("Version")], node_row
    if resource == "secrets":
        return [name, _col("Type"), _col("Data", "string"), age], lambda o: [
            o["metadata"]["name"], o.get("type", "Opaque"), len(o.get("data") or {}),
            _age(o["metadata"].get("creationTimestamp"), now)]
    if resource == "deployments":
        def dep_row(o: dict) -> list:
            st_ = o.get("status") or {}
            c, i = _containers_images(o["spec"])
            return [o["metadata"]["name"], f"{st_.get('readyReplicas', 0)}/{o['spec'].get('replicas', 1)}",
                    st_.get("updatedReplicas", 0), st_.get("availableReplicas", 0),
                    _age(o["metadata"].get("creationTimestamp"), now), c, i,
                    _selector_text(o["spec"].get("selector"))]
        return [name, _col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"),
                age, _col("Containers", priority=1), _col("Images", priority=1),
                _col("Selector", priority=1)], dep_row
    if resource == "replicasets":
        def rs_row(o: dict) -> list:
            st_ = o.get("status") or {}
            c, i = _containers_images(o["spec"])
            return [o["metadata"]["name"], o["spec"].get("replicas", 1), st_.get("replicas", 0),
                    st_.get("readyReplicas", 0), _age(o["metadata"].get("creationTimestamp"), now),
                    c, i, _selector_text(o["spec"].get("selector"))]
        return [name, _col("Desired", "integer"), _col("Current", "integer"),
                _col("Ready", "integer"), age, _col("Containers", priority=1),
                _col("Images", priority=1), _col("Selector", priority=1)], rs_row
    if resource == "statefulsets":
        def sts_row(o: dict) -> list:
            st_ = o.get("status") or {}
            c, i = _containers_images(o["spec"])
            return [o["metadata"]["name"], f"{st_.get('readyReplicas', 0)}/{o['spec'].get('replicas', 1)}",
                    _age(o["metadata"].get("creationTimestamp"), now), c, i]
        return [name, _col("Ready"), age, _col("Containers", priority=1),
                _col("Images", priority=1)], sts_row
    if resource == "daemonsets":
        def ds_row(o: dict) -> list:
            st_ = o.get("status") or {}
            c, i = _containers_images(o["spec"])
            sel = (o["spec"].get("template") or {}).get("spec", {}).get("nodeSelector") or {}
            return [o["metadata"]["name"], st_.get("desiredNumberScheduled", 0),
                    st_.get("currentNumberScheduled", 0), st_.get("numberReady", 0),
                    st_.get("updatedNumberScheduled", 0), st_.get("numberAvailable", 0),
                    ",".join(f"{k}={v}" for k, v in sel.items()) or "<none>",
                    _age(o["metadata"].get("creationTimestamp"), now), c, i,
                    _selector_text(o["spec"].get("selector"))]
        return [name, _col("Desired", "integer"), _col("Current", "integer"),
                _col("Ready", "integer"), _col("Up-to-date", "integer"),
                _col("Available", "integer"), _col("Node Selector"), age,
                _col("Containers", priority=1), _col("Images", priority=1),
                _col("Selector", priority=1)], ds_row
    return [name, _col("Created At", "date")], lambda o: [
        o["metadata"]["name"], o["metadata"].get("creationTimestamp")]


def table(resource: str, objs: list[dict], include: str, rv: str, scenario: Any = None) -> dict:
    """A meta.k8s.io/v1 Table of `objs` (includeObject: None, Metadata or Object)."""
    now = time.time()
    cols, row = _table_spec(resource, now)
    rows = []
    for o in objs:
        r: dict = {"cells": row(o)}
        if include == "Object":
            r["object"] = o
        elif include != "None":
            r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": o["metadata"]}
        rows.append(r)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
            "columnDefinitions": cols, "rows": rows}
