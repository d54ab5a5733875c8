"""GitOps bootstrap (Clusters-GitOps Handoff seed): cluster.yaml in, a clone, Flux, a trace file out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tasks.runtime.errors import ConfigError, ExternalError, RefusedError
from tasks.runtime.secrets import mask_data
from tasks.runtime.trace import utc_now

if TYPE_CHECKING:
    from tasks.adapters.git import Git
    from tasks.adapters.kube import Kube
    from tasks.gitops.layout import Entry
    from tasks.runtime.project import Project
    from tasks.runtime.run import Run


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    env: str
    base_domain: str  # apps.<name>.<dns.base_domain>
    repo_url: str
    repo_ref: str
    path: str

    @classmethod
    def load(cls, project: Project, name: str) -> ClusterSpec:
        from tasks.runtime.config import load_yaml_file

        folder = project.inventory / "clusters"
        path = folder / name / "cluster.yaml"
        if not path.is_file():
            known = sorted(p.parent.name for p in folder.glob("*/cluster.yaml"))
            raise ConfigError(
                f"unknown cluster {name!r}: {project.rel(path)} not found; clusters: {', '.join(known) or 'none'}"
            )
        schema = json.loads((folder / "cluster.schema.json").read_text(encoding="utf-8"))
        data = load_yaml_file(path, schema, what="cluster file")
        if data["name"] != name:
            raise ConfigError(
                f"{project.rel(path)}: name is {data['name']!r}, but the folder is {name!r}"
            )
        gitops = data["gitops"]
        url = urlsplit(gitops["repo_url"])
        # `https://TOKEN@host/...` puts a token where a user name goes; ssh's `git@` is no secret.
        if url.password or (url.scheme in ("http", "https") and url.username):
            raise ConfigError(
                f"{project.rel(path)}: gitops.repo_url carries a password or token",
                hint="remove it; put GITOPS_REPO_USERNAME/GITOPS_REPO_PASSWORD (or GITOPS_REPO_PAT) in Doppler or secrets.env",
            )
        return cls(
            name=name,
            env=gitops["env"],
            base_domain=f"apps.{name}.{data['dns']['base_domain']}",
            repo_url=gitops["repo_url"],
            repo_ref=gitops["repo_ref"],
            path=gitops.get("path") or f"clusters/{name}",
        )


@dataclass
class Outcomes:
    """The bootstrap trace file's step list (the seed's contract), filled as the steps run."""

    steps: list[dict[str, str]] = field(default_factory=list)

    def add(self, name: str, outcome: str, detail: str = "") -> None:
        from tasks.runtime.console import say

        self.steps.append({"step": name, "outcome": outcome, "detail": detail})
        say(f"  {name}: {outcome}" + (f" ({detail})" if detail else ""))


def credentials(env) -> tuple[str, str] | None:
    """GITOPS_REPO_USERNAME + GITOPS_REPO_PASSWORD, or GITOPS_REPO_PAT; None: git's credential helper."""
    from tasks.runtime.secrets import MASKER

    secret = env.get("GITOPS_REPO_PASSWORD") or env.get("GITOPS_REPO_PAT")
    if not secret:
        return None
    if env.get("GITOPS_REPO_PASSWORD") and not env.get("GITOPS_REPO_USERNAME"):
        raise ConfigError("GITOPS_REPO_PASSWORD is set but GITOPS_REPO_USERNAME is not")
    MASKER.add(secret)
    return env.get("GITOPS_REPO_USERNAME") or "git", secret


def sync_clone(
    git: Git, spec: ClusterSpec, dest: Path, creds: tuple[str, str] | None, out: Outcomes
) -> tuple[str, str]:
    """Clone or update `dest` at the ref; returns (ref kind, commit sha)."""
    if dest.exists():
        if git.toplevel(dest) != dest.resolve():
            raise RefusedError(
                f"{dest} exists but is not a Git clone",
                hint="remove it (or `inv clean`) and re-run",
            )
        dirty = git.changed_paths(dest, [dest])
        if dirty:
            raise RefusedError(
                f"the GitOps clone {dest} has local changes: {', '.join(dirty[:5])}",
                hint="commit them upstream or discard them; bootstrap never overwrites local work",
            )
        current = git.remote_url(dest)
        if current != spec.repo_url:
            verb = "add" if current is None else "set-url"
            git.run(dest, "remote", verb, "origin", spec.repo_url, mutates=True)
            out.add("repoint_origin", "changed", f"origin was {current}")
        action = "updated"
    else:
        git.clone(spec.repo_url, dest, creds)
        action = "cloned"
    git.run(
        dest,
        "fetch",
        "--quiet",
        "--tags",
        "--prune",
        "--force",
        "origin",
        mutates=True,
        credentials=creds,
    )
    kind = git.ref_kind(dest, spec.repo_ref)
    target = {
        "branch": f"refs/remotes/origin/{spec.repo_ref}",
        "tag": f"refs/tags/{spec.repo_ref}",
    }.get(kind, spec.repo_ref)
    git.run(dest, "checkout", "--quiet", "--detach", target, mutates=True)
    sha = git.head_sha(dest)
    out.add("clone", action, f"{kind} {spec.repo_ref} at {sha[:12]}")
    return kind, sha


