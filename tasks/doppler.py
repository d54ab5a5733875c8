"""Doppler's offline copies: what `DOPPLER_FALLBACK=1` keeps, and removing it."""

from __future__ import annotations

from tasks.runtime.cli import task


@task(
    doppler=False,
    area="doppler",
    help={"dry_run": "list the offline copies that would be removed; remove nothing"},
)
def forget(run, dry_run=False):
    """Remove the runner's offline copies of Doppler's secrets (kept with DOPPLER_FALLBACK=1)."""
    from tasks.runtime.console import say
    from tasks.runtime.doppler import offline_copies
    from tasks.runtime.steps import Action, Plan

    copies = offline_copies(run.env)
    if not copies:
        say("no offline copy of Doppler's secrets to forget")
        return

    def remover(path):
        return lambda sc: sc.effects.remove(path)

    actions = [
        Action(f"remove {path}", "an encrypted offline copy", remover(path)) for path in copies
    ]
    run.execute(Plan("doppler.forget", "doppler", actions))
    if not run.dry_run:
        say(f"removed {len(copies)} offline cop{'y' if len(copies) == 1 else 'ies'}")
