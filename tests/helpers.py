"""Front-door test helpers: a throwaway copy of the sample repo and `inv` run as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
INV = str(BIN / "inv")
STANDINS = REPO / "tasks" / "rehearsal" / "standins"

# Variables from the developer's or CI's shell that would change what the runner does.
_SCRUB_PREFIXES = (
    "DOPPLER",
    "PVE_",
    "PM_",
    "FEAT_",
    "GITOPS_",
    "VAULT_",
    "CLOUDFLARE_",
    "DDNS_",
    "K3S_",
)
_SCRUB = {
    "CI",
    "FORCE_DOPPLER",
    "PROFILE_EXCLUSIVE",
    "ONLY",
    "KUBECONFIG",
    "UPDATE_STABLE",
    "SKIP_BUILD",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "INVOKE_DEBUG",
}


def base_env(**overrides: str) -> dict[str, str]:
    """A clean environment for `inv`: no inherited homelab settings, Doppler off, no colour."""
    env = {
        k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith(_SCRUB_PREFIXES)
    }
    env.update(
        {
            "DOPPLER": "0",
            "NO_COLOR": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "COLUMNS": "200",
        }
    )
    env.update(overrides)
    return env


def copy_repo(dest: Path) -> Path:
    """Copy the checkout's files (tracked and untracked, not ignored) and commit them in a new repo."""
    listed = (
        subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    dest.mkdir(parents=True, exist_ok=True)
    for name in filter(None, listed):
        src = REPO / name
        if not src.exists() or src.is_dir():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "sample repo")
    return dest


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=check, env=env
    )


@dataclass
class InvResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return f"inv {' '.join(self.args)} -> {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def run_inv(
    repo: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 180,
    cwd: Path | None = None,
) -> InvResult:
    """Run `inv ARGS` in `repo` the way an operator would, without a terminal."""
    proc = subprocess.run(
        [INV, *args],
        cwd=cwd or repo,
        env=env or base_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin if stdin is not None else "",
    )
    return InvResult(list(args), proc.returncode, proc.stdout, proc.stderr)


def work_files(repo: Path) -> list[Path]:
    work = repo / ".work"
    return [p for p in work.rglob("*") if p.is_file()] if work.exists() else []


def task_names(repo: Path) -> list[str]:
    """Every task `inv --list` shows in `repo`, with its collection prefix."""
    import json

    listed = run_inv(repo, "--list", "--list-format", "json")
    assert listed.returncode == 0, listed

    def walk(coll: dict, prefix: str = "") -> list[str]:
        names = [prefix + t["name"] for t in coll.get("tasks", [])]
        for sub in coll.get("collections", []):
            names += walk(sub, prefix + sub["name"] + ".")
        return names

    return walk(json.loads(listed.stdout))


def flat(text: str) -> str:
    """Output with its line wrapping undone (plans wrap long lines at 120 columns)."""
    return " ".join(text.split())
