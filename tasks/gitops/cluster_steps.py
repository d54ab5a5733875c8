"""The cluster orchestrator's steps (Orchestration API seed): what each does, apply and delete.

Each action reads facts through the kube adapter and changes the cluster only through it; the
step list itself (numbers, names, gates, order) lives in tasks/gitops/collections.py.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from tasks.runtime.errors import ConfigError, ExternalError, RefusedError

if TYPE_CHECKING:
    from tasks.adapters.kube import Kube
    from tasks.gitops.settings import GitOpsSettings
    from tasks.runtime.steps import StepContext

# CRD groups a clean teardown leaves nothing of.
FLUX_CRD_SUFFIX = ".toolkit.fluxcd.io"
CERT_MANAGER_CRD_SUFFIXES = (".cert-manager.io",)
CILIUM_CRD_SUFFIX = ".cilium.io"
# Namespaces every cluster has: a tree may declare them, a teardown never deletes them.
KEPT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _tools(sc: StepContext) -> tuple[GitOpsSettings, Kube]:
    from tasks.gitops.settings import GitOpsSettings, kube_for

    settings = GitOpsSettings.load(sc.run)
    return settings, kube_for(sc.run)  # KUBECONFIG, else the k3s hand-off (settings.py)


def verify_cluster_access(sc: StepContext) -> None:
    """Kubeconfig present, API server reachable, and this identity may manage the whole cluster."""
    import json

    from tasks.gitops.facts import server_version
    from tasks.gitops.settings import require_kubeconfig

    _, kube = _tools(sc)
    paths, why = require_kubeconfig(sc.run)
    result = kube.kubectl("version", "-o", "json", "--request-timeout=10s", check=False)
    if result.failed:
        detail = (result.stderr or "").strip().splitlines()
        raise ExternalError(
            "the Kubernetes API is not reachable: "
            + (detail[-1] if detail else f"exit {result.exited}"),
            hint="check the cluster is up and KUBECONFIG points at it",
        )
    try:
        version = server_version(json.loads(result.stdout))
    except ValueError:
        version = "unknown"
    allowed = kube.kubectl("auth", "can-i", "*", "*", "--all-namespaces", check=False)
    if (allowed.stdout or "").strip() != "yes":
        raise RefusedError(
            "the kubeconfig's identity may not manage every resource (kubectl auth can-i '*' '*' -A: "
            f"{(allowed.stdout or allowed.stderr or '').strip() or 'no'})",
            hint="use a cluster-admin kubeconfig for the cluster orchestrator",
        )
    shown = ", ".join(sc.run.project.rel(p) for p in paths)
    sc.note(f"kubeconfig {shown} ({why})")
    sc.note(f"API server {version} reachable, cluster-admin: yes")


def runtime_inputs_wanted(sc: StepContext, settings: GitOpsSettings) -> tuple[bool, str]:
    """Whether the runner builds the runtime-inputs Secret (the plan decided it; else the tree)."""
    if "runtime_inputs" in sc.options:
        return bool(sc.options["runtime_inputs"]), str(sc.options.get("runtime_inputs_reason", ""))
    if not sc.run.settings.flag("FEAT_RUNTIME_INPUTS", True):
        return False, "gated off: FEAT_RUNTIME_INPUTS=false"
    return settings.layout.runtime_inputs_wanted()


def runtime_inputs(sc: StepContext, settings: GitOpsSettings) -> dict[str, str]:
    """The runtime-input variables and their values; every missing one is named at once."""
    from tasks.gitops.tree import runtime_input_names
    from tasks.runtime.secrets import MASKER

    names = runtime_input_names(settings)
    missing = sc.env.missing(names)
    if missing:
        folder = settings.runtime_inputs_dir
        raise ConfigError(
            f"missing runtime-input variable(s): {', '.join(missing)}",
            hint="put them in Doppler or inventory/profiles/secrets.env (never in Git); "
            f"they are the ${{VARS}} used under {settings.rel(folder) if folder else '?'}",
        )
    values = {n: sc.env.merged[n] for n in names}
    MASKER.add_all(values.values())  # all runtime inputs are secrets, whatever their names say
    return values


def _graph(sc: StepContext):
    from tasks.gitops.graph import graph_for

    settings, kube = _tools(sc)
    graph = graph_for(settings, kube)
    return settings, kube, graph


def verify_config_inputs(sc: StepContext) -> None:
    """Required runtime-input variables present; the GitOps tree renders and validates."""
    from tasks.gitops.validate import validate_graph

    settings, _kube, graph = _graph(sc)
    wanted, why = runtime_inputs_wanted(sc, settings)
    values = runtime_inputs(sc, settings) if wanted else {}
    report = validate_graph(settings, graph)
    if not report.ok:
        errors = list(dict.fromkeys(report.errors))
        raise ConfigError(
            f"the GitOps tree is not valid ({len(errors)} problem(s)):\n  " + "\n  ".join(errors),
            hint="`inv k8s.validate` shows the full report",
        )
    inputs = f"{len(values)} runtime inputs present" if wanted else f"runtime inputs: {why}"
    sc.note(f"{inputs}; tree valid ({report.objects} objects in {len(graph.nodes)} Kustomizations)")


def secret_manifest(namespace: str, name: str, data: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "homelab-runner"},
        },
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


def ref_flag(ref: dict) -> str:
    """A GitRepository/FluxInstance ref as `flux create source git`'s flag."""
    if ref.get("tag"):
        return f"--tag={ref['tag']}"
    if ref.get("semver"):
        return f"--tag-semver={ref['semver']}"
    if ref.get("commit"):
        return f"--commit={ref['commit']}"
    raw = str(ref.get("branch") or ref.get("ref") or "main")
    if raw.startswith("refs/tags/"):
        return f"--tag={raw[len('refs/tags/') :]}"
    return f"--branch={raw.removeprefix('refs/heads/')}"


