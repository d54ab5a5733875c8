"""inv init and inv configure: the operator config and templates/ rendered strictly."""

from __future__ import annotations

from pathlib import Path

from helpers import git, run_inv

CONFIG = "inventory/homelab.yaml"


def test_init_creates_once_and_never_overwrites(sample_repo: Path) -> None:
    assert not (sample_repo / CONFIG).exists()
    dry = run_inv(sample_repo, "init", "--dry-run")
    assert dry.returncode == 0 and not (sample_repo / CONFIG).exists()
    first = run_inv(sample_repo, "init")
    assert first.returncode == 0, first
    assert (sample_repo / CONFIG).read_text() == (
        sample_repo / "inventory/homelab.sample.yaml"
    ).read_text()
    (sample_repo / CONFIG).write_text((sample_repo / CONFIG).read_text() + "# mine\n")
    second = run_inv(sample_repo, "init")
    assert second.returncode == 0 and "already exists" in second.stdout
    assert (sample_repo / CONFIG).read_text().endswith("# mine\n")
    assert "homelab.yaml" not in git(sample_repo, "status", "--porcelain").stdout  # git-ignored


def test_configure_reproduces_the_committed_tree_and_is_idempotent(sample_repo: Path) -> None:
    missing = run_inv(sample_repo, "configure")
    assert missing.returncode == 2 and "inv init" in missing.stderr
    assert run_inv(sample_repo, "init").returncode == 0
    result = run_inv(sample_repo, "configure")
    assert result.returncode == 0, str(result)
    assert "already as wanted" in result.stdout
    assert git(sample_repo, "status", "--porcelain").stdout == ""


def test_configure_renders_changes_atomically(sample_repo: Path) -> None:
    assert run_inv(sample_repo, "init").returncode == 0
    config = sample_repo / CONFIG
    config.write_text(config.read_text().replace("interval: 10m", "interval: 5m"))
    dry = run_inv(sample_repo, "configure", "--dry-run")
    assert dry.returncode == 0 and "+  interval: 5m" in dry.stdout
    assert git(sample_repo, "status", "--porcelain").stdout == ""
    result = run_inv(sample_repo, "configure")
    assert result.returncode == 0 and "5 of 9 files written" in result.stdout, str(result)
    again = run_inv(sample_repo, "configure")
    assert "already as wanted" in again.stdout


def test_configure_lists_every_missing_variable_and_writes_nothing(sample_repo: Path) -> None:
    assert run_inv(sample_repo, "init").returncode == 0
    config = sample_repo / CONFIG
    config.write_text(
        config.read_text().replace("  repo_url:", "  repo_uri:").replace("  interval: 10m\n", "")
    )
    result = run_inv(sample_repo, "configure")
    assert result.returncode == 2, str(result)
    err = result.stderr
    assert "templates/gitops/gotk-sync.yaml.j2:9: 'dict object' has no attribute 'interval'" in err
    assert "templates/gitops/gotk-sync.yaml.j2:10: 'dict object' has no attribute 'repo_url'" in err
    assert "templates/gitops/mode.yaml.j2:" in err  # every template that misses one is listed
    assert "nothing was written" in err
    assert git(sample_repo, "status", "--porcelain").stdout == ""


def test_configure_rejects_malformed_config(sample_repo: Path) -> None:
    (sample_repo / CONFIG).write_text("gitops: [unclosed\n")
    result = run_inv(sample_repo, "configure")
    assert result.returncode == 2 and "inventory/homelab.yaml:" in result.stderr, str(result)
    (sample_repo / CONFIG).write_text("gitops: {}\n")
    result = run_inv(sample_repo, "configure")
    assert result.returncode == 2 and "'apps' is a required property" in result.stderr, str(result)
