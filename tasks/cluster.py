"""The cluster orchestrator: Flux, runtime inputs and the GitOps stack on the k3s cluster."""

from __future__ import annotations

from invoke import task

FLAGS = {
    "profile": "extra env file, highest precedence in the cluster chain",
    "only": "comma-separated step numbers or names (e.g. 15,32 or install-flux); ONLY is the fallback",
    "dry_run": "print the resolved plan and exit without executing",
}


def build_orchestrator():
    """Exactly the Orchestration API seed's default apply and delete step lists, in order."""
    from tasks.gitopsside import cluster_steps as s
    from tasks.runtime.steps import Gate, Orchestrator, Step

    verify = Gate("FEAT_VERIFY", True)
    both, apply, delete = (
        frozenset({"apply", "delete"}),
        frozenset({"apply"}),
        frozenset({"delete"}),
    )
    access = Step(
        "verify_cluster_access",
        s.verify_cluster_access,
        both,
        15,
        summary="kubeconfig, API reachable, cluster-admin",
    )
    inputs = Step(
        "verify_config_inputs",
        s.verify_config_inputs,
        apply,
        94,
        verify,
        "runtime-input variables present, GitOps tree valid",
    )
    flux = Step(
        "install_flux",
        s.install_flux,
        both,
        None,
        None,
        "flux install + sync (delete: flux uninstall)",
    )
    runtime = Step(
        "sync_runtime_inputs",
        s.sync_runtime_inputs,
        apply,
        None,
        None,
        "flux-system/platform-runtime-inputs from env (stdin)",
    )
    stack = Step(
        "reconcile_flux_stack",
        s.reconcile_flux_stack,
        both,
        32,
        None,
        "Git source, then Kustomizations in dependency order (delete: remove them)",
    )
    state = Step(
        "verify_platform_state",
        s.verify_platform_state,
        apply,
        91,
        verify,
        "every Kustomization ready",
    )
    certs = Step(
        "manage_cert_manager_cleanup",
        s.manage_cert_manager_cleanup,
        delete,
        30,
        summary="cert-manager CRDs, namespace, leases",
    )
    teardown = Step(
        "execute_teardown",
        s.execute_teardown,
        delete,
        99,
        summary="runtime-inputs secret, the tree's namespaces",
    )
    cilium = Step(
        "manage_cilium_lifecycle",
        s.manage_cilium_lifecycle,
        delete,
        26,
        Gate("FEAT_CILIUM", False),
        "Cilium agent, operator, CRDs",
    )
    clean = Step(
        "verify_teardown_clean",
        s.verify_teardown_clean,
        delete,
        98,
        summary="no namespaces or CRDs of the stack left",
    )
    return Orchestrator(
        "cluster",
        apply_steps=[access, inputs, flux, runtime, stack, state],
        delete_steps=[access, stack, certs, teardown, cilium, flux, clean],
        chain="cluster",
    )


@task(help=FLAGS)
def apply(c, profile=None, only=None, dry_run=False):
    """Install Flux, sync runtime inputs and reconcile the GitOps stack (seed apply steps)."""
    from tasks.runtime.steps import run_orchestrator

    run_orchestrator(
        c,
        build_orchestrator(),
        "apply",
        task_name="cluster.apply",
        override=profile,
        only=only,
        dry_run=dry_run,
    )


@task(help={**FLAGS, "yes": "do not ask for confirmation (required without a terminal)"})
def delete(c, profile=None, only=None, dry_run=False, yes=False):
    """Remove the stack, cert-manager leftovers and Flux, then verify the teardown (asks first)."""
    from tasks.runtime.steps import run_orchestrator

    run_orchestrator(
        c,
        build_orchestrator(),
        "delete",
        task_name="cluster.delete",
        override=profile,
        only=only,
        dry_run=dry_run,
        yes=yes,
    )