def apply_entry(rel, kube: Kube, entry, sc_note) -> None:
    """The repo's own sync: its flux-system/ folder (`kubectl apply -k`), the file holding the
    pair, or for a FluxInstance the source and Kustomization the operator would create."""
    if entry.sync_dir is not None:
        kube.kubectl("apply", "-k", str(entry.sync_dir), mutating=True)
        sc_note(f"sync from {rel(entry.sync_dir)} applied")
    elif entry.layout == "FluxInstance":
        kube.flux(
            "create",
            "source",
            "git",
            entry.source_name,
            f"--url={entry.source_url}",
            ref_flag(entry.source_ref),
            f"--namespace={entry.source_namespace}",
            *([f"--secret-ref={entry.secret_ref}"] if entry.secret_ref else []),
            mutating=True,
        )
        kube.flux(
            "create",
            "kustomization",
            entry.name,
            f"--source={entry.source_kind}/{entry.source_name}",
            f"--path={entry.path}",
            "--prune=true",
            f"--namespace={entry.namespace}",
            mutating=True,
        )
        sc_note(f"FluxInstance sync ({rel(entry.file)}): source and Kustomization created")
    else:
        kube.kubectl("apply", "-f", str(entry.file), mutating=True)
        sc_note(f"sync from {rel(entry.file)} applied")


def install_flux(sc: StepContext) -> None:
    """apply: Flux components, the Git credentials (when given) and the cluster's sync; delete: uninstall."""
    from tasks.gitops.bootstrap import credentials as repo_credentials

    settings, kube = _tools(sc)
    ns = settings["flux_namespace"]
    if sc.deleting:
        kube.flux("uninstall", "--silent", f"--namespace={ns}", mutating=True)
        sc.note("Flux uninstalled")
        return
    entry = settings.entry
    kube.flux("check", "--pre")
    components = entry.sync_dir / "gotk-components.yaml" if entry.sync_dir else None
    if components is not None and components.is_file():
        kube.kubectl("apply", "-f", str(components), mutating=True)
    else:
        kube.flux("install", f"--namespace={ns}", mutating=True)
    credentials = repo_credentials(sc.env)
    secret = entry.secret_ref or "flux-system"
    if credentials:
        kube.apply_manifest(
            secret_manifest(
                entry.source_namespace,
                secret,
                {"username": credentials[0], "password": credentials[1]},
            )
        )
        sc.note(f"Git credentials synced to {entry.source_namespace}/{secret} (stdin)")
    else:
        sc.note(
            "no GITOPS_REPO_PASSWORD/GITOPS_REPO_PAT: the GitRepository must be public or its secret present"
        )
    apply_entry(settings.rel, kube, entry, sc.note)
    sc.note(f"Flux installed; entry {entry.key} ({entry.layout})")


