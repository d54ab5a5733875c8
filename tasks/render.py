"""`inv init` and `inv configure`: the operator config, and templates/ rendered from it (Jinja2, strict)."""

from __future__ import annotations

from invoke import task

CONFIG_NAME = "homelab.yaml"
SAMPLE_NAME = "homelab.sample.yaml"


@task(help={"dry_run": "say what would be created without writing it"})
def init(c, dry_run=False):
    """Create the operator config (inventory/homelab.yaml) from the bundled sample; never overwrites."""
    from tasks.runtime.console import say
    from tasks.runtime.errors import ConfigError
    from tasks.runtime.files import atomic_write

    project = c.project
    target, sample = project.inventory / CONFIG_NAME, project.inventory / SAMPLE_NAME
    if target.exists():
        say(f"{project.rel(target)} already exists: left as it is (edit it, then `inv configure`)")
        return
    if not sample.exists():
        raise ConfigError(f"{project.rel(sample)}: the bundled sample config is missing")
    if dry_run:
        say(f"dry run: would create {project.rel(target)} from {project.rel(sample)}")
        return
    atomic_write(target, sample.read_text(encoding="utf-8"), mode=0o600)
    say(
        f"created {project.rel(target)} from {project.rel(sample)}; edit it, then run `inv configure`"
    )


@task(help={"dry_run": "print what would change (diffs) without writing"})
def configure(c, dry_run=False):
    """Render templates/ from the operator config with Jinja2 in strict mode; writes atomically."""
    from tasks.gitopsside.render import render_all
    from tasks.gitopsside.settings import GitOpsSettings

    render_all(c.project, GitOpsSettings.load(c.project), dry_run=dry_run)
