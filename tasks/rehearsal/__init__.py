"""The rehearsal behind `inv rehearse`: the whole runner driven against local stand-ins.

Each area contributes a module here with `stage(rehearsal)`, a context manager that starts what
the area needs (fakepve, sshd, a bare git remote...), adds to `rehearsal.env`, and yields the
acts to run: real `inv` commands, run through the front door in a throwaway copy of the checkout.
Every stand-in lives here too (`standins/`); the product imports nothing from `tests/`.

The copy holds the checkout's tracked files only (never its git-ignored secrets.env or host.env),
in a private (0700) folder that is removed afterwards unless `--keep` is given.
"""

from __future__ import annotations

from tasks.runtime.cli import task


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
    from tasks.rehearsal.play import perform

    perform(run, keep=keep)
