"""Rules -> container env: exact names and values, secrets only through secretKeyRef."""

from __future__ import annotations

import textwrap

import pytest

from kubectl_dotnet_monitor.errors import UsageError
from kubectl_dotnet_monitor.inject.spec import MonitorOptions
from kubectl_dotnet_monitor.rules import RulesValidationError, rules_from_text
from kubectl_dotnet_monitor.rules.env import parse_ref, render_env, scalar_text


def env_of(text: str) -> list[dict]:
    return list(rules_from_text(textwrap.dedent(text), "r.yaml").env)


def test_nested_objects_lists_booleans_numbers_exactly():
    text = """\
    CollectionRules:
      Slow:
        Filters:
          - Key: ProcessName
            Value: MyApp
        Trigger:
          Type: AspNetRequestDuration
          Settings:
            RequestCount: 5
            RequestDuration: "00:00:03"
            ExcludePaths: [/healthz, /ready]
        Actions:
          - Type: CollectTrace
            Settings:
              Profile: Cpu,Http
              RequestRundown: false
              BufferSizeMegabytes: 64
              Egress: artifacts
          - Type: CollectDump
            Settings: {Type: Mini, Egress: artifacts}
            WaitForCompletion: true
    Egress:
      FileSystem:
        artifacts:
          DirectoryPath: /diag/artifacts
    """
    p = "DotnetMonitor_CollectionRules__Slow__"
    assert env_of(text) == [
        {"name": p + "Filters__0__Key", "value": "ProcessName"},
        {"name": p + "Filters__0__Value", "value": "MyApp"},
        {"name": p + "Trigger__Type", "value": "AspNetRequestDuration"},
        {"name": p + "Trigger__Settings__RequestCount", "value": "5"},
        {"name": p + "Trigger__Settings__RequestDuration", "value": "00:00:03"},
        {"name": p + "Trigger__Settings__ExcludePaths__0", "value": "/healthz"},
        {"name": p + "Trigger__Settings__ExcludePaths__1", "value": "/ready"},
        {"name": p + "Actions__0__Type", "value": "CollectTrace"},
        {"name": p + "Actions__0__Settings__Profile", "value": "Cpu,Http"},
        {"name": p + "Actions__0__Settings__RequestRundown", "value": "false"},
        {"name": p + "Actions__0__Settings__BufferSizeMegabytes", "value": "64"},
        {"name": p + "Actions__0__Settings__Egress", "value": "artifacts"},
        {"name": p + "Actions__1__Type", "value": "CollectDump"},
        {"name": p + "Actions__1__Settings__Type", "value": "Mini"},
        {"name": p + "Actions__1__Settings__Egress", "value": "artifacts"},
        {"name": p + "Actions__1__WaitForCompletion", "value": "true"},
        {"name": "DotnetMonitor_Egress__FileSystem__artifacts__DirectoryPath", "value": "/diag/artifacts"},
    ]


def test_numbers_are_written_in_invariant_form():
    assert scalar_text(80) == "80"
    assert scalar_text(80.0) == "80"
    assert scalar_text(62.5) == "62.5"
    assert scalar_text(0.001) == "0.001"
    assert scalar_text(True) == "true" and scalar_text(False) == "false"
    with pytest.raises(UsageError):
        scalar_text(float("inf"), ("X",))


def test_null_leaves_the_key_out_and_templates_stay_names():
    text = """\
    Templates:
      CollectionRuleTriggers:
        Hot: {Type: CPUUsage, Settings: {GreaterThan: 90.5, LessThan: null}}
    CollectionRules:
      R:
        Trigger: Hot
    """
    assert env_of(text) == [
        {"name": "DotnetMonitor_Templates__CollectionRuleTriggers__Hot__Type", "value": "CPUUsage"},
        {"name": "DotnetMonitor_Templates__CollectionRuleTriggers__Hot__Settings__GreaterThan", "value": "90.5"},
        {"name": "DotnetMonitor_CollectionRules__R__Trigger", "value": "Hot"},
    ]


