"""``kubectl dotnet-monitor rbac``: the Role (or ClusterRole) and binding the plugin needs."""

from __future__ import annotations

import click


@click.command()
@click.option("-n", "--namespace", metavar="NS", default=None,
              help="Namespace of the Role and RoleBinding (else the context's, else 'default').")
@click.option("--cluster-wide", is_flag=True, help="A ClusterRole and ClusterRoleBinding (every namespace).")
@click.option("--name", default="kubectl-dotnet-monitor", show_default=True, help="Name of the role and binding.")
@click.option("--user", "users", multiple=True, metavar="NAME", help="Bind to this user (repeatable).")
@click.option("--group", "groups", multiple=True, metavar="NAME", help="Bind to this group (repeatable).")
@click.option("--serviceaccount", "service_accounts", multiple=True, metavar="NS:NAME",
              help="Bind to this service account (repeatable).")
@click.option("--no-logs", is_flag=True, help="Leave out the optional 'get pods/log'.")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.pass_context
def rbac(ctx: click.Context, namespace: str | None, cluster_wide: bool, name: str, users: tuple[str, ...],
         groups: tuple[str, ...], service_accounts: tuple[str, ...], no_logs: bool, output: str) -> None:
    """Print the RBAC objects that grant exactly what the plugin needs.

    get/list/watch pods, patch pods/ephemeralcontainers, get+create pods/portforward,
    create/get/delete secrets (the monitor's key), and get pods/log (optional). Nothing is sent
    to the cluster: pipe it to `kubectl apply -f -`.

    \b
    Examples:
      kubectl dotnet-monitor rbac -n shop --user jane@example.com | kubectl apply -f -
      kubectl dotnet-monitor rbac --cluster-wide --group sre
      kubectl dotnet-monitor rbac -n shop --serviceaccount ci:deployer
    """
    from kubectl_dotnet_monitor.preflight.rbac import (
        RbacRequest,
        render_json,
        render_yaml,
    )

    if namespace is None and not cluster_wide:
        namespace = _context_namespace(ctx)
    request = RbacRequest(namespace=namespace or "default", cluster_wide=cluster_wide, name=name,
                          users=users, groups=groups, service_accounts=service_accounts, logs=not no_logs)
    click.echo(render_json(request) if output == "json" else render_yaml(request), nl=False)


def _context_namespace(ctx: click.Context) -> str | None:
    """-n given before the subcommand, else the kubeconfig context's namespace (no API call)."""
    from kubectl_dotnet_monitor.cli.options import kube_flags
    from kubectl_dotnet_monitor.errors import PluginError
    from kubectl_dotnet_monitor.kube.config import resolve_connection

    flags = kube_flags(ctx)
    if flags.namespace:
        return flags.namespace
    try:
        return resolve_connection(flags).namespace
    except PluginError:
        return None
