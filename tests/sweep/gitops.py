"""Sweep cases for the GitOps side: mode targets, render/validate, Flux, the cluster orchestrator and
the GitOps bootstrap, against the recording kubectl/flux stand-ins and a local bare git remote.

Secrets flow for real: the runtime inputs (synced to the cluster on stdin) are the Doppler, shell
and local sentinels, the GitOps repo password is the secrets-file sentinel, and the Vault token the
profile one.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tasks.rehearsal.gitops import point_cluster_at

CASES = {
    "init": [["init", "--dry-run"], ["init"]],
    "configure": [["configure", "--dry-run"], ["configure"]],
    "platform.certs": [["platform.certs", "--prod", "--dry-run"], ["platform.certs", "--prod"]],
    "app.mode": [
        ["app.mode"],
        ["app.mode", "staging-le-prod", "--dry-run"],
        ["app.mode", "staging-le-prod"],
    ],
    "k8s.validate": [["k8s.validate"]],
    "gitops.layout": [["gitops.layout"], ["gitops.layout", "--json", "--graph"]],
    # A Secret whose plaintext holds the Doppler sentinel: encrypted, then edited (the editor
    # writes the shell sentinel); neither may show up in output or under .work/.
    "secrets.encrypt": [
        ["secrets.encrypt", "layers/gitops/sweep-secret.sops.yaml", "--dry-run"],
        ["secrets.encrypt", "layers/gitops/sweep-secret.sops.yaml"],
    ],
    "secrets.edit": [
        ["secrets.edit", "layers/gitops/sweep-secret.sops.yaml", "--dry-run"],
        ["secrets.edit", "layers/gitops/sweep-secret.sops.yaml"],
    ],
    "cluster.apply": [
        ["cluster.apply", "--dry-run"],
        ["cluster.apply"],
        [
            "cluster.apply",
            "--profile",
            "{profile}",
            "--only",
            "15,install_flux,sync_runtime_inputs",
        ],
    ],
    "cluster.delete": [
        ["cluster.delete", "--dry-run"],
        ["cluster.delete"],
        ["cluster.delete", "--yes"],
    ],
    "flux.reconcile": [
        ["flux.reconcile", "--dry-run"],
        ["flux.reconcile"],
        ["flux.reconcile", "--force"],
    ],
    "flux.diff": [["flux.diff", "platform-services"], ["flux.diff", "nope"]],
    "flux.status": [["flux.status"]],
    "gitops.bootstrap": [
        ["gitops.bootstrap", "--cluster", "home", "--dry-run"],
        ["gitops.bootstrap", "--cluster", "home"],
        ["gitops.bootstrap", "--cluster", "home", "--profile", "{profile}"],
    ],
}


EDITOR = """#!/bin/sh
sed -i "s/$SWEEP_FROM/$SWEEP_TO/" "$1"
"""


def _sops_fixture(repo: Path, scratch: Path, sentinels: dict[str, str]) -> dict[str, str]:
    """An age key, the tree's .sops.yaml and a plaintext Secret holding a sentinel."""
    key = scratch / "age.key"
    made = subprocess.run(["age-keygen", "-o", str(key)], capture_output=True, check=False)
    if made.returncode != 0:
        return {}  # no age here: the secrets cases then fail cleanly (still no leak allowed)
    recipient = next(
        ln.split(":", 1)[1].strip()
        for ln in key.read_text().splitlines()
        if ln.startswith("# public key:")
    )
    tree = repo / "layers/gitops"
    (tree / ".sops.yaml").write_text(
        f"creation_rules:\n  - path_regex: sweep-secret\\.sops\\.yaml\n    age: {recipient}\n"
    )
    (tree / "sweep-secret.sops.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sweep\nstringData:\n"
        f"  TOKEN: {sentinels['doppler']}\n"
    )
    editor = scratch / "editor.sh"
    editor.write_text(EDITOR)
    editor.chmod(0o755)
    return {
        "SOPS_AGE_KEY_FILE": str(key),
        "EDITOR": str(editor),
        "SWEEP_FROM": sentinels["doppler"],
        "SWEEP_TO": sentinels["shell"],
    }


@contextlib.contextmanager
def prepare(repo: Path, sentinels: dict[str, str]) -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        # The runner checkout's own upstream (flux.reconcile checks mode files are pushed to it).
        origin = scratch / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
        for args in (
            ["remote", "add", "origin", str(origin)],
            ["push", "-q", "-u", "origin", "main"],
        ):
            subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
        # The GitOps repo gitops.bootstrap clones: only the Flux tree (the checkout's test files
        # spell the sentinels out, and a clone of them under .work/ would be a false alarm).
        gitops_src = scratch / "gitops-src"
        shutil.copytree(repo / "layers/gitops", gitops_src / "layers/gitops")
        remote = scratch / "gitops.git"
        for argv in (
            ["git", "-C", str(gitops_src), "init", "-q", "-b", "main"],
            ["git", "-C", str(gitops_src), "add", "-A"],
            [
                "git",
                "-C",
                str(gitops_src),
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.invalid",
                "commit",
                "-qm",
                "tree",
            ],
            ["git", "clone", "-q", "--bare", str(gitops_src), str(remote)],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        point_cluster_at(repo, remote)
        (scratch / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
        sops_env = _sops_fixture(repo, scratch, sentinels)
        yield {
            **sops_env,
            "KUBECONFIG": str(scratch / "kubeconfig"),
            "KUBE_STANDIN_LOG": str(scratch / "kube.log"),
            "KUBE_STANDIN_STATE": str(scratch / "kube-state.json"),
            "OAUTH2_PROXY_CLIENT_ID": sentinels["local"],
            "OAUTH2_PROXY_CLIENT_SECRET": sentinels["doppler"],
            "OAUTH2_PROXY_COOKIE_SECRET": sentinels["shell"],
            "CLICKSTACK_API_KEY": sentinels["doppler"] + "-click",
            "OTEL_INGESTION_KEY": sentinels["config"],
            "GITOPS_REPO_USERNAME": "flux-bot",
            "GITOPS_REPO_PASSWORD": sentinels["secrets_file"],
            "VAULT_ADDR": "http://127.0.0.1:9",
            "VAULT_TOKEN": sentinels["profile"],
        }
