"""Shared pieces for the GitOps-side tests: stand-in kubectl/flux on PATH, their log, a bare remote."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import STANDINS, base_env, git

# What `flux.reconcile` runs, in the tree's dependency order (also step 32 of cluster.apply).
RECONCILE = [
    "flux reconcile source git flux-system --namespace=flux-system",
    "flux reconcile kustomization flux-system --namespace=flux-system",
    "flux reconcile kustomization infrastructure --namespace=flux-system",
    "flux reconcile kustomization issuers --namespace=flux-system",
    "flux reconcile kustomization platform-services --namespace=flux-system",
    "flux reconcile kustomization tenants --namespace=flux-system",
]

# Runtime inputs as the cluster orchestrator needs them (values long enough to be masked).
RUNTIME_INPUTS = {
    "OAUTH2_PROXY_CLIENT_ID": "client-id-7f3a",
    "OAUTH2_PROXY_CLIENT_SECRET": "client-secret-9b2c41",
    "OAUTH2_PROXY_COOKIE_SECRET": "cookie-secret-5d8e77",
    "CLICKSTACK_API_KEY": "clickstack-key-1a2b3c",
    "OTEL_INGESTION_KEY": "otel-key-4d5e6f",
}
GITOPS = "layers/gitops"
SETTINGS = f"{GITOPS}/clusters/home/flux-system/sources/configmap-platform-settings.yaml"
TENANTS = f"{GITOPS}/clusters/home/tenants.yaml"


def kube_env(tmp: Path, state: dict | None = None, **extra: str) -> dict[str, str]:
    """Env with the recording kubectl/flux stand-ins first on PATH, a kubeconfig and a state file."""
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    state_file = tmp / "kube-state.json"
    if state is not None:
        state_file.write_text(json.dumps(state))
    env = base_env(
        PATH=f"{STANDINS}:{base_env()['PATH']}",
        KUBECONFIG=str(kubeconfig),
        KUBE_STANDIN_LOG=str(tmp / "kube.log"),
        KUBE_STANDIN_STATE=str(state_file),
    )
    env.update(extra)
    return env


def calls(tmp: Path, *, with_kustomize: bool = False) -> list[dict]:
    log = tmp / "kube.log"
    if not log.exists():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [e for e in entries if with_kustomize or e["argv"][:1] != ["kustomize"]]


def commands(tmp: Path) -> list[str]:
    return [" ".join([e["tool"], *e["argv"]]) for e in calls(tmp)]


def state(tmp: Path) -> dict:
    return json.loads((tmp / "kube-state.json").read_text())


def bare_remote(repo: Path, tmp: Path, name: str = "remote.git") -> Path:
    """A local bare remote holding `repo`'s main branch, set as its upstream."""
    remote = tmp / name
    git(tmp, "init", "-q", "--bare", "-b", "main", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "-u", "origin", "main")
    return remote
