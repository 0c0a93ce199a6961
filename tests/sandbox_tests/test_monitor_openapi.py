"""Every response of the simulated dotnet-monitor conforms to dotnet-monitor's OpenAPI document."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from tests.sandbox.monitor import start_monitor
from tests.sandbox.monitor.openapi_check import DEFAULT_SPEC, OpenApiChecker
from tests.sandbox.monitor.testing import (FakeNetwork, ListRecorder, monitor_container, new_key, prepared_pod,
                                           request, scenario)

SPEC = os.environ.get("DOTNET_MONITOR_OPENAPI", DEFAULT_SPEC)
pytestmark = pytest.mark.skipif(not os.path.exists(SPEC), reason="OpenAPI document not available")

FEATURES = {
    "DotnetMonitor_InProcessFeatures__Enabled": "true",
    "DotnetMonitor_InProcessFeatures__ParameterCapturing__Enabled": "true",
    "DotnetMonitor_Egress__FileSystem__files__DirectoryPath": "/diag/out",
    "DotnetMonitor_CollectionRules__HighCpu__Trigger__Type": "EventCounter",
    "DotnetMonitor_CollectionRules__HighCpu__Actions__0__Type": "CollectGCDump",
    "DotnetMonitor_CollectionRules__HighCpu__Actions__0__Settings__Egress": "files",
}


def _exercise(version: str) -> list[tuple[str, str, int, list[str]]]:
    checker = OpenApiChecker(SPEC)
    key = new_key("ES384")
    net, rec = FakeNetwork(), ListRecorder()
    sc = scenario(monitor={"version": version, "artifacts": {"dump": {"size": 65536}, "gcdump": {"size": 65536},
                                                              "trace": {"size": 65536, "rundown_size": 1024}}})
    h = start_monitor(prepared_pod(), monitor_container(env={**key.env(), **FEATURES}), sc, net, rec)
    port, mport = h.ports[52323], h.ports[52325]
    auth = {"Authorization": f"Bearer {key.token()}"}
    uid = request(port, "GET", "/processes", auth).json()[0]["uid"]
    results = []

    def call(method, path, headers=None, body=None, p=None):
        hs = dict(auth)
        hs.update(headers or {})
        r = request(p or port, method, path, hs, body)
        results.append((method, path, r.status, checker.check(method, path, r.status, r.content_type, r.body)))
        return r

    js = {"Content-Type": "application/json"}
    call("GET", "/processes")
    call("GET", "/process")
    call("GET", f"/process?uid={uid}")
    call("GET", "/process?pid=42")                      # 400 ProblemDetails
    call("GET", "/process?pid=abc")                     # binding failure
    call("GET", "/process?uid=not-a-guid")
    call("GET", "/env?pid=1")
    call("GET", "/info")
    call("GET", "/metrics")
    call("GET", "/metrics", p=mport)
    call("GET", "/processes", p=mport)                  # 404 host restricted
    call("GET", "/dump?type=Mini")
    call("GET", "/dump?type=Bogus")
    call("GET", "/gcdump")
    call("GET", "/trace?durationSeconds=1&profile=Cpu,Http")
    call("POST", "/trace?durationSeconds=1", js, json.dumps({"providers": [{"name": "Microsoft-Windows-DotNETRuntime"}]}).encode())
    call("POST", "/trace", js, b"{not json")
    call("GET", "/logs?durationSeconds=1", {"Accept": "application/json-seq"})
    call("GET", "/logs?durationSeconds=1", {"Accept": "text/plain"})
    call("GET", "/logs?durationSeconds=1")              # 406
    call("POST", "/logs?durationSeconds=1", {**js, "Accept": "application/x-ndjson"}, json.dumps({"logLevel": "Debug"}).encode())
    call("GET", "/livemetrics?durationSeconds=6")
    call("POST", "/livemetrics?durationSeconds=6", js, json.dumps({"includeDefaultProviders": False, "providers": [{"providerName": "System.Runtime"}]}).encode())
    call("GET", "/stacks", {"Accept": "application/json"})
    call("GET", "/stacks", {"Accept": "application/speedscope+json"})
    call("GET", "/exceptions", {"Accept": "application/x-ndjson"})
    call("POST", "/exceptions", js, json.dumps({"include": [{"exceptionType": "System.InvalidOperationException"}]}).encode())
    call("POST", "/parameters?durationSeconds=1", js, json.dumps({"methods": [{"moduleName": "App.dll", "typeName": "App.Worker", "methodName": "Run"}]}).encode())
    call("GET", "/collectionrules")
    call("GET", "/collectionrules/HighCpu")
    call("GET", "/collectionrules/Nope")
    r = call("GET", "/gcdump?egressProvider=files&tags=a,b")
    op = r.header("Location").rsplit("/", 1)[1]
    call("GET", "/gcdump?egressProvider=nope")
    for _ in range(100):
        if request(port, "GET", f"/operations/{op}", auth).status == 201:
            break
        time.sleep(0.05)
    call("GET", f"/operations/{op}")                    # 201
    call("GET", "/operations?tags=a")
    call("GET", "/operations/00000000-0000-0000-0000-000000000001")
    call("GET", "/operations/xyz")
    call("DELETE", f"/operations/{op}")                 # not running → 400
    # a running trace: stop it through the API
    started = threading.Event()
    holder = {}

    def long_trace():
        holder["r"] = request(port, "GET", "/trace?durationSeconds=-1", auth,
                              on_headers=lambda rep: (holder.setdefault("loc", rep.header("Location")), started.set()))
    t = threading.Thread(target=long_trace)
    t.start()
    assert started.wait(10)
    call("GET", "/operations/" + holder["loc"].rsplit("/", 1)[1])   # 200 Running
    call("DELETE", "/operations/" + holder["loc"].rsplit("/", 1)[1] + "?stop=true")
    t.join(10)
    call("GET", "/processes", {"Authorization": "Bearer nope"})     # 401
    call("GET", "/", {})
    call("GET", "/nope")
    h.stop()
    return results


@pytest.mark.parametrize("version", ["10.0.4", "8.1.0"])
def test_every_response_conforms(version: str) -> None:
    results = _exercise(version)
    if not version.startswith("10."):
        # The document is 10.x's: /info gained `capabilities` in 10.0 (reference §0, §2.1).
        results = [(m, p, s, [x for x in probs if "'capabilities' is a required property" not in x])
                   for m, p, s, probs in results]
    bad = [(m, p, s, probs) for m, p, s, probs in results if probs]
    assert not bad, "\n".join(f"{m} {p} -> {s}: {probs}" for m, p, s, probs in bad)
    statuses = {s for _m, _p, s, _ in results}
    assert {200, 201, 202, 400, 401, 404, 406} <= statuses

