"""Git: the only place the runner calls `git`. argv lists, no shell; credentials only via env.

Every call goes through the run's effects seam, so git sees the run's env (env files, Doppler,
the shell), is recorded in the trace, and a mutating call (clone, fetch, checkout, remote edits)
is withheld in a dry run. Repository credentials reach git through GIT_ASKPASS (a tiny script
beside this file that echoes them from its environment), so they are never on a command line, in
a URL or in `.git/config`. Without them git uses the operator's own credential helper. Prompts
are off, so a missing credential fails at once instead of waiting for a terminal.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tasks.runtime.errors import ExternalError
from tasks.runtime.secrets import MASKER, mask

if TYPE_CHECKING:
    from tasks.runtime.seam import CommandResult, Effects

ASKPASS = Path(__file__).with_name("git-askpass")


class Git:
    def __init__(self, effects: Effects):
        self.effects = effects

    def run(
        self,
        repo: Path | None,
        *args: str,
        mutates: bool = False,
        check: bool = True,
        credentials: tuple[str, str] | None = None,
        timeout: float = 120,
    ) -> CommandResult:
        argv = ["git", *(["-C", str(repo)] if repo else []), *args]
        env = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
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
        result = self.effects.command(
            argv, mutates=mutates, env=env, timeout=timeout, check=False, echo=False
        )
        if result.exited == 127:
            raise ExternalError("git is not installed", hint="apt-get install git")
        if check and result.failed:
            detail = " | ".join(result.stderr.strip().splitlines()[-3:])
            raise ExternalError(
                mask(f"git {' '.join(args)} failed (exit {result.exited}): {detail}")
            )
        return result

    def toplevel(self, path: Path) -> Path | None:
        proc = self.run(path, "rev-parse", "--show-toplevel", check=False)
        return Path(proc.stdout.strip()).resolve() if proc.ok else None

    def tracked_files(self, repo: Path) -> set[Path] | None:
        """Files git tracks in `repo`, or None when it is not a git checkout."""
        proc = self.run(repo, "ls-files", "-z", "--cached", check=False, timeout=30)
        if proc.failed:
            return None
        return {(repo / name).resolve() for name in proc.stdout.split("\0") if name}

    def changed_paths(self, repo: Path, paths: list[Path]) -> list[str]:
        """Uncommitted changes (staged, unstaged or untracked) to `paths`, as `git status` names them."""
        proc = self.run(
            repo, "status", "--porcelain", "--untracked-files=all", "--", *map(str, paths)
        )
        return [line[3:] for line in proc.stdout.splitlines() if line.strip()]

    def upstream(self, repo: Path) -> str | None:
        proc = self.run(
            repo, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}", check=False
        )
        return proc.stdout.strip() if proc.ok else None

    def has_ref(self, repo: Path, ref: str) -> bool:
        return self.run(repo, "rev-parse", "--verify", "--quiet", ref, check=False).ok

    def unpushed_paths(self, repo: Path, upstream_ref: str, paths: list[Path]) -> list[str]:
        """Files among `paths` changed by commits that `upstream_ref` does not have."""
        proc = self.run(
            repo, "log", "--format=", "--name-only", f"{upstream_ref}..HEAD", "--", *map(str, paths)
        )
        return sorted({line for line in proc.stdout.splitlines() if line.strip()})

    def ever_committed(self, repo: Path, path: Path) -> bool:
        """Whether any commit of the current branch holds `path`."""
        proc = self.run(repo, "log", "-1", "--format=%H", "--", str(path), check=False)
        return proc.ok and bool(proc.stdout.strip())

    def head_sha(self, repo: Path) -> str:
        return self.run(repo, "rev-parse", "HEAD").stdout.strip()

    def remote_url(self, repo: Path, remote: str = "origin") -> str | None:
        proc = self.run(repo, "remote", "get-url", remote, check=False)
        return proc.stdout.strip() if proc.ok else None

    def clone(self, url: str, dest: Path, credentials: tuple[str, str] | None) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.run(
            None,
            "clone",
            "--quiet",
            "--no-checkout",
            url,
            str(dest),
            mutates=True,
            credentials=credentials,
        )

    def ref_kind(self, repo: Path, ref: str, remote: str = "origin") -> str:
        """branch, tag or commit: how `ref` resolves after a fetch."""
        if self.has_ref(repo, f"refs/remotes/{remote}/{ref}"):
            return "branch"
        if self.has_ref(repo, f"refs/tags/{ref}"):
            return "tag"
        if self.has_ref(repo, f"{ref}^{{commit}}"):
            return "commit"
        raise ExternalError(
            f"ref {ref!r} is not a branch, tag or commit of {self.remote_url(repo, remote)}"
        )
