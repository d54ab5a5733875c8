"""`inv up`: the layers in order, L0 first, stopping at the first failure.

Every layer runs inside this one Run: one env (selected once, from `--profile`), one trace, and
each layer's own plan executed on the step engine with its own area lock.
"""

from __future__ import annotations

from tasks.runtime.cli import task
from tasks.runtime.errors import ConfigError
from tasks.runtime.pipeline import LAYER_ORDER, STAGES


def build_up_orchestrator(first: str, last: str):
    from tasks.runtime.steps import Orchestrator, Step

    for flag, value in (("--from", first), ("--to", last)):
        if value not in LAYER_ORDER:
            raise ConfigError(f"{flag} {value!r}: expected one of {', '.join(LAYER_ORDER)}")
    lo, hi = LAYER_ORDER.index(first), LAYER_ORDER.index(last)
    if lo > hi:
        raise ConfigError(f"--from {first} comes after --to {last}")
    steps = [
        Step(
            name=f"{s.layer}_{s.name}",
            action=s.run,
            modes=frozenset({"apply"}),
            number=LAYER_ORDER.index(s.layer),
            summary=s.summary,
        )
        for layer in LAYER_ORDER[lo : hi + 1]
        if (s := STAGES.get(layer)) is not None
    ]
    return Orchestrator("up", steps, [], chain="cluster", destructive_delete=False)


@task(
    name="up",
    area="up",
    help={
        "from_": "first layer to run (l0..l4; default l0)",
        "to": "last layer to run (l0..l4; default l4)",
        "dry_run": "print the resolved plan and exit without running anything",
        "profile": "extra env file, highest precedence (one env for every layer)",
    },
)
def up(run, from_="l0", to="l4", dry_run=False, profile=None):
    """Run the layers in order (L0 runway first; L1 only when templates are stale)."""
    from tasks.runtime.console import say
    from tasks.runtime.steps import run_orchestrator

    orch = build_up_orchestrator(from_, to)
    if not orch.apply_steps:
        say(f"no layer between {from_} and {to} is installed; nothing to run")
        return
    run_orchestrator(run, orch, "apply")
