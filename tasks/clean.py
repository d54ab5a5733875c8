"""`inv clean`: back to a fresh-checkout state, locally; never secrets, env files or tracked files."""

from __future__ import annotations

from pathlib import Path

from tasks.runtime.cli import task


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


# Kept by a plain `inv clean`: the run history (traces) and the locks of runs in progress.
KEPT_UNDER_WORK = ("traces", "locks")


def clean_targets(project, *, everything: bool = False) -> list[Path]:
    """What `.work/` holds (but the history, unless `everything`) plus every path a layer
    declares as generated, that exists."""
    from tasks.runtime.config import load_layer_manifests

    candidates: list[Path] = []
    if project.work.is_symlink() or project.work.is_file():
        candidates.append(project.work)
    elif project.work.is_dir():
        keep = ("locks",) if everything else KEPT_UNDER_WORK
        candidates += sorted(p for p in project.work.iterdir() if p.name not in keep)
    for layer, manifest in load_layer_manifests(project).items():
        for pattern in manifest.get("generated") or []:
            candidates.extend(sorted((project.layers / layer).glob(pattern)))
    root = project.root.resolve()
    found = []
    for path in candidates:
        if path.is_symlink():
            found.append(path)  # a link goes, never what it points at
            continue
        resolved = path.resolve()
        if path.exists() and resolved != root and root in resolved.parents and path not in found:
            found.append(path)
    return found


def plan_removals(run, targets: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files and folders under `targets` to remove, and protected paths kept (with the reason)."""
    from tasks.adapters.git import Git

    root = run.project.root.resolve()
    tracked = Git(run.effects).tracked_files(root)
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


@task(
    doppler=False,
    area="clean",
    help={
        "dry_run": "list what would be removed and remove nothing",
        "all": "also remove the run history (.work/traces/)",
    },
)
def clean(run, dry_run=False, all=False):
    """Remove generated local state: .work/ (but the run history), caches, build output."""
    from tasks.runtime.console import say
    from tasks.runtime.steps import Action, Plan

    project = run.project
    targets = clean_targets(project, everything=all)
    remove, kept = plan_removals(run, targets)
    for path, why in kept:
        say(f"keep     {project.rel(path)} ({why})")
    if not all and (project.work / "traces").is_dir():
        from tasks.history.store import DEFAULT_KEEP, beyond_retention

        keep = run.settings.integer("RUNS_KEEP", DEFAULT_KEEP)
        old = beyond_retention(project.work, keep - 1)  # this run's own trace is one of them
        finished = [
            p for p in (project.work / "traces").glob("*.json") if ".running." not in p.name
        ]
        runs = len(finished) - len(old)
        say(
            f"keep     .work/traces/ (the run history: {runs} earlier run(s) and this one; the "
            f"newest RUNS_KEEP={keep} stay, and the `inv up` that --resume would continue; "
            "`inv clean --all` removes it)"
        )
        remove.extend(old)  # older than the newest RUNS_KEEP runs
    if not remove:
        say("nothing to clean")
        return

    def remover(path: Path):
        def action(sc) -> None:
            sc.effects.remove(path, what=project.rel(path))

        return action

    verb = "would remove" if run.dry_run else "remove"
    actions = []
    for path in remove:
        shown = project.rel(path) + ("/" if path.is_dir() and not path.is_symlink() else "")
        say(f"{verb}  {shown}")
        actions.append(Action(f"remove {shown}", "", remover(path)))
    actions.append(Action("tidy", "remove folders the removals emptied", _tidy(targets)))
    run.execute(Plan("clean", "clean", actions, show_plan=False))
    if not run.dry_run:
        say(f"removed {len(remove)} path(s)")


def _tidy(targets: list[Path]):
    def action(sc) -> None:
        # Folders emptied by removing their generated files go too, unless tracked content remains.
        for target in targets:
            if target.is_dir() and not target.is_symlink():
                for folder in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
                    if not any(folder.iterdir()):
                        folder.rmdir()

    return action
