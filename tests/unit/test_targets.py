"""Issue 7: which pods a target means — kubectl's ByLogging order, running filter, selectors."""

from __future__ import annotations

import pytest

from kubectl_dotnet_monitor.errors import NotFoundError, NotReadyError, UsageError
from kubectl_dotnet_monitor.kube.api import ApiNotFound
from kubectl_dotnet_monitor.kube.targets import (
    check_target_args,
    logging_order,
    pick_one,
    resolve_targets,
    selector_string,
    split_running,
)


def pod(name: str, *, node: str | None = "n1", phase: str = "Running", ready: bool | None = True,
        ready_at: str | None = "2024-01-01T10:00:00Z", restarts: int = 0,
        created: str | None = "2024-01-01T09:00:00Z", deleting: bool = False, labels: dict | None = None) -> dict:
    conditions = []
    if ready is not None:
        cond = {"type": "Ready", "status": "True" if ready else "False"}
        if ready_at:
            cond["lastTransitionTime"] = ready_at
        conditions.append(cond)
    meta = {"name": name, "labels": labels or {"app": "web"}}
    if created:
        meta["creationTimestamp"] = created
    if deleting:
        meta["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": phase, "conditions": conditions,
                   "containerStatuses": [{"name": "app", "restartCount": restarts}]},
    }


def names(pods: list[dict]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


# ------------------------------------------------------------------------- kubectl's ByLogging order

def test_scheduled_before_unscheduled():
    assert names(logging_order([pod("a", node=None, phase="Pending"), pod("b")])) == ["b", "a"]


def test_running_before_unknown_before_pending():
    pods = [pod("p", phase="Pending", ready=False), pod("u", phase="Unknown", ready=False),
            pod("r", phase="Running", ready=False)]
    assert names(logging_order(pods)) == ["r", "u", "p"]


def test_ready_before_not_ready():
    assert names(logging_order([pod("nr", ready=False), pod("r")])) == ["r", "nr"]


def test_ready_longer_first_and_unknown_ready_time_last():
    pods = [pod("recent", ready_at="2024-01-01T12:00:00Z"), pod("none", ready_at=None),
            pod("long", ready_at="2024-01-01T08:00:00Z")]
    assert names(logging_order(pods)) == ["long", "recent", "none"]


def test_more_restarts_first_then_older_first():
    pods = [pod("new", created="2024-01-01T09:30:00Z"), pod("old", created="2024-01-01T08:00:00Z"),
            pod("crashy", restarts=3, created="2024-01-01T09:59:00Z")]
    assert names(logging_order(pods)) == ["crashy", "old", "new"]


def test_missing_creation_time_sorts_last_and_name_breaks_ties():
    pods = [pod("z"), pod("nodate", created=None), pod("a")]
    assert names(logging_order(pods)) == ["a", "z", "nodate"]


def test_pick_one_prefers_a_running_ready_pod_over_a_pending_one():
    assert pick_one([pod("pending", phase="Pending", ready=False, node=None), pod("ok")])["metadata"]["name"] == "ok"


# ---------------------------------------------------------------------------------- running filter

def test_split_running_skips_pending_finished_and_terminating_with_reasons():
    pods = [pod("b"), pod("a"), pod("p", phase="Pending", ready=False), pod("t", deleting=True),
            pod("s", phase="Succeeded", ready=False)]
    running, skipped = split_running(pods)
    assert running == ["a", "b"]
    assert skipped == [("p", "phase Pending"), ("s", "phase Succeeded"), ("t", "terminating")]


def test_not_ready_but_running_pods_are_kept():
    # A leaking app often fails its readiness probe: that is the pod to dump.
    assert split_running([pod("sick", ready=False)])[0] == ["sick"]


# --------------------------------------------------------------------------------------- selectors

def test_selector_string_match_labels_and_expressions():
    sel = {"matchLabels": {"tier": "front", "app": "web"},
           "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "canary"]},
                                {"key": "zone", "operator": "NotIn", "values": ["b"]},
                                {"key": "team", "operator": "Exists"},
                                {"key": "legacy", "operator": "DoesNotExist"}]}
    assert selector_string(sel) == "app=web,tier=front,env in (canary,prod),zone notin (b),team,!legacy"


def test_selector_string_unknown_operator():
    with pytest.raises(UsageError):
        selector_string({"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1"]}]})


@pytest.mark.parametrize("target,selector", [(None, None), ("deploy/web", "app=web")])
def test_target_or_selector_exactly_one(target, selector):
    with pytest.raises(UsageError):
        check_target_args(target, selector)


