"""PURE: what ``GET /collectionrules`` (and ``/collectionrules/{name}``) say, as a table for people.

``/collectionrules`` maps each rule to ``{state, stateReason}`` (states ``Running``,
``ActionExecuting``, ``Throttled``, ``Finished``); ``/collectionrules/{name}`` adds the counts
(``lifetimeOccurrences``, ``slidingWindowOccurrences``, ``actionCountLimit``,
``actionCountSlidingWindowDurationLimit``, countdowns). The command fetches, this module formats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

NO_RULES = ("no collection rules: the monitor was injected without --rules (an ephemeral container "
            "cannot be given rules later), or it runs in Connect mode, where dotnet-monitor runs none")


@dataclass(frozen=True)
class RuleStatus:
    """One rule of one process, as dotnet-monitor reports it."""

    name: str
    state: str
    reason: str
    triggered: int | None = None  # lifetimeOccurrences
    in_window: int | None = None  # slidingWindowOccurrences
    limit: int | None = None  # actionCountLimit
    window: str | None = None  # actionCountSlidingWindowDurationLimit

    def counts(self) -> str:
        """``3`` or ``3 (1 of 2 per 01:00:00)``; ``-`` when the details were not fetched."""
        if self.triggered is None:
            return "-"
        text = str(self.triggered)
        if self.limit is not None:
            per = f" per {self.window}" if self.window else " in total"
            text += f" ({self.in_window if self.in_window is not None else self.triggered} of {self.limit}{per})"
        return text


def rule_statuses(summary: Mapping[str, dict] | None, details: Mapping[str, dict] | None = None) -> list[RuleStatus]:
    """Join the summary and the per-rule details (either may lack a rule) into ``RuleStatus`` rows."""
    details = details or {}
    names = list(summary or {}) + [n for n in details if n not in (summary or {})]
    rows = []
    for name in names:
        brief = (summary or {}).get(name) or {}
        more = details.get(name) or {}
        rows.append(RuleStatus(
            name=name,
            state=str(more.get("state") or brief.get("state") or "Unknown"),
            reason=str(more.get("stateReason") or brief.get("stateReason") or ""),
            triggered=more.get("lifetimeOccurrences"),
            in_window=more.get("slidingWindowOccurrences"),
            limit=more.get("actionCountLimit"),
            window=more.get("actionCountSlidingWindowDurationLimit"),
        ))
    return rows


def format_rule_table(rows: list[RuleStatus]) -> str:
    """``RULE  STATE  TRIGGERED  REASON`` lines (kubectl-style columns), or ``NO_RULES``."""
    if not rows:
        return NO_RULES + "\n"
    table = [("RULE", "STATE", "TRIGGERED", "REASON")] + [(r.name, r.state, r.counts(), r.reason) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = ["   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "   " + row[3] for row in table]
    return "\n".join(line.rstrip() for line in lines) + "\n"