def sync_runtime_inputs(sc: StepContext) -> None:
    """Build flux-system/platform-runtime-inputs from the runtime-input variables only (via stdin)."""
    settings, kube = _tools(sc)
    wanted, why = runtime_inputs_wanted(sc, settings)
    if not wanted:
        sc.note(f"skipped: {why}")
        return
    values = runtime_inputs(sc, settings)
    name = settings["runtime_inputs_secret"]
    kube.apply_manifest(secret_manifest(settings["flux_namespace"], name, values))
    sc.note(f"{settings['flux_namespace']}/{name}: {len(values)} keys ({', '.join(values)})")


def reconcile_flux_stack(sc: StepContext) -> None:
    """apply: each source, then every Kustomization in dependency order; delete: remove the stack."""
    from tasks.gitops.flux_ops import reconcile_commands

    settings, kube, graph = _graph(sc)
    graph.check()
    if sc.deleting:
        delete_stack(settings, kube, graph, sc.note)
        return
    for args in reconcile_commands(graph):
        kube.flux(*args, mutating=True)
    sc.note("reconciled: " + " -> ".join(n.name for n in graph.order()))


def live_kustomizations(kube: Kube) -> set[tuple[str, str]]:
    from tasks.gitops.facts import ready_states

    listing = kube.get_json("kustomizations.kustomize.toolkit.fluxcd.io", "--all-namespaces")
    return {(s.namespace, s.name) for s in ready_states(listing)}


def delete_stack(settings: GitOpsSettings, kube: Kube, graph, note) -> None:
    """Suspend the entry first (or it would re-create the rest), then delete every other
    Kustomization of the graph, the stack's own ones included, in reverse dependency order (each
    prunes what it applied); then check that none of them is left."""
    entry = graph.entry
    live = live_kustomizations(kube)
    if (entry.namespace, entry.name) in live:
        kube.flux(
            "suspend", "kustomization", entry.name, f"--namespace={entry.namespace}", mutating=True
        )
    else:
        note(f"entry {entry.key} is not in the cluster: nothing to suspend")
    doomed = [n for n in reversed(graph.order()) if n is not entry]
    deleted = 0
    for node in doomed:
        if (node.namespace, node.name) not in live:
            continue
        kube.flux(
            "delete",
            "kustomization",
            node.name,
            f"--namespace={node.namespace}",
            "--silent",
            mutating=True,
        )
        deleted += 1
    left = live_kustomizations(kube) & {(n.namespace, n.name) for n in doomed}
    if left:
        raise ExternalError(
            "Kustomizations of the graph are still there after deleting them: "
            + ", ".join(f"{ns}/{name}" for ns, name in sorted(left)),
            hint="`inv flux.status`; a finalizer may be waiting on pruned objects",
        )
    note(
        f"entry {entry.key} suspended; {deleted} of {len(doomed)} Kustomizations deleted "
        "(reverse dependency order); none left"
    )


def verify_platform_state(sc: StepContext) -> None:
    """Every Flux Kustomization of the graph exists and is Ready."""
    from tasks.gitops.facts import ready_states

    _settings, kube, graph = _graph(sc)
    states = {
        (s.namespace, s.name): s
        for s in ready_states(
            kube.get_json("kustomizations.kustomize.toolkit.fluxcd.io", "--all-namespaces")
        )
    }
    problems = []
    for node in graph.order():
        state = states.get((node.namespace, node.name))
        if state is None:
            problems.append(f"{node.namespace}/{node.name}: not found in the cluster")
        elif not state.ready:
            problems.append(f"{state.ref}: not ready ({state.reason}: {state.message})")
    if problems:
        raise ExternalError(
            "platform not converged:\n  " + "\n  ".join(problems),
            hint="`inv flux.status` shows every object",
        )
    sc.note(f"all {len(graph.nodes)} Flux Kustomizations ready")


