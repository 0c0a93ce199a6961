"""Unit tests of the sandbox's API-server rules: patches, ephemeral-container validation, Pod Security.

Expected messages are the API server's own wording (validation.go, field/errors.go,
pod-security-admission/policy), so a change here means the sandbox drifted from a real cluster.
"""

from __future__ import annotations

import copy
import json

import pytest

from tests.sandbox import admission as adm

from tests.reference import SAMPLE_CUSTOM as SAMPLE_CONFIG
FORBIDDEN = "cannot be set for an Ephemeral Container"


def make_pod(**spec_extra) -> dict:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app-0", "namespace": "shop", "uid": "uid-1",
                     "resourceVersion": "41", "finalizers": ["a"]},
        "spec": {
            "nodeName": "node-1",
            "volumes": [{"name": "diagvol", "emptyDir": {}},
                        {"name": "kube-api-access-x", "projected": {"sources": []}}],
            "containers": [adm.default_container({
                "name": "app", "image": "shop/app:1.0",
                "env": [{"name": "DOTNET_DiagnosticPorts",
                         "value": "/diag/dotnet-monitor.sock,nosuspend"}],
                "volumeMounts": [{"name": "diagvol", "mountPath": "/diag"}],
                "ports": [{"containerPort": 8080}],
            })],
        },
        "status": {"phase": "Running"},
    }
    pod["spec"].update(spec_extra)
    return pod


def ec(name: str = "debugger", **fields) -> dict:
    """An ephemeral container as kubectl debug generates it."""
    return {"name": name, "image": "mcr.microsoft.com/dotnet/monitor:10.0",
            "terminationMessagePolicy": "File", "resources": {}, **fields}


def smp(obj: dict) -> bytes:
    return json.dumps(obj).encode()


def patched(pod: dict, body: dict | list, ctype: str = adm.CONTENT_TYPE_SMP) -> dict:
    return adm.apply_patch(pod, json.dumps(body).encode(), ctype)


def submit(old: dict, *containers: dict) -> dict:
    """kubectl's PATCH for new ephemeral containers, through strategy and validation."""
    new = patched(old, {"spec": {"ephemeralContainers": list(containers)}})
    effective = adm.effective_update(old, new)
    adm.validate_ephemeral_update(old, effective)
    return effective


# ------------------------------------------------------------------------------------------------
# Strategic merge patch


def test_smp_adds_ephemeral_container_and_applies_defaults():
    pod = make_pod()
    new = patched(pod, {"spec": {"ephemeralContainers": [ec()]}})
    [c] = new["spec"]["ephemeralContainers"]
    assert c["name"] == "debugger"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert pod["spec"].get("ephemeralContainers") is None  # input untouched