def test_secret_key_ref_becomes_value_from():
    text = """\
    Egress:
      S3Storage:
        s3:
          BucketName: dumps
          AccessKeyId: AKIAEXAMPLE
          SecretAccessKey:
            secretKeyRef: {name: s3-creds, key: secretAccessKey}
      AzureBlobStorage:
        blob:
          AccountUri: https://acct.blob.core.windows.net
          ContainerName: dumps
          AccountKeyName: blobkey
      Properties:
        blobkey:
          secretKeyRef: {name: blob-creds, key: accountKey, optional: false}
    """
    config = rules_from_text(textwrap.dedent(text), "r.yaml")
    assert {"name": "DotnetMonitor_Egress__S3Storage__s3__SecretAccessKey",
            "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "secretAccessKey"}}} in config.env
    assert {"name": "DotnetMonitor_Egress__Properties__blobkey",
            "valueFrom": {"secretKeyRef": {"name": "blob-creds", "key": "accountKey", "optional": False}}} in config.env
    assert {"name": "DotnetMonitor_Egress__S3Storage__s3__AccessKeyId", "value": "AKIAEXAMPLE"} in config.env
    assert config.secret_refs == (("s3-creds", "secretAccessKey"), ("blob-creds", "accountKey"))
    assert config.egress_providers == ("blob", "s3")


BLOB = "AzureBlobStorage:\n    blob:\n      AccountUri: https://a.blob.core.windows.net\n      ContainerName: c\n      "


@pytest.mark.parametrize("setting,provider", [
    ("SecretAccessKey: hunter2", "S3Storage:\n    s3:\n      BucketName: b\n      "),
    ("AccountKey: abc==", BLOB),
    ("SharedAccessSignature: sv=2020", BLOB),
])
def test_literal_secret_is_refused_with_how_to(setting, provider):
    text = "Egress:\n  " + provider + setting + "\n"
    with pytest.raises(RulesValidationError) as err:
        rules_from_text(text, "r.yaml")
    message = err.value.message
    name = setting.split(":")[0]
    assert "Egress." in message and f".{name}: a literal secret is refused" in message
    assert "kubectl create secret generic" in message
    assert f"{name}: {{secretKeyRef: {{name: egress-credentials, key: {name[0].lower() + name[1:]}}}}}" in message
    assert setting.split(": ")[1] not in message  # the secret itself is never echoed


def test_literal_in_properties_is_refused():
    with pytest.raises(RulesValidationError, match=r"r.yaml:3: Egress.Properties.key: a literal secret is refused"):
        rules_from_text("Egress:\n  Properties:\n    key: s3cr3t\n", "r.yaml")


def test_malformed_reference_is_reported():
    text = "Egress:\n  S3Storage:\n    s3:\n      BucketName: b\n      SecretAccessKey:\n        secretKeyRef: {name: S3_Creds}\n"
    with pytest.raises(RulesValidationError) as err:
        rules_from_text(text, "r.yaml")
    assert "r.yaml:6: Egress.S3Storage.s3.SecretAccessKey.secretKeyRef: secretKeyRef.name must be the name" in err.value.message


def test_secret_object_without_secret_key_ref_is_explained():
    text = "Egress:\n  S3Storage:\n    s3:\n      BucketName: b\n      SecretAccessKey: {name: s3, key: k}\n"
    with pytest.raises(RulesValidationError, match="a secret is given as a reference to a Secret"):
        rules_from_text(text, "r.yaml")


def test_render_env_refuses_literal_secret_and_foreign_sections_directly():
    with pytest.raises(UsageError, match="a secret must not be written"):
        render_env({"Egress": {"S3Storage": {"s3": {"SecretAccessKey": "x"}}}})
    with pytest.raises(UsageError, match="not a section"):
        render_env({"Authentication": {"MonitorApiKey": {"Subject": "x"}}})
    with pytest.raises(UsageError, match="cannot be passed"):
        render_env({"CollectionRules": {"a__b": {"Trigger": {"Type": "Startup"}}}})


def test_parse_ref_messages():
    assert isinstance(parse_ref({"secretKeyRef": "s3"}), str)
    assert "unknown keys 'namespace'" in parse_ref({"secretKeyRef": {"name": "a", "key": "b", "namespace": "x"}})
    ref = parse_ref({"configMapKeyRef": {"name": "cfg", "key": "bucket"}})
    assert ref.value_from() == {"configMapKeyRef": {"name": "cfg", "key": "bucket"}}


def test_plugs_into_monitor_options():
    config = rules_from_text("CollectionRules:\n  R:\n    Trigger: {Type: Startup}\n", "r.yaml")
    options = MonitorOptions(no_auth=True, extra_env=config.env, needs_listen_mode=config.needs_listen_mode)
    assert options.extra_env == ({"name": "DotnetMonitor_CollectionRules__R__Trigger__Type", "value": "Startup"},)
    assert options.needs_listen_mode is True
