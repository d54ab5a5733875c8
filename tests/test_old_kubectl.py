"""Debian 12's kubectl (1.20, kustomize v2) first on PATH: the runner passes it over for a new
enough one, and says so; with nothing newer, a clear exit 2 that names the fix.

The old kubectl is a stand-in written here that answers `version` as 1.20.2 does and fails
`kustomize` with 1.20's error on the sample tree; anything it is asked is logged, so the tests
prove it never rendered.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from gitops_support import RUNTIME_INPUTS, kube_env
from helpers import run_inv

OLD_KUBECTL = """#!/bin/sh
echo "$*" >> "{log}"
case "$1" in
  version) echo '{{"clientVersion":{{"major":"1","minor":"20","gitVersion":"v1.20.2"}}}}' ;;
  kustomize) echo "Error: accumulating resources: accumulation err='accumulating resources from \
'flux-system': '$2/flux-system' must be a file'" >&2; exit 1 ;;
  *) echo "error: unknown command \\"$1\\" for \\"kubectl\\"" >&2; exit 1 ;;
esac
"""


def _old_kubectl(tmp: Path) -> tuple[Path, Path]:
    folder = tmp / "debian-bin"
    folder.mkdir()
    log = tmp / "old-kubectl.log"
    script = folder / "kubectl"
    script.write_text(OLD_KUBECTL.format(log=log))
    script.chmod(0o755)
    return folder, log


# The acts of `inv rehearse` that need kustomize v5.
KUSTOMIZE_ACTS = [
    ("gitops.layout", "--graph"),
    ("k8s.validate",),
    ("flux.diff", "platform-services"),
    ("cluster.apply", "--dry-run"),
]


@pytest.mark.parametrize("argv", KUSTOMIZE_ACTS, ids=lambda a: a[0])
def test_an_old_kubectl_first_on_path_is_passed_over(
    sample_repo: Path, tmp_path: Path, argv: tuple[str, ...]
) -> None:
    old, log = _old_kubectl(tmp_path)
    env = kube_env(tmp_path, **RUNTIME_INPUTS)
    env["PATH"] = f"{old}{os.pathsep}{env['PATH']}"
    result = run_inv(sample_repo, *argv, env=env)
    assert result.returncode == 0, str(result)
    asked = log.read_text().splitlines() if log.exists() else []
    assert all(line.startswith("version") for line in asked), asked  # never used to render


def test_runway_names_the_passed_over_kubectl(sample_repo: Path, tmp_path: Path) -> None:
    old, _ = _old_kubectl(tmp_path)
    env = kube_env(tmp_path)
    env["PATH"] = f"{old}{os.pathsep}{env['PATH']}"
    result = run_inv(sample_repo, "l0.runway", "--json", env=env)
    assert f"1.20.2 at {old / 'kubectl'}" in result.stdout, str(result)


def test_only_an_old_kubectl_is_a_clear_error(sample_repo: Path, tmp_path: Path) -> None:
    old, log = _old_kubectl(tmp_path)
    for tool in ("git", "sh"):  # what the run needs besides kubectl; no other kubectl
        found = shutil.which(tool)
        assert found, tool
        (old / tool).symlink_to(found)
    env = kube_env(tmp_path)
    env["PATH"] = str(old)
    result = run_inv(sample_repo, "k8s.validate", env=env)
    venv_kubectl = Path(sys.executable).with_name("kubectl")
    if venv_kubectl.exists():  # setup.sh put one there (no new enough kubectl on this machine)
        assert result.returncode == 0, str(result)
        assert "kustomize" not in log.read_text()
        return
    assert result.returncode == 2, str(result)
    assert f"kubectl: 1.20.2 at {old / 'kubectl'}: too old, needs 1.27 or newer" in result.output
    assert "setup.sh" in result.output and "Traceback" not in result.output
    assert "kustomize" not in log.read_text()