@pytest.mark.parametrize("image,policy", [
    ("busybox", "Always"), ("busybox:latest", "Always"), ("busybox:1.36", "IfNotPresent"),
    ("reg:5000/x/busybox", "Always"), ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_default_image_pull_policy(image, policy):
    assert adm.default_container({"image": image})["imagePullPolicy"] == policy


def test_smp_merges_lists_by_their_merge_keys():
    pod = make_pod()
    new = patched(pod, {"spec": {"containers": [{
        "name": "app",
        "env": [{"name": "DOTNET_DiagnosticPorts", "value": "x"}, {"name": "NEW", "value": "1"}],
        "volumeMounts": [{"mountPath": "/diag", "readOnly": True}],
        "ports": [{"containerPort": 9090}],
    }]}})
    [app] = new["spec"]["containers"]
    assert app["env"] == [{"name": "DOTNET_DiagnosticPorts", "value": "x"},
                          {"name": "NEW", "value": "1"}]
    assert app["volumeMounts"] == [{"name": "diagvol", "mountPath": "/diag", "readOnly": True}]
    assert [p["containerPort"] for p in app["ports"]] == [8080, 9090]
    assert app["image"] == "shop/app:1.0"


@pytest.mark.parametrize("patch,check", [
    # null deletes a key
    ({"spec": {"nodeName": None}}, lambda p: "nodeName" not in p["spec"]),
    # $patch: delete on a list element (by merge key)
    ({"spec": {"volumes": [{"name": "diagvol", "$patch": "delete"}]}},
     lambda p: [v["name"] for v in p["spec"]["volumes"]] == ["kube-api-access-x"]),
    # $patch: replace on a list
    ({"spec": {"volumes": [{"$patch": "replace"}, {"name": "only", "emptyDir": {}}]}},
     lambda p: p["spec"]["volumes"] == [{"name": "only", "emptyDir": {}}]),
    # $patch: replace on a map
    ({"metadata": {"$patch": "replace", "name": "app-0"}},
     lambda p: p["metadata"] == {"name": "app-0"}),
    # $patch: delete on a map empties it (handleDirectiveInMergeMap)
    ({"status": {"$patch": "delete"}}, lambda p: p["status"] == {}),
    # a list without a merge key replaces
    ({"spec": {"containers": [{"name": "app", "command": ["b"]}]}},
     lambda p: p["spec"]["containers"][0]["command"] == ["b"]),
    # finalizers: a set of primitives
    ({"metadata": {"finalizers": ["b", "a"]}}, lambda p: p["metadata"]["finalizers"] == ["a", "b"]),
    ({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
     lambda p: p["metadata"]["finalizers"] == []),
    # $setElementOrder
    ({"spec": {"$setElementOrder/volumes": [{"name": "kube-api-access-x"}, {"name": "diagvol"}]}},
     lambda p: [v["name"] for v in p["spec"]["volumes"]] == ["kube-api-access-x", "diagvol"]),
    # unknown maps merge key by key
    ({"metadata": {"labels": {"a": "1"}}}, lambda p: p["metadata"]["labels"] == {"a": "1"}),
])
def test_smp_directives(patch, check):
    assert check(patched(make_pod(), patch))


def test_smp_capabilities_add_replaces_like_kubectl_custom():
    base = ec(securityContext={"capabilities": {"add": ["SYS_PTRACE"]}})
    merged = adm.strategic_merge_container(
        base, {"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}})
    assert merged["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"]
    kept = adm.strategic_merge_container(base, {"securityContext": {"runAsUser": 0}})
    assert kept["securityContext"] == {"capabilities": {"add": ["SYS_PTRACE"]}, "runAsUser": 0}


@pytest.mark.parametrize("body,ctype,code,message", [
    (b"{not json", adm.CONTENT_TYPE_SMP, 400, None),
    (b"[]", adm.CONTENT_TYPE_SMP, 400,
     "json: cannot unmarshal array into Go value of type map[string]interface {}"),
    (smp({"spec": {"ephemeralContainers": [{"image": "x"}]}}), adm.CONTENT_TYPE_SMP, 500,
     "Internal error occurred: map: map[image:x] does not contain declared merge key: name"),
    (smp({"spec": {"$patch": "merge"}}), adm.CONTENT_TYPE_SMP, 500,
     "Internal error occurred: unknown patch type: merge in map: map[$patch:merge]"),
    (b"{x", adm.CONTENT_TYPE_MERGE, 400, "Invalid JSON Patch"),
    (b"[1]", adm.CONTENT_TYPE_MERGE, 500, "Internal error occurred: Mismatched JSON Documents"),
    (b"{}", "application/apply-patch+yaml", 415, None),
    (b"{}", "text/plain", 415, None),
])
def test_patch_errors(body, ctype, code, message):
    with pytest.raises(adm.ApiError) as exc:
        adm.apply_patch(make_pod(), body, ctype)
    assert exc.value.code == code
    if message is not None:
        assert exc.value.message == message
    status = exc.value.status()
    assert status["kind"] == "Status" and status["code"] == code and status["status"] == "Failure"


def test_patch_of_wrong_shape_is_invalid_patch():
    with pytest.raises(adm.Invalid) as exc:
        patched(make_pod(), {"spec": {"ephemeralContainers": "oops"}})
    assert exc.value.message.startswith('"" is invalid: patch: Invalid value: ')
    assert exc.value.causes[0]["field"] == "patch"


def test_content_type_parameters_are_ignored():
    new = adm.apply_patch(make_pod(), smp({"spec": {"ephemeralContainers": [ec()]}}),
                          "application/strategic-merge-patch+json; charset=utf-8")
    assert new["spec"]["ephemeralContainers"][0]["name"] == "debugger"


# ------------------------------------------------------------------------------------------------
# RFC 7386 merge patch (examples from the RFC's appendix A)


@pytest.mark.parametrize("target,patch,result", [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_merge_patch_rfc7386(target, patch, result):
    assert adm._merge_value(target, patch) == result


def test_merge_patch_replaces_container_lists():
    pod = make_pod()
    new = patched(pod, {"spec": {"ephemeralContainers": [ec()]}}, adm.CONTENT_TYPE_MERGE)
    assert [c["name"] for c in new["spec"]["ephemeralContainers"]] == ["debugger"]
    new2 = patched(new, {"spec": {"ephemeralContainers": [ec("other")]}}, adm.CONTENT_TYPE_MERGE)
    assert [c["name"] for c in new2["spec"]["ephemeralContainers"]] == ["other"]


# ------------------------------------------------------------------------------------------------
# RFC 6902 json patch

GENERIC_422 = "the server rejected our request due to an error in our request"


def test_json_patch_append_with_dash_and_whole_list():
    pod = make_pod()
    with_list = patched(pod, [{"op": "add", "path": "/spec/ephemeralContainers", "value": [ec()]}],
                        adm.CONTENT_TYPE_JSON_PATCH)
    again = patched(with_list, [{"op": "add", "path": "/spec/ephemeralContainers/-",
                                 "value": ec("second")}], adm.CONTENT_TYPE_JSON_PATCH)
    assert [c["name"] for c in again["spec"]["ephemeralContainers"]] == ["debugger", "second"]


@pytest.mark.parametrize("ops", [
    # the list does not exist yet: "doc is missing path"
    [{"op": "add", "path": "/spec/ephemeralContainers/-", "value": {}}],
    [{"op": "remove", "path": "/spec/nope"}],
    [{"op": "replace", "path": "/spec/nope", "value": 1}],
    [{"op": "test", "path": "/spec/nodeName", "value": "other"}],
    [{"op": "test", "path": "/spec/missing", "value": None}],
    [{"op": "move", "from": "/spec/nope", "path": "/spec/x"}],
    [{"op": "copy", "from": "/spec/nope", "path": "/spec/x"}],
    [{"op": "add", "path": "/spec/volumes/7", "value": {}}],
    [{"op": "remove", "path": "/spec/volumes/-"}],
    [{"op": "frobnicate", "path": "/spec"}],
    [{"op": "add", "path": "spec", "value": 1}],
])
def test_json_patch_failures_are_the_generic_422(ops):
    with pytest.raises(adm.Invalid) as exc:
        adm.apply_patch(make_pod(), json.dumps(ops).encode(), adm.CONTENT_TYPE_JSON_PATCH)
    status = exc.value.status()
    assert status == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": GENERIC_422, "reason": "Invalid", "details": {}, "code": 422}


@pytest.mark.parametrize("ops,check", [
    ([{"op": "add", "path": "/metadata/labels", "value": {"a/b": "1"}},
      {"op": "replace", "path": "/metadata/labels/a~1b", "value": "2"}],
     lambda p: p["metadata"]["labels"] == {"a/b": "2"}),
    ([{"op": "add", "path": "/spec/volumes/0", "value": {"name": "first", "emptyDir": {}}}],
     lambda p: p["spec"]["volumes"][0]["name"] == "first"),
    ([{"op": "remove", "path": "/spec/volumes/-1"}],
     lambda p: [v["name"] for v in p["spec"]["volumes"]] == ["diagvol"]),
    ([{"op": "copy", "from": "/spec/nodeName", "path": "/metadata/labels"}],
     lambda p: p["metadata"]["labels"] == "node-1"),
    ([{"op": "move", "from": "/spec/nodeName", "path": "/spec/hostname"}],
     lambda p: p["spec"]["hostname"] == "node-1" and "nodeName" not in p["spec"]),
    ([{"op": "test", "path": "/spec/containers/0/ports/0/containerPort", "value": 8080},
      {"op": "remove", "path": "/metadata/finalizers/0"}],
     lambda p: p["metadata"]["finalizers"] == []),
])
def test_json_patch_operations(ops, check):
    assert check(patched(make_pod(), ops, adm.CONTENT_TYPE_JSON_PATCH))


def test_json_patch_test_distinguishes_bool_and_int():
    pod = make_pod()
    pod["spec"]["hostNetwork"] = True
    with pytest.raises(adm.Invalid):
        patched(pod, [{"op": "test", "path": "/spec/hostNetwork", "value": 1}],
                adm.CONTENT_TYPE_JSON_PATCH)


@pytest.mark.parametrize("body,code", [
    (b'{"op": "add"}', 400), (b"[1]", 400), (b"nope", 400),
    (json.dumps([{"op": "test", "path": "/kind", "value": "Pod"}] * 10001).encode(), 413),
])
def test_json_patch_decode_errors(body, code):
    with pytest.raises(adm.ApiError) as exc:
        adm.apply_patch(make_pod(), body, adm.CONTENT_TYPE_JSON_PATCH)
    assert exc.value.code == code


# ------------------------------------------------------------------------------------------------
# The ephemeralcontainers strategy and validation


def kubectl_debug_container(profile: str = "general", custom: dict | None = None) -> dict:
    """What kubectl 1.33 builds for `debug --image monitor:10.0 --container debugger`."""
    c = {"name": "debugger", "image": "mcr.microsoft.com/dotnet/monitor:10.0",
         "terminationMessagePolicy": "File", "resources": {}}
    if profile == "general":
        c["securityContext"] = {"capabilities": {"add": ["SYS_PTRACE"]}}
    elif profile == "restricted":
        c["securityContext"] = {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                                "allowPrivilegeEscalation": False,
                                "seccompProfile": {"type": "RuntimeDefault"}}
    if custom:
        c = adm.strategic_merge_container(c, custom)
    return c


def load_sample() -> dict:
    import yaml

    return yaml.safe_load(SAMPLE_CONFIG.read_text())


def test_upstream_sample_is_accepted_and_merged_as_kubectl_does():
    container = kubectl_debug_container("general", load_sample())
    assert container["args"] == ["collect", "--no-auth"]
    assert container["volumeMounts"] == [{"name": "diagvol", "mountPath": "/diag"}]
    assert container["securityContext"] == {"capabilities": {"add": ["SYS_PTRACE"]}}
    stored = submit(make_pod(), container)
    [c] = stored["spec"]["ephemeralContainers"]
    assert c["env"][0] == {"name": "DotnetMonitor_Urls", "value": "http://+:52323"}
    assert adm.pod_security_violations("privileged", stored) == []


def test_upstream_sample_is_rejected_under_baseline():
    stored = submit(make_pod(), kubectl_debug_container("general", load_sample()))
    violations = adm.pod_security_violations("baseline", stored)
    assert violations == ['non-default capabilities (container "debugger" must not include '
                          '"SYS_PTRACE" in securityContext.capabilities.add)']
    assert adm.format_forbidden("app-0", "baseline", violations) == (
        'pods "app-0" is forbidden: violates PodSecurity "baseline:latest": non-default '
        'capabilities (container "debugger" must not include "SYS_PTRACE" in '
        'securityContext.capabilities.add)')
    err = adm.pod_security_forbidden("app-0", "baseline:latest", violations)
    assert err.code == 403 and err.status()["details"] == {"name": "app-0", "kind": "pods"}


def test_strategy_drops_every_change_but_ephemeral_containers():
    old = make_pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "evil:1"
    new["metadata"]["labels"] = {"x": "y"}
    new["status"]["phase"] = "Failed"
    new["spec"]["ephemeralContainers"] = [ec()]
    effective = adm.effective_update(old, new)
    assert effective["spec"]["containers"] == old["spec"]["containers"]
    assert "labels" not in effective["metadata"]
    assert effective["status"] == old["status"]
    assert effective["spec"]["ephemeralContainers"][0]["imagePullPolicy"] == "IfNotPresent"
    adm.validate_ephemeral_update(old, effective)


def test_put_without_uid_keeps_the_stored_uid():
    old = make_pod()
    new = copy.deepcopy(old)
    del new["metadata"]["uid"]
    new["spec"]["ephemeralContainers"] = [ec()]
    assert adm.effective_update(old, new)["metadata"]["uid"] == "uid-1"


def invalid_for(*containers: dict, pod: dict | None = None) -> adm.Invalid:
    pod = pod or make_pod()
    effective = adm.effective_update(pod, {**pod, "spec": {**pod["spec"],
                                                           "ephemeralContainers":
                                                               list(containers)}})
    with pytest.raises(adm.Invalid) as exc:
        adm.validate_ephemeral_update(pod, effective)
    return exc.value


@pytest.mark.parametrize("field,value", [
    ("ports", [{"containerPort": 52323}]),
    ("ports", []),
    ("resources", {"limits": {"memory": "256Mi"}}),
    ("resources", {"limits": {}}),
    ("livenessProbe", {"tcpSocket": {"port": 52323}}),
    ("readinessProbe", {"httpGet": {"path": "/", "port": 1}}),
    ("startupProbe", {}),
    ("lifecycle", {"preStop": {"exec": {"command": ["x"]}}}),
    ("resizePolicy", [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]),
    ("restartPolicy", "Always"),
])
def test_forbidden_fields(field, value):
    err = invalid_for(ec(**{field: value}))
    assert err.message == (f'Pod "app-0" is invalid: spec.ephemeralContainers[0].{field}: '
                           f"Forbidden: {FORBIDDEN}")
    assert err.causes == [{"reason": "FieldValueForbidden", "message": f"Forbidden: {FORBIDDEN}",
                           "field": f"spec.ephemeralContainers[0].{field}"}]
    assert err.status()["details"]["name"] == "app-0"
    assert err.status()["details"]["kind"] == "Pod"
    assert err.status()["reason"] == "Invalid" and err.code == 422


@pytest.mark.parametrize("extra", [{"resources": {}}, {"resources": {"limits": None}},
                                   {"stdin": True, "tty": True, "workingDir": "/"},
                                   {"envFrom": [{"secretRef": {"name": "s"}}]}])
def test_allowed_fields(extra):
    submit(make_pod(), ec(**extra))


@pytest.mark.parametrize("container,message", [
    (ec(name="Debugger"), 'spec.ephemeralContainers[0].name: Invalid value: "Debugger": '
                          f"{adm._LABEL_MSG}"),
    (ec(name="dbg.x"), 'spec.ephemeralContainers[0].name: Invalid value: "dbg.x": '
                       "must not contain dots"),
    (ec(name="d" * 64), f'spec.ephemeralContainers[0].name: Invalid value: "{"d" * 64}": '
                        "must be no more than 63 characters"),
    (ec(image=""), "spec.ephemeralContainers[0].image: Required value"),
    (ec(terminationMessagePolicy="Sometimes"),
     'spec.ephemeralContainers[0].terminationMessagePolicy: Unsupported value: "Sometimes": '
     'supported values: "File", "FallbackToLogsOnError"'),
    (ec(imagePullPolicy="Sometimes"),
     'spec.ephemeralContainers[0].imagePullPolicy: Unsupported value: "Sometimes": '
     'supported values: "Always", "IfNotPresent", "Never"'),
    (ec(name="app"), 'spec.ephemeralContainers[0].name: Duplicate value: "app"'),
    (ec(targetContainerName="nope"),
     'spec.ephemeralContainers[0].targetContainerName: Not found: "nope"'),
    (ec(volumeMounts=[{"name": "missing", "mountPath": "/m"}]),
     'spec.ephemeralContainers[0].volumeMounts[0].name: Not found: "missing"'),
    (ec(volumeMounts=[{"name": "diagvol", "mountPath": "/diag", "subPath": "x"}]),
     f"spec.ephemeralContainers[0].volumeMounts[0].subPath: Forbidden: {FORBIDDEN}"),
    (ec(volumeMounts=[{"name": "diagvol", "mountPath": "/diag", "subPathExpr": "$(X)"}]),
     f"spec.ephemeralContainers[0].volumeMounts[0].subPathExpr: Forbidden: {FORBIDDEN}"),
    (ec(securityContext={"seccompProfile": {"type": "Bogus"}}),
     'spec.ephemeralContainers[0].securityContext.seccompProfile.type: Unsupported value: '
     '"Bogus": supported values: "Localhost", "RuntimeDefault", "Unconfined"'),
    (ec(env=[{"name": "A=B", "value": "1"}]),
     'spec.ephemeralContainers[0].env[0].name: Invalid value: "A=B": a valid environment '
     "variable name must consist only of printable ASCII characters other than '='"),
])
def test_single_rule_violations(container, message):
    assert invalid_for(container).message == f'Pod "app-0" is invalid: {message}'


def test_target_must_not_be_another_ephemeral_container():
    pod = submit(make_pod(), ec("first"))
    err = invalid_for(pod["spec"]["ephemeralContainers"][0], ec("second", targetContainerName="first"),
                      pod=pod)
    assert err.message == ('Pod "app-0" is invalid: spec.ephemeralContainers[1].targetContainerName:'
                           ' Not found: "first"')


def test_target_may_name_the_app_container():
    submit(make_pod(), ec(targetContainerName="app"))


def test_duplicate_between_new_ephemeral_containers():
    err = invalid_for(ec("a"), ec("a"))
    assert err.message == 'Pod "app-0" is invalid: spec.ephemeralContainers[1].name: ' \
                          'Duplicate value: "a"'


def test_several_errors_are_aggregated_in_brackets():
    err = invalid_for(ec(ports=[{"containerPort": 1}], resources={"limits": {"cpu": "1"}}))
    assert err.message == (
        f'Pod "app-0" is invalid: [spec.ephemeralContainers[0].ports: Forbidden: {FORBIDDEN}, '
        f"spec.ephemeralContainers[0].resources: Forbidden: {FORBIDDEN}]")
    assert [c["field"] for c in err.causes] == ["spec.ephemeralContainers[0].ports",
                                               "spec.ephemeralContainers[0].resources"]


def test_existing_ephemeral_containers_may_not_be_removed_or_changed():
    pod = submit(make_pod(), ec())
    removed = adm.effective_update(pod, {**pod, "spec": {**pod["spec"],
                                                         "ephemeralContainers": []}})
    with pytest.raises(adm.Invalid) as exc:
        adm.validate_ephemeral_update(pod, removed)
    assert exc.value.message == ('Pod "app-0" is invalid: spec.ephemeralContainers: Forbidden: '
                                 'existing ephemeral containers "debugger" may not be removed\n')
    with pytest.raises(adm.Invalid) as exc:
        patched_pod = patched(pod, {"spec": {"ephemeralContainers": [
            {"name": "debugger", "image": "busybox"}]}})
        adm.validate_ephemeral_update(pod, adm.effective_update(pod, patched_pod))
    assert exc.value.message.startswith(
        'Pod "app-0" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral '
        'containers "debugger" may not be changed\n')
    assert '"busybox"' in exc.value.message


def test_resending_the_same_container_is_a_no_op():
    pod = submit(make_pod(), ec())
    again = submit(pod, ec())
    assert again["spec"]["ephemeralContainers"] == pod["spec"]["ephemeralContainers"]


def test_static_pods_refuse_ephemeral_containers():
    pod = make_pod()
    pod["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "abc"}
    err = invalid_for(ec(), pod=pod)
    assert err.message == ('Pod "app-0" is invalid: : Forbidden: static pods do not support '
                           "ephemeral containers")
    assert err.causes == [{"reason": "FieldValueForbidden",
                           "message": "Forbidden: static pods do not support ephemeral containers",
                           "field": ""}]


def test_name_and_uid_are_immutable():
    pod = make_pod()
    new = copy.deepcopy(pod)
    new["metadata"]["uid"] = "other"
    new["spec"]["ephemeralContainers"] = [ec()]
    with pytest.raises(adm.Invalid) as exc:
        adm.validate_ephemeral_update(pod, adm.effective_update(pod, new))
    assert exc.value.message == ('Pod "app-0" is invalid: metadata.uid: Invalid value: "other": '
                                 "field is immutable")


# ------------------------------------------------------------------------------------------------
# Pod Security admission

RESTRICTED_SC = {"runAsNonRoot": True, "runAsUser": 1654, "allowPrivilegeEscalation": False,
                 "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def restricted_pod() -> dict:
    pod = make_pod()
    pod["spec"]["securityContext"] = {"runAsNonRoot": True, "seccompProfile":
                                      {"type": "RuntimeDefault"}}
    pod["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return pod


def test_restricted_security_context_is_admitted_under_restricted():
    pod = make_pod()
    pod["spec"]["containers"][0]["securityContext"] = copy.deepcopy(RESTRICTED_SC)
    stored = submit(pod, ec(securityContext=copy.deepcopy(RESTRICTED_SC)))
    assert adm.pod_security_violations("restricted", stored) == []
    assert adm.pod_security_violations("restricted:latest", stored) == []


def test_kubectl_restricted_profile_is_admitted_in_a_restricted_pod():
    stored = submit(restricted_pod(), kubectl_debug_container("restricted"))
    assert adm.pod_security_violations("restricted", stored) == []


def test_restricted_message_for_a_bare_container():
    pod = make_pod()
    pod["spec"]["containers"][0]["securityContext"] = copy.deepcopy(RESTRICTED_SC)
    violations = adm.pod_security_violations("restricted", pod, [ec("x")])
    assert adm.format_forbidden("app-0", "restricted", violations) == (
        'pods "app-0" is forbidden: violates PodSecurity "restricted:latest": '
        'allowPrivilegeEscalation != false (container "x" must set '
        "securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "
        '"x" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or '
        'container "x" must set securityContext.runAsNonRoot=true), seccompProfile (pod or '
        'container "x" must set securityContext.seccompProfile.type to "RuntimeDefault" or '
        '"Localhost")')


def test_the_whole_pod_is_evaluated():
    # The app container violates restricted: any ephemeral container patch is refused too.
    violations = adm.pod_security_violations("restricted", make_pod(),
                                             [ec(securityContext=copy.deepcopy(RESTRICTED_SC))])
    assert violations[0] == ('allowPrivilegeEscalation != false (container "app" must set '
                             "securityContext.allowPrivilegeEscalation=false)")


@pytest.mark.parametrize("level,sc,pod_extra,expected", [
    ("baseline", {"privileged": True}, {},
     ['privileged (container "x" must not set securityContext.privileged=true)']),
    ("baseline", {"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]}}, {}, []),
    ("baseline", {"capabilities": {"add": ["SYS_ADMIN", "NET_RAW"]}}, {},
     ['non-default capabilities (container "x" must not include "NET_RAW", "SYS_ADMIN" in '
      "securityContext.capabilities.add)"]),
    ("baseline", {"procMount": "Unmasked"}, {},
     ['procMount (container "x" must not set securityContext.procMount to "Unmasked")']),
    ("baseline", {"seccompProfile": {"type": "Unconfined"}}, {},
     ['seccompProfile (container "x" must not set securityContext.seccompProfile.type to '
      '"Unconfined")']),
    ("baseline", {"windowsOptions": {"hostProcess": True}}, {},
     ['hostProcess (container "x" must not set securityContext.windowsOptions.hostProcess=true)']),
    ("baseline", {"seLinuxOptions": {"type": "spc_t"}}, {},
     ['seLinuxOptions (container "x" set forbidden securityContext.seLinuxOptions: type '
      '"spc_t")']),
    ("baseline", {}, {"hostPID": True, "hostNetwork": True},
     ["host namespaces (hostNetwork, hostPID)"]),
    ("baseline", {}, {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"},
                                                      {"name": "net.ipv4.tcp_syncookies",
                                                       "value": "1"}]}},
     ["forbidden sysctls (kernel.msgmax)"]),
    ("baseline", {}, {"volumes": [{"name": "host", "hostPath": {"path": "/"}}]},
     ['hostPath volumes (volume "host")']),
    ("privileged", {"privileged": True, "capabilities": {"add": ["ALL"]}}, {"hostPID": True}, []),
])
def test_baseline_checks_table(level, sc, pod_extra, expected):
    pod = make_pod(**pod_extra)
    assert adm.pod_security_violations(level, pod, [ec("x", securityContext=sc)]) == expected


@pytest.mark.parametrize("sc,expected_fragment", [
    ({**RESTRICTED_SC, "runAsUser": 0}, 'runAsUser=0 (container "x" must not set runAsUser=0)'),
    ({**RESTRICTED_SC, "runAsNonRoot": False},
     'runAsNonRoot != true (container "x" must not set securityContext.runAsNonRoot=false)'),
    ({**RESTRICTED_SC, "allowPrivilegeEscalation": True},
     'allowPrivilegeEscalation != false (container "x" must set '
     "securityContext.allowPrivilegeEscalation=false)"),
    ({**RESTRICTED_SC, "capabilities": {"drop": ["ALL"], "add": ["SYS_PTRACE"]}},
     'unrestricted capabilities (container "x" must not include "SYS_PTRACE" in '
     "securityContext.capabilities.add)"),
    ({**RESTRICTED_SC, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}, None),
    ({**RESTRICTED_SC, "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}},
     None),
])
def test_restricted_checks_table(sc, expected_fragment):
    violations = adm.pod_security_violations("restricted", restricted_pod(),
                                             [ec("x", securityContext=sc)])
    if expected_fragment is None:
        assert violations == []
    else:
        assert violations == [expected_fragment]


def test_pod_level_settings_satisfy_restricted_for_containers():
    pod = restricted_pod()
    pod["spec"]["securityContext"]["runAsUser"] = 1654
    sc = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert adm.pod_security_violations("restricted", pod, [ec("x", securityContext=sc)]) == []


def test_restricted_flags_host_path_as_restricted_volume_type():
    pod = restricted_pod()
    pod["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert adm.pod_security_violations("restricted", pod) == [
        'restricted volume types (volume "host" uses restricted volume type "hostPath")']


def test_version_pinning_drops_newer_checks():
    pod = restricted_pod()
    sc = {**RESTRICTED_SC, "runAsUser": 0}
    assert adm.pod_security_violations("restricted:v1.22", pod, [ec("x", securityContext=sc)]) \
        == []
    assert adm.pod_security_violations("restricted:v1.23", pod, [ec("x", securityContext=sc)]) \
        != []


def test_policy_from_labels():
    labels = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "v1.30"}
    assert adm.policy_from_labels(labels) == "restricted:v1.30"
    assert adm.policy_from_labels({}) == "privileged:latest"
    assert adm.format_forbidden("p", "restricted:v1.30", ["x"]).startswith(
        'pods "p" is forbidden: violates PodSecurity "restricted:v1.30": x')


def test_adding_an_ephemeral_container_is_a_significant_update():
    pod = make_pod()
    assert adm.is_significant_pod_update(submit(pod, ec()), pod)
    assert not adm.is_significant_pod_update(copy.deepcopy(pod), pod)
