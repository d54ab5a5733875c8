"""The GitOps side's tasks: thin wrappers over this package's modules, one Collection each.

`cluster` (the cluster orchestrator), `platform` and `app` (mode targets: local Git edits),
`flux` (reconcile, diff, status), `k8s` (offline validation), `gitops` (the bootstrap), and the
root tasks `init` and `configure`. Nothing heavy is imported here: `inv --list` loads this module.
"""

from __future__ import annotations

from invoke import Collection

from tasks.runtime.cli import task
from tasks.runtime.errors import ConfigError

PROFILE_HELP = "extra env file, highest precedence in the cluster chain"
ORCH_FLAGS = {
    "profile": PROFILE_HELP,
    "only": "comma-separated step numbers or names (e.g. 15,32 or install-flux); ONLY is the fallback",
    "dry_run": "print the resolved plan and exit without executing",
}


# ---------------------------------------------------------------------- cluster orchestrator


def build_orchestrator():
    """Exactly the Orchestration API seed's default apply and delete step lists, in order."""
    from tasks.gitops import cluster_steps as s
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
        "install_flux", s.install_flux, both, None, None, "flux install + sync (delete: uninstall)"
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


@task(name="apply", help=ORCH_FLAGS)
def cluster_apply(run, profile=None, only=None, dry_run=False):
    """Install Flux, sync runtime inputs and reconcile the GitOps stack (seed apply steps)."""
    from tasks.runtime.steps import run_orchestrator

    run_orchestrator(run, build_orchestrator(), "apply", only=only)


@task(
    name="delete",
    help={**ORCH_FLAGS, "yes": "do not ask for confirmation (required without a terminal)"},
)
def cluster_delete(run, profile=None, only=None, dry_run=False, yes=False):
    """Remove the stack, cert-manager leftovers and Flux, then verify the teardown (asks first)."""
    from tasks.runtime.steps import run_orchestrator

    run_orchestrator(run, build_orchestrator(), "delete", only=only, yes=yes)


# ---------------------------------------------------------------------- mode targets


@task(
    doppler=False,
    help={
        "prod": "use letsencrypt-prod for platform certificates",
        "staging": "use letsencrypt-staging for platform certificates",
        "dry_run": "print the diff without writing the file",
    },
)
def certs(run, prod=False, staging=False, dry_run=False):
    """Set CERT_ISSUER in the platform-settings ConfigMap (a one-line local edit; then push and reconcile)."""
    from tasks.gitops.edits import apply_local_edit, set_data_value
    from tasks.gitops.settings import CERT_ISSUERS, GitOpsSettings

    if prod == staging:
        raise ConfigError("give exactly one of --prod or --staging")
    issuer = CERT_ISSUERS["prod" if prod else "staging"]
    settings = GitOpsSettings.load(run)
    path = settings.platform_settings_file
    old, new, _ = set_data_value(path, "CERT_ISSUER", issuer, settings.rel(path))
    apply_local_edit(settings, path, old, new, what=f"platform certs: CERT_ISSUER={issuer}")


@task(
    doppler=False,
    optional_positional=["mode"],
    help={
        "mode": "the mode to select (a template in clusters/<cluster>/modes/); omit to list them",
        "dry_run": "print the diff without writing tenants.yaml",
    },
)
def mode(run, mode=None, dry_run=False):
    """Copy an app mode template into clusters/<cluster>/tenants.yaml; no MODE lists the modes."""
    from tasks.gitops import tree
    from tasks.gitops.edits import apply_local_edit
    from tasks.gitops.settings import GitOpsSettings
    from tasks.runtime.console import say

    settings = GitOpsSettings.load(run)
    available = tree.modes(settings)
    current = tree.current_mode(settings, available)
    if not mode:
        say(f"app modes (clusters/{settings.cluster}/modes/; * = current tenants.yaml):")
        for name in available:
            say(f"  {'*' if name == current else ' '} {name}")
        if current is None:
            say(f"  ({settings.rel(settings.tenants_file)} matches no mode template)")
        return
    if mode not in available:
        raise ConfigError(
            f"unknown app mode {mode!r}; valid modes: {', '.join(available)}",
            hint="modes are the templates in " + settings.rel(settings.modes_dir),
        )
    target = settings.tenants_file
    old = target.read_text(encoding="utf-8") if target.exists() else ""
    new = available[mode].read_text(encoding="utf-8")
    apply_local_edit(settings, target, old, new, what=f"app mode: {mode}")


# ---------------------------------------------------------------------- flux


