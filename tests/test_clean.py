"""`inv clean`: generated state goes, secrets, env files and tracked files stay; idempotent."""

from __future__ import annotations

from pathlib import Path

from helpers import git, run_inv


def _touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_clean_removes_generated_and_keeps_the_rest(sample_repo: Path) -> None:
    history = _touch(sample_repo / ".work" / "traces" / "t.json")
    generated = [
        _touch(sample_repo / ".work" / "inventory" / "hosts.ini"),
        _touch(sample_repo / "layers" / "l1" / "packer_cache" / "iso.bin"),
        _touch(sample_repo / "layers" / "l3" / "site.retry"),
    ]
    secrets = _touch(sample_repo / "inventory" / "profiles" / "secrets.env", "A_TOKEN=abcdef\n")
    stray_env = _touch(sample_repo / ".work" / "handoff.env", "KEEP=1\n")
    tracked = _touch(sample_repo / "layers" / "l1" / "notes.log", "tracked on purpose\n")
    git(sample_repo, "add", "-f", str(tracked))
    git(sample_repo, "commit", "-qm", "a tracked log")

    dry = run_inv(sample_repo, "clean", "--dry-run")
    assert dry.returncode == 0, dry
    assert (
        "would remove  layers/l1/packer_cache/" in dry.stdout
        and "would remove  layers/l3/site.retry" in dry.stdout
    )
    assert "keep     .work/handoff.env (env file)" in dry.stdout
    assert "keep     layers/l1/notes.log (tracked by git)" in dry.stdout
    assert "keep     .work/traces/ (the run history: 1 earlier run(s) and this one" in dry.stdout
    assert all(p.exists() for p in generated)

    real = run_inv(sample_repo, "clean")
    assert real.returncode == 0, real
    assert not any(p.exists() for p in generated)
    assert secrets.exists() and stray_env.exists() and tracked.exists()
    assert git(sample_repo, "status", "--porcelain").stdout.strip() == ""

    again = run_inv(sample_repo, "clean")
    assert again.returncode == 0 and "nothing to clean" in again.stdout, again
    assert history.exists()  # the run history stays unless --all

    everything = run_inv(sample_repo, "clean", "--all")
    assert everything.returncode == 0 and "remove  .work/traces/" in everything.stdout
    assert not history.exists()


def test_clean_on_a_clean_tree(sample_repo: Path) -> None:
    result = run_inv(sample_repo, "clean")
    assert result.returncode == 0 and "nothing to clean" in result.stdout


def test_a_link_leading_out_of_the_checkout_is_removed_not_followed(
    sample_repo: Path, tmp_path: Path
) -> None:
    outside = _touch(tmp_path / "elsewhere" / "keep.txt", "not ours\n")
    link = sample_repo / ".work" / "kubeconfig-link"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    result = run_inv(sample_repo, "clean")
    assert result.returncode == 0, str(result)
    assert not link.is_symlink() and outside.read_text() == "not ours\n"
