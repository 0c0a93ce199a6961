"""Collection rules as configured (``CollectionRules:<name>:…``) and their per-process state.

Configuration, as dotnet-monitor binds it (all keys case-insensitive):

* ``Templates``: a rule's ``Trigger``, ``Actions:<i>``, ``Filters:<i>`` or ``Limits`` given as a
  plain value names an entry of ``Templates:CollectionRuleTriggers`` / ``CollectionRuleActions`` /
  ``CollectionRuleFilters`` / ``CollectionRuleLimits``, which is used in its place. A name that is
  not there makes the rule fail (it never runs).
* ``CollectionRuleDefaults``: ``Actions:Egress`` for actions without ``Settings:Egress``;
  ``Limits:ActionCount`` / ``ActionCountSlidingWindowDuration`` / ``RuleDuration``;
  ``Triggers:Requests`` / ``ResponseCount`` / ``SlidingWindowDuration`` for triggers that take them.
  A rule's own value always wins. An action whose egress provider is not configured fails the rule.

State (``CollectionRulePipelineState`` in dotnet-monitor), per rule and process, only for
processes connected in Listen mode (reference §6.1: Connect mode has no rules) that pass the
rule's filters:

* ``Running`` -> on a trigger: when ``ActionCountSlidingWindowDuration`` is set and the window
  already holds ``ActionCount`` executions -> ``Throttled`` (nothing runs, nothing is counted; it
  turns back to ``Running`` once the oldest execution leaves the window); otherwise
  ``ActionExecuting`` while the actions' operations run, then ``Running`` again.
* Without a sliding window, ``ActionCount`` (default 5) executions finish the rule
  (``Finished``, ActionCount reason); a ``Startup`` trigger finishes it after one execution;
  ``RuleDuration`` finishes it that long after it started.
* Collect* actions egress (202-style operations visible in ``/operations``, not counted against the
  HTTP concurrency limits) and are recorded with ``egress`` set.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

from .config import FilterSpec
from .processes import matches_filter

RUNNING = "This collection rule is active and waiting for its triggering conditions to be satisfied."
EXECUTING = ("This collection rule has had its triggering conditions satisfied and is currently "
             "executing its action list.")
THROTTLED = ("This collection rule is temporarily throttled because the ActionCountLimit has been reached "
             "within the ActionCountSlidingWindowDuration.")
FINISHED_STARTUP = "The collection rule will no longer trigger because the Startup trigger only executes once."
FINISHED_COUNT = "The collection rule will no longer trigger because the ActionCount limit was reached."
FINISHED_DURATION = "The collection rule will no longer trigger because the RuleDuration limit was reached."
FINISHED_FAILURE = "The collection rule will no longer trigger because a failure occurred with message: {0}"

DEFAULT_ACTION_COUNT = 5

ACTION_KINDS = {"collectdump": "dump", "collectgcdump": "gcdump", "collecttrace": "trace",
                "collectlogs": "logs", "collectlivemetrics": "livemetrics", "collectstacks": "stacks",
                "collectexceptions": "exceptions"}
#: Triggers whose settings take the CollectionRuleDefaults:Triggers values.
_REQUEST_TRIGGERS = {"aspnetrequestcount": ("requestcount", "slidingwindowduration"),
                     "aspnetrequestduration": ("requestcount", "slidingwindowduration"),
                     "aspnetresponsestatus": ("responsecount", "slidingwindowduration"),
                     "eventcounter": ("slidingwindowduration",),
                     "cpuusage": ("slidingwindowduration",),
                     "gcheapsize": ("slidingwindowduration",),
                     "threadpoolqueuelength": ("slidingwindowduration",)}


def parse_timespan(text: str | None) -> float | None:
    """.NET TimeSpan text (``[d.]hh:mm:ss[.fffffff]``) -> seconds; None when absent/invalid."""
    if text is None or str(text).strip() == "":
        return None
    m = re.fullmatch(r"\s*(?:(\d+)\.)?(\d+):(\d+)(?::(\d+(?:\.\d+)?))?\s*", str(text))
    if not m:
        return None
    days = int(m.group(1) or 0)
    return days * 86400 + int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4) or 0)


def format_timespan(seconds: float | None) -> str | None:
    """Seconds -> .NET TimeSpan "c" format (``hh:mm:ss[.fffffff]``, ``d.`` prefix past a day)."""
    if seconds is None:
        return None
    seconds = max(0.0, seconds)
    ticks = round(seconds * 10_000_000)
    whole, frac = divmod(ticks, 10_000_000)
    days, rem = divmod(whole, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    out = f"{h:02d}:{m:02d}:{s:02d}"
    if days:
        out = f"{days}.{out}"
    if frac:
        out += f".{frac:07d}"
    return out


def _lower(d: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in d.items()}


class RuleConfigError(Exception):
    pass


def resolve_rule(raw, name: str, egress_names: set[str]) -> dict[str, str]:
    """The rule's settings (lower-cased keys relative to the rule) with templates and defaults
    applied. Raises RuleConfigError for what dotnet-monitor's options validation rejects."""
    s = _lower(raw.section(f"CollectionRules:{name}"))

    def template(kind: str, ref: str) -> dict[str, str]:
        section = _lower(raw.section(f"Templates:{kind}:{ref}"))
        if not section:
            raise RuleConfigError(f"Could not find a template named '{ref}' in {kind}.")
        return section

    out: dict[str, str] = {}
    for k, v in s.items():
        if k == "trigger":
            out.update({f"trigger:{tk}": tv for tk, tv in template("CollectionRuleTriggers", v).items()})
        elif k == "limits":
            out.update({f"limits:{tk}": tv for tk, tv in template("CollectionRuleLimits", v).items()})
        elif re.fullmatch(r"actions:\d+", k):
            out.update({f"{k}:{tk}": tv for tk, tv in template("CollectionRuleActions", v).items()})
        elif re.fullmatch(r"filters:\d+", k):
            out.update({f"{k}:{tk}": tv for tk, tv in template("CollectionRuleFilters", v).items()})
    for k, v in s.items():
        if k != "trigger" and k != "limits" and not re.fullmatch(r"(actions|filters):\d+", k):
            out[k] = v
    if "trigger:type" not in out:
        raise RuleConfigError("The Trigger field is required.")
    defaults = _lower(raw.section("CollectionRuleDefaults"))
    for limit in ("actioncount", "actioncountslidingwindowduration", "ruleduration"):
        if f"limits:{limit}" not in out and f"limits:{limit}" in defaults:
            out[f"limits:{limit}"] = defaults[f"limits:{limit}"]
    trigger = out["trigger:type"].lower()
    for setting in _REQUEST_TRIGGERS.get(trigger, ()):
        default_key = {"requestcount": "triggers:requests", "responsecount": "triggers:responsecount",
                       "slidingwindowduration": "triggers:slidingwindowduration"}[setting]
        if f"trigger:settings:{setting}" not in out and default_key in defaults:
            out[f"trigger:settings:{setting}"] = defaults[default_key]
    i = 0
    while f"actions:{i}:type" in out:
        kind = out[f"actions:{i}:type"].lower()
        if kind in ACTION_KINDS:
            key = f"actions:{i}:settings:egress"
            if key not in out and "actions:egress" in defaults:
                out[key] = defaults["actions:egress"]
            egress = out.get(key)
            if not egress:
                raise RuleConfigError("The Egress field is required.")
            if egress.lower() not in {e.lower() for e in egress_names}:
                raise RuleConfigError(f"Egress provider '{egress}' does not exist.")
        i += 1
    return out


