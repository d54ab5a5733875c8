"""Flux operations: reconcile what was pushed, diff one Kustomization, report what is ready."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.runtime.errors import CommandFailed, ConfigError, ExternalError

if TYPE_CHECKING:
    from tasks.runtime.run import Run


def reconcile_all(run: Run, *, force: bool) -> None:
    """Plan (the stack in dependency order, read from the tree), then reconcile on the engine."""
    import shlex

    from tasks.adapters.kube import Kube
    from tasks.gitops.cluster_steps import reconcile_commands
    from tasks.gitops.pushed import check_mode_files_pushed
    from tasks.gitops.settings import GitOpsSettings
    from tasks.gitops.tree import flux_kustomizations, stack_order
    from tasks.runtime.console import say
    from tasks.runtime.steps import Action, Plan

    settings = GitOpsSettings.load(run)
    check_mode_files_pushed(settings, force=force)
    kube = Kube(run)
    order = stack_order(settings, flux_kustomizations(settings, kube))
    names = " -> ".join(k.name for k in order)

    def flux(args: list[str]):
        return lambda sc: kube.flux(*args, mutating=True)

    actions = [
        Action(" ".join(args[1:3]), shlex.join(["flux", *args]), flux(args))
        for args in reconcile_commands(settings, order)
    ]
    run.execute(Plan(title="flux.reconcile", area="flux", actions=actions))
    if not run.dry_run:
        say(f"reconciled: {names}")


def diff_area(run: Run, area: str) -> None:
    from tasks.adapters.kube import Kube
    from tasks.gitops.settings import GitOpsSettings
    from tasks.gitops.tree import flux_kustomizations
    from tasks.runtime.console import say

    settings = GitOpsSettings.load(run)
    kube = Kube(run)
    found = {k.name: k for k in flux_kustomizations(settings, kube)}
    if area not in found:
        raise ConfigError(
            f"unknown area {area!r}; Flux Kustomizations of cluster {settings.cluster}: "
            f"{', '.join(found)}"
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


def show_status(run: Run) -> None:
    from tasks.adapters.kube import Kube
    from tasks.gitops.facts import ready_states
    from tasks.runtime.console import say, table

    kube = Kube(run)
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
