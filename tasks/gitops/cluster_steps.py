"""The cluster orchestrator's steps (Orchestration API seed): what each does, apply and delete.

Each action reads facts through the kube adapter and changes the cluster only through it; the
step list itself (numbers, names, gates, order) lives in tasks/cluster.py.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
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


def _tools(sc: StepContext) -> tuple[GitOpsSettings, Kube]:
    from tasks.adapters.kube import Kube
    from tasks.gitops.settings import GitOpsSettings

    settings = GitOpsSettings.load(sc.run)
    return settings, Kube(sc.run)


def kubeconfig_paths(env) -> list[Path]:
    raw = env.get("KUBECONFIG") or ""
    paths = [Path(p).expanduser() for p in raw.split(os.pathsep) if p]
    return paths or [Path("~/.kube/config").expanduser()]


def verify_cluster_access(sc: StepContext) -> None:
    """Kubeconfig present, API server reachable, and this identity may manage the whole cluster."""
    import json

    from tasks.gitops.facts import server_version

    _, kube = _tools(sc)
    paths = kubeconfig_paths(sc.env)
    if not any(p.is_file() for p in paths):
        raise ConfigError(
            "no kubeconfig: " + ", ".join(str(p) for p in paths) + " not found",
            hint="set KUBECONFIG (env file, Doppler or shell) to the cluster's kubeconfig",
        )
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
    sc.note(f"kubeconfig ok, API server {version}, cluster-admin: yes")


def runtime_inputs(sc: StepContext, settings: GitOpsSettings) -> dict[str, str]:
    """The runtime-input variables and their values; every missing one is named at once."""
    from tasks.gitops.tree import runtime_input_names
    from tasks.runtime.secrets import MASKER

    names = runtime_input_names(settings)
    missing = sc.env.missing(names)
    if missing:
        raise ConfigError(
            f"missing runtime-input variable(s): {', '.join(missing)}",
            hint="put them in Doppler or inventory/profiles/secrets.env (never in Git); "
            f"they are the ${{VARS}} used under {settings.rel(settings.runtime_inputs_dir)}",
        )
    values = {n: sc.env.merged[n] for n in names}
    MASKER.add_all(values.values())  # all runtime inputs are secrets, whatever their names say
    return values


def verify_config_inputs(sc: StepContext) -> None:
    """Required runtime-input variables present; the GitOps tree renders and validates."""
    from tasks.gitops.validate import validate_tree

    settings, kube = _tools(sc)
    values = runtime_inputs(sc, settings)
    report = validate_tree(settings, kube)
    if not report.ok:
        errors = list(dict.fromkeys(report.errors))
        raise ConfigError(
            f"the GitOps tree is not valid ({len(errors)} problem(s)):\n  " + "\n  ".join(errors),
            hint="`inv k8s.validate` shows the full report",
        )
    objects = sum(n for _, _, n in report.rendered)
    sc.note(
        f"{len(values)} runtime inputs present; tree valid ({objects} objects in {len(report.rendered)} folders)"
    )


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


def install_flux(sc: StepContext) -> None:
    """apply: Flux components, the Git credentials (when given) and the cluster's sync; delete: uninstall."""
    from tasks.gitops.bootstrap import credentials as repo_credentials

    settings, kube = _tools(sc)
    ns = settings["flux_namespace"]
    if sc.deleting:
        kube.flux("uninstall", "--silent", f"--namespace={ns}", mutating=True)
        sc.note("Flux uninstalled")
        return
    kube.flux("check", "--pre")
    kube.flux("install", f"--namespace={ns}", mutating=True)
    credentials = repo_credentials(sc.env)
    if credentials:
        kube.apply_manifest(
            secret_manifest(
                ns, "flux-system", {"username": credentials[0], "password": credentials[1]}
            )
        )
        sc.note(f"Git credentials synced to {ns}/flux-system (stdin)")
    else:
        sc.note(
            "no GITOPS_REPO_PASSWORD/GITOPS_REPO_PAT: the GitRepository must be public or its secret present"
        )
    kube.kubectl("apply", "-k", str(settings.cluster_dir / "flux-system"), mutating=True)
    sc.note(
        f"Flux installed; sync from {settings.rel(settings.cluster_dir / 'flux-system')} applied"
    )


def sync_runtime_inputs(sc: StepContext) -> None:
    """Build flux-system/platform-runtime-inputs from the runtime-input variables only (via stdin)."""
    settings, kube = _tools(sc)
    values = runtime_inputs(sc, settings)
    name = settings["runtime_inputs_secret"]
    kube.apply_manifest(secret_manifest(settings["flux_namespace"], name, values))
    sc.note(f"{settings['flux_namespace']}/{name}: {len(values)} keys ({', '.join(values)})")


