"""``kubectl dotnet-monitor inject POD``."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.options import build_inject_request, inject_options, kube_flags, kube_options, say


@click.command()
@click.argument("pod")
@inject_options
@click.option("--dry-run", is_flag=True, default=False,
              help="Print the ephemeral container that would be sent, as YAML, and change nothing.")
@kube_options
@click.pass_context
def inject(ctx: click.Context, pod: str, app_container: str | None, image: str | None, config_file: str | None,
           rules_file: str | None, no_auth: bool, wait_timeout: float, dry_run: bool, **flags: object) -> None:
    """Inject dotnet-monitor into POD as an ephemeral container (once per pod lifetime).

    The monitor shares the app container's diagnostic socket and volume, binds
    localhost only, runs as the app's user under a restricted security context,
    and accepts only a fresh API key whose private half is kept in a Secret owned
    by the pod. A monitor already running in the pod is reused. Prints the
    monitor's container name on stdout.

    \b
    Examples:
      kubectl dotnet-monitor inject web-7d4b9-x2x9z
      kubectl dotnet-monitor inject web-7d4b9-x2x9z -n shop -c api
      kubectl dotnet-monitor inject web-7d4b9-x2x9z --dry-run
    """
    from kubectl_dotnet_monitor.session import connect

    pod = _pod_name(pod)
    request = build_inject_request(app_container, image, config_file, no_auth, wait_timeout, rules_file)
    conn, client = connect(kube_flags(ctx, **flags))
    if dry_run:
        click.echo(_dry_run(client, conn.namespace, pod, request), nl=False)
        return
    from kubectl_dotnet_monitor.inject.injector import ensure_monitor

    from kubectl_dotnet_monitor.session import monitor_client

    endpoint = ensure_monitor(client, conn.namespace, pod, request, say=say)
    # Running is not enough: the monitor must answer, with our key (a bad config makes it exit).
    info = monitor_client(conn, client, endpoint).info()
    say(f"dotnet-monitor {info.get('version', '?')} is running and answering in pod {endpoint.namespace}/{endpoint.pod} "
        f"(container {endpoint.container}, port {endpoint.port}, {str(info.get('diagnosticPortMode', '?')).lower()} mode)")
    click.echo(endpoint.container)


def _dry_run(client: object, namespace: str, pod: str, request: object) -> str:
    """The container ``inject`` would send, with a placeholder key Secret name (nothing is created)."""
    import yaml

    from kubectl_dotnet_monitor.inject.apikey import generate_api_key
    from kubectl_dotnet_monitor.inject.injector import check_pod_running, render_container
    from kubectl_dotnet_monitor.inject.spec import plan_injection
    from kubectl_dotnet_monitor.kube.pods import get_pod

    pod_obj = get_pod(client, namespace, pod)
    check_pod_running(pod_obj)
    plan = plan_injection(pod_obj, request.options)
    for warning in plan.warnings:
        say(f"warning: {warning}")
    if plan.action != "create":
        say(f"a monitor ({plan.container_name}, {plan.existing.describe_state()}) is already in the pod: "
            "inject would reuse it and send nothing; showing what a new one would look like")
    key = None if request.options.no_auth else generate_api_key()
    container = render_container(
        pod_obj, plan, request,
        key_secret_name=None if key is None else f"{pod}-dotnet-monitor-<generated>",
        subject=key.subject if key else None,
        public_key=key.public_key_config() if key else None,
    )
    return yaml.safe_dump(container, sort_keys=False)


def _pod_name(target: str) -> str:
    """``POD`` or ``pod/POD`` (``po/``, ``pods/``) → the pod's name."""
    kind, sep, name = target.partition("/")
    if not sep:
        return target
    if kind.lower() in ("pod", "pods", "po") and name:
        return name
    raise click.UsageError(f"{target!r}: expected a pod name or pod/NAME")
