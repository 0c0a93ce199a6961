"""collectionrules output: the monitor's rule states and counts as a table."""

from __future__ import annotations

from kubectl_dotnet_monitor.rules.status import (
    NO_RULES,
    format_rule_table,
    rule_statuses,
)

SUMMARY = {
    "HighCpu": {"state": "Running", "stateReason": "This collection rule is active and waiting for its triggering conditions to be satisfied."},
    "Startup": {"state": "Finished", "stateReason": "The collection rule will no longer trigger because the Startup trigger only executes once."},
}
DETAIL = {
    "HighCpu": {"lifetimeOccurrences": 3, "slidingWindowOccurrences": 1, "actionCountLimit": 2,
                "actionCountSlidingWindowDurationLimit": "01:00:00", "state": "Throttled",
                "stateReason": "throttled"},
}


def test_table_joins_summary_and_details():
    rows = rule_statuses(SUMMARY, DETAIL)
    assert [r.name for r in rows] == ["HighCpu", "Startup"]
    assert rows[0].state == "Throttled" and rows[0].counts() == "3 (1 of 2 per 01:00:00)"
    assert rows[1].counts() == "-"
    assert format_rule_table(rows).splitlines() == [
        "RULE      STATE       TRIGGERED                 REASON",
        "HighCpu   Throttled   3 (1 of 2 per 01:00:00)   throttled",
        "Startup   Finished    -                         " + SUMMARY["Startup"]["stateReason"],
    ]


def test_limit_without_window_and_empty():
    rows = rule_statuses({}, {"R": {"lifetimeOccurrences": 5, "actionCountLimit": 5, "state": "Finished"}})
    assert rows[0].counts() == "5 (5 of 5 in total)"
    assert format_rule_table([]) == NO_RULES + "\n"
    assert rule_statuses(None) == []
