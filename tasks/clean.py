"""`inv clean`: back to a fresh-checkout state, locally; never secrets, env files or tracked files."""

from __future__ import annotations

from pathlib import Path

from invoke import task


def _tracked_files(root: Path) -> set[Path] | None:
    """Files git tracks under `root`, or None when this is not a git checkout."""
    import subprocess

    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached"],
            capture_output=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {(root / name).resolve() for name in proc.stdout.decode().split("\0") if name}


def _protected(path: Path, root: Path, tracked: set[Path] | None) -> str | None:
    """Why `path` must never be removed, or None."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None  # a link under .work/ that leads out of the checkout: only the link goes
    if rel.parts and rel.parts[0] == "inventory":
        return "inventory"
    if path.name.endswith(".env") or path.name.startswith(".env"):
        return "env file"
    if tracked is not None and path.resolve() in tracked:
        return "tracked by git"
    return None


def clean_targets(project) -> list[Path]:
    """`.work/` plus every path a layer declares as generated, that exists."""
    from tasks.runtime.config import load_layer_manifests

    candidates = [project.work]
    for layer, manifest in load_layer_manifests(project).items():
        for pattern in manifest.get("generated") or []:
            candidates.extend(sorted((project.layers / layer).glob(pattern)))
    root = project.root.resolve()
    found = []
    for path in candidates:
        resolved = path.resolve()
        if path.exists() and resolved != root and root in resolved.parents and path not in found:
            found.append(path)
    return found


def plan_removals(project, targets: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files and folders under `targets` to remove, and protected paths kept (with the reason)."""
    root = project.root.resolve()
    tracked = _tracked_files(root)
    remove: list[Path] = []
    kept: list[tuple[Path, str]] = []
    for target in targets:
        if target.is_file() or target.is_symlink():
            why = _protected(target.resolve(), root, tracked)
            (kept.append((target, why)) if why else remove.append(target))
            continue
        inside = [p for p in target.rglob("*") if p.is_file() or p.is_symlink()]
        guarded = [(p, why) for p in inside if (why := _protected(p.resolve(), root, tracked))]
        if not guarded:
            remove.append(target)
            continue
        kept.extend(guarded)
        guarded_paths = {p for p, _ in guarded}
        remove.extend(p for p in inside if p not in guarded_paths)
    return remove, kept


@task(help={"dry_run": "list what would be removed and remove nothing"})
def clean(c, dry_run=False):
    """Remove generated local state: .work/, rendered inventories, caches, build output."""
    import shutil

    from tasks.runtime.console import say

    project = c.project
    targets = clean_targets(project)
    remove, kept = plan_removals(project, targets)
    for path, why in kept:
        say(f"keep     {project.rel(path)} ({why})")
    if not remove:
        say("nothing to clean")
        return
    for path in remove:
        say(
            f"{'would remove' if dry_run else 'remove'}  {project.rel(path)}{'/' if path.is_dir() else ''}"
        )
        if dry_run:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    # Folders emptied by removing their generated files go too, unless tracked content remains.
    if not dry_run:
        for target in targets:
            if target.is_dir():
                for folder in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
                    if not any(folder.iterdir()):
                        folder.rmdir()
    say(f"{'would remove' if dry_run else 'removed'} {len(remove)} path(s)")
