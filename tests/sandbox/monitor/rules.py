"""Collection rules as configured (``CollectionRules:<name>:…``) and their per-process state.

Rules run only for processes connected in Listen mode (reference §6.1: Connect mode has no rules).
``fire(rule)`` simulates the trigger: Collect* actions with ``Settings:Egress`` become egressed
operations (not counted against the HTTP concurrency limits), counters advance, and the state turns
Throttled/Finished by the rule's ``Limits`` (ActionCount default 5). A ``Startup`` trigger fires once
when the process is first seen and the rule is then Finished.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .processes import matches_filter
from .config import FilterSpec

RUNNING = "This collection rule is active and waiting for its triggering conditions to be satisfied."
EXECUTING = "This collection rule is currently executing actions."
THROTTLED = ("This collection rule is temporarily throttled because the ActionCountLimit has been reached "
             "within the ActionCountSlidingWindowDuration.")
FINISHED_STARTUP = "The collection rule will no longer trigger because the Startup trigger only executes once."
FINISHED_COUNT = "The collection rule will no longer trigger because the ActionCount limit was reached."

ACTION_KINDS = {"collectdump": "dump", "collectgcdump": "gcdump", "collecttrace": "trace",
                "collectlogs": "logs", "collectlivemetrics": "livemetrics", "collectstacks": "stacks",
                "collectexceptions": "exceptions"}


def _lower(d: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in d.items()}


@dataclass
class RuleState:
    name: str
    settings: dict[str, str]               # keys lower-cased, relative to the rule
    lifetime: int = 0
    state: str = "Running"
    reason: str = RUNNING
    operations: list[str] = field(default_factory=list)

    @property
    def trigger(self) -> str:
        return self.settings.get("trigger:type", "")

    @property
    def action_limit(self) -> int:
        try:
            return int(self.settings.get("limits:actioncount", 5))
        except ValueError:
            return 5

    def description(self) -> dict:
        return {"state": self.state, "stateReason": self.reason}

    def detailed(self) -> dict:
        window = self.settings.get("limits:actioncountslidingwindowduration")
        return {"lifetimeOccurrences": self.lifetime, "slidingWindowOccurrences": self.lifetime,
                "actionCountLimit": self.action_limit, "actionCountSlidingWindowDurationLimit": window,
                "slidingWindowDurationCountdown": None, "ruleFinishedCountdown": None,
                "state": self.state, "stateReason": self.reason}

    def actions(self) -> list[dict[str, str]]:
        out = []
        i = 0
        while f"actions:{i}:type" in self.settings:
            prefix = f"actions:{i}:"
            out.append({k[len(prefix):]: v for k, v in self.settings.items() if k.startswith(prefix)})
            i += 1
        return out

    def filters(self) -> list[FilterSpec]:
        out = []
        i = 0
        while f"filters:{i}:key" in self.settings or f"filters:{i}:processname" in self.settings \
                or f"filters:{i}:processid" in self.settings:
            p = f"filters:{i}:"
            if p + "key" in self.settings:
                out.append(FilterSpec(self.settings[p + "key"], self.settings.get(p + "value", ""),
                                      self.settings.get(p + "matchtype", "Exact")))
            else:
                for short in ("processid", "processname"):
                    if p + short in self.settings:
                        out.append(FilterSpec(short, self.settings[p + short], self.settings.get(p + "matchtype", "Exact")))
            i += 1
        return out


class RuleEngine:
    def __init__(self, monitor) -> None:
        self.m = monitor
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], RuleState] = {}

    def for_process(self, proc) -> dict[str, RuleState]:
        if self.m.cfg.connection_mode != "Listen":
            return {}
        out = {}
        fire_startup = []
        with self._lock:
            for name, settings in self.m.cfg.collection_rules.items():
                st = self._states.get((name, proc.uid))
                if st is None:
                    st = RuleState(name, _lower(settings))
                    if not all(matches_filter(proc, f) for f in st.filters()):
                        continue
                    self._states[(name, proc.uid)] = st
                    if st.trigger.lower() == "startup":
                        fire_startup.append(st)
                out[name] = st
        for st in fire_startup:
            self._execute(st, proc)
        return out

    def fire(self, rule: str, uid: str | None = None) -> list[str]:
        """Simulate the trigger of ``rule`` for every (or one) visible process; returns operation ids."""
        ids = []
        for proc in self.m.processes():
            if uid is not None and proc.uid != uid:
                continue
            st = self.for_process(proc).get(rule)
            if st is not None and st.state == "Running":
                ids += self._execute(st, proc)
        return ids

    def _execute(self, st: RuleState, proc) -> list[str]:
        ids = []
        with self._lock:
            st.lifetime += 1
            st.state, st.reason = "ActionExecuting", EXECUTING
        for action in st.actions():
            kind = ACTION_KINDS.get(action.get("type", "").lower())
            egress = action.get("settings:egress")
            if kind is None or egress is None or egress not in self.m.cfg.egress:
                continue
            ids.append(self.m.start_rule_action(kind, proc, egress, action))
        with self._lock:
            st.operations += ids
            if st.trigger.lower() == "startup":
                st.state, st.reason = "Finished", FINISHED_STARTUP
            elif st.lifetime >= st.action_limit:
                if st.settings.get("limits:actioncountslidingwindowduration"):
                    st.state, st.reason = "Throttled", THROTTLED
                else:
                    st.state, st.reason = "Finished", FINISHED_COUNT
            else:
                st.state, st.reason = "Running", RUNNING
        return ids