def configure_vault(run: Run, kube: Kube, out: Outcomes) -> None:
    """External Vault's Kubernetes auth for this cluster (VAULT_ADDR + VAULT_TOKEN set)."""
    import base64

    from tasks.adapters.vault import configure_kubernetes_auth

    env = run.env
    addr, token = env.get("VAULT_ADDR") or "", env.get("VAULT_TOKEN") or ""
    view = json.loads(kube.kubectl("config", "view", "--minify", "--raw", "-o", "json").stdout)
    cluster = (view.get("clusters") or [{}])[0].get("cluster") or {}
    ca = (
        base64.b64decode(cluster.get("certificate-authority-data", "")).decode()
        if cluster.get("certificate-authority-data")
        else ""
    )
    mount = env.get("VAULT_K8S_AUTH_MOUNT") or "kubernetes"
    configure_kubernetes_auth(
        run.effects,
        addr=addr,
        token=token,
        mount=mount,
        kubernetes_host=str(cluster.get("server") or ""),
        kubernetes_ca=ca,
        verify=env.get("VAULT_CACERT") or True,
    )
    out.add(
        "vault_kubernetes_auth", "configured", f"auth/{mount}/config -> {cluster.get('server')}"
    )


def flux_tree(run: Run, kube: Kube, spec: ClusterSpec, clone: Path, where: str) -> Entry:
    """The entry Flux starts from at gitops.path: the repo's own (flux-system/gotk-sync.yaml or a
    pair applying the folder), else the one bootstrap creates. Refused (exit 2) when the path is
    missing, is a Helm chart, or does not render as a Flux tree; nothing has touched the cluster."""
    from tasks.gitops.graph import render_entry
    from tasks.gitops.layout import Entry
    from tasks.gitops.settings import GitOpsSettings

    folder = (clone / spec.path).resolve()
    if not folder.is_dir():
        raise ConfigError(
            f"gitops.path {spec.path!r} does not exist in {spec.repo_url} at {spec.repo_ref}"
        )
    if (folder / "Chart.yaml").is_file():
        raise ConfigError(
            f"{where}: gitops.path {spec.path!r} is a Helm chart (it has a Chart.yaml), not a "
            "Flux tree",
            hint="point gitops.path at the cluster's Flux folder (the one holding flux-system/ "
            "or its Kustomizations)",
        )
    settings = GitOpsSettings.for_tree(run, clone, where=where)
    own = settings.layout.entries_for(folder)
    if len(own) > 1:
        raise ConfigError(
            f"gitops.path {spec.path!r}: several Flux entries apply it: "
            + ", ".join(f"{e.key} ({settings.rel(e.file)})" for e in own)
        )
    flux_path = "./" + spec.path.strip("/")
    if own and own[0].layout == "FluxInstance":
        import dataclasses

        # Bootstrap creates what the operator would, from cluster.yaml's repository.
        own = [dataclasses.replace(own[0], source_kind="GitRepository", source_url=spec.repo_url)]
    entry = (
        own[0]
        if own
        else Entry(
            layout="created by gitops.bootstrap",
            file=folder,
            name="flux-system",
            namespace="flux-system",
            path=flux_path,
            source_kind="GitRepository",
            source_name="flux-system",
            source_namespace="flux-system",
            source_url=spec.repo_url,
            doc={
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": "flux-system", "namespace": "flux-system"},
                "spec": {
                    "path": flux_path,
                    "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
                },
            },
        )
    )
    try:
        node = render_entry(settings, kube, entry)
    except ConfigError as exc:
        raise ConfigError(
            f"{where}: gitops.path {spec.path!r} does not render as a Flux tree: {exc.message}"
        ) from None
    if not any("toolkit.fluxcd.io/" in str(d.get("apiVersion", "")) for d in node.docs):
        raise ConfigError(
            f"{where}: gitops.path {spec.path!r} is not a Flux tree: it renders "
            f"{len(node.docs)} object(s) and no Flux Kustomization, source or HelmRelease",
            hint="point gitops.path at the cluster's Flux folder",
        )
    return entry