# ------------------------------------------------------------------------ resolve against a fake API

class FakeClient:
    def __init__(self, objects: dict[str, dict], pods: list[dict]) -> None:
        self.objects = objects
        self.pods = pods
        self.calls: list[tuple[str, dict | None]] = []

    def get(self, path: str, query: dict | None = None) -> dict:
        self.calls.append((path, query))
        if path.endswith("/pods"):
            wanted = dict(kv.split("=") for kv in (query or {})["labelSelector"].split(","))
            return {"items": [p for p in self.pods
                              if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]}
        if path in self.objects:
            return self.objects[path]
        raise ApiNotFound("not found", status=404, reason="NotFound")


DEPLOY = "/apis/apps/v1/namespaces/shop/deployments/web"
WEB = {"spec": {"selector": {"matchLabels": {"app": "web"}}}}


def test_plain_pod_is_not_read():
    client = FakeClient({}, [])
    for target in ("web-0", "pod/web-0", "po/web-0"):
        t = resolve_targets(client, "shop", target, None)
        assert t.pods == ("web-0",) and not t.many
    assert client.calls == []


def test_workload_alone_is_one_pod_chosen_like_kubectl_logs():
    pods = [pod("web-b", ready=False), pod("web-a", phase="Pending", ready=False, node=None), pod("web-c")]
    t = resolve_targets(FakeClient({DEPLOY: WEB}, pods), "shop", "deploy/web", None)
    assert t.pods == ("web-c",) and not t.many
    assert t.notes == ("Found 3 pods, using pod/web-c",)


def test_workload_all_is_every_running_pod():
    pods = [pod("web-b"), pod("web-a"), pod("web-p", phase="Pending", ready=False), pod("db", labels={"app": "db"})]
    t = resolve_targets(FakeClient({DEPLOY: WEB}, pods), "shop", "deployment.apps/web", None, all_pods=True)
    assert t.pods == ("web-a", "web-b") and t.many
    assert t.skipped == (("web-p", "phase Pending"),)
    assert t.described == "deploy/web"


def test_label_selector_is_every_running_pod():
    pods = [pod("web-a"), pod("db", labels={"app": "db"})]
    t = resolve_targets(FakeClient({}, pods), "shop", None, "app=web")
    assert t.pods == ("web-a",) and t.many and t.described == "-l app=web"


def test_unknown_workload_reads_like_kubectl():
    with pytest.raises(NotFoundError) as err:
        resolve_targets(FakeClient({}, []), "shop", "sts/nope", None)
    assert err.value.message == 'statefulsets.apps "nope" not found in namespace "shop"'


def test_unknown_kind_is_a_usage_error():
    with pytest.raises(UsageError):
        resolve_targets(FakeClient({}, []), "shop", "svc/web", None)


def test_nothing_matches_the_selector():
    with pytest.raises(NotFoundError, match="no pods"):
        resolve_targets(FakeClient({}, [pod("db", labels={"app": "db"})]), "shop", None, "app=web")


def test_workload_without_pods():
    with pytest.raises(NotFoundError, match="deploy/web has no pods"):
        resolve_targets(FakeClient({DEPLOY: WEB}, []), "shop", "deploy/web", None)


def test_no_running_pod_at_all():
    pods = [pod("web-a", phase="Pending", ready=False)]
    with pytest.raises(NotReadyError, match="none of the 1 pods of -l app=web is running"):
        resolve_targets(FakeClient({}, pods), "shop", None, "app=web")


# ------------------------------------------------------------------ single-pod commands (info, env...)

def test_one_pod_name_takes_a_pod_and_refuses_a_workload():
    from kubectl_dotnet_monitor.cli.artifact_common import one_pod_name

    assert one_pod_name("web-0") == "web-0"
    assert one_pod_name("pod/web-0") == "web-0"
    with pytest.raises(UsageError, match="works on one pod"):
        one_pod_name("deploy/web", "`info`")
    with pytest.raises(UsageError, match="a pod is required"):
        one_pod_name(None)


def test_a_single_pod_command_refuses_a_selector():
    import click

    from kubectl_dotnet_monitor.cli.artifact_common import Target

    ctx = click.Context(click.Command("info"))
    target = Target.take(ctx, None, {"target": None, "label_selector": "app=web", "namespace": None})
    with pytest.raises(UsageError, match="-l selects several"):
        target.pod
