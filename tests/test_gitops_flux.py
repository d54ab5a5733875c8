"""flux.reconcile / flux.diff / flux.status: real git with a local bare remote; stand-in flux/kubectl."""

from __future__ import annotations

import json
from pathlib import Path

from gitops_support import RECONCILE, SETTINGS, TENANTS, bare_remote, commands, kube_env
from helpers import git, run_inv


def test_reconcile_refuses_until_mode_changes_are_pushed(sample_repo: Path, tmp_path: Path) -> None:
    env = kube_env(tmp_path)
    bare_remote(sample_repo, tmp_path)
    assert run_inv(sample_repo, "platform.certs", "--prod").returncode == 0
    assert run_inv(sample_repo, "app.mode", "prod-le-prod").returncode == 0

    dirty = run_inv(sample_repo, "flux.reconcile", env=env)
    assert dirty.returncode == 3, dirty
    assert (
        "uncommitted changes" in dirty.stderr and "configmap-platform-settings.yaml" in dirty.stderr
    )
    assert "tenants.yaml" in dirty.stderr and commands(tmp_path) == []

    git(sample_repo, "commit", "-qam", "prod certs, prod app")
    unpushed = run_inv(sample_repo, "flux.reconcile", env=env)
    assert unpushed.returncode == 3, unpushed
    assert "committed but not pushed to origin/main" in unpushed.stderr
    assert SETTINGS in unpushed.stderr and TENANTS in unpushed.stderr and commands(tmp_path) == []

    forced = run_inv(sample_repo, "flux.reconcile", "--force", env=env)
    assert forced.returncode == 0 and "reconciling anyway" in forced.stderr
    assert commands(tmp_path) == RECONCILE
    (tmp_path / "kube.log").unlink()

    git(sample_repo, "push", "-q")
    ok = run_inv(sample_repo, "flux.reconcile", env=env)
    assert ok.returncode == 0, ok
    assert commands(tmp_path) == RECONCILE


def test_reconcile_ignores_unrelated_changes_and_needs_an_upstream(
    sample_repo: Path, tmp_path: Path
) -> None:
    env = kube_env(tmp_path)
    no_upstream = run_inv(sample_repo, "flux.reconcile", env=env)
    assert no_upstream.returncode == 3 and "no upstream" in no_upstream.stderr
    bare_remote(sample_repo, tmp_path)
    (sample_repo / "README.md").write_text("edited\n")
    assert run_inv(sample_repo, "flux.reconcile", env=env).returncode == 0


def test_reconcile_dry_run_and_failure(sample_repo: Path, tmp_path: Path) -> None:
    bare_remote(sample_repo, tmp_path)
    dry = run_inv(sample_repo, "flux.reconcile", "--dry-run", env=kube_env(tmp_path))
    assert dry.returncode == 0, dry
    assert "flux reconcile kustomization tenants --namespace=flux-system" in dry.stdout
    assert "dry run: nothing was changed" in dry.stdout
    assert commands(tmp_path) == []
    failing = run_inv(
        sample_repo, "flux.reconcile", env=kube_env(tmp_path, {"fail_reconcile": ["issuers"]})
    )
    assert failing.returncode == 4 and "flux reconcile kustomization issuers" in failing.stderr
    assert "kustomize build failed" in failing.stderr
    assert "flux reconcile kustomization platform-services --namespace=flux-system" not in commands(
        tmp_path
    )


def test_status_lists_ready_and_not_ready(sample_repo: Path, tmp_path: Path) -> None:
    cluster = {
        "kustomizations": {"flux-system/infrastructure": {"ready": True}},
        "helmreleases": {
            "oauth2-proxy/oauth2-proxy": {
                "ready": False,
                "reason": "InstallFailed",
                "message": "chart not found",
            }
        },
    }
    result = run_inv(sample_repo, "flux.status", env=kube_env(tmp_path, cluster))
    assert result.returncode == 4, str(result)
    lines = result.stdout.splitlines()
    assert any(
        ln.startswith("Kustomization") and "flux-system/infrastructure" in ln and " ready " in ln
        for ln in lines
    )
    assert any(
        "oauth2-proxy/oauth2-proxy" in ln and "not ready" in ln and "InstallFailed" in ln
        for ln in lines
    )
    cluster["helmreleases"] = {}
    ok = run_inv(sample_repo, "flux.status", env=kube_env(tmp_path, cluster))
    assert ok.returncode == 0, ok


def test_diff_area(sample_repo: Path, tmp_path: Path) -> None:
    cluster = {
        "diff": {
            "platform-services": "► HelmRelease/oauth2-proxy/oauth2-proxy drifted\n+ host: auth.x"
        }
    }
    env = kube_env(tmp_path, cluster)
    result = run_inv(sample_repo, "flux.diff", "platform-services", env=env)
    assert result.returncode == 0, str(result)
    assert (
        "HelmRelease/oauth2-proxy/oauth2-proxy drifted" in result.stdout
        and "differences above" in result.stdout
    )
    assert commands(tmp_path) == [
        f"flux diff kustomization platform-services --namespace=flux-system "
        f"--path={sample_repo.resolve()}/layers/gitops/platform-services/overlays/home"
    ]
    same = run_inv(sample_repo, "flux.diff", "tenants", env=env)
    assert same.returncode == 0 and "tenants: no changes" in same.stdout
    unknown = run_inv(sample_repo, "flux.diff", "apps", env=env)
    assert unknown.returncode == 2
    assert "infrastructure, issuers, platform-services, tenants" in unknown.stderr
    assert json.loads((tmp_path / "kube-state.json").read_text())  # state untouched but readable


def test_no_kubeconfig_is_said_before_kubectl_runs(sample_repo: Path, tmp_path: Path) -> None:
    """Without one, kubectl would try localhost:8080 and print its own connection errors."""
    env = kube_env(tmp_path)
    env["KUBECONFIG"] = str(tmp_path / "nowhere" / "kubeconfig")
    for argv in (["flux.status"], ["flux.diff", "tenants"]):
        result = run_inv(sample_repo, *argv, env=env)
        assert result.returncode == 2, str(result)
        assert "error: no kubeconfig" in result.stderr and "inv host.apply" in result.stderr
    assert commands(tmp_path) == []


def test_diff_exit_1_without_a_diff_is_a_failure(sample_repo: Path, tmp_path: Path) -> None:
    """flux exits 1 for errors outside the diff too (no `►` line): not "differences above"."""
    env = kube_env(tmp_path, {"diff": {"tenants": "✗ unknown flag: --kustomization-file"}})
    result = run_inv(sample_repo, "flux.diff", "tenants", env=env)
    assert result.returncode == 4, str(result)
    assert "command failed (exit 1): flux diff kustomization tenants" in result.stderr, result
    assert "unknown flag" in result.stderr and "differences above" not in result.output, result
