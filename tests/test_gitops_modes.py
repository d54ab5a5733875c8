"""Mode targets through the front door: platform.certs and app.mode edit local files only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from gitops_support import SETTINGS, TENANTS
from helpers import base_env, git, run_inv, work_files


def _diff_lines(repo: Path) -> list[str]:
    out = git(repo, "diff", "-U0").stdout
    return [ln for ln in out.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def test_platform_certs_prod_is_a_one_line_diff(sample_repo: Path) -> None:
    before = (sample_repo / SETTINGS).read_text()
    result = run_inv(sample_repo, "platform.certs", "--prod")
    assert result.returncode == 0, str(result)
    assert _diff_lines(sample_repo) == [
        '-  CERT_ISSUER: "letsencrypt-staging"',
        '+  CERT_ISSUER: "letsencrypt-prod"',
    ]
    after = (sample_repo / SETTINGS).read_text()
    # Comments, order and the other keys' quoting are untouched.
    assert after == before.replace('"letsencrypt-staging"', '"letsencrypt-prod"', 1)
    assert "+  CERT_ISSUER" in result.stdout  # the diff is printed
    assert "inv flux.reconcile" in result.stdout
    repo = sample_repo.resolve()
    assert (
        f"git -C {repo} add {SETTINGS} && git -C {repo} commit -m "
        f"'platform certs: CERT_ISSUER=letsencrypt-prod' && git -C {repo} push"
    ) in result.stdout
    (trace,) = [p for p in work_files(sample_repo) if p.suffix == ".json"]  # the run's trace only
    effects = json.loads(trace.read_text())["effects"]
    assert [e["target"] for e in effects if e["mutates"]] == [f"write {sample_repo / SETTINGS}"]
    assert not any(e["target"].startswith(("kubectl", "flux")) for e in effects)  # no cluster call


def test_platform_certs_dry_run_and_already_set(sample_repo: Path) -> None:
    dry = run_inv(sample_repo, "platform.certs", "--prod", "--dry-run")
    assert dry.returncode == 0, dry
    assert '+  CERT_ISSUER: "letsencrypt-prod"' in dry.stdout
    assert git(sample_repo, "status", "--porcelain").stdout == ""
    same = run_inv(sample_repo, "platform.certs", "--staging")
    assert same.returncode == 0 and "already as wanted" in same.stdout, same
    assert git(sample_repo, "status", "--porcelain").stdout == ""
    for flags in ([], ["--prod", "--staging"]):  # says what is set now and what each selects
        asked = run_inv(sample_repo, "platform.certs", *flags)
        assert asked.returncode == 2, asked
        assert "now CERT_ISSUER=letsencrypt-staging in " in asked.stderr, asked
        assert "--prod` selects letsencrypt-prod" in asked.stderr, asked


def test_platform_certs_keeps_single_quotes_and_plain_scalars(sample_repo: Path) -> None:
    path = sample_repo / SETTINGS
    path.write_text(
        "# head comment\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: platform-settings\n"
        "data:\n  ZED: 'z'   # keep\n  CERT_ISSUER: 'letsencrypt-prod'  # the issuer\n  A_PLAIN: plain\n"
    )
    git(sample_repo, "commit", "-qam", "single quotes")
    result = run_inv(sample_repo, "platform.certs", "--staging")
    assert result.returncode == 0, str(result)
    assert _diff_lines(sample_repo) == [
        "-  CERT_ISSUER: 'letsencrypt-prod'  # the issuer",
        "+  CERT_ISSUER: 'letsencrypt-staging'  # the issuer",
    ]


def test_platform_certs_bad_input(sample_repo: Path) -> None:
    both = run_inv(sample_repo, "platform.certs", "--prod", "--staging")
    assert both.returncode == 2 and "not both" in both.stderr, both
    (sample_repo / SETTINGS).write_text("data:\n  CERT_ISSUER: [unclosed\n")
    git(sample_repo, "commit", "-qam", "broken")
    broken = run_inv(sample_repo, "platform.certs", "--prod")
    assert broken.returncode == 2, broken
    assert "configmap-platform-settings.yaml" in broken.stderr and "invalid YAML" in broken.stderr
    assert "Traceback" not in broken.output
    assert git(sample_repo, "status", "--porcelain").stdout == ""


def test_app_mode_lists_switches_and_is_idempotent(sample_repo: Path) -> None:
    listed = run_inv(sample_repo, "app.mode")
    assert listed.returncode == 0, listed
    assert "* staging-le-staging" in listed.stdout
    for name in ("staging-le-prod", "prod-le-staging", "prod-le-prod"):
        assert f"  {name}" in listed.stdout
    switched = run_inv(sample_repo, "app.mode", "staging-le-prod")
    assert switched.returncode == 0, switched
    assert "+  path: ./layers/gitops/tenants/overlays/app-staging-le-prod" in switched.stdout
    assert "inv flux.reconcile" in switched.stdout
    tenants = (sample_repo / TENANTS).read_text()
    assert (
        tenants
        == (sample_repo / "layers/gitops/clusters/home/modes/staging-le-prod.yaml").read_text()
    )
    status = git(sample_repo, "status", "--porcelain").stdout
    again = run_inv(sample_repo, "app.mode", "staging-le-prod")
    assert again.returncode == 0 and "already as wanted" in again.stdout
    assert git(sample_repo, "status", "--porcelain").stdout == status
    assert "* staging-le-prod" in run_inv(sample_repo, "app.mode").stdout


def test_app_mode_dry_run_unknown_and_missing_modes(sample_repo: Path) -> None:
    dry = run_inv(sample_repo, "app.mode", "prod-le-prod", "--dry-run")
    assert dry.returncode == 0 and "app-prod-le-prod" in dry.stdout
    assert git(sample_repo, "status", "--porcelain").stdout == ""
    unknown = run_inv(sample_repo, "app.mode", "prod-le-nope")
    assert unknown.returncode == 2
    assert (
        "valid modes: prod-le-prod, prod-le-staging, staging-le-prod, staging-le-staging"
        in unknown.stderr
    )
    git(sample_repo, "rm", "-rq", "layers/gitops/clusters/home/modes")
    git(sample_repo, "commit", "-qm", "no modes")
    missing = run_inv(sample_repo, "app.mode", "prod-le-prod")
    assert missing.returncode == 2 and "modes folder not found" in missing.stderr
    assert git(sample_repo, "status", "--porcelain").stdout == ""


def test_mode_targets_follow_runner_settings(sample_repo: Path) -> None:
    """The tree's root and cluster folder come from inventory/runner.yaml, not from code."""
    git(sample_repo, "mv", "layers/gitops", "gitops-tree")
    git(sample_repo, "mv", "gitops-tree/clusters/home", "gitops-tree/clusters/lab")
    runner = sample_repo / "inventory/runner.yaml"
    runner.write_text(
        runner.read_text()
        .replace("layers/gitops", "gitops-tree")
        .replace("cluster: home", "cluster: lab")
    )
    result = run_inv(sample_repo, "platform.certs", "--prod")
    assert result.returncode == 0, str(result)
    assert (
        "gitops-tree/clusters/lab/flux-system/sources/configmap-platform-settings.yaml"
        in result.stdout
    )