@dataclass
class RuleState:
    name: str
    settings: dict[str, str]               # keys lower-cased, relative to the rule
    started: float = field(default_factory=time.monotonic)
    state: str = "Running"
    reason: str = RUNNING
    operations: list[str] = field(default_factory=list)
    executions: list[float] = field(default_factory=list)   # every execution (monotonic)
    window: list[float] = field(default_factory=list)       # those inside the sliding window
    pending: list = field(default_factory=list)             # operations of the running execution

    def settle(self) -> None:
        """The action list has completed when every operation it started reached a final state."""
        if self.state != "ActionExecuting" or any(not op.done_event.is_set() for op in self.pending):
            return
        self.pending = []
        if self.trigger.lower() == "startup":
            self.state, self.reason = "Finished", FINISHED_STARTUP
        elif self.window_seconds is None and len(self.executions) >= self.action_limit:
            self.state, self.reason = "Finished", FINISHED_COUNT
        else:
            self.state, self.reason = "Running", RUNNING

    @property
    def trigger(self) -> str:
        return self.settings.get("trigger:type", "")

    @property
    def action_limit(self) -> int:
        try:
            return int(self.settings.get("limits:actioncount", DEFAULT_ACTION_COUNT))
        except ValueError:
            return DEFAULT_ACTION_COUNT

    @property
    def window_seconds(self) -> float | None:
        return parse_timespan(self.settings.get("limits:actioncountslidingwindowduration"))

    @property
    def rule_duration(self) -> float | None:
        return parse_timespan(self.settings.get("limits:ruleduration"))

    def refresh(self, now: float) -> None:
        """Time passing: the RuleDuration ends the rule; old executions leave the window."""
        self.settle()
        if self.state == "Finished":
            return
        if self.rule_duration is not None and now - self.started >= self.rule_duration:
            self.state, self.reason = "Finished", FINISHED_DURATION
            return
        if self.window_seconds is not None:
            self.window = [t for t in self.window if t >= now - self.window_seconds]
            if self.state == "Throttled" and len(self.window) < self.action_limit:
                self.state, self.reason = "Running", RUNNING

    def description(self) -> dict:
        self.refresh(time.monotonic())
        return {"state": self.state, "stateReason": self.reason}

    def detailed(self) -> dict:
        now = time.monotonic()
        self.refresh(now)
        window = self.window_seconds
        countdown = None
        if window is not None and len(self.window) >= self.action_limit and self.window:
            countdown = format_timespan(self.window[0] + window - now)
        finished_in = None
        if self.rule_duration is not None and self.state != "Finished":
            finished_in = format_timespan(self.started + self.rule_duration - now)
        return {"lifetimeOccurrences": len(self.executions),
                "slidingWindowOccurrences": len(self.window),
                "actionCountLimit": self.action_limit,
                "actionCountSlidingWindowDurationLimit": format_timespan(window),
                "slidingWindowDurationCountdown": countdown,
                "ruleFinishedCountdown": finished_in,
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
        while any(k.startswith(f"filters:{i}:") for k in self.settings):
            p = f"filters:{i}:"
            if p + "key" in self.settings:
                out.append(FilterSpec(self.settings[p + "key"], self.settings.get(p + "value", ""),
                                      self.settings.get(p + "matchtype", "Exact")))
            else:
                for short in ("processid", "processname", "commandline",
                              "managedentrypointassemblyname"):
                    if p + short in self.settings:
                        out.append(FilterSpec(short, self.settings[p + short],
                                              self.settings.get(p + "matchtype", "Exact")))
            i += 1
        return out


class RuleEngine:
    def __init__(self, monitor) -> None:
        self.m = monitor
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], RuleState] = {}

    def _settings(self, name: str) -> tuple[dict[str, str], str | None]:
        raw = self.m.cfg.raw
        try:
            return resolve_rule(raw, name, set(self.m.cfg.egress)), None
        except RuleConfigError as exc:
            return _lower(raw.section(f"CollectionRules:{name}")), str(exc)

    def for_process(self, proc) -> dict[str, RuleState]:
        if self.m.cfg.connection_mode != "Listen":
            return {}
        out = {}
        fire_startup = []
        with self._lock:
            for name in self.m.cfg.collection_rules:
                st = self._states.get((name, proc.uid))
                if st is None:
                    settings, error = self._settings(name)
                    st = RuleState(name, settings)
                    if error is not None:
                        st.state, st.reason = "Finished", FINISHED_FAILURE.format(error)
                    elif not all(matches_filter(proc, f) for f in st.filters()):
                        continue
                    self._states[(name, proc.uid)] = st
                    if error is None and st.trigger.lower() == "startup":
                        fire_startup.append(st)
                out[name] = st
        for st in fire_startup:
            self._execute(st, proc)
        return out

    def fire(self, rule: str, uid: str | None = None, pid: int | None = None) -> list[str]:
        """Simulate the trigger of ``rule`` (name case-insensitive) for every visible process
        (or the one with ``uid``/``pid``); returns the operation ids its actions started."""
        ids = []
        for proc in self.m.processes():
            if uid is not None and proc.uid != uid:
                continue
            if pid is not None and proc.pid != pid:
                continue
            states = self.for_process(proc)
            st = next((s for n, s in states.items() if n.lower() == rule.lower()), None)
            if st is not None:
                ids += self._execute(st, proc)
        return ids

    def _execute(self, st: RuleState, proc) -> list[str]:
        now = time.monotonic()
        with self._lock:
            st.refresh(now)
            if st.state in ("Finished", "ActionExecuting"):
                return []
            if st.window_seconds is not None and len(st.window) >= st.action_limit:
                st.state, st.reason = "Throttled", THROTTLED
                return []
            st.state, st.reason = "ActionExecuting", EXECUTING
        ids = []
        for action in st.actions():
            kind = ACTION_KINDS.get(action.get("type", "").lower())
            egress = action.get("settings:egress")
            if kind is None or not egress:
                continue
            provider = next((p for p in self.m.cfg.egress if p.lower() == egress.lower()), egress)
            ids.append(self.m.start_rule_action(kind, proc, provider, action, rule=st.name))
        with self._lock:
            st.operations += ids
            st.executions.append(now)
            st.window.append(now)
            st.pending = [op for op in (self.m.ops.get(i) for i in ids) if op is not None]
            st.settle()
        return ids
