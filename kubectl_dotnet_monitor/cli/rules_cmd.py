"""``kubectl dotnet-monitor rules example|validate``: start a rules file, check it before injecting."""

from __future__ import annotations

import sys

import click

_EXAMPLE_SUMMARIES = {
    "high-cpu": "CPU above 80% for a minute -> CPU trace",
    "memory-leak": "GC heap above 1 GiB for 5 minutes -> GC dump",
    "slow-requests": "5 requests slower than 3 s in a minute -> CPU+HTTP trace and logs",
    "http-5xx": "10 responses 500-599 in a minute -> logs and HTTP trace",
}


@click.group()
def rules() -> None:
    """Collection rules: ready examples, and validation before injecting.

    A rules file is dotnet-monitor's own configuration (CollectionRules, Egress,
    CollectionRuleDefaults, Templates) in YAML or JSON. Give it to inject with --rules FILE:
    dotnet-monitor then collects by itself when a trigger fires.

    \b
    Examples:
      kubectl dotnet-monitor rules example high-cpu > rules.yaml
      kubectl dotnet-monitor rules validate rules.yaml
      kubectl dotnet-monitor inject mypod --rules rules.yaml
    """


@rules.command("example")
@click.argument("name", required=False, metavar="[NAME]")
def example(name: str | None) -> None:
    """Print a ready rules file (YAML); without NAME, list the examples.

    \b
    Examples:
      kubectl dotnet-monitor rules example
      kubectl dotnet-monitor rules example memory-leak > rules.yaml
    """
    from kubectl_dotnet_monitor.rules.templates import example as example_text
    from kubectl_dotnet_monitor.rules.templates import example_names

    if name is None:
        width = max(len(n) for n in example_names())
        for known in example_names():
            click.echo(f"{known:<{width}}  {_EXAMPLE_SUMMARIES.get(known, '')}".rstrip())
        return
    click.echo(example_text(name), nl=False)


@rules.command("validate")
@click.argument("file", metavar="FILE")
@click.option("--show-env", is_flag=True, help="Also print the env the monitor container would get (YAML).")
def validate(file: str, show_env: bool) -> None:
    """Check a rules file against dotnet-monitor's configuration schema.

    Prints OK and a summary, or every problem as FILE:LINE: KEY.PATH: what is wrong (exit code 2).
    FILE '-' reads standard input. Nothing is sent to the cluster.

    \b
    Examples:
      kubectl dotnet-monitor rules validate rules.yaml
      kubectl dotnet-monitor rules example http-5xx | kubectl dotnet-monitor rules validate -
    """
    from kubectl_dotnet_monitor.rules import load_rules, rules_from_text

    if file == "-":
        config = rules_from_text(sys.stdin.read(), "<stdin>")
    else:
        config = load_rules(file)
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)
    parts = [f"{len(config.rules)} collection rule{'s' if len(config.rules) != 1 else ''}"
             + (f" ({', '.join(config.rules)})" if config.rules else "")]
    if config.egress_providers:
        parts.append(f"egress: {', '.join(config.egress_providers)}")
    if config.secret_refs:
        parts.append("Secrets used: " + ", ".join(f"{name}/{key}" for name, key in config.secret_refs))
    click.echo(f"OK: {config.source}: " + "; ".join(parts))
    if config.secret_refs:
        click.echo("The Secrets must exist in the pod's namespace, or the monitor cannot start.", err=True)
    if show_env:
        import yaml

        click.echo(yaml.safe_dump({"env": [dict(e) for e in config.env]}, sort_keys=False, width=1000), nl=False)
