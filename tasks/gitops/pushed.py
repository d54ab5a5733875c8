"""Flux reads the remote, not the working tree: mode files must be committed and pushed first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.runtime.errors import RefusedError

if TYPE_CHECKING:
    from tasks.gitops.settings import GitOpsSettings


def mode_files(settings: GitOpsSettings):
    """The files the mode targets edit, those the layout has (a tree may have none of them)."""
    from pathlib import Path

    found = (settings.layout.get(p) for p in ("platform_settings", "tenants", "modes"))
    return [p for p in found if isinstance(p, Path)]


def check_mode_files_pushed(settings: GitOpsSettings, *, force: bool) -> None:
    from tasks.adapters.git import Git
    from tasks.runtime.console import warn

    git = Git(settings.run.effects)
    repo = git.toplevel(settings.root)
    if repo is None:
        problem = f"{settings.rel(settings.root)} is not in a Git repository, so Flux cannot see it"
        if not force:
            raise RefusedError(problem, hint="commit and push the tree, or pass --force")
        warn(problem + " (--force)")
        return
    files = mode_files(settings)
    if not files:
        return
    problems = []
    dirty = git.changed_paths(repo, files)
    if dirty:
        problems.append("uncommitted changes: " + ", ".join(dirty))
    upstream = git.upstream(repo) or _fallback_upstream(git, repo, settings)
    if upstream is None:
        problems.append("the branch has no upstream: Flux cannot have seen any of it")
    else:
        unpushed = git.unpushed_paths(repo, upstream, files)
        if unpushed:
            problems.append(f"committed but not pushed to {upstream}: " + ", ".join(unpushed))
    if not problems:
        return
    message = "mode files are not what Flux sees (it reads the remote):\n  " + "\n  ".join(problems)
    if not force:
        raise RefusedError(
            message, hint="commit and push them (`git push`), or pass --force to reconcile anyway"
        )
    warn(message + "\n  reconciling anyway (--force)")


def _fallback_upstream(git, repo, settings: GitOpsSettings) -> str | None:
    ref = f"{settings['remote']}/{settings['branch']}"
    return ref if git.has_ref(repo, f"refs/remotes/{ref}") else None
