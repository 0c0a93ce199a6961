"""Process selection (pure)."""

from __future__ import annotations

import pytest

from kubectl_dotnet_monitor.errors import ExitCode, NotFoundError, UsageError
from kubectl_dotnet_monitor.monitor.processes import (
    format_process_table,
    process_query,
    select_process,
)

APP = {"pid": 1, "uid": "8C4F0D37-1B2A-4C54-9E0A-6E1A2B3C4D5E", "name": "Shop.Api", "isDefault": True}
WORKER = {"pid": 1, "uid": "11111111-2222-3333-4444-555555555555", "name": "worker", "isDefault": False}
TOOL = {"pid": 42, "uid": "99999999-2222-3333-4444-555555555555", "name": "dotnet", "isDefault": False}


def test_the_only_process_without_selector():
    assert select_process([APP]) is APP


def test_several_processes_without_selector_list_them():
    with pytest.raises(UsageError) as err:
        select_process([APP, WORKER, TOOL])
    e = err.value
    assert e.exit_code == ExitCode.USAGE
    assert "3 .NET processes" in e.message
    assert "PID" in e.message and WORKER["uid"] in e.message and "Shop.Api" in e.message
    assert "--uid" in e.hint and "--pid" in e.hint and "--process-name" in e.hint


def test_by_uid_case_insensitive():
    assert select_process([APP, WORKER], uid=APP["uid"].lower()) is APP
    assert select_process([APP, WORKER], uid="{" + WORKER["uid"].upper() + "}") is WORKER


def test_by_name_case_insensitive():
    assert select_process([APP, WORKER, TOOL], name="shop.api") is APP


def test_by_pid():
    assert select_process([APP, TOOL], pid=42) is TOOL


def test_pid_ambiguous_across_containers():
    with pytest.raises(UsageError) as err:
        select_process([APP, WORKER, TOOL], pid=1)
    assert "2 .NET processes match --pid 1" in err.value.message
    assert "pid 1" in err.value.message and "containers" in err.value.message
    assert "--uid" in err.value.hint
    assert TOOL["uid"] not in err.value.message  # only the matching ones are listed


def test_selectors_are_anded():
    assert select_process([APP, WORKER, TOOL], pid=1, name="worker") is WORKER
    with pytest.raises(NotFoundError):
        select_process([APP, WORKER, TOOL], pid=42, name="worker")


def test_no_match_is_not_found_and_lists_what_exists():
    with pytest.raises(NotFoundError) as err:
        select_process([APP], pid=7)
    assert err.value.exit_code == ExitCode.NOT_FOUND
    assert "no .NET process matches --pid 7" in err.value.message and APP["uid"] in err.value.message


def test_no_process_at_all():
    with pytest.raises(NotFoundError) as err:
        select_process([])
    assert "sees no .NET process" in err.value.message and "diagnostic port" in err.value.hint


def test_empty_selectors_count_as_not_given():
    assert select_process([APP], uid="", name="") is APP


def test_table_is_aligned():
    table = format_process_table([APP, TOOL]).splitlines()
    assert table[0].split() == ["PID", "UID", "NAME"]
    assert table[1].index(APP["uid"]) == table[2].index(TOOL["uid"])


def test_process_query_prefers_uid():
    assert process_query(APP) == {"uid": APP["uid"]}
    assert process_query({"pid": 5, "uid": "00000000-0000-0000-0000-000000000000"}) == {"pid": 5}
    assert process_query({"pid": 5, "uid": None}) == {"pid": 5}