def reconcile_flux_stack(sc: StepContext) -> None:
    """apply: the Git source, then each Kustomization in dependency order; delete: remove the stack."""
    from tasks.gitops.tree import flux_kustomizations, stack_order

    settings, kube = _tools(sc)
    order = stack_order(settings, flux_kustomizations(settings, kube))
    if sc.deleting:
        delete_stack(settings, kube, order)
        sc.note(f"removed {len(order) - 1} Flux Kustomizations (reverse dependency order)")
        return
    reconcile_stack(settings, kube, order)
    sc.note("reconciled: " + " -> ".join(k.name for k in order))


def reconcile_commands(settings, order) -> list[list[str]]:
    """The flux commands that reconcile the stack: the Git source, then each Kustomization."""
    source = [
        "reconcile",
        "source",
        "git",
        "flux-system",
        f"--namespace={settings['flux_namespace']}",
    ]
    return [source] + [
        ["reconcile", "kustomization", k.name, f"--namespace={k.namespace}"] for k in order
    ]


def reconcile_stack(settings, kube, order) -> None:
    for args in reconcile_commands(settings, order):
        kube.flux(*args, mutating=True)


def delete_stack(settings, kube, order) -> None:
    """Suspend the entry Kustomization (or it would re-create the rest), then delete the others in
    reverse dependency order; each prunes what it applied."""
    entry, rest = order[0], order[1:]
    kube.flux(
        "suspend",
        "kustomization",
        entry.name,
        f"--namespace={entry.namespace}",
        mutating=True,
        check=False,
    )
    for k in reversed(rest):
        kube.flux(
            "delete",
            "kustomization",
            k.name,
            f"--namespace={k.namespace}",
            "--silent",
            mutating=True,
        )


def verify_platform_state(sc: StepContext) -> None:
    """Every Flux Kustomization of the tree exists and is Ready."""
    from tasks.gitops.facts import ready_states
    from tasks.gitops.tree import flux_kustomizations

    settings, kube = _tools(sc)
    wanted = flux_kustomizations(settings, kube)
    states = {
        (s.namespace, s.name): s
        for s in ready_states(
            kube.get_json("kustomizations.kustomize.toolkit.fluxcd.io", "--all-namespaces")
        )
    }
    problems = []
    for k in wanted:
        state = states.get((k.namespace, k.name))
        if state is None:
            problems.append(f"{k.namespace}/{k.name}: not found in the cluster")
        elif not state.ready:
            problems.append(f"{state.ref}: not ready ({state.reason}: {state.message})")
    if problems:
        raise ExternalError(
            "platform not converged:\n  " + "\n  ".join(problems),
            hint="`inv flux.status` shows every object",
        )
    sc.note(f"all {len(wanted)} Flux Kustomizations ready")


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
    """The runtime-inputs secret and every namespace the tree declares."""
    from tasks.gitops.tree import namespaces, render_stack

    settings, kube = _tools(sc)
    ns = settings["flux_namespace"]
    kube.kubectl(
        "delete",
        "secret",
        settings["runtime_inputs_secret"],
        f"--namespace={ns}",
        "--ignore-not-found",
        mutating=True,
    )
    rendered, _ = render_stack(settings, kube)
    doomed = [
        n for n in namespaces(rendered) if n not in (ns, "default", "kube-system", "kube-public")
    ]
    if doomed:
        kube.kubectl(
            "delete", "namespace", *doomed, "--ignore-not-found", "--timeout=5m", mutating=True
        )
    sc.note(
        f"removed {settings['runtime_inputs_secret']} and {len(doomed)} namespaces: {', '.join(doomed)}"
    )


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
    """No namespace of the tree, no Flux or cert-manager (or Cilium, when gated) CRD is left."""
    from tasks.gitops.facts import names
    from tasks.gitops.tree import namespaces, render_stack

    settings, kube = _tools(sc)
    rendered, _ = render_stack(settings, kube)
    ours = set(namespaces(rendered)) | {settings["flux_namespace"], "cert-manager"}
    left_ns = sorted(ours & set(names(kube.get_json("namespaces"))))
    suffixes = (FLUX_CRD_SUFFIX, *CERT_MANAGER_CRD_SUFFIXES) + (
        (CILIUM_CRD_SUFFIX,) if sc.run.settings.flag("FEAT_CILIUM") else ()
    )
    left_crds = [
        n for n in names(kube.get_json("customresourcedefinitions")) if n.endswith(suffixes)
    ]
    if left_ns or left_crds:
        raise ExternalError(
            "teardown left resources behind:"
            + (f"\n  namespaces: {', '.join(left_ns)}" if left_ns else "")
            + (f"\n  CRDs: {', '.join(left_crds)}" if left_crds else ""),
            hint="namespaces may still be terminating: re-run `inv cluster.delete --only 98 --yes` in a minute",
        )
    sc.note("teardown clean: no namespaces or CRDs of the stack left")
