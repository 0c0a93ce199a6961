"""Rules files: loading with line numbers, validation against dotnet-monitor's schema, templates."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from kubectl_dotnet_monitor.errors import ExitCode, UsageError
from kubectl_dotnet_monitor.rules import (
    RulesValidationError,
    load_rules,
    rules_from_text,
)
from kubectl_dotnet_monitor.rules.loader import format_path, parse_document
from kubectl_dotnet_monitor.rules.templates import EXAMPLES, example, example_names
from kubectl_dotnet_monitor.rules.validate import (
    is_timespan,
    load_schema,
    validate_document,
)

REFERENCE_SCHEMA = Path("/work/shared/reference/dotnet-monitor-config-schema.json")

GOOD = """\
CollectionRules:
  HighCpu:
    Trigger:
      Type: CPUUsage
      Settings:
        GreaterThan: 80
        SlidingWindowDuration: "00:01:00"
    Actions:
      - Type: CollectTrace
        Settings:
          Profile: Cpu
          Egress: artifacts
Egress:
  FileSystem:
    artifacts:
      DirectoryPath: /diag/artifacts
"""


def problems(text: str) -> list[str]:
    """The formatted problems of ``text`` (file name ``r.yaml``), [] when valid."""
    doc = parse_document(textwrap.dedent(text), "r.yaml")
    return [p.format("r.yaml") for p in validate_document(doc).problems]


def one_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# ------------------------------------------------------------------------------------------
# Templates (rules example NAME)


@pytest.mark.parametrize("name", ["high-cpu", "memory-leak", "slow-requests", "http-5xx"])
def test_each_example_is_valid_and_renders(name):
    config = rules_from_text(example(name), name)
    assert config.rules and config.env
    assert config.warnings == ()
    assert config.needs_listen_mode is True
    assert all(e["name"].startswith("DotnetMonitor_") for e in config.env)


@pytest.mark.parametrize("name", ["high-cpu", "memory-leak", "slow-requests", "http-5xx"])
def test_each_example_is_valid_for_plain_jsonschema_too(name):
    """Independent of our checker: the upstream schema, draft 7, no extras (flag enums aside)."""
    import jsonschema
    import yaml

    data = yaml.safe_load(example(name))
    schema = json.loads(REFERENCE_SCHEMA.read_text())
    errors = [e for e in jsonschema.Draft7Validator(schema).iter_errors(data)
              if not (e.validator == "oneOf" and "Cpu,Http" in json.dumps(e.instance))]
    assert errors == []


def test_example_names_and_unknown_name():
    assert example_names() == ("high-cpu", "memory-leak", "slow-requests", "http-5xx")
    assert set(EXAMPLES) == set(example_names())
    with pytest.raises(UsageError) as err:
        example("nope")
    assert "high-cpu, memory-leak, slow-requests, http-5xx" in err.value.message
    assert err.value.exit_code == ExitCode.USAGE


def test_shipped_schema_is_the_upstream_schema():
    assert load_schema() == json.loads(REFERENCE_SCHEMA.read_text())


# ------------------------------------------------------------------------------------------
# Loading


def test_positions_are_recorded_for_keys_and_list_items():
    doc = parse_document(GOOD, "r.yaml")
    assert doc.line(("CollectionRules", "HighCpu", "Trigger", "Type")) == 4
    assert doc.line(("CollectionRules", "HighCpu", "Actions", 0)) == 9
    assert doc.line(("CollectionRules", "HighCpu", "Actions", 0, "Settings", "Egress")) == 12
    # Unknown deeper paths fall back to the nearest ancestor.
    assert doc.line(("Egress", "FileSystem", "artifacts", "Nope", 3)) == 15


def test_json_is_accepted_with_lines():
    text = json.dumps({"CollectionRules": {"R": {"Trigger": {"Type": "Startup"}}}}, indent=2)
    doc = parse_document(text, "r.json")
    assert doc.data["CollectionRules"]["R"]["Trigger"]["Type"] == "Startup"
    assert doc.line(("CollectionRules", "R", "Trigger", "Type")) == 5


def test_duplicate_key_is_refused_with_both_lines():
    with pytest.raises(UsageError) as err:
        parse_document("CollectionRules:\n  R: {Trigger: {Type: Startup}}\n  R: {}\n", "r.yaml")
    assert err.value.message == "r.yaml:3: CollectionRules.R: key given twice (first on line 2); remove one"


def test_yaml_syntax_error_names_file_and_line():
    with pytest.raises(UsageError) as err:
        parse_document("CollectionRules:\n  R:\n    Trigger: [\n", "r.yaml")
    assert err.value.message.startswith("r.yaml:4: not valid YAML or JSON")


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(UsageError, match="empty"):
        load_rules(empty)
    with pytest.raises(UsageError, match="no such file"):
        load_rules(tmp_path / "missing.yaml")


def test_merge_keys_and_anchors():
    text = """\
    Templates:
      CollectionRuleTriggers:
        Base: &base {Type: CPUUsage, Settings: {GreaterThan: 70}}
    CollectionRules:
      R:
        Trigger:
          <<: *base
          Type: GCHeapSize
    """
    doc = parse_document(textwrap.dedent(text))
    assert doc.data["CollectionRules"]["R"]["Trigger"] == {"Type": "GCHeapSize", "Settings": {"GreaterThan": 70}}


def test_format_path():
    assert format_path(("CollectionRules", "R", "Actions", 0, "Type")) == "CollectionRules.R.Actions[0].Type"
    assert format_path(()) == "(document)"


# ------------------------------------------------------------------------------------------
# Validation: messages point at the line and key path and say what is expected


def test_good_file_has_no_problems():
    assert problems(GOOD) == []


def test_unknown_trigger_type_suggests_the_right_one():
    message = one_problem(GOOD.replace("Type: CPUUsage", "Type: CPUUsag"))
    assert message.startswith("r.yaml:4: CollectionRules.HighCpu.Trigger.Type: 'CPUUsag' is not a valid value")
    assert "did you mean 'CPUUsage'?" in message
    assert "AspNetRequestDuration" in message


def test_unknown_setting_lists_the_allowed_keys():
    message = one_problem(GOOD.replace("GreaterThan: 80", "GreaterThen: 80"))
    assert message == (
        "r.yaml:6: CollectionRules.HighCpu.Trigger.Settings.GreaterThen: unknown key (did you mean "
        "'GreaterThan'?); expected one of: GreaterThan, LessThan, SlidingWindowDuration"
    )


def test_out_of_range_number():
    message = one_problem(GOOD.replace("GreaterThan: 80", "GreaterThan: 180"))
    assert message == ("r.yaml:6: CollectionRules.HighCpu.Trigger.Settings.GreaterThan: 180 is out of range; "
                       "expected a value at most 100")


def test_duration_that_is_not_a_timespan():
    message = one_problem(GOOD.replace('"00:01:00"', "1m"))
    assert message.startswith("r.yaml:7: CollectionRules.HighCpu.Trigger.Settings.SlidingWindowDuration: "
                              "'1m' is not a duration; write [d.]hh:mm:ss")


def test_unquoted_sexagesimal_duration_gets_a_quoting_hint():
    message = one_problem(GOOD.replace('"00:01:00"', "1:00:00"))
    assert message == (
        "r.yaml:7: CollectionRules.HighCpu.Trigger.Settings.SlidingWindowDuration: expected a string, not "
        "the number 3600; YAML reads the unquoted 1:00:00 as the number 3600: quote it, \"1:00:00\""
    )


def test_wrong_enum_in_action_settings_follows_the_action_type():
    message = one_problem(GOOD.replace("Profile: Cpu", "Profile: Cpu\n          RequestRundown: maybe"))
    assert message == ("r.yaml:12: CollectionRules.HighCpu.Actions[0].Settings.RequestRundown: expected true or "
                       "false, not the string 'maybe'")


def test_flag_enum_accepts_combinations_but_not_unknown_parts():
    assert problems(GOOD.replace("Profile: Cpu", "Profile: Cpu,Http,Metrics")) == []
    message = one_problem(GOOD.replace("Profile: Cpu", "Profile: Cpu,Disk"))
    assert "Actions[0].Settings.Profile: 'Cpu,Disk' is not a valid value" in message
    assert "several may be joined with commas" in message


def test_missing_required_key():
    text = """\
    CollectionRules:
      R:
        Actions: []
    """
    assert one_problem(text) == ("r.yaml:2: CollectionRules.R: missing 'Trigger' (The trigger to use to monitor "
                                 "for a condition in the target process)")


def test_required_settings_of_a_trigger():
    text = """\
    CollectionRules:
      R:
        Trigger: {Type: AspNetResponseStatus, Settings: {ResponseCount: 3}}
    """
    message = one_problem(text)
    assert message.startswith("r.yaml:3: CollectionRules.R.Trigger.Settings: missing 'StatusCodes'")


def test_status_code_form():
    text = """\
    CollectionRules:
      R:
        Trigger:
          Type: AspNetResponseStatus
          Settings:
            StatusCodes: ["500", 5xx]
    """
    assert one_problem(text) == ("r.yaml:6: CollectionRules.R.Trigger.Settings.StatusCodes[1]: '5xx' is not a "
                                 "status code or range; write for example \"500\" or \"500-599\"")


def test_unknown_top_level_section():
    message = one_problem(GOOD + "DiagnosticPort:\n  ConnectionMode: Connect\n")
    assert message.startswith("r.yaml:17: DiagnosticPort: not a section a rules file can set")
    message = problems(GOOD.replace("CollectionRules:", "collectionRules:"))[0]
    assert message == "r.yaml:1: collectionRules: write 'CollectionRules' (spelled exactly so)"


def test_not_a_mapping():
    assert one_problem("- a\n- b\n").startswith("r.yaml: (document): a rules file is a mapping")


def test_several_problems_are_sorted_by_line():
    text = GOOD.replace("GreaterThan: 80", "GreaterThan: -5").replace("Profile: Cpu", "Profile: cpu")
    found = problems(text)
    assert [f.split(":")[1] for f in found] == ["6", "11"]
    assert "did you mean 'Cpu'? names are spelled exactly so" in found[1]


def test_egress_must_be_defined_and_required_for_collect_actions():
    assert one_problem(GOOD.replace("Egress: artifacts", "Egress: s3")) == (
        "r.yaml:12: CollectionRules.HighCpu.Actions[0].Settings.Egress: egress provider 's3' is not defined "
        "under Egress; defined: artifacts"
    )
    message = one_problem(GOOD.replace("          Egress: artifacts\n", ""))
    assert message == ("r.yaml:10: CollectionRules.HighCpu.Actions[0].Settings: CollectTrace needs Settings.Egress, "
                       "the egress provider that stores the artifact; one of: artifacts")
    defaults = GOOD.replace("          Egress: artifacts\n", "") + "CollectionRuleDefaults:\n  Actions:\n    Egress: artifacts\n"
    assert problems(defaults) == []


def test_collect_trace_needs_profile_or_providers():
    text = GOOD.replace("Profile: Cpu", "RequestRundown: true")
    assert one_problem(text) == ("r.yaml:10: CollectionRules.HighCpu.Actions[0].Settings: CollectTrace needs either "
                                 "Profile (for example Cpu or Cpu,Http) or Providers, not neither")


def test_event_counter_needs_a_threshold():
    text = """\
    CollectionRules:
      R:
        Trigger:
          Type: EventCounter
          Settings: {ProviderName: System.Runtime, CounterName: cpu-usage}
    """
    assert one_problem(text) == ("r.yaml:5: CollectionRules.R.Trigger.Settings: EventCounter needs GreaterThan or "
                                 "LessThan (or both)")


def test_names_must_survive_environment_variables_and_case():
    text = GOOD.replace("HighCpu:", "High Cpu:")
    assert "r.yaml:2: CollectionRules.High Cpu: the name 'High Cpu' cannot be passed" in one_problem(text)
    text = GOOD.replace(
        "    artifacts:\n", "    Artifacts:\n      DirectoryPath: /x\n    artifacts:\n")
    assert "'artifacts' and 'Artifacts' are the same key to dotnet-monitor" in one_problem(text)


def test_templates_are_resolved_and_checked():
    text = """\
    Templates:
      CollectionRuleTriggers:
        HighCpu: {Type: CPUUsage, Settings: {GreaterThan: 90}}
      CollectionRuleActions:
        Trace: {Type: CollectTrace, Settings: {Profile: Cpu, Egress: artifacts}}
      CollectionRuleLimits:
        Once: {ActionCount: 1}
    CollectionRules:
      R:
        Trigger: HighCpu
        Actions: [Trace, {Type: CollectGCDump, Settings: {Egress: artifacts}}]
        Limits: Once
    Egress:
      FileSystem:
        artifacts: {DirectoryPath: /diag/artifacts}
    """
    assert problems(text) == []
    broken = text.replace("Trigger: HighCpu", "Trigger: LowCpu").replace("GreaterThan: 90", "GreaterThan: 900")
    found = problems(broken)
    assert found == [
        ("r.yaml:3: Templates.CollectionRuleTriggers.HighCpu.Settings.GreaterThan: 900 is out of range; "
         "expected a value at most 100"),
        ("r.yaml:10: CollectionRules.R.Trigger: no template named 'LowCpu' under Templates.CollectionRuleTriggers "
         "(HighCpu); write the object here or define the template"),
    ]


def test_rule_without_actions_is_a_warning_not_a_problem():
    text = "CollectionRules:\n  R:\n    Trigger: {Type: Startup}\n"
    config = rules_from_text(text, "r.yaml")
    assert config.warnings == ("r.yaml:2: CollectionRules.R: no Actions: the rule only counts its trigger",)


def test_load_rules_raises_with_every_problem(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD.replace("GreaterThan: 80", "GreaterThan: 180").replace("Egress: artifacts", "Egress: x"))
    with pytest.raises(RulesValidationError) as err:
        load_rules(path)
    assert err.value.exit_code == ExitCode.USAGE
    assert len(err.value.problems) == 2
    assert err.value.message.splitlines()[0] == f"{path} is not a valid rules file (2 problems):"
    assert err.value.message.splitlines()[1].startswith(f"  {path}:6: CollectionRules.HighCpu.Trigger.Settings")


@pytest.mark.parametrize("text,ok", [
    ("00:00:30", True), ("1.00:00:00", True), ("01:00", True), ("2", True), ("00:00:05.5", True),
    ("-00:01:00", True), ("1:02:03:04", True),
    ("30s", False), ("25:00:00", False), ("00:61:00", False), ("", False), ("PT30S", False),
])
def test_timespan_forms(text, ok):
    assert is_timespan(text) is ok
