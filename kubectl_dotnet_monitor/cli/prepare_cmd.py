"""``kubectl dotnet-monitor prepare deploy/NAME``: the pod-template change for a diagnostic port."""

from __future__ import annotations

import click

from kubectl_dotnet_monitor.cli.options import kube_flags, kube_options


@click.command()
@click.argument("target")
@click.option("-c", "--container", metavar="NAME", default=None, help="The app container (else the default or only one).")
@click.option("--mount-path", metavar="DIR", default="/diag", show_default=True,
              help="Where the shared volume is mounted in the app container (and later the monitor).")
@click.option("--volume-name", metavar="NAME", default=None,
              help="Name of the emptyDir volume [default: diagvol, or a free name if that is taken].")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True,
              help="Format of the printed patch.")
@click.option("--apply", "apply_", is_flag=True,
              help="Apply the change (server-side dry run first). This rolls out new pods.")
@kube_options
@click.pass_context
def prepare(ctx: click.Context, target: str, container: str | None, mount_path: str, volume_name: str | None,
            output: str, apply_: bool, **flags: object) -> None:
    """Print (or --apply) the change that readies TARGET for dotnet-monitor.

    TARGET is deploy/NAME, sts/NAME, ds/NAME, or a pod (pod/NAME or NAME: its Deployment,
    StatefulSet or DaemonSet is changed). The change: an emptyDir volume, its mount in the app
    container, and DOTNET_DiagnosticPorts=<mount>/dotnet-monitor.sock,nosuspend — never without
    nosuspend, or every start of the app would wait for a monitor. The patch goes to stdout and
    works with `kubectl patch --type strategic`; notes go to stderr. A prepared workload needs
    nothing, and --apply then changes nothing.

    \b
    Examples:
      kubectl dotnet-monitor prepare deploy/web -n shop
      kubectl patch deploy/web -n shop --type strategic -p "$(kubectl dotnet-monitor prepare deploy/web -n shop)"
      kubectl dotnet-monitor prepare deploy/web -n shop --apply
    """
    from kubectl_dotnet_monitor.kube.api import KubeClient
    from kubectl_dotnet_monitor.kube.config import resolve_connection
    from kubectl_dotnet_monitor.kube.workloads import POD, parse_target
    from kubectl_dotnet_monitor.preflight.apply import apply_plan, plan_target
    from kubectl_dotnet_monitor.preflight.prepare import PrepareOptions, render_patch

    def note(text: str) -> None:
        click.echo(text, err=True)

    options = PrepareOptions(container=container, mount_path=mount_path, volume_name=volume_name)
    ref = parse_target(target, default=POD)
    conn = resolve_connection(kube_flags(ctx, **flags))
    ns = conn.namespace
    with KubeClient(conn) as client:
        planned = plan_target(client, ns, ref, options)
        plan, workload = planned.plan, planned.workload
        if planned.followed_owner:
            note(f"{ref} belongs to {workload}; the change goes to {workload}'s pod template")
        for warning in plan.warnings:
            note(f"warning: {warning}")
        if plan.already_prepared:
            note(f"{workload} is already prepared (diagnostic port {plan.socket_path} in container "
                 f"{plan.app_container!r}, nosuspend): nothing to change")
            return
        if not apply_:
            click.echo(render_patch(plan, output), nl=False)
            note("changes: " + "; ".join(plan.changes))
            note(f"apply with --apply, or: kubectl patch {workload} -n {ns} --type strategic "
                 f"-p \"$(kubectl dotnet-monitor prepare {target} -n {ns})\"")
            return
        note(f"warning: changing the pod template of {workload} rolls out new pods (the app restarts)")
        for change in plan.changes:
            note(f"  {change}")
        apply_plan(client, ns, planned, options)
    kind = workload.kind
    click.echo(f"{kind.resource}.{kind.group}/{workload.name} patched" if kind.group
               else f"{kind.resource}/{workload.name} patched")
