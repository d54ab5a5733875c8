"""`inv rehearse`: the runner end to end against local stand-ins, in a throwaway copy."""

from __future__ import annotations

from invoke import task


def _copy_checkout(root, dest) -> None:
    import os
    import shutil
    import subprocess

    skip = {".git", ".venv", ".work", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
    shutil.copytree(
        root, dest, ignore=lambda _d, names: [n for n in names if n in skip], symlinks=True
    )
    env = {
        "GIT_AUTHOR_NAME": "rehearsal",
        "GIT_AUTHOR_EMAIL": "rehearsal@localhost",
        "GIT_COMMITTER_NAME": "rehearsal",
        "GIT_COMMITTER_EMAIL": "rehearsal@localhost",
    }
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "rehearsal copy"],
    ):
        subprocess.run(
            ["git", "-C", str(dest), *args],
            check=True,
            capture_output=True,
            env={**os.environ, **env},
        )


@task(help={"keep": "keep the throwaway copy and print where it is"})
def rehearse(c, keep=False):
    """Rehearse every layer and orchestrator against local stand-ins; needs no homelab."""
    import importlib
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    import time
    from contextlib import ExitStack
    from pathlib import Path

    from tasks.rehearsal import STAGE_MODULES, Rehearsal
    from tasks.runtime.console import rich_print, say
    from tasks.runtime.errors import ExternalError

    scratch = Path(tempfile.mkdtemp(prefix="homelab-rehearsal-"))
    workdir = scratch / "repo"
    _copy_checkout(c.project.root, workdir)
    # The rehearsal never reaches Doppler or the operator's machine-local profiles.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DOPPLER", "PVE_", "PM_"))}
    rehearsal = Rehearsal(workdir, scratch, {**base, "DOPPLER": "0", "PROFILE_EXCLUSIVE": "true"})
    inv = str(Path(sys.executable).with_name("inv"))
    failures = []
    try:
        with ExitStack() as stack:
            acts = []
            for name in STAGE_MODULES:
                try:
                    module = importlib.import_module(f"tasks.rehearsal.{name}")
                except ModuleNotFoundError:
                    continue
                acts += [(name, act) for act in stack.enter_context(module.stage(rehearsal))]
            for number, (area, act) in enumerate(acts, 1):
                rich_print(
                    f"\n[bold]== {number}/{len(acts)} {act.title}[/bold]  (inv {' '.join(act.argv)})"
                )
                t0 = time.monotonic()
                proc = subprocess.run(
                    [inv, *act.argv], cwd=workdir, env=rehearsal.env, stdin=subprocess.DEVNULL
                )
                took = time.monotonic() - t0
                if proc.returncode != act.expect_exit:
                    failures.append(f"{area}: inv {' '.join(act.argv)} exited {proc.returncode}")
                    rich_print(f"[red]-- failed[/red] (exit {proc.returncode}, {took:.1f}s)")
                else:
                    rich_print(f"[green]-- ok[/green] ({took:.1f}s)")
    finally:
        if keep:
            say(f"\nrehearsal copy kept at {workdir}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    if failures:
        raise ExternalError(
            f"rehearsal: {len(failures)} act(s) failed:\n  " + "\n  ".join(failures)
        )
    say(f"\nrehearsal: all {len(acts)} acts passed")