def test_crash_between_write_and_rename_leaves_the_old_file(
    sample_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from run_support import make_run

    from tasks.runtime import files

    target = sample_repo / TENANTS
    old = target.read_text()

    def crash(src: str, dst: str) -> None:
        raise KeyboardInterrupt("power cut between write and rename")

    monkeypatch.setattr(files.os, "replace", crash)

    with pytest.raises(KeyboardInterrupt):
        make_run(sample_repo).effects.write_file(target, "new: content\n")
    assert target.read_text() == old
    assert [
        p.name for p in target.parent.iterdir() if p.name.startswith(".")
    ] == []  # no temp file left


def test_app_mode_keeps_file_mode(sample_repo: Path) -> None:
    target = sample_repo / TENANTS
    os.chmod(target, 0o640)
    assert run_inv(sample_repo, "app.mode", "prod-le-prod", env=base_env()).returncode == 0
    assert target.stat().st_mode & 0o777 == 0o640


def test_platform_certs_plain_scalar_stays_plain(sample_repo: Path) -> None:
    path = sample_repo / SETTINGS
    path.write_text(
        "apiVersion: v1\nkind: ConfigMap\ndata:\n  CERT_ISSUER: letsencrypt-staging # plain\n  X: 'y'\n"
    )
    git(sample_repo, "commit", "-qam", "plain")
    assert run_inv(sample_repo, "platform.certs", "--prod").returncode == 0
    assert _diff_lines(sample_repo) == [
        "-  CERT_ISSUER: letsencrypt-staging # plain",
        "+  CERT_ISSUER: letsencrypt-prod # plain",
    ]


@pytest.mark.parametrize(
    ("text", "named"),
    [("apiVersion: v1\nkind: [broken\n", "invalid YAML"), ("just: words\n", "not a Kubernetes")],
)
def test_a_broken_mode_file_is_refused_before_the_tenants_file_is_touched(
    sample_repo: Path, text: str, named: str
) -> None:
    mode_file = str(Path(TENANTS).parent / "modes" / "staging-le-prod.yaml")
    (sample_repo / mode_file).write_text(text)
    before = (sample_repo / TENANTS).read_bytes()
    result = run_inv(sample_repo, "app.mode", "staging-le-prod")
    assert result.returncode == 2, str(result)
    assert mode_file in result.stderr and named in result.stderr
    assert (sample_repo / TENANTS).read_bytes() == before
