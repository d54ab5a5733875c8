"""gitops.bootstrap: real git clones from a local bare remote; stand-in kubectl/flux for the cluster."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from gitops_support import bare_remote, commands, kube_env
from helpers import git, run_inv

CLUSTER_YAML = "inventory/clusters/home/cluster.yaml"


def _point_at(repo: Path, url: str, ref: str = "main") -> None:
    path = repo / CLUSTER_YAML
    text = path.read_text()
    text = "\n".join(
        f"  repo_url: {url}"
        if ln.startswith("  repo_url:")
        else f"  repo_ref: {ref}"
        if ln.startswith("  repo_ref:")
        else ln
        for ln in text.splitlines()
    )
    path.write_text(text + "\n")


@pytest.fixture
def remote(sample_repo: Path, tmp_path: Path) -> Path:
    return bare_remote(sample_repo, tmp_path)


def test_bootstrap_clones_bootstraps_flux_and_writes_the_trace(
    sample_repo: Path, tmp_path: Path, remote: Path
) -> None:
    _point_at(sample_repo, f"file://{remote}")
    env = kube_env(
        tmp_path, GITOPS_REPO_USERNAME="flux-bot", GITOPS_REPO_PASSWORD="repo-password-83bd1"
    )
    result = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "home", env=env)
    assert result.returncode == 0, str(result)
    clone = sample_repo / ".work/home/gitops-src"
    sha = git(remote, "rev-parse", "main").stdout.strip()
    assert git(clone, "rev-parse", "HEAD").stdout.strip() == sha
    trace = json.loads((sample_repo / ".work/home/gitops-bootstrap.json").read_text())
    assert {
        k: trace[k] for k in ("cluster", "env", "base_domain", "repo_url", "repo_ref", "git_sha")
    } == {
        "cluster": "home",
        "env": "prod",
        "base_domain": "apps.home.example.net",
        "repo_url": f"file://{remote}",
        "repo_ref": "main",
        "git_sha": sha,
    }
    assert trace["timestamp"].endswith("Z") and trace["outcome"] == "ok"
    assert [s["step"] for s in trace["steps"]] == [
        "credentials",
        "clone",
        "vault_kubernetes_auth",
        "flux_bootstrap",
        "flux_ready",
    ]
    assert "repo-password-83bd1" not in (clone / ".git/config").read_text()
    assert "repo-password-83bd1" not in result.output
    assert "repo-password-83bd1" not in json.dumps(trace)
    # The repo has its own flux-system/: it is applied as it is (no `flux create`), and success
    # is read back from the cluster: the source and the entry Kustomization are Ready.
    assert commands(tmp_path) == [
        "flux check --pre",
        "flux install --namespace=flux-system",
        "kubectl apply -f -",  # the Git credentials, on stdin
        "kubectl apply -f -",  # cluster-settings
        f"kubectl apply -k {clone.resolve()}/layers/gitops/clusters/home/flux-system",
        "flux reconcile source git flux-system --namespace=flux-system",
        "flux reconcile kustomization flux-system --namespace=flux-system",
        "kubectl get gitrepositories.source.toolkit.fluxcd.io flux-system "
        "--namespace=flux-system -o json",
        "kubectl get kustomizations.kustomize.toolkit.fluxcd.io flux-system "
        "--namespace=flux-system -o json",
    ]
    assert "flux_ready: ok" in result.stdout
    assert "Flux follows the repo's own sync" in result.stderr  # its URL is not cluster.yaml's
    applied = [
        json.loads(line)["stdin"]
        for line in (tmp_path / "kube.log").read_text().splitlines()
        if json.loads(line)["argv"][:3] == ["apply", "-f", "-"]
    ]
    settings = next(json.loads(s) for s in applied if '"ConfigMap"' in s)
    assert settings["data"] == {
        "CLUSTER": "home",
        "ENV": "prod",
        "BASE_DOMAIN": "apps.home.example.net",
    }


def test_bootstrap_updates_repoints_and_follows_tags(
    sample_repo: Path, tmp_path: Path, remote: Path
) -> None:
    _point_at(sample_repo, f"file://{remote}")
    env = kube_env(tmp_path)
    assert run_inv(sample_repo, "gitops.bootstrap", "--cluster", "home", env=env).returncode == 0
    # A new remote with one more commit and a tag: origin is re-pointed, tags fetched, tag checked out.
    moved = tmp_path / "moved.git"
    git(tmp_path, "clone", "-q", "--bare", str(remote), str(moved))
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(moved), str(work))
    (work / "NOTE.md").write_text("release\n")
    git(work, "add", "NOTE.md")
    git(work, "commit", "-qm", "release")
    git(work, "tag", "v1.0.0")
    git(work, "push", "-q", "origin", "main", "--tags")
    _point_at(sample_repo, f"file://{moved}", "v1.0.0")
    result = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "home", env=env)
    assert result.returncode == 0, str(result)
    clone = sample_repo / ".work/home/gitops-src"
    assert git(clone, "remote", "get-url", "origin").stdout.strip() == f"file://{moved}"
    assert (
        git(clone, "rev-parse", "HEAD").stdout.strip()
        == git(work, "rev-parse", "v1.0.0").stdout.strip()
    )
    assert "repoint_origin: changed" in result.stdout
    trace = json.loads((sample_repo / ".work/home/gitops-bootstrap.json").read_text())
    assert trace["repo_ref"] == "v1.0.0" and "tag v1.0.0" in json.dumps(trace["steps"])


def test_bootstrap_refuses_a_dirty_clone(sample_repo: Path, tmp_path: Path, remote: Path) -> None:
    _point_at(sample_repo, f"file://{remote}")
    env = kube_env(tmp_path)
    assert run_inv(sample_repo, "gitops.bootstrap", "--cluster", "home", env=env).returncode == 0
    clone = sample_repo / ".work/home/gitops-src"
    (clone / "README.md").write_text("local edit\n")
    (tmp_path / "kube.log").unlink()
    result = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "home", env=env)
    assert result.returncode == 3 and "has local changes: README.md" in result.stderr
    assert (clone / "README.md").read_text() == "local edit\n" and commands(tmp_path) == []
    trace = json.loads((sample_repo / ".work/home/gitops-bootstrap.json").read_text())
    assert trace["outcome"] == "failed"


def test_bootstrap_bad_input(sample_repo: Path, tmp_path: Path) -> None:
    env = kube_env(tmp_path)
    unknown = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "lab", env=env)
    assert (
        unknown.returncode == 2
        and "unknown cluster 'lab'" in unknown.stderr
        and "clusters: home" in unknown.stderr
    )
    path = sample_repo / CLUSTER_YAML
    path.write_text(path.read_text().replace("  repo_ref: main", ""))
    missing = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "home", env=env)
    assert missing.returncode == 2 and "gitops: 'repo_ref' is a required property" in missing.stderr
    path.write_text("name: home\ndns: [\n")
    broken = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "home", env=env)
    assert broken.returncode == 2 and "cluster.yaml:" in broken.stderr
    path.write_text(
        "name: home\ndns: {base_domain: home.arpa}\ngitops: {env: prod, repo_ref: main, "
        "repo_url: 'https://bot:hunter2-secret@git.example/x.git'}\n"
    )
    leaky = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "home", env=env)
    assert leaky.returncode == 2 and "carries a password" in leaky.stderr
    path.write_text(path.read_text().replace("bot:hunter2-secret@", "ghp-token-1234@"))
    token = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "home", env=env)
    assert token.returncode == 2 and "carries a password or token" in token.stderr
    assert "ghp-token-1234" not in token.stdout + token.stderr
    assert commands(tmp_path) == [] and not (sample_repo / ".work/home/gitops-src").exists()


def test_bootstrap_unreachable_remote(sample_repo: Path, tmp_path: Path) -> None:
    _point_at(sample_repo, "http://127.0.0.1:9/nothing.git")
    result = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "home", env=kube_env(tmp_path))
    assert result.returncode == 4, str(result)
    assert "git clone" in result.stderr and "Traceback" not in result.output
    assert commands(tmp_path) == [] and not (sample_repo / ".work/home/gitops-src").exists()


class _Vault(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Vault.seen.append((self.path, self.headers.get("X-Vault-Token", ""), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_bootstrap_configures_vault_kubernetes_auth(
    sample_repo: Path, tmp_path: Path, remote: Path
) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Vault)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _point_at(sample_repo, f"file://{remote}")
        env = kube_env(
            tmp_path,
            VAULT_ADDR=f"http://127.0.0.1:{server.server_port}",
            VAULT_TOKEN="vault-token-55aa9",
            VAULT_K8S_AUTH_MOUNT="k8s-home",
        )
        result = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "home", env=env)
    finally:
        server.shutdown()
    assert result.returncode == 0, str(result)
    path, token, body = _Vault.seen[-1]
    assert path == "/v1/auth/k8s-home/config" and token == "vault-token-55aa9"
    assert (
        body["kubernetes_host"] == "https://127.0.0.1:6443"
        and "BEGIN CERTIFICATE" in body["kubernetes_ca_cert"]
    )
    assert "vault-token-55aa9" not in result.output
    assert "kubectl config view --minify --raw -o json" in commands(tmp_path)


def test_bootstrap_dry_run_touches_nothing(sample_repo: Path, tmp_path: Path) -> None:
    result = run_inv(
        sample_repo, "gitops.bootstrap", "--cluster", "home", "--dry-run", env=kube_env(tmp_path)
    )
    assert result.returncode == 0 and "BASE_DOMAIN=apps.home.example.net" in result.stdout
    assert commands(tmp_path) == [] and not (sample_repo / ".work/home").exists()


class _AuthGit(BaseHTTPRequestHandler):
    """Asks for HTTP basic auth like a private Git host, and records what git sends back."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        auth = self.headers.get("Authorization")
        if not auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        _AuthGit.seen.append(auth)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_bootstrap_sends_env_credentials_through_askpass_only(
    sample_repo: Path, tmp_path: Path
) -> None:
    import base64

    server = HTTPServer(("127.0.0.1", 0), _AuthGit)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _point_at(sample_repo, f"http://127.0.0.1:{server.server_port}/homelab.git")
        env = kube_env(
            tmp_path, GITOPS_REPO_USERNAME="flux-bot", GITOPS_REPO_PASSWORD="private-repo-pw-7c1d"
        )
        result = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "home", env=env)
    finally:
        server.shutdown()
    assert result.returncode == 4, result  # the stand-in host has no repository behind the login
    assert (
        _AuthGit.seen
        and base64.b64decode(_AuthGit.seen[-1].split()[1]).decode()
        == "flux-bot:private-repo-pw-7c1d"
    )
    assert "private-repo-pw-7c1d" not in result.output
    assert not (sample_repo / ".work/home/gitops-src").exists()
    assert (
        "private-repo-pw-7c1d" not in (sample_repo / ".work/home/gitops-bootstrap.json").read_text()
    )