@task(
    help={
        "force": "reconcile even when mode files have uncommitted or unpushed changes",
        "dry_run": "check and print the flux commands without running them",
        "profile": PROFILE_HELP,
    }
)
def reconcile(run, force=False, dry_run=False, profile=None):
    """Reconcile the Git source, then the stack; refuses while mode files are not pushed."""
    from tasks.gitops.flux_ops import reconcile_all

    reconcile_all(run, force=force)


@task(
    positional=["area"],
    help={
        "area": "the Flux Kustomization to diff (e.g. platform-services)",
        "profile": PROFILE_HELP,
    },
)
def diff(run, area, profile=None):
    """Show what Flux would change for AREA: `flux diff kustomization` against the local tree."""
    from tasks.gitops.flux_ops import diff_area

    diff_area(run, area)


@task(help={"profile": PROFILE_HELP})
def status(run, profile=None):
    """List Flux Kustomizations and HelmReleases: ready or not, with the reason."""
    from tasks.gitops.flux_ops import show_status

    show_status(run)


# ---------------------------------------------------------------------- k8s, bootstrap, render


@task(
    doppler=False,
    help={
        "k8s_version": "Kubernetes schema version to validate against (default: the newest bundled)"
    },
)
def validate(run, k8s_version=None):
    """Render every Flux Kustomization path with kubectl kustomize; validate it strictly, offline."""
    from tasks.adapters.kube import Kube
    from tasks.gitops.settings import GitOpsSettings
    from tasks.gitops.validate import validate_tree
    from tasks.runtime.console import say, table

    settings = GitOpsSettings.load(run)
    report = validate_tree(settings, Kube(run), k8s_version)
    table(["KUSTOMIZATION", "FOLDER", "OBJECTS"], [[o, f, n] for o, f, n in report.rendered])
    if report.not_schema_checked:
        say("not schema-checked (custom resources; no bundled schema):")
        for kind, where in sorted(report.not_schema_checked.items()):
            say(f"  {kind}  ({', '.join(sorted(where))})")
    if not report.ok:
        errors = list(dict.fromkeys(report.errors))
        raise ConfigError(f"{len(errors)} problem(s) in the GitOps tree:\n  " + "\n  ".join(errors))
    objects = sum(n for _, _, n in report.rendered)
    say(f"k8s.validate: ok ({objects} objects in {len(report.rendered)} folders)")


@task(
    help={
        "cluster": "the cluster: inventory/clusters/CLUSTER/cluster.yaml",
        "dry_run": "print what would be done without cloning or touching the cluster",
        "profile": PROFILE_HELP,
    }
)
def bootstrap(run, cluster, dry_run=False, profile=None):
    """Clone the GitOps repo at its ref, bootstrap Flux against it, write .work/CLUSTER/gitops-bootstrap.json."""
    from tasks.gitops.bootstrap import run_bootstrap

    run_bootstrap(run, cluster)


CONFIG_NAME = "homelab.yaml"
SAMPLE_NAME = "homelab.sample.yaml"


@task(doppler=False, help={"dry_run": "say what would be created without writing it"})
def init(run, dry_run=False):
    """Create the operator config (inventory/homelab.yaml) from the bundled sample; never overwrites."""
    from tasks.runtime.console import say
    from tasks.runtime.steps import Action, Plan

    project = run.project
    target, sample = project.inventory / CONFIG_NAME, project.inventory / SAMPLE_NAME
    if target.exists():
        say(f"{project.rel(target)} already exists: left as it is (edit it, then `inv configure`)")
        return
    if not sample.exists():
        raise ConfigError(f"{project.rel(sample)}: the bundled sample config is missing")
    text = sample.read_text(encoding="utf-8")

    def create(sc) -> None:
        sc.effects.write_file(target, text, mode=0o600, what=project.rel(target))

    summary = f"create {project.rel(target)} from {project.rel(sample)}"
    run.execute(Plan("init", "operator-config", [Action("create", summary, create)]))
    if not run.dry_run:
        say(f"created {project.rel(target)}; edit it, then run `inv configure`")


@task(doppler=False, help={"dry_run": "print what would change (diffs) without writing"})
def configure(run, dry_run=False):
    """Render templates/ from the operator config with Jinja2 in strict mode; writes atomically."""
    from tasks.gitops.render import render_all
    from tasks.gitops.settings import GitOpsSettings

    render_all(run, GitOpsSettings.load(run))


def collections() -> list[Collection]:
    """The GitOps collections, as `inv --list` shows them."""
    return [
        Collection("cluster", cluster_apply, cluster_delete),
        Collection("platform", certs),
        Collection("app", mode),
        Collection("flux", reconcile, diff, status),
        Collection("k8s", validate),
        Collection("gitops", bootstrap),
    ]


ROOT_TASKS = (init, configure)
