"""A Run built in-process, for unit tests of code that takes one (the front door builds its own)."""

from __future__ import annotations

import os
from pathlib import Path

from tasks.runtime.project import Project
from tasks.runtime.run import EnvSelection, Run


def make_run(
    root: Path,
    *,
    task: str = "demo.apply",
    dry_run: bool = False,
    shell: dict[str, str] | None = None,
) -> Run:
    """A Run over `root` (an inventory/ folder in it), Doppler off, the given shell env."""
    env = {"PATH": os.environ.get("PATH", ""), "DOPPLER": "0", **(shell or {})}
    return Run(
        Project(root),
        task=task,
        argv=["inv", task],
        dry_run=dry_run,
        selection=EnvSelection(doppler=False),
        shell=env,
    )


def standalone_effects(work: Path | None = None, *, dry_run: bool = False):
    """A real seam outside any Run (adapter tests): children get the process env."""
    from tasks.runtime.seam import Effects

    return Effects(
        dry_run=dry_run, child_env=lambda: dict(os.environ), work=work or Path("/nonexistent")
    )
