"""cluster.apply / cluster.delete against the recording kubectl/flux stand-ins (no API server can
run here); `kubectl kustomize` inside them is the real kubectl."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from gitops_support import RECONCILE, RUNTIME_INPUTS, calls, commands, kube_env, state
from helpers import run_inv

APPLY_SEQUENCE = [
    "kubectl version -o json --request-timeout=10s",
    "kubectl auth can-i * * --all-namespaces",
    # 94_verify_config_inputs renders offline only (kustomize calls are filtered out here)
    "flux check --pre",
    "flux install --namespace=flux-system",
    "kubectl apply -f -",  # flux-system Git credentials
    "kubectl apply -k {repo}/layers/gitops/clusters/home/flux-system",
    "kubectl apply -f -",  # platform-runtime-inputs
    *RECONCILE,
    "kubectl get kustomizations.kustomize.toolkit.fluxcd.io --all-namespaces -o json",
]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return kube_env(
        tmp,
        **RUNTIME_INPUTS,
        GITOPS_REPO_USERNAME="flux",
        GITOPS_REPO_PAT="pat-value-31f9e2",
        **extra,
    )


def _step_names(stdout: str) -> list[str]:
    """The step names of an orchestrator's `[n/N] name (...)` progress lines, in order."""
    return [
        line.split("] ", 1)[1].split(" (")[0]
        for line in stdout.splitlines()
        if line.startswith("[")
    ]


def test_apply_runs_the_seed_steps_in_order(sample_repo: Path, tmp_path: Path) -> None:
    result = run_inv(sample_repo, "cluster.apply", env=_env(tmp_path))
    assert result.returncode == 0, str(result)
    steps = _step_names(result.stdout)
    assert steps == [
        "15_verify_cluster_access",
        "94_verify_config_inputs",
        "install_flux",
        "sync_runtime_inputs",
        "32_reconcile_flux_stack",
        "91_verify_platform_state",
    ]
    assert commands(tmp_path) == [c.format(repo=sample_repo) for c in APPLY_SEQUENCE]
    # Secrets went in on stdin, never on argv, and are never printed.
    secret_values = [*RUNTIME_INPUTS.values(), "pat-value-31f9e2"]
    for entry in calls(tmp_path, with_kustomize=True):
        assert not any(v in arg for v in secret_values for arg in entry["argv"])
    applied = [
        json.loads(e["stdin"]) for e in calls(tmp_path) if e["argv"][:3] == ["apply", "-f", "-"]
    ]
    runtime = next(m for m in applied if m["metadata"]["name"] == "platform-runtime-inputs")
    assert runtime["metadata"]["namespace"] == "flux-system"
    assert {k: base64.b64decode(v).decode() for k, v in runtime["data"].items()} == RUNTIME_INPUTS
    for value in secret_values:
        assert value not in result.output
    assert "platform-runtime-inputs: 5 keys" in result.stdout
    assert sorted(state(tmp_path)["secrets"]) == [
        "flux-system/flux-system",
        "flux-system/platform-runtime-inputs",
    ]
    trace = json.loads(
        next((sample_repo / ".work/traces").glob("cluster-apply-*.json")).read_text()
    )
    assert [s["outcome"] for s in trace["steps"]] == ["ok"] * 6


def test_apply_dry_run_makes_no_cluster_call(sample_repo: Path, tmp_path: Path) -> None:
    result = run_inv(sample_repo, "cluster.apply", "--dry-run", env=_env(tmp_path))
    assert result.returncode == 0, str(result)
    assert (
        "15_verify_cluster_access" in result.stdout
        and "dry run: nothing was changed" in result.stdout
    )
    assert calls(tmp_path, with_kustomize=True) == []


def test_feat_verify_off_skips_the_verify_steps(sample_repo: Path, tmp_path: Path) -> None:
    result = run_inv(
        sample_repo, "cluster.apply", "--dry-run", env=_env(tmp_path, FEAT_VERIFY="false")
    )
    assert "[skip] 94_verify_config_inputs (apply; gated off: FEAT_VERIFY=false)" in result.stdout
    assert "[skip] 91_verify_platform_state (apply; gated off: FEAT_VERIFY=false)" in result.stdout


def test_missing_runtime_inputs_are_all_named(sample_repo: Path, tmp_path: Path) -> None:
    env = kube_env(tmp_path, CLICKSTACK_API_KEY="clickstack-key-1a2b3c")
    result = run_inv(sample_repo, "cluster.apply", env=env)
    assert result.returncode == 2, str(result)
    assert (
        "missing runtime-input variable(s): OAUTH2_PROXY_CLIENT_ID, OAUTH2_PROXY_CLIENT_SECRET, "
        "OAUTH2_PROXY_COOKIE_SECRET, OTEL_INGESTION_KEY"
    ) in result.stderr
    assert not [c for c in commands(tmp_path) if c.startswith(("flux install", "kubectl apply"))]


def test_unreachable_api_and_missing_permissions(sample_repo: Path, tmp_path: Path) -> None:
    down = run_inv(
        sample_repo,
        "cluster.apply",
        env=kube_env(tmp_path, {"unreachable": True}, **RUNTIME_INPUTS),
    )
    assert down.returncode == 4 and "Kubernetes API is not reachable" in down.stderr, down
    (tmp_path / "kube.log").unlink()
    weak = run_inv(
        sample_repo, "cluster.apply", "--only", "15", env=kube_env(tmp_path, {"can_i": "no"})
    )
    assert weak.returncode == 3 and "may not manage every resource" in weak.stderr, weak
    nokube = run_inv(
        sample_repo,
        "cluster.apply",
        "--only",
        "15",
        env=kube_env(tmp_path, KUBECONFIG=str(tmp_path / "absent")),
    )
    assert nokube.returncode == 2 and "no kubeconfig" in nokube.stderr