def delete_crds(kube: Kube, suffixes: tuple[str, ...]) -> list[str]:
    """Delete the CRDs whose names end in one of `suffixes`; return their names."""
    from tasks.gitops.facts import names

    crds = [n for n in names(kube.get_json("customresourcedefinitions")) if n.endswith(suffixes)]
    if crds:
        kube.kubectl(
            "delete", "customresourcedefinition", *crds, "--ignore-not-found", mutating=True
        )
    return crds


def manage_cert_manager_cleanup(sc: StepContext) -> None:
    """What cert-manager leaves behind its HelmRelease: CRDs (kept by the chart), namespace, leases."""
    _, kube = _tools(sc)
    crds = delete_crds(kube, CERT_MANAGER_CRD_SUFFIXES)
    kube.kubectl("delete", "namespace", "cert-manager", "--ignore-not-found", mutating=True)
    kube.kubectl(
        "delete",
        "lease",
        "--namespace=kube-system",
        "cert-manager-controller",
        "cert-manager-cainjector-leader-election",
        "--ignore-not-found",
        mutating=True,
    )
    sc.note(f"cert-manager: {len(crds)} CRDs, namespace and leader leases removed")


def execute_teardown(sc: StepContext) -> None:
    """The runtime-inputs secret (when the runner made it) and every namespace the graph declares."""
    settings, kube, graph = _graph(sc)
    ns = settings["flux_namespace"]
    removed = []
    if runtime_inputs_wanted(sc, settings)[0]:
        kube.kubectl(
            "delete",
            "secret",
            settings["runtime_inputs_secret"],
            f"--namespace={ns}",
            "--ignore-not-found",
            mutating=True,
        )
        removed.append(settings["runtime_inputs_secret"])
    doomed = [n for n in graph.namespaces() if n not in (ns, *KEPT_NAMESPACES)]
    if doomed:
        kube.kubectl(
            "delete", "namespace", *doomed, "--ignore-not-found", "--timeout=5m", mutating=True
        )
    removed.append(f"{len(doomed)} namespaces: {', '.join(doomed)}")
    sc.note("removed " + " and ".join(removed))


def manage_cilium_lifecycle(sc: StepContext) -> None:
    """Cilium's agent, operator and CRDs (only when FEAT_CILIUM=true)."""
    _, kube = _tools(sc)
    kube.kubectl(
        "delete",
        "daemonset/cilium",
        "deployment/cilium-operator",
        "--namespace=kube-system",
        "--ignore-not-found",
        mutating=True,
    )
    crds = delete_crds(kube, (CILIUM_CRD_SUFFIX,))
    sc.note(f"Cilium agent, operator and {len(crds)} CRDs removed")


def verify_teardown_clean(sc: StepContext) -> None:
    """No namespace or Kustomization of the graph, no Flux or cert-manager (or Cilium, when
    gated) CRD is left."""
    from tasks.gitops.facts import names

    settings, kube, graph = _graph(sc)
    ours = (set(graph.namespaces()) - set(KEPT_NAMESPACES)) | {
        settings["flux_namespace"],
        "cert-manager",
    }
    left_ns = sorted(ours & set(names(kube.get_json("namespaces"))))
    suffixes = (FLUX_CRD_SUFFIX, *CERT_MANAGER_CRD_SUFFIXES) + (
        (CILIUM_CRD_SUFFIX,) if sc.run.settings.flag("FEAT_CILIUM") else ()
    )
    crds = names(kube.get_json("customresourcedefinitions"))
    left_crds = [n for n in crds if n.endswith(suffixes)]
    left_ks: list[str] = []
    if any(c.startswith("kustomizations.kustomize.toolkit.fluxcd.io") for c in crds):
        left_ks = sorted(
            f"{ns}/{name}"
            for ns, name in live_kustomizations(kube)
            if f"{ns}/{name}" in graph.nodes
        )
    if left_ns or left_crds or left_ks:
        raise ExternalError(
            "teardown left resources behind:"
            + (f"\n  namespaces: {', '.join(left_ns)}" if left_ns else "")
            + (f"\n  CRDs: {', '.join(left_crds)}" if left_crds else "")
            + (f"\n  Kustomizations: {', '.join(left_ks)}" if left_ks else ""),
            hint="namespaces may still be terminating: re-run `inv cluster.delete --only 98 --yes` in a minute",
        )
    sc.note("teardown clean: no namespaces, Kustomizations or CRDs of the stack left")
