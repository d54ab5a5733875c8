"""App mode targets: choose the app environment and its issuer by path (a local Git edit)."""

from __future__ import annotations

from invoke import task

from tasks.gitopsside.cli import OptionalPositionalTask
from tasks.runtime.errors import ConfigError


@task(
    klass=OptionalPositionalTask,
    positional=["mode"],
    help={
        "mode": "the mode to select (a template in clusters/<cluster>/modes/); omit to list them",
        "dry_run": "print the diff without writing tenants.yaml",
    },
)
def mode(c, mode=None, dry_run=False):
    """Copy an app mode template into clusters/<cluster>/tenants.yaml; no MODE lists the modes."""
    from tasks.gitopsside import tree
    from tasks.gitopsside.edits import apply_local_edit
    from tasks.gitopsside.settings import GitOpsSettings
    from tasks.runtime.console import say

    settings = GitOpsSettings.load(c.project)
    available = tree.modes(settings)
    current = tree.current_mode(settings, available)
    if not mode:
        say(f"app modes (clusters/{settings.cluster}/modes/; * = current tenants.yaml):")
        for name in available:
            say(f"  {'*' if name == current else ' '} {name}")
        if current is None:
            say(f"  ({settings.rel(settings.tenants_file)} matches no mode template)")
        return
    if mode not in available:
        raise ConfigError(
            f"unknown app mode {mode!r}; valid modes: {', '.join(available)}",
            hint="modes are the templates in " + settings.rel(settings.modes_dir),
        )
    target = settings.tenants_file
    old = target.read_text(encoding="utf-8") if target.exists() else ""
    new = available[mode].read_text(encoding="utf-8")
    apply_local_edit(settings, target, old, new, dry_run=dry_run, what=f"app mode: {mode}")
