"""Pure pieces of the sandbox cluster: scenarios, selectors, the store, startup time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sandbox import scenario as sc
from tests.sandbox import store as st

REPO = Path(__file__).resolve().parents[2]


def test_scenarios_materialise() -> None:
    for name in ("basic", "old-cluster", "fanout"):
        s = sc.load(name)
        objs = s.materialize(time.time())
        assert all(o["metadata"].get("uid") for o in objs)
    fanout = [o for o in sc.load("fanout").materialize(time.time()) if o["kind"] == "Pod"]
    assert len(fanout) == 50 and len({p["metadata"]["name"] for p in fanout}) == 50


def test_basic_sandbox_section_is_separate() -> None:
    s = sc.load("basic")
    for obj in s.objects:
        assert "sandbox" not in obj
    assert s.image("registry.example/shop/workers:2.0").processes[1]["name"] == "Scheduler"
    assert s.image("mcr.microsoft.com/dotnet/monitor:9").monitor
    assert not s.image_pullable("mcr.microsoft.com/dotnet/monitor:does-not-exist")
    assert s.sandbox.kubelet.container_start_delay == 0.3
    assert isinstance(s.sandbox, dict) and "monitor" in s.sandbox


@pytest.mark.parametrize("selector,labels,expected", [
    ("app=web", {"app": "web"}, True),
    ("app==web,tier!=db", {"app": "web", "tier": "db"}, False),
    ("app in (a, web)", {"app": "web"}, True),
    ("app notin (web)", {"app": "web"}, False),
    ("app", {}, False),
    ("!app", {}, True),
])
def test_label_selectors(selector: str, labels: dict, expected: bool) -> None:
    assert st.labels_match(st.parse_label_selector(selector), labels) is expected


def test_field_selector_rejects_unknown_fields() -> None:
    with pytest.raises(st.SelectorError, match="field label not supported: spec.foo"):
        st.parse_field_selector("pods", "spec.foo=bar")


def test_store_watch_history_and_gc() -> None:
    store = st.Store(pod_termination_grace=0.05, gc_delay=0.01)
    s = sc.load("basic")
    store.load(s.materialize(time.time()))
    rv = store.resource_version
    pod = store.get("pods", "default", "unprepared")
    store.create("secrets", {"metadata": {"name": "k", "namespace": "default", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": "unprepared", "uid": pod["metadata"]["uid"]}]}})
    watcher, backlog = store.watch("secrets", "default", rv)
    assert [e.type for e in backlog] == ["ADDED"]
    obj, finished = store.delete("pods", "default", "unprepared")
    assert not finished and obj["metadata"]["deletionTimestamp"]
    event = watcher.get(timeout=2)
    assert event is not None and event.type == "DELETED" and event.obj["metadata"]["name"] == "k"
    assert store.get("pods", "default", "unprepared") is None
    with pytest.raises(st.Gone):
        store.watch("pods", None, "1")
    store.close()


def test_up_detached_is_fast_and_down_is_clean(tmp_path: Path) -> None:
    start = time.monotonic()
    up = subprocess.run([sys.executable, "-m", "tests.sandbox", "up", "--scenario", "fanout",
                         "--state-dir", str(tmp_path), "--detach"], cwd=REPO,
                        capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - start
    assert up.returncode == 0, up.stderr
    try:
        assert (tmp_path / "state.json").exists()
        assert elapsed < 2.0, f"startup took {elapsed:.2f} s"
    finally:
        down = subprocess.run([sys.executable, "-m", "tests.sandbox", "down", "--state-dir",
                               str(tmp_path)], cwd=REPO, capture_output=True, timeout=30)
    assert down.returncode == 0
    assert not (tmp_path / "state.json").exists()


def test_control_endpoint_faults_and_pods(sandbox) -> None:
    control = sandbox.control
    try:
        control.set_faults([{"artifact": "gcdump", "kind": "reset", "after": 1024, "times": 1}])
        assert control.faults()[0]["kind"] == "reset"
    finally:
        control.clear_faults()
    assert control.faults() == []
    assert control.pod("default", "twoproc")["metadata"]["name"] == "twoproc"
    assert control.pod("default", "no-such-pod") is None
    assert {p["metadata"]["name"] for p in control.pods("shop")} == {"orders-0"}