def bootstrap_flux(
    kube: Kube, spec: ClusterSpec, kind: str, creds, entry: Entry, out: Outcomes, project: Project
) -> None:
    """Flux, the credentials, cluster-settings, then the repo's own sync (its flux-system/) or,
    when it has none, a source and an entry Kustomization for gitops.path."""
    from tasks.gitops.cluster_steps import apply_entry, secret_manifest

    # The repo's own sync objects are applied as they are; a FluxInstance's (the operator is not
    # installed here) and a missing one are created, named as the instance or flux bootstrap do.
    own = entry.layout in ("flux bootstrap", "GitRepository + Kustomization")
    ns = entry.namespace
    kube.flux("check", "--pre")
    components = entry.sync_dir / "gotk-components.yaml" if entry.sync_dir else None
    if components is not None and components.is_file():
        kube.kubectl("apply", "-f", str(components), mutating=True)
    else:
        kube.flux("install", f"--namespace={ns}", mutating=True)
    secret = entry.secret_ref or "flux-system"
    if creds:
        kube.apply_manifest(
            secret_manifest(
                entry.source_namespace, secret, {"username": creds[0], "password": creds[1]}
            )
        )
    kube.apply_manifest(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cluster-settings", "namespace": ns},
            "data": {"CLUSTER": spec.name, "ENV": spec.env, "BASE_DOMAIN": spec.base_domain},
        }
    )
    if own:
        apply_entry(project.rel, kube, entry, lambda _note: None)
        detail = (
            f"the repo's own sync: {entry.layout}, {entry.source_kind} "
            f"{entry.source_namespace}/{entry.source_name}, Kustomization {entry.key}"
        )
        if entry.source_url and _same_url(entry.source_url) != _same_url(spec.repo_url):
            from tasks.runtime.console import warn

            warn(
                f"the repo's {entry.source_kind} {entry.source_name} watches {entry.source_url}, "
                f"not cluster.yaml's repo_url {spec.repo_url}: Flux follows the repo's own sync"
            )
            detail += f" (watches {entry.source_url})"
        out.add("flux_bootstrap", "ok", detail)
        return
    flux_path = "./" + spec.path.strip("/")
    source = [
        "create",
        "source",
        "git",
        entry.source_name,
        f"--url={spec.repo_url}",
        f"--{kind}={spec.repo_ref}",
        f"--namespace={ns}",
    ]
    if creds:
        source.append(f"--secret-ref={secret}")
    kube.flux(*source, mutating=True)
    kube.flux(
        "create",
        "kustomization",
        entry.name,
        f"--source=GitRepository/{entry.source_name}",
        f"--path={flux_path}",
        "--prune=true",
        f"--namespace={ns}",
        mutating=True,
    )
    out.add(
        "flux_bootstrap",
        "ok",
        f"GitRepository {entry.source_name} -> {spec.repo_url} ({kind} {spec.repo_ref}), "
        f"path {flux_path}"
        + (
            f" (as {entry.layout} {entry.file.name} names them)"
            if entry.layout == "FluxInstance"
            else ""
        ),
    )


def wait_ready(kube: Kube, entry: Entry, out: Outcomes) -> None:
    """Reconcile the source and the entry, then read both back: ok only when both are Ready."""
    from tasks.gitops.facts import ready_states
    from tasks.gitops.flux_ops import source_command

    kube.flux(
        *source_command(entry.source_kind, entry.source_namespace, entry.source_name),
        mutating=True,
        check=False,
    )
    kube.flux(
        "reconcile",
        "kustomization",
        entry.name,
        f"--namespace={entry.namespace}",
        mutating=True,
        check=False,
    )
    resource = {
        "GitRepository": "gitrepositories",
        "OCIRepository": "ocirepositories",
        "Bucket": "buckets",
    }.get(entry.source_kind, entry.source_kind.lower() + "s")
    problems, ready = [], []
    for what, res, ns, name in (
        (
            entry.source_kind,
            f"{resource}.source.toolkit.fluxcd.io",
            entry.source_namespace,
            entry.source_name,
        ),
        (
            "Kustomization",
            "kustomizations.kustomize.toolkit.fluxcd.io",
            entry.namespace,
            entry.name,
        ),
    ):
        found = kube.get_one(res, name, ns)
        if found is None:
            problems.append(f"{what} {ns}/{name}: not found in the cluster")
            continue
        (state,) = ready_states({"items": [found]})
        if state.ready:
            ready.append(f"{what} {ns}/{name}")
        else:
            problems.append(f"{what} {ns}/{name}: not ready ({state.reason}: {state.message})")
    if problems:
        raise ExternalError(
            "Flux is not ready:\n  " + "\n  ".join(problems),
            hint="`inv flux.status` shows every object; fix the cause and run the bootstrap again",
        )
    out.add("flux_ready", "ok", " and ".join(ready) + " Ready")


