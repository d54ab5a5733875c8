"""Mode-target edits keep each file as it is stored: line endings, encoding, the other documents of
a multi-document file; the printed next steps run from any directory."""

from __future__ import annotations

import codecs
import subprocess
from pathlib import Path

from gitops_support import SETTINGS, TENANTS, commit_tree, layout_a, point_runner_at
from helpers import git, run_inv


def _numstat(repo: Path) -> list[str]:
    return git(repo, "diff", "--numstat").stdout.splitlines()


def test_crlf_file_gets_a_one_line_diff(sample_repo: Path) -> None:
    path = sample_repo / SETTINGS
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    git(sample_repo, "commit", "-qam", "CRLF")
    result = run_inv(sample_repo, "platform.certs", "--prod")
    assert result.returncode == 0, str(result)
    assert _numstat(sample_repo) == [f"1\t1\t{SETTINGS}"]
    data = path.read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n")  # every line still ends in CRLF
    assert b'CERT_ISSUER: "letsencrypt-prod"\r\n' in data
    assert "\r" not in result.stdout  # the printed diff is clean


def test_utf8_bom_and_utf16_files_keep_their_encoding(sample_repo: Path) -> None:
    path = sample_repo / SETTINGS
    text = path.read_text().replace("# Cluster-level", "# Clüster-level ✓")
    path.write_bytes(codecs.BOM_UTF8 + text.encode("utf-8"))
    git(sample_repo, "commit", "-qam", "BOM")
    assert run_inv(sample_repo, "platform.certs", "--prod").returncode == 0
    assert _numstat(sample_repo) == [f"1\t1\t{SETTINGS}"]
    assert path.read_bytes().startswith(codecs.BOM_UTF8)
    git(sample_repo, "commit", "-qam", "prod")
    path.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    git(sample_repo, "commit", "-qam", "UTF-16")
    result = run_inv(sample_repo, "platform.certs", "--prod")
    assert result.returncode == 0, str(result)
    data = path.read_bytes()
    assert data.startswith(codecs.BOM_UTF16_LE)
    assert data[2:].decode("utf-16-le") == text.replace(
        '"letsencrypt-staging"', '"letsencrypt-prod"', 1
    )


def test_app_mode_keeps_crlf_tenants_file(sample_repo: Path) -> None:
    tenants = sample_repo / TENANTS
    tenants.write_bytes(tenants.read_bytes().replace(b"\n", b"\r\n"))
    git(sample_repo, "commit", "-qam", "CRLF tenants")
    listed = run_inv(sample_repo, "app.mode")
    assert "* staging-le-staging" in listed.stdout  # line endings aside, it is that mode
    assert run_inv(sample_repo, "app.mode", "staging-le-prod").returncode == 0
    data = tenants.read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") and b"app-staging-le-prod" in data
    changed = [ln for ln in _numstat(sample_repo) if ln.endswith("tenants.yaml")]
    assert changed == [f"3\t3\t{TENANTS}"]  # the mode's comment lines and its path, nothing else


def test_multi_document_edit_and_next_steps_from_anywhere(sample_repo: Path, tmp_path: Path):
    root = layout_a(tmp_path)
    commit_tree(root, tmp_path, "fleet-a")
    point_runner_at(sample_repo, root, "lab")
    result = run_inv(sample_repo, "platform.certs", "--prod")
    assert result.returncode == 0, str(result)
    assert _numstat(root) == ["1\t1\tclusters/lab/flux-system/settings.yaml"]
    step = next(ln.strip() for ln in result.stdout.splitlines() if ln.strip().startswith("git -C"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ran = subprocess.run(
        step,
        shell=True,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid",
        },
    )
    assert ran.returncode == 0, ran.stderr
    assert git(root, "status", "--porcelain").stdout == ""
    assert git(root, "status", "-sb").stdout.startswith("## main...origin/main")
    assert "ahead" not in git(root, "status", "-sb").stdout  # pushed


def test_two_configmaps_of_the_same_name_are_refused(sample_repo: Path) -> None:
    path = sample_repo / SETTINGS
    path.write_text(path.read_text() + "---\n" + path.read_text())
    git(sample_repo, "commit", "-qam", "twice")
    result = run_inv(sample_repo, "platform.certs", "--prod")
    assert result.returncode == 2 and "2 ConfigMaps match" in result.stderr, str(result)
    assert git(sample_repo, "status", "--porcelain").stdout == ""