def test_verify_platform_state_reports_not_ready(sample_repo: Path, tmp_path: Path) -> None:
    result = run_inv(
        sample_repo,
        "cluster.apply",
        env=_env(tmp_path) | {"KUBE_STANDIN_STATE": str(tmp_path / "s.json")},
    )
    assert result.returncode == 0
    (tmp_path / "s.json").write_text(
        json.dumps(
            {
                "kustomizations": {
                    "flux-system/platform-services": {
                        "ready": False,
                        "reason": "HealthCheckFailed",
                        "message": "timeout",
                    }
                }
            }
        )
    )
    again = run_inv(
        sample_repo,
        "cluster.apply",
        "--only",
        "91",
        env=_env(tmp_path) | {"KUBE_STANDIN_STATE": str(tmp_path / "s.json")},
    )
    assert again.returncode == 4
    assert "flux-system/platform-services: not ready (HealthCheckFailed: timeout)" in again.stderr
    assert "flux-system/tenants: not found in the cluster" in again.stderr


def test_delete_confirms_then_runs_the_seed_steps(sample_repo: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert run_inv(sample_repo, "cluster.apply", env=env).returncode == 0
    (tmp_path / "kube.log").unlink()
    refused = run_inv(sample_repo, "cluster.delete", env=env)
    assert refused.returncode == 3 and "without confirmation" in refused.stderr
    assert calls(tmp_path) == []
    result = run_inv(sample_repo, "cluster.delete", "--yes", env=env)
    assert result.returncode == 0, str(result)
    steps = _step_names(result.stdout)
    assert steps == [
        "15_verify_cluster_access",
        "32_reconcile_flux_stack",
        "30_manage_cert_manager_cleanup",
        "99_execute_teardown",
        "install_flux",
        "98_verify_teardown_clean",
    ]
    cmds = commands(tmp_path)
    assert (
        cmds.index("flux suspend kustomization flux-system --namespace=flux-system")
        < cmds.index("flux delete kustomization tenants --namespace=flux-system --silent")
        < cmds.index("flux delete kustomization infrastructure --namespace=flux-system --silent")
        < cmds.index("flux uninstall --silent --namespace=flux-system")
    )
    assert (
        "kubectl delete secret platform-runtime-inputs --namespace=flux-system --ignore-not-found"
        in cmds
    )
    final = state(tmp_path)
    assert "flux-system" not in final["namespaces"] and final["crds"] == []


def test_delete_with_cilium_and_leftovers(sample_repo: Path, tmp_path: Path) -> None:
    leftovers = {
        "namespaces": ["default", "kube-system", "observability"],
        "crds": ["certificates.cert-manager.io", "ciliumnetworkpolicies.cilium.io"],
    }
    env = _env(tmp_path, FEAT_CILIUM="true")
    result = run_inv(
        sample_repo,
        "cluster.delete",
        "--yes",
        env=kube_env(tmp_path, leftovers) | {k: v for k, v in env.items() if k == "FEAT_CILIUM"},
    )
    assert result.returncode == 0, str(result)
    cmds = commands(tmp_path)
    assert (
        "kubectl delete customresourcedefinition certificates.cert-manager.io --ignore-not-found"
        in cmds
    )
    assert (
        "kubectl delete customresourcedefinition ciliumnetworkpolicies.cilium.io --ignore-not-found"
        in cmds
    )
    stuck = {"namespaces": ["apps-staging"], "crds": []}
    (tmp_path / "kube-state.json").write_text(json.dumps(stuck))
    env2 = kube_env(tmp_path, KUBE_STANDIN_FAIL="delete namespace")
    clean = run_inv(sample_repo, "cluster.delete", "--yes", "--only", "98", env=env2)
    assert clean.returncode == 4 and "namespaces: apps-staging" in clean.stderr, clean


def test_delete_only_rejects_apply_only_steps(sample_repo: Path, tmp_path: Path) -> None:
    result = run_inv(sample_repo, "cluster.delete", "--only", "94", "--yes", env=_env(tmp_path))
    assert result.returncode == 2 and "apply only" in result.stderr


def test_profile_and_profile_exclusive(sample_repo: Path, tmp_path: Path) -> None:
    (sample_repo / "inventory/profiles/local.env").write_text("FEAT_VERIFY=false\n")
    profile = tmp_path / "cilium.env"
    profile.write_text("FEAT_CILIUM=true\n")
    local = run_inv(sample_repo, "cluster.apply", "--dry-run", env=_env(tmp_path))
    assert "[skip] 94_verify_config_inputs (apply; gated off: FEAT_VERIFY=false)" in local.stdout
    exclusive = run_inv(
        sample_repo, "cluster.apply", "--dry-run", env=_env(tmp_path, PROFILE_EXCLUSIVE="true")
    )
    assert "[run ] 94_verify_config_inputs (apply; gate on: FEAT_VERIFY=true)" in exclusive.stdout
    delete = run_inv(
        sample_repo, "cluster.delete", "--dry-run", "--profile", str(profile), env=_env(tmp_path)
    )
    assert "[run ] 26_manage_cilium_lifecycle (delete; gate on: FEAT_CILIUM=true)" in delete.stdout
    assert calls(tmp_path, with_kustomize=True) == []
