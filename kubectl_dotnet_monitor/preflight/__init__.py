"""Before anything is changed: what a cluster, a pod and a workload need for the plugin.

* ``checks``  -- doctor's checks: small functions returning a ``CheckResult`` (pure where possible)
* ``doctor``  -- gathers the facts for one pod (reads only) and runs the checks in order
* ``prepare`` -- PURE: the pod-template patch (volume, mount, ``DOTNET_DiagnosticPorts``)
* ``apply``   -- ``prepare --apply``: server-side dry run, then the patch, idempotent
* ``rbac``    -- PURE: the Role/ClusterRole and binding the plugin needs
"""
