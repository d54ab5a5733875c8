"""Rehearsal stage for the GitOps side: mode targets, render/validate, Flux, the cluster
orchestrator and the GitOps bootstrap, in the throwaway copy.

No API server or flux CLI can run here: the recording stand-ins in tasks/rehearsal/standins/ (kubectl,
which passes `kubectl kustomize` through to the real kubectl, and flux) go first on PATH, with a
JSON file as the cluster's state. A local bare remote is the copy's `origin` and the GitOps repo.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.rehearsal.play import STANDINS, Act, Rehearsal, real_kubectl

RUNTIME_INPUTS = {
    "OAUTH2_PROXY_CLIENT_ID": "rehearsal-client-id",
    "OAUTH2_PROXY_CLIENT_SECRET": "rehearsal-client-secret",
    "OAUTH2_PROXY_COOKIE_SECRET": "rehearsal-cookie-secret-0123456789",
    "CLICKSTACK_API_KEY": "rehearsal-clickstack-key",
    "OTEL_INGESTION_KEY": "rehearsal-otel-key",
}


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


def point_cluster_at(repo: Path, remote: Path) -> None:
    """Point the copy's sample cluster handoff file at a local remote instead of the sample URL."""
    cluster_yaml = repo / "inventory/clusters/home/cluster.yaml"
    cluster_yaml.write_text(
        "\n".join(
            f"  repo_url: file://{remote}" if line.startswith("  repo_url:") else line
            for line in cluster_yaml.read_text().splitlines()
        )
        + "\n"
    )


@contextmanager
def stage(rehearsal: Rehearsal) -> Iterator[list[Act]]:
    from tasks.gitops.settings import configured_cluster
    from tasks.runtime.project import Project

    repo, scratch = rehearsal.workdir, rehearsal.scratch / "gitops"
    scratch.mkdir(parents=True, exist_ok=True)
    remote = scratch / "homelab.git"
    _git("init", "-q", "--bare", "-b", "main", str(remote))
    _git("-C", str(repo), "remote", "add", "origin", str(remote))
    _git("-C", str(repo), "push", "-q", "-u", "origin", "HEAD:main")
    _git("-C", str(repo), "branch", "-q", "--set-upstream-to=origin/main")
    point_cluster_at(repo, remote)
    (scratch / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    standins = STANDINS
    rehearsal.env.update(
        {
            "PATH": f"{standins}:{rehearsal.env.get('PATH', '')}",
            "REAL_KUBECTL": real_kubectl(rehearsal.env.get("PATH", "")),
            "KUBECONFIG": str(scratch / "kubeconfig"),
            "KUBE_STANDIN_LOG": str(scratch / "kube.log"),
            "KUBE_STANDIN_STATE": str(scratch / "cluster-state.json"),
            **RUNTIME_INPUTS,
        }
    )
    rehearsal.stood_up.append(
        f"a bare git remote ({remote}) the copy pushes to, as Flux's repository, and recording "
        "kubectl/flux stand-ins (no cluster; `kubectl kustomize` is the real one)"
    )
    cluster = configured_cluster(Project(repo))
    yield [
        Act(
            "the discovered GitOps layout and its Kustomization graph", ("gitops.layout", "--graph")
        ),
        Act(
            "validate the GitOps tree offline (the whole graph, kubectl kustomize, strict schemas)",
            ("k8s.validate",),
        ),
        Act("create the operator config from its sample", ("init",)),
        Act("render templates/ from it: the committed files are already as wanted", ("configure",)),
        Act("platform certs to prod: the diff only", ("platform.certs", "--prod", "--dry-run")),
        Act("platform certs to prod: a one-line local edit", ("platform.certs", "--prod")),
        Act("app mode staging-le-prod (local edit)", ("app.mode", "staging-le-prod")),
        Act("list the app modes", ("app.mode",)),
        Act(
            "reconcile: refused while the mode edits are not pushed",
            ("flux.reconcile",),
            expect_exit=3,
        ),
        Act("plan the cluster apply", ("cluster.apply", "--dry-run")),
        Act("cluster apply (stand-in cluster)", ("cluster.apply",)),
        Act("Flux status", ("flux.status",)),
        Act("Flux diff of platform-services", ("flux.diff", "platform-services")),
        Act(
            "reconcile one Kustomization with its source",
            ("flux.reconcile", "issuers", "--with-source", "--force"),
        ),
        Act("plan the cluster delete", ("cluster.delete", "--dry-run")),
        Act("GitOps bootstrap from the local remote", ("gitops.bootstrap", "--cluster", cluster)),
    ]
