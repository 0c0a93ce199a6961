"""``kubectl dotnet-monitor collectionrules list|get POD``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from kubectl_dotnet_monitor.cli.artifact_common import existing_monitor_options
from kubectl_dotnet_monitor.cli.options import process_options

T = TypeVar("T")


@click.group()
def collectionrules() -> None:
    """Show the collection rules of the monitor in a pod and their state for a process.

    Collection rules run only in a monitor in Listen mode that was given rules
    (see `kubectl dotnet-monitor rules`). These commands never inject a monitor.

    \b
    Examples:
      kubectl dotnet-monitor collectionrules list web-7d4b9-x2x9z
      kubectl dotnet-monitor collectionrules get web-7d4b9-x2x9z HighCpu -o yaml
    """


@collectionrules.command("list")
@click.argument("pod")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json", "yaml"]), default="table",
              show_default=True, help="Output format.")
@process_options
@existing_monitor_options
@click.pass_context
def list_rules(ctx: click.Context, pod: str, fmt: str, **kw: object) -> None:
    """List the collection rules for the .NET process in POD: RULE, STATE, TRIGGERED, REASON.

    STATE is dotnet-monitor's: Running (waiting for its trigger), ActionExecuting,
    Throttled (its action limit per window is reached) or Finished. TRIGGERED counts
    the executions so far, with the limit: `1 (1 of 2 per 01:00:00)`. -o json|yaml
    gives each rule's full state as dotnet-monitor reports it.

    \b
    Example:
      kubectl dotnet-monitor collectionrules list web-7d4b9-x2x9z
      kubectl dotnet-monitor collectionrules list web-7d4b9-x2x9z -o json
    """
    from kubectl_dotnet_monitor.cli.artifact_common import emit_structured
    from kubectl_dotnet_monitor.rules.status import (
        NO_RULES,
        format_rule_table,
        rule_statuses,
    )

    summary, details = _rules_with_details(ctx, pod, kw)
    if fmt != "table":
        emit_structured({name: details.get(name) or summary.get(name) for name in summary}, fmt)
    elif not summary:
        click.echo(NO_RULES, err=True)
    else:
        click.echo(format_rule_table(rule_statuses(summary, details)), nl=False)


@collectionrules.command("get")
@click.argument("pod")
@click.argument("name")
@click.option("-o", "--output", "fmt", type=click.Choice(["json", "yaml"]), default="yaml", show_default=True,
              help="Output format.")
@process_options
@existing_monitor_options
@click.pass_context
def get_rule(ctx: click.Context, pod: str, name: str, fmt: str, **kw: object) -> None:
    """Show one collection rule: state, lifetime limits, actions and trigger counts.

    \b
    Example:
      kubectl dotnet-monitor collectionrules get web-7d4b9-x2x9z HighCpu
    """
    from kubectl_dotnet_monitor.cli.artifact_common import emit_structured

    emit_structured(_rules_request(ctx, pod, kw, name), fmt)


def _rule_path(name: str) -> str:
    import urllib.parse

    return "/collectionrules/" + urllib.parse.quote(name, safe="")


def _read_rules(ctx: click.Context, pod: str, kw: dict, read: Callable[[Any, dict], T]) -> T:
    """``read(monitor, query)`` on the monitor already in ``pod`` (never injected), for the chosen process."""
    from kubectl_dotnet_monitor.cli.artifact_common import Target
    from kubectl_dotnet_monitor.collect import process_target

    target = Target.take(ctx, pod, kw)
    session = target.open(allow_inject=False)
    try:
        _, query = process_target(session.monitor, target.selector())
        return read(session.monitor, query)
    finally:
        session.close()


def _rules_request(ctx: click.Context, pod: str, kw: dict, name: str) -> object:
    """``GET /collectionrules/{name}``."""
    return _read_rules(ctx, pod, kw, lambda monitor, query: monitor.request_json("GET", _rule_path(name), query) or {})


def _rules_with_details(ctx: click.Context, pod: str, kw: dict) -> tuple[dict, dict]:
    """``GET /collectionrules`` and, for each rule, ``GET /collectionrules/{name}`` (its counts).

    One session (one token); a rule whose details cannot be read keeps its summary row.
    """
    from kubectl_dotnet_monitor.errors import MonitorError, NotFoundError

    def read(monitor: Any, query: dict) -> tuple[dict, dict]:
        summary = monitor.request_json("GET", "/collectionrules", query) or {}
        details: dict = {}
        for name in summary:
            try:
                doc = monitor.request_json("GET", _rule_path(name), query)
            except (MonitorError, NotFoundError):  # e.g. the process went away in between
                continue
            if isinstance(doc, dict):
                details[name] = doc
        return summary, details

    return _read_rules(ctx, pod, kw, read)
