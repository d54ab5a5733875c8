"""Flux: reconcile what was pushed, diff an area, report what is ready."""

from __future__ import annotations

from invoke import task


@task(
    help={
        "force": "reconcile even when mode files have uncommitted or unpushed changes",
        "dry_run": "check and print the flux commands without running them",
        "profile": "extra env file, highest precedence in the cluster chain",
    }
)
def reconcile(c, force=False, dry_run=False, profile=None):
    """Reconcile the Git source, then the stack; refuses while mode files are not pushed."""
    from tasks.adapters.kube import Kube
    from tasks.gitopsside.cluster_steps import reconcile_stack
    from tasks.gitopsside.pushed import check_mode_files_pushed
    from tasks.gitopsside.settings import GitOpsSettings
    from tasks.gitopsside.tree import flux_kustomizations, stack_order
    from tasks.runtime.console import say

    c.use_env("cluster", profile)
    settings = GitOpsSettings.load(c.project)
    check_mode_files_pushed(settings, force=force)
    kube = Kube(c, dry_run=dry_run)
    order = stack_order(settings, flux_kustomizations(settings, kube))
    reconcile_stack(settings, kube, order)
    say(("dry run: " if dry_run else "reconciled: ") + " -> ".join(k.name for k in order))


@task(
    positional=["area"],
    help={
        "area": "the Flux Kustomization to diff (e.g. platform-services)",
        "profile": "extra env file, highest precedence in the cluster chain",
    },
)
def diff(c, area, profile=None):
    """Show what Flux would change for AREA: `flux diff kustomization` against the local tree."""
    from tasks.adapters.kube import Kube
    from tasks.gitopsside.settings import GitOpsSettings
    from tasks.gitopsside.tree import flux_kustomizations
    from tasks.runtime.console import say
    from tasks.runtime.errors import CommandFailed, ConfigError

    c.use_env("cluster", profile)
    settings = GitOpsSettings.load(c.project)
    kube = Kube(c)
    found = {k.name: k for k in flux_kustomizations(settings, kube)}
    if area not in found:
        raise ConfigError(
            f"unknown area {area!r}; Flux Kustomizations of cluster {settings.cluster}: {', '.join(found)}"
        )
    k = found[area]
    folder = settings.resolve_flux_path(k.path)
    result = kube.flux(
        "diff",
        "kustomization",
        k.name,
        f"--namespace={k.namespace}",
        f"--path={folder}",
        check=False,
    )
    # flux diff exits 1 when there are differences, and >1 when it failed.
    if result.exited > 1:
        raise CommandFailed(
            f"flux diff kustomization {k.name}", result.exited, (result.stderr or "").strip()
        )
    say(result.stdout.rstrip())
    say(
        f"{area}: "
        + (
            "differences above (push and `inv flux.reconcile` to apply)"
            if result.exited == 1
            else "no changes"
        )
    )


@task(help={"profile": "extra env file, highest precedence in the cluster chain"})
def status(c, profile=None):
    """List Flux Kustomizations and HelmReleases: ready or not, with the reason."""
    from tasks.adapters.kube import Kube
    from tasks.gitopsside.facts import ready_states
    from tasks.runtime.console import say, table
    from tasks.runtime.errors import ExternalError

    c.use_env("cluster", profile)
    kube = Kube(c)
    rows, not_ready = [], 0
    for resource in (
        "kustomizations.kustomize.toolkit.fluxcd.io",
        "helmreleases.helm.toolkit.fluxcd.io",
    ):
        for s in ready_states(kube.get_json(resource, "--all-namespaces")):
            state = "suspended" if s.suspended else ("ready" if s.ready else "not ready")
            not_ready += 0 if s.ready else 1
            rows.append([s.kind, s.ref, state, s.reason, s.message])
    if not rows:
        say("no Flux Kustomizations or HelmReleases found (is Flux installed? `inv cluster.apply`)")
        return
    table(["KIND", "NAME", "STATE", "REASON", "MESSAGE"], rows)
    if not_ready:
        raise ExternalError(f"{not_ready} Flux object(s) not ready")
