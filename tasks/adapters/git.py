"""Git: the only place the runner calls `git`. argv lists, no shell; credentials only via env.

Repository credentials reach git through GIT_ASKPASS (a tiny script beside this file that echoes
them from its environment), so they are never on a command line, in a URL or in `.git/config`.
Without them git uses the operator's own credential helper. Prompts are off, so a missing
credential fails at once instead of waiting for a terminal.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tasks.runtime.errors import ExternalError
from tasks.runtime.secrets import MASKER, mask

ASKPASS = Path(__file__).with_name("git-askpass")


def _env(credentials: tuple[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    if credentials:
        user, secret = credentials
        MASKER.add(secret)
        env.update(
            {
                "GIT_ASKPASS": str(ASKPASS),
                "HOMELAB_GIT_USERNAME": user,
                "HOMELAB_GIT_SECRET": secret,
            }
        )
    return env


def run(
    repo: Path | None,
    *args: str,
    check: bool = True,
    credentials: tuple[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    argv = ["git", *(["-C", str(repo)] if repo else []), *args]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=_env(credentials),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise ExternalError("git is not installed", hint="apt-get install git") from None
    except subprocess.TimeoutExpired:
        raise ExternalError(f"git {args[0]} timed out after {timeout:.0f}s") from None
    if check and proc.returncode != 0:
        detail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise ExternalError(mask(f"git {' '.join(args)} failed (exit {proc.returncode}): {detail}"))
    return proc


def toplevel(path: Path) -> Path | None:
    proc = run(path, "rev-parse", "--show-toplevel", check=False)
    return Path(proc.stdout.strip()).resolve() if proc.returncode == 0 else None


def changed_paths(repo: Path, paths: list[Path]) -> list[str]:
    """Uncommitted changes (staged, unstaged or untracked) to `paths`, as `git status` names them."""
    proc = run(repo, "status", "--porcelain", "--untracked-files=all", "--", *map(str, paths))
    return [line[3:] for line in proc.stdout.splitlines() if line.strip()]


def upstream(repo: Path) -> str | None:
    proc = run(repo, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def unpushed_paths(repo: Path, upstream_ref: str, paths: list[Path]) -> list[str]:
    """Files among `paths` changed by commits that `upstream_ref` does not have."""
    proc = run(
        repo, "log", "--format=", "--name-only", f"{upstream_ref}..HEAD", "--", *map(str, paths)
    )
    return sorted({line for line in proc.stdout.splitlines() if line.strip()})


def head_sha(repo: Path) -> str:
    return run(repo, "rev-parse", "HEAD").stdout.strip()


def remote_url(repo: Path, remote: str = "origin") -> str | None:
    proc = run(repo, "remote", "get-url", remote, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def clone(url: str, dest: Path, credentials: tuple[str, str] | None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(None, "clone", "--quiet", "--no-checkout", url, str(dest), credentials=credentials)


def ref_kind(repo: Path, ref: str, remote: str = "origin") -> str:
    """branch, tag or commit: how `ref` resolves after a fetch."""
    if (
        run(
            repo, "rev-parse", "--verify", "--quiet", f"refs/remotes/{remote}/{ref}", check=False
        ).returncode
        == 0
    ):
        return "branch"
    if (
        run(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{ref}", check=False).returncode
        == 0
    ):
        return "tag"
    if (
        run(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).returncode
        == 0
    ):
        return "commit"
    raise ExternalError(f"ref {ref!r} is not a branch, tag or commit of {remote_url(repo, remote)}")
