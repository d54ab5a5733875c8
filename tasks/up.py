"""`inv up`: the homelab from the runway to a Flux-reconciled cluster, stage by stage, stopping at
the first failure. The chain itself (stages, plan, `--plan FILE`, `--resume`) is tasks/upchain.py,
imported when the task runs: `inv --list` and every other task never pay for it.
"""

from __future__ import annotations

from tasks.runtime.cli import task
from tasks.runtime.pipeline import UP_ORDER as ORDER


@task(
    name="up",
    area="up",
    help={
        "from_": f"first stage to run ({', '.join(ORDER)}; default l0)",
        "to": f"last stage to run ({', '.join(ORDER)}; default cluster: the whole chain)",
        "dry_run": "print the whole chain with each stage's inputs and exit without running it",
        "profile": "extra env file, highest precedence (one env for every stage)",
        "plan": "apply exactly this saved plan (`inv plan --out FILE`): its facts are re-read first "
        "and any difference, or a plan older than PLAN_MAX_AGE, is refused (exit 3)",
        "resume": "continue the last failed `inv up` from the stage that failed, once the stages "
        "before it still read as converged and no declaration changed (else exit 3)",
    },
)
def up(run, from_="l0", to="cluster", dry_run=False, profile=None, plan=None, resume=False):
    """Bring the homelab up: L0-L4, k3s on the VMs, then the cluster (stops at the first failure)."""
    from tasks.runtime.console import say
    from tasks.runtime.errors import ConfigError
    from tasks.upchain import build_plan, record_chain, resume_stages, saved_plan_stages, select

    if plan is not None and not str(plan).strip():
        # `inv up --plan "$PLAN"` with PLAN unset must not become a whole, unchecked `inv up`.
        raise ConfigError(
            "--plan: no file given (an empty value)",
            hint="inv up --plan FILE, with FILE made by `inv plan --out FILE`",
        )
    if plan is not None and resume:
        raise ConfigError("--plan and --resume: give one of them")
    if (plan is not None or resume) and (from_, to) != ("l0", "cluster"):
        flag = "--plan" if plan is not None else "--resume"
        raise ConfigError(f"{flag} chooses the stages itself: leave out --from/--to")
    if plan is not None:
        chosen = saved_plan_stages(run, str(plan))
        chain = list(chosen)
        if not chosen:
            record_chain(run, chain, chosen)
            say(f"the saved plan {plan} has no changes: nothing to apply")
            return
    elif resume:
        whole, chosen = resume_stages(run)
        chain = list(whole)
    else:
        chosen = select(from_, to)
        chain = list(chosen)
    if not chosen:
        say(f"no stage between {from_} and {to} is installed; nothing to run")
        return
    record_chain(run, chain, chosen)
    run.execute(build_plan(run, chosen))