def _same_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url[:-4] if url.endswith(".git") else url


def run_bootstrap(run: Run, name: str) -> None:
    """Plan the bootstrap from cluster.yaml and the env, then run it on the step engine; the
    trace file `.work/NAME/gitops-bootstrap.json` is written last, whatever the outcome."""
    from tasks.adapters.git import Git
    from tasks.adapters.kube import Kube
    from tasks.gitops.settings import kubeconfig_env
    from tasks.runtime.console import say
    from tasks.runtime.files import atomic_write_json
    from tasks.runtime.steps import Action, Plan

    project = run.project
    spec = ClusterSpec.load(project, name)
    env = run.env
    work = project.work / name
    clone = work / "gitops-src"
    trace_path = work / "gitops-bootstrap.json"
    where = project.rel(project.inventory / "clusters" / name / "cluster.yaml")
    say(f"cluster {spec.name}: ENV={spec.env} BASE_DOMAIN={spec.base_domain}")
    say(f"GitOps repo {spec.repo_url} at {spec.repo_ref}, path {spec.path}")
    extra = {}
    if not env.get("KUBECONFIG") and (work / "kubeconfig").is_file():
        extra["KUBECONFIG"] = str(work / "kubeconfig")  # the seed's normalised kubeconfig output
    kube = Kube(run, env={**kubeconfig_env(run), **extra})
    out = Outcomes()
    creds = credentials(env)
    state: dict[str, object] = {"sha": None, "kind": None}
    vault = bool(env.get("VAULT_ADDR") and env.get("VAULT_TOKEN"))

    def clone_step(sc) -> None:
        out.add("credentials", "env" if creds else "git credential helper")
        state["kind"], state["sha"] = sync_clone(Git(run.effects), spec, clone, creds, out)

    def vault_step(sc) -> None:
        configure_vault(run, kube, out)

    def flux_step(sc) -> None:
        if not vault:
            out.add("vault_kubernetes_auth", "skipped", "VAULT_ADDR/VAULT_TOKEN not set")
        entry = flux_tree(run, kube, spec, clone, where)
        state["entry"] = entry
        bootstrap_flux(kube, spec, str(state["kind"]), creds, entry, out, project)

    def ready_step(sc) -> None:
        wait_ready(kube, state["entry"], out)  # type: ignore[arg-type]
        state["outcome"] = "ok"

    def trace_step(sc) -> None:
        failed = next((s for s in run.steps if s.get("outcome") == "failed"), None)
        if failed is not None:
            out.add("error", "failed", str(failed.get("error") or ""))
        atomic_write_json(
            trace_path,
            mask_data(
                {
                    "cluster": spec.name,
                    "env": spec.env,
                    "base_domain": spec.base_domain,
                    "repo_url": spec.repo_url,
                    "repo_ref": spec.repo_ref,
                    "git_sha": state["sha"],
                    "timestamp": utc_now(),
                    "outcome": state.get("outcome", "failed"),
                    "steps": out.steps,
                }
            ),
        )
        say(f"trace: {project.rel(trace_path)}")

    plan = Plan(
        title=f"gitops.bootstrap {spec.name}",
        area=f"gitops-bootstrap-{spec.name}",
        actions=[
            Action("clone", f"clone or update {project.rel(clone)} at {spec.repo_ref}", clone_step),
            Action(
                "vault_kubernetes_auth",
                "configure Vault's Kubernetes auth for this cluster",
                vault_step,
                included=vault,
                reason="" if vault else "VAULT_ADDR/VAULT_TOKEN not set",
            ),
            Action(
                "flux_bootstrap",
                "check gitops.path is a Flux tree; install Flux; apply the repo's own sync "
                "(flux-system/) or create one",
                flux_step,
            ),
            Action(
                "flux_ready",
                "reconcile the source and the entry Kustomization; both must be Ready",
                ready_step,
            ),
            Action("trace", f"write {project.rel(trace_path)}", trace_step, always=True),
        ],
    )
    run.execute(plan)
