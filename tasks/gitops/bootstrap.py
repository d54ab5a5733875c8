"""GitOps bootstrap (Clusters-GitOps Handoff seed): cluster.yaml in, a clone, Flux, a trace file out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tasks.runtime.errors import ConfigError, RefusedError
from tasks.runtime.secrets import mask_data
from tasks.runtime.trace import utc_now

if TYPE_CHECKING:
    from tasks.adapters.git import Git
    from tasks.adapters.kube import Kube
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


def bootstrap_flux(
    kube: Kube, spec: ClusterSpec, kind: str, creds, clone: Path, out: Outcomes
) -> None:
    from tasks.gitops.cluster_steps import secret_manifest

    if not (clone / spec.path).is_dir():
        raise ConfigError(
            f"gitops.path {spec.path!r} does not exist in {spec.repo_url} at {spec.repo_ref}"
        )
    ns = "flux-system"
    kube.flux("check", "--pre")
    kube.flux("install", f"--namespace={ns}", mutating=True)
    source = [
        "create",
        "source",
        "git",
        "flux-system",
        f"--url={spec.repo_url}",
        f"--{kind}={spec.repo_ref}",
        f"--namespace={ns}",
    ]
    if creds:
        kube.apply_manifest(
            secret_manifest(ns, "flux-system", {"username": creds[0], "password": creds[1]})
        )
        source.append("--secret-ref=flux-system")
    kube.apply_manifest(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cluster-settings", "namespace": ns},
            "data": {"CLUSTER": spec.name, "ENV": spec.env, "BASE_DOMAIN": spec.base_domain},
        }
    )
    kube.flux(*source, mutating=True)
    kube.flux(
        "create",
        "kustomization",
        "flux-system",
        "--source=GitRepository/flux-system",
        f"--path=./{spec.path.strip('/')}",
        "--prune=true",
        f"--namespace={ns}",
        mutating=True,
    )
    out.add(
        "flux_bootstrap",
        "ok",
        f"GitRepository flux-system -> {spec.repo_url} ({kind} {spec.repo_ref}), path ./{spec.path}",
    )


def run_bootstrap(run: Run, name: str) -> None:
    """Plan the bootstrap from cluster.yaml and the env, then run it on the step engine; the
    trace file `.work/NAME/gitops-bootstrap.json` is written last, whatever the outcome."""
    from tasks.adapters.git import Git
    from tasks.adapters.kube import Kube
    from tasks.runtime.console import say
    from tasks.runtime.files import atomic_write_json
    from tasks.runtime.steps import Action, Plan

    project = run.project
    spec = ClusterSpec.load(project, name)
    env = run.env
    work = project.work / name
    clone = work / "gitops-src"
    trace_path = work / "gitops-bootstrap.json"
    say(f"cluster {spec.name}: ENV={spec.env} BASE_DOMAIN={spec.base_domain}")
    say(f"GitOps repo {spec.repo_url} at {spec.repo_ref}, path {spec.path}")
    extra = {}
    if not env.get("KUBECONFIG") and (work / "kubeconfig").is_file():
        extra["KUBECONFIG"] = str(work / "kubeconfig")  # the seed's normalised kubeconfig output
    kube = Kube(run, env=extra)
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
        bootstrap_flux(kube, spec, str(state["kind"]), creds, clone, out)
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
            Action("flux_bootstrap", "install Flux and point it at the repo", flux_step),
            Action("trace", f"write {project.rel(trace_path)}", trace_step, always=True),
        ],
    )
    run.execute(plan)
