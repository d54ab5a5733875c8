"""The GitOps side's tasks: thin wrappers over this package's modules, one Collection each.

`cluster` (the cluster orchestrator), `platform` and `app` (mode targets: local Git edits),
`flux` (reconcile, diff, status), `k8s` (offline validation), `gitops` (the bootstrap and the
discovered layout), `secrets` (sops with the repo's .sops.yaml), and the root tasks `init` and
`configure`. Nothing heavy is imported here: `inv --list` loads this module.
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
        Gate("FEAT_RUNTIME_INPUTS", True),
        "flux-system/platform-runtime-inputs from env (stdin)",
    )
    stack = Step(
        "reconcile_flux_stack",
        s.reconcile_flux_stack,
        both,
        32,
        None,
        "each source, then every Kustomization in dependency order (delete: suspend the entry, "
        "remove the rest in reverse order)",
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
        summary="runtime-inputs secret (when the runner made it), the graph's namespaces",
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
        summary="no namespaces, Kustomizations or CRDs of the stack left",
    )
    return Orchestrator(
        "cluster",
        apply_steps=[access, inputs, flux, runtime, stack, state],
        delete_steps=[access, stack, certs, teardown, cilium, flux, clean],
        chain="cluster",
    )


def _runtime_inputs_in_plan(run, plan) -> None:
    """The runtime-inputs step runs only where the tree wants it: skipped, with the reason in the
    plan, when the tree defines the Secret itself (SOPS-encrypted, say) or has no such folder."""
    from tasks.gitops.settings import GitOpsSettings

    action = next((a for a in plan.actions if a.id == "sync_runtime_inputs"), None)
    if action is None:
        return
    if not action.included:
        plan.options.update(runtime_inputs=False, runtime_inputs_reason=action.reason)
        return
    wanted, why = GitOpsSettings.load(run).layout.runtime_inputs_wanted()
    plan.options.update(runtime_inputs=wanted, runtime_inputs_reason=why)
    if not wanted:
        action.included = False
        action.reason = f"apply; not needed: {why}"


@task(name="apply", area="cluster", help=ORCH_FLAGS)
def cluster_apply(run, profile=None, only=None, dry_run=False):
    """Install Flux, sync runtime inputs and reconcile the GitOps stack (seed apply steps)."""
    from tasks.runtime.steps import StepPlan

    run.extra["mode"] = "apply"
    plan = StepPlan.build(build_orchestrator(), "apply", run, only).to_plan()
    _runtime_inputs_in_plan(run, plan)
    run.execute(plan)


@task(
    name="delete",
    area="cluster",
    help={**ORCH_FLAGS, "yes": "do not ask for confirmation (required without a terminal)"},
)
def cluster_delete(run, profile=None, only=None, dry_run=False, yes=False):
    """Remove the stack, cert-manager leftovers and Flux, then verify the teardown (asks first)."""
    from tasks.gitops.settings import GitOpsSettings
    from tasks.runtime.errors import RefusedError
    from tasks.runtime.steps import StepPlan

    layout = GitOpsSettings.load(run).layout
    if layout.entry is None:
        listed = layout.candidates("entry")
        raise RefusedError(
            "no Flux entry found in the tree, so nothing tells which Kustomization to suspend "
            f"first: {layout.origin('entry')}" + (f": {', '.join(listed)}" if listed else ""),
            hint="set gitops.entry (or gitops.cluster) in inventory/runner.yaml; "
            "`inv gitops.layout` shows what was found",
        )
    run.extra["mode"] = "delete"
    plan = StepPlan.build(build_orchestrator(), "delete", run, only).to_plan()
    _runtime_inputs_in_plan(run, plan)
    run.execute(plan, yes=yes)


# ---------------------------------------------------------------------- mode targets


@task(
    doppler=False,
    area="gitops-tree",
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

    settings = GitOpsSettings.load(run)
    path = settings.platform_settings_file
    if prod == staging:
        from tasks.gitops.edits import read_data_value

        now = read_data_value(
            path, "CERT_ISSUER", settings.rel(path), name=settings["platform_settings_name"]
        )
        raise ConfigError(
            "give one of --prod or --staging"
            + (", not both" if prod else "")
            + f" (now CERT_ISSUER={now} in {settings.rel(path)})",
            hint=f"`inv platform.certs --prod` selects {CERT_ISSUERS['prod']}; "
            f"--staging selects {CERT_ISSUERS['staging']}",
        )
    issuer = CERT_ISSUERS["prod" if prod else "staging"]
    old, new, _, encoding = set_data_value(
        path, "CERT_ISSUER", issuer, settings.rel(path), name=settings["platform_settings_name"]
    )
    apply_local_edit(
        settings, path, old, new, what=f"platform certs: CERT_ISSUER={issuer}", encoding=encoding
    )


@task(
    doppler=False,
    area="gitops-tree",
    optional_positional=["mode"],
    help={
        "mode": "the mode to select: a template's file stem in the modes folder, or its short "
        "<env>-le-<issuer> form when only one template has it; omit to list them",
        "dry_run": "print the diff without writing tenants.yaml",
    },
)
def mode(run, mode=None, dry_run=False):
    """Copy an app mode template into the tenants file (clusters/<cluster>/tenants.yaml); no MODE lists the modes."""
    from tasks.gitops import tree
    from tasks.gitops.edits import apply_local_edit, read_text
    from tasks.gitops.settings import GitOpsSettings
    from tasks.runtime.console import say

    settings = GitOpsSettings.load(run)
    available = tree.modes(settings)
    target = settings.tenants_file
    if not mode:
        current = tree.current_mode(settings, available)
        say(f"app modes ({settings.rel(settings.modes_dir)}/; * = current {settings.rel(target)}):")
        for name in available:
            say(f"  {'*' if name == current else ' '} {name}")
        if current is None:
            say(f"  ({settings.rel(target)} matches no mode template)")
        return
    chosen = tree.resolve_mode(available, mode, settings.rel(settings.modes_dir))
    where = settings.rel(target)
    template, template_encoding = read_text(available[chosen], settings.rel(available[chosen]))
    _check_mode_file(template, settings.rel(available[chosen]))
    old, encoding = read_text(target, where) if target.exists() else ("", template_encoding)
    new = encoding.adapt(template)  # the tenants file keeps its own line endings and encoding
    apply_local_edit(settings, target, old, new, what=f"app mode: {chosen}", encoding=encoding)


def _check_mode_file(text: str, where: str) -> None:
    """A mode file is parsed and checked before it is copied: YAML whose documents are Kubernetes
    objects (kind, metadata.name), so a broken one never reaches the tenants file."""
    from tasks.runtime.config import parse_yaml_documents

    docs = parse_yaml_documents(text, where)
    objects = [d for d in docs if d is not None]
    if not objects:
        raise ConfigError(f"{where}: the mode file holds no object", hint="restore it from Git")
    for number, doc in enumerate(objects, 1):
        name = doc.get("metadata", {}).get("name") if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or not doc.get("kind") or not isinstance(name, str):
            raise ConfigError(
                f"{where}: document {number} is not a Kubernetes object (kind and metadata.name)",
                hint="fix the mode file (or restore it from Git); the tenants file was not touched",
            )


# ---------------------------------------------------------------------- flux


def _kustomization_names() -> list[str]:
    from tasks.gitops.flux_ops import kustomization_names

    return kustomization_names()


@task(
    area="flux",
    optional_positional=["kustomization"],
    choices={"kustomization": _kustomization_names},
    help={
        "kustomization": "only this Flux Kustomization (NAME or NAMESPACE/NAME); omit for the whole stack",
        "with_source": "with KUSTOMIZATION: reconcile its source first (flux --with-source)",
        "force": "reconcile even when mode files have uncommitted or unpushed changes",
        "dry_run": "check and print the flux commands without running them",
        "profile": PROFILE_HELP,
    },
)
def reconcile(run, kustomization=None, with_source=False, force=False, dry_run=False, profile=None):
    """Reconcile each source the stack uses, then every Kustomization in dependency order (or one KUSTOMIZATION); refuses while mode files are not pushed."""
    from tasks.gitops.flux_ops import reconcile as reconcile_stack

    reconcile_stack(run, force=force, kustomization=kustomization, with_source=with_source)


@task(
    positional=["kustomization"],
    choices={"kustomization": _kustomization_names},
    help={
        "kustomization": "the Flux Kustomization to diff (NAME or NAMESPACE/NAME, e.g. platform-services)",
        "profile": PROFILE_HELP,
    },
)
def diff(run, kustomization, profile=None):
    """Show what Flux would change for KUSTOMIZATION: `flux diff kustomization` against the local tree."""
    from tasks.gitops.flux_ops import diff as diff_one

    diff_one(run, kustomization)


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
    """Render the whole Kustomization graph as Flux does; validate every object strictly, offline, and every ${VAR}."""
    from tasks.adapters.kube import Kube
    from tasks.gitops.settings import GitOpsSettings
    from tasks.gitops.validate import validate_tree
    from tasks.runtime.console import say, table, warn

    settings = GitOpsSettings.load(run)
    report = validate_tree(settings, Kube(run), k8s_version)
    table(
        ["KUSTOMIZATION", "FOLDER", "OBJECTS", "NOTE"],
        [[o, f, n, note] for o, f, n, note in report.rendered],
    )
    if report.not_schema_checked:
        say("not schema-checked (custom resources; no bundled schema):")
        for kind, where in sorted(report.not_schema_checked.items()):
            say(f"  {kind}  ({', '.join(sorted(where))})")
    for line in dict.fromkeys(report.warnings):
        warn(line)
    if not report.ok:
        errors = list(dict.fromkeys(report.errors))
        raise ConfigError(f"{len(errors)} problem(s) in the GitOps tree:\n  " + "\n  ".join(errors))
    cached = f"; {report.cached} from the render cache" if report.cached else ""
    say(
        f"k8s.validate: ok ({report.objects} objects in {len(report.rendered)} Kustomizations"
        f"{cached})"
    )


def _cluster_names() -> list[str]:
    """The clusters with an inventory/clusters/NAME/cluster.yaml, for the error when CLUSTER is
    left out."""
    try:
        from tasks.runtime.project import Project

        folder = Project.current().inventory / "clusters"
        return sorted(p.parent.name for p in folder.glob("*/cluster.yaml")) or ["(none yet)"]
    except Exception:  # the names are a courtesy
        return []


@task(
    area=lambda kwargs: f"gitops-bootstrap-{kwargs['cluster']}",
    choices={"cluster": _cluster_names},
    help={
        "cluster": "the cluster: inventory/clusters/CLUSTER/cluster.yaml",
        "dry_run": "print what would be done without cloning or touching the cluster",
        "profile": PROFILE_HELP,
    },
)
def bootstrap(run, cluster, dry_run=False, profile=None):
    """Clone the GitOps repo at its ref, bootstrap Flux against it, write .work/CLUSTER/gitops-bootstrap.json."""
    from tasks.gitops.bootstrap import run_bootstrap

    run_bootstrap(run, cluster)


@task(
    doppler=False,
    help={
        "json": "print the layout as JSON",
        "graph": "also render the Kustomization graph and list each Kustomization, its source and dependsOn",
    },
)
def layout(run, json=False, graph=False):
    """Show the discovered GitOps layout (entry, settings ConfigMap, tenants, modes) and where each came from."""
    from tasks.gitops.settings import GitOpsSettings
    from tasks.runtime.console import say, table

    settings = GitOpsSettings.load(run)
    found = settings.layout
    rows = found.describe()
    listing = []
    if graph and found.entry is not None:
        from tasks.adapters.kube import Kube
        from tasks.gitops.graph import graph_for

        g = graph_for(settings, Kube(run))
        for node in g.order():
            listing.append(
                {
                    "kustomization": node.key,
                    "path": node.path,
                    "source": "/".join(node.source),
                    "depends_on": [f"{ns}/{n}" for ns, n in node.depends_on],
                    "applied_by": node.parent or "",
                    "declared_in": node.declared_in,
                    "objects": len(node.docs),
                }
            )
    if json:
        import json as json_module

        say(
            json_module.dumps(
                {
                    "pieces": [{"piece": p, "value": v, "from": w} for p, v, w in rows],
                    "graph": listing,
                },
                indent=2,
            )
        )
    else:
        table(["PIECE", "VALUE", "FROM"], [list(r) for r in rows])
        if listing:
            table(
                ["KUSTOMIZATION", "PATH", "SOURCE", "DEPENDS ON", "APPLIED BY"],
                [
                    [
                        n["kustomization"],
                        n["path"],
                        n["source"],
                        ", ".join(n["depends_on"]),
                        n["applied_by"],
                    ]
                    for n in listing
                ],
            )
    missing = found.missing()
    if missing:
        raise ConfigError(
            "not found: "
            + "; ".join(
                f"{piece.replace('_', ' ')} (set {settings.key(key)})" for piece, key in missing
            ),
            hint="paths are relative to gitops.root; without them the tasks that need them stop "
            "with the same message",
        )


SECRET_FILE_HELP = (
    "the SOPS file (a path from the current directory); .sops.yaml above it has the rules"
)


@task(
    name="edit",
    area="gitops-tree",
    positional=["file"],
    help={
        "file": SECRET_FILE_HELP,
        "dry_run": "check the file and the rules without decrypting or editing anything",
    },
)
def secrets_edit(run, file, dry_run=False):
    """Edit a SOPS-encrypted file: decrypt to a 0600 temp file, run $EDITOR, re-encrypt; the temp file is removed."""
    from tasks.gitops.sops import edit

    edit(run, file)


@task(
    name="encrypt",
    area="gitops-tree",
    positional=["file"],
    help={
        "file": SECRET_FILE_HELP,
        "dry_run": "check the file and the rules without encrypting it",
    },
)
def secrets_encrypt(run, file, dry_run=False):
    """Encrypt a plaintext file in place with sops and the repo's .sops.yaml (age recipients)."""
    from tasks.gitops.sops import encrypt

    encrypt(run, file)


CONFIG_NAME = "homelab.yaml"
SAMPLE_NAME = "homelab.sample.yaml"


@task(
    doppler=False,
    area="operator-config",
    help={"dry_run": "say what would be created without writing it"},
)
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


@task(
    doppler=False,
    area="gitops-tree",
    help={"dry_run": "print what would change (diffs) without writing"},
)
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
        Collection("gitops", bootstrap, layout),
        Collection("secrets", secrets_edit, secrets_encrypt),
    ]


ROOT_TASKS = (init, configure)
