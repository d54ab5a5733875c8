"""The rehearsal behind `inv rehearse`: the whole runner driven against local stand-ins.

Each area contributes a module here with `stage(rehearsal)`, a context manager that starts what
the area needs (fakepve, sshd, a bare git remote...), adds to `rehearsal.env`, and yields the
acts to run: real `inv` commands, run through the front door in a throwaway copy of the checkout.
Every stand-in lives here too (`standins/`); the product imports nothing from `tests/`.

The copy holds the checkout's tracked files only (never its git-ignored secrets.env or host.env),
in a private (0700) folder that is removed afterwards unless `--keep` is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.runtime.cli import task

# Stages are entered in this order; a later stage sees the env earlier ones set.
STAGE_MODULES = ("foundation", "proxmox", "templates", "ssh", "gitops")
STANDINS = Path(__file__).with_name("standins")


@dataclass(frozen=True)
class Act:
    title: str
    argv: tuple[str, ...]
    expect_exit: int = 0


@dataclass
class Rehearsal:
    workdir: Path  # the throwaway copy of the checkout the acts run in
    scratch: Path  # room for certificates, keys, remotes
    env: dict[str, str] = field(default_factory=dict)


def copy_checkout(root: Path, dest: Path) -> None:
    """The checkout's tracked files (as they are on disk), committed in a new repo at `dest`."""
    import os
    import shutil
    import subprocess

    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached"],
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        from tasks.runtime.errors import ConfigError

        raise ConfigError(
            f"{root} is not a git checkout: the rehearsal copies the checkout's tracked files",
            hint="run it from a clone of the runner",
        )
    dest.mkdir(parents=True, exist_ok=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = root / name
        if not source.is_file() and not source.is_symlink():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    env = {
        **os.environ,
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
        subprocess.run(["git", "-C", str(dest), *args], check=True, capture_output=True, env=env)


@task(
    doppler=False,
    traced=True,
    help={
        "keep": "keep the throwaway copy and print where it is",
        "dry_run": "say what the rehearsal would stand up and run; start nothing",
    },
)
def rehearse(run, keep=False, dry_run=False):
    """Rehearse every layer and orchestrator against local stand-ins; needs no homelab."""
    import importlib
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    import time
    from contextlib import ExitStack

    from tasks.runtime.console import rich_print, say
    from tasks.runtime.errors import ExternalError

    if run.dry_run:
        say(
            "dry run: the rehearsal would copy this checkout's tracked files to a private temporary "
            f"folder and run its acts there ({', '.join(STAGE_MODULES)}) against local stand-ins; "
            "nothing was started"
        )
        return
    scratch = Path(tempfile.mkdtemp(prefix="homelab-rehearsal-"))  # mode 0700
    workdir = scratch / "repo"
    copy_checkout(run.project.root, workdir)
    # The rehearsal never reaches Doppler or the operator's machine-local profiles.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DOPPLER", "PVE_", "PM_"))}
    rehearsal = Rehearsal(workdir, scratch, {**base, "DOPPLER": "0", "PROFILE_EXCLUSIVE": "true"})
    inv = str(Path(sys.executable).with_name("inv"))
    failures = []
    acts: list[tuple[str, Act]] = []
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            for name in STAGE_MODULES:
                module = importlib.import_module(f"tasks.rehearsal.{name}")
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
    say(f"\nrehearsal: all {len(acts)} acts passed in {time.monotonic() - started:.0f}s")
