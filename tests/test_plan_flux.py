"""`inv plan --layer gitops` against a cluster that answers: each local Flux Kustomization of the
graph is compared with `flux diff kustomization NAME --namespace=NS --path=FOLDER` (exit 0 no
change, 1 differences, >1 failed). No Kubernetes API or flux CLI can run here: the recording
stand-ins (tasks/rehearsal/standins/) answer, and their log shows exactly what was asked; the
Git side is real (a local bare remote)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gitops_support import bare_remote, calls, commands, kube_env, state
from helpers import run_inv

# The sample tree's Kustomizations, in the graph's dependency order, with the folder each one's
# `spec.path` names (what `--path` must be: the local folder Flux would build).
KUSTOMIZATIONS = {
    "flux-system": "layers/gitops/clusters/home",
    "infrastructure": "layers/gitops/infrastructure/overlays/home",
    "issuers": "layers/gitops/infrastructure/issuers",
    "platform-services": "layers/gitops/platform-services/overlays/home",
    "tenants": "layers/gitops/tenants/overlays/app-staging-le-staging",
}
DRIFT = (
    "► HelmRelease/oauth2-proxy/oauth2-proxy drifted\n"
    "  spec.values.ingress.hosts\n"
    "+ auth.home.example.net\n"
    "- auth.old.example.net"
)


@pytest.fixture
def repo(sample_repo: Path, tmp_path: Path) -> Path:
    bare_remote(sample_repo, tmp_path)  # committed and pushed: the Git side reads as declared
    return sample_repo


def _plan(repo: Path, env: dict[str, str], *args: str):
    return run_inv(repo, "plan", "--layer", "gitops", *args, env=env)


def _trace(repo: Path) -> dict:
    paths = sorted((repo / ".work/traces").glob("plan-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(paths[-1].read_text())


def _carried_out(trace: dict) -> list[str]:
    return [
        f"{e['kind']} {e['target']}"
        for e in trace["effects"]
        if e["mutates"] and e["outcome"] != "skipped"
    ]


def _items(result) -> dict[str, dict]:
    (plan,) = json.loads(result.stdout)["plans"]
    return {i["name"]: i for i in plan["items"]}


def _expected_diffs(repo: Path) -> list[str]:
    root = repo.resolve()
    return [
        f"flux diff kustomization {name} --namespace=flux-system --path={root}/{folder}"
        for name, folder in KUSTOMIZATIONS.items()
    ]


def test_one_kustomization_differs_exit_2_with_its_lines(repo: Path, tmp_path: Path) -> None:
    env = kube_env(tmp_path, {"diff": {"platform-services": DRIFT}})
    result = _plan(repo, env)
    assert result.returncode == 2, str(result)
    assert "Traceback" not in result.output
    lines = result.stdout.splitlines()
    rows = {ln.split()[0]: ln.split()[1] for ln in lines if ln.startswith("flux-system/")}
    assert rows == {
        "flux-system/flux-system": "ok",
        "flux-system/infrastructure": "ok",
        "flux-system/issuers": "ok",
        "flux-system/platform-services": "change",
        "flux-system/tenants": "ok",
    }, result.stdout
    for line in DRIFT.splitlines():
        shown = f"  flux-system/platform-services: {line}" in result.stdout
        # The `►`, `+` and `-` lines are shown; flux's context lines are not.
        assert shown == line.startswith(("►", "+", "-")), line
    assert "total gitops: 1 to change, 0 in error, 5 as declared" in result.stdout
    # Exactly one API probe, then one `flux diff` per local Kustomization, in dependency order.
    assert commands(tmp_path) == [
        "kubectl version -o json --request-timeout=10s",
        *_expected_diffs(repo),
    ]
    trace = _trace(repo)
    assert trace["dry_run"] is True and trace["exit_code"] == 2
    diffs = [e for e in trace["effects"] if e["target"].startswith("flux diff")]
    assert len(diffs) == 5 and not any(e["mutates"] for e in diffs)  # the reads really ran
    assert _carried_out(trace) == []
    cluster = state(tmp_path)  # the modelled cluster is left as it was: nothing installed
    assert cluster["diff"] == {"platform-services": DRIFT}
    assert [cluster[k] for k in ("crds", "kustomizations", "sources", "secrets")] == [
        [],
        {},
        {},
        {},
    ]

    quiet = _plan(repo, env, "--quiet")
    assert quiet.returncode == 2, str(quiet)
    assert quiet.stdout.splitlines() == [
        "gitops: flux-system/platform-services: change: flux diff: differs "
        "(► HelmRelease/oauth2-proxy/oauth2-proxy drifted; + auth.home.example.net; "
        "- auth.old.example.net)"
    ]


def test_no_kustomization_differs_exit_0_with_the_handed_off_kubeconfig(
    repo: Path, tmp_path: Path
) -> None:
    env = kube_env(tmp_path)
    env.pop("KUBECONFIG")  # the k3s stage's hand-off is the default kubeconfig
    handed = repo / ".work/home/kubeconfig"
    handed.parent.mkdir(parents=True)
    handed.write_text("apiVersion: v1\nkind: Config\n")
    result = _plan(repo, env, "--json")
    assert result.returncode == 0, str(result)
    items = _items(result)
    assert {n: i["state"] for n, i in items.items()} == {
        "layers/gitops": "ok",
        **{f"flux-system/{name}": "ok" for name in KUSTOMIZATIONS},
    }
    assert {i["detail"] for n, i in items.items() if n != "layers/gitops"} == {
        "flux diff: no changes"
    }
    assert commands(tmp_path)[1:] == _expected_diffs(repo)
    assert _carried_out(_trace(repo)) == []


def test_a_failing_flux_diff_is_an_error_exit_1(repo: Path, tmp_path: Path) -> None:
    env = kube_env(tmp_path, {"fail_diff": ["issuers"], "diff": {"tenants": DRIFT}})
    result = _plan(repo, env, "--json")
    assert result.returncode == 1, str(result)
    assert "Traceback" not in result.output
    items = _items(result)
    assert items["flux-system/issuers"]["state"] == "error"
    assert items["flux-system/issuers"]["detail"] == (
        "flux diff failed (exit 2): ✗ Kustomization issuers: server-side dry-run failed"
    )
    # One Kustomization's failure is its own row: the others are still compared.
    assert items["flux-system/tenants"]["state"] == "change"
    assert items["flux-system/platform-services"]["state"] == "ok"
    assert commands(tmp_path)[1:] == _expected_diffs(repo)
    assert "plan: 1 item(s) could not be read or are broken" in result.stderr
    trace = _trace(repo)
    assert trace["exit_code"] == 1 and _carried_out(trace) == []


def test_an_exit_1_without_a_diff_is_an_error_not_a_change(repo: Path, tmp_path: Path) -> None:
    """flux exits 1 for errors outside the diff too (a bad flag, a missing file): no `►` line."""
    env = kube_env(tmp_path, {"diff": {"tenants": "✗ unknown flag: --kustomization-file"}})
    result = _plan(repo, env, "--json")
    assert result.returncode == 1, str(result)
    item = _items(result)["flux-system/tenants"]
    assert item["state"] == "error" and item["detail"].startswith("flux diff failed (exit 1)")


def test_a_kubeconfig_whose_api_does_not_answer_is_an_error_not_no_change(
    repo: Path, tmp_path: Path
) -> None:
    env = kube_env(tmp_path, {"unreachable": True})
    result = _plan(repo, env, "--json")
    assert result.returncode == 1, str(result)
    items = _items(result)
    assert items["flux diff"]["state"] == "error"
    assert items["flux diff"]["detail"].startswith("the Kubernetes API does not answer (KUBECONFIG")
    assert items["layers/gitops"]["state"] == "ok"  # the Git side was still read
    assert commands(tmp_path) == ["kubectl version -o json --request-timeout=10s"]
    assert _carried_out(_trace(repo)) == []


def test_without_a_kubeconfig_flux_diff_is_not_checked_and_nothing_is_called(
    repo: Path, tmp_path: Path
) -> None:
    env = kube_env(tmp_path)
    env.pop("KUBECONFIG")  # and no hand-off, no ~/.kube/config (the tests' HOME is empty)
    result = _plan(repo, env, "--json")
    assert result.returncode == 0, str(result)
    items = _items(result)
    assert items["flux diff"]["state"] == "not checked"
    assert "no kubeconfig" in items["flux diff"]["detail"]
    assert calls(tmp_path, with_probes=True) == []
