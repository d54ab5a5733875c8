"""`inv up --resume`: which `up` to continue, from which stage, and whether the stages before it
still hold.

The run history (tasks/history/store.py) gives the newest real `up` that ran its stages; every
such run records its chain (`up_chain`), its stages' step ids (`up_steps`) and the declarations'
digests (`declarations`) in its trace. Resuming re-reads the stages before the failed one with the
seam in dry-run mode (the layers' plan readers, the k3s group's facts, the cluster's state): any
change or error there, or any declaration file that differs, is a refusal (exit 3) naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import HomelabError, RefusedError

if TYPE_CHECKING:
    from tasks.history.store import RunEntry
    from tasks.runtime.run import Run

LAYER_STAGES = ("l0", "l1", "l2", "l3", "l4")
STOPPED = ("failed", "interrupted", "running")  # a stage step where a run stopped


@dataclass
class Resumable:
    entry: RunEntry
    chain: list[str]
    failed: str  # the stage name it stopped at

    @property
    def before(self) -> list[str]:
        return self.chain[: self.chain.index(self.failed)]

    @property
    def rest(self) -> list[str]:
        return self.chain[self.chain.index(self.failed) :]


def last_up(run: Run) -> Resumable:
    """The newest real `up` that ran stages; refused unless it stopped at one of them."""
    from tasks.history.store import load_runs, resumable_up

    entry = resumable_up(load_runs(run.project.work))
    if entry is not None and entry.problem:
        # A newer `up` whose trace cannot be read: resuming an older one would run the wrong stages.
        raise RefusedError(
            f"the newest `inv up` trace, {entry.path.name}, cannot be read ({entry.problem}): "
            "which stage it stopped at is unknown",
            hint=f"remove {entry.path} to resume the `inv up` before it, or run `inv up`",
        )
    if entry is None:
        raise RefusedError(
            "no `inv up` to resume: the run history (.work/traces/) holds none that ran its stages",
            hint="run `inv up`; `inv runs` lists the history",
        )
    data = entry.data
    outcome = str(data.get("outcome"))
    if outcome == "ok":
        raise RefusedError(
            f"nothing to resume: the last `inv up` (run {entry.id}, {entry.started}) succeeded",
            hint="`inv up` converges what changed since; `inv plan` shows it",
        )
    chain = [str(n) for n in data.get("up_chain") or []]
    by_step = {str(v): str(k) for k, v in (data.get("up_steps") or {}).items()}
    failed = next(
        (
            by_step[str(s.get("id"))]
            for s in data.get("steps") or []
            if str(s.get("id")) in by_step and s.get("outcome") in STOPPED
        ),
        None,
    )
    if failed is None or failed not in chain:
        raise RefusedError(
            f"the last `inv up` (run {entry.id}) ended {outcome}, but no stage of it failed: "
            "there is no stage to resume from",
            hint=f"`inv runs.show {entry.id}` shows what happened; run `inv up` again",
        )
    return Resumable(entry, chain, failed)


def check_unchanged_declarations(run: Run, found: Resumable) -> None:
    from tasks.plan.saved import check_declarations

    then = found.entry.data.get("declarations")
    if not isinstance(then, dict):
        raise RefusedError(
            f"the last `inv up` (run {found.entry.id}) recorded no digest of its declarations: "
            "it cannot be resumed safely",
            hint="run `inv up` (it converges from the start; converged stages change nothing)",
        )
    check_declarations(
        run.project,
        then,
        f"cannot resume run {found.entry.id} (`inv up` failed at {found.failed})",
        "run `inv up` for the new declarations (converged stages change nothing)",
    )


def k3s_pending(run: Run) -> list[str]:
    """What the k3s stage would change now (its group's facts, read only)."""
    from tasks.host.chain import host_run
    from tasks.host.group import apply_plan, load_group, read_facts

    view = host_run(run)
    group = load_group(view)
    read_facts(view, group)
    # An action's summary says what it would do, its reason why (a host's role; for the
    # kubeconfig, "after the install" or "missing or out of date"): both, so that a kubeconfig
    # fetched only because a host changes reads as that.
    return [
        f"{a.id}: {a.summary or a.reason}" + (f" ({a.reason})" if a.summary and a.reason else "")
        for a in apply_plan(view, group).selected
    ]


def replan(run: Run, names: list[str]) -> list[str]:
    """Re-read the stages `names` (seam in dry-run mode): one line per change or error found."""
    from tasks.plan import read_layers
    from tasks.plan.readers import CHANGE, ERROR

    problems: list[str] = []
    was_dry = run.dry_run
    run.dry_run = run.effects.dry_run = True
    try:
        layers = [n for n in names if n in LAYER_STAGES]
        for plan in read_layers(run, layers) if layers else []:
            for item in plan.items:
                if item.state in (CHANGE, ERROR):
                    extra = f" ({'; '.join(item.lines[:3])})" if item.lines else ""
                    problems.append(
                        f"{plan.layer}: {item.name}: {item.state}: {item.detail}{extra}"
                    )
        if "k3s" in names:
            try:
                problems += [f"k3s: {line}" for line in k3s_pending(run)]
            except HomelabError as exc:
                problems.append(f"k3s: error: {exc.message.splitlines()[0]}")
        if "cluster" in names:
            from tasks.upchain import cluster_pending

            try:
                pending = cluster_pending(run)
            except HomelabError as exc:
                pending = f"error: {exc.message.splitlines()[0]}"
            if pending is not None:
                problems.append(f"cluster: {pending}")
    finally:
        run.dry_run = run.effects.dry_run = was_dry
    return problems


def check_before(run: Run, found: Resumable) -> None:
    """Refuse unless every stage before the failed one still reads as converged."""
    from tasks.plan.saved import listed
    from tasks.runtime.console import say

    if not found.before:
        return
    say(f"resume: re-reading {', '.join(found.before)} (they ran before {found.failed} failed)")
    problems = replan(run, found.before)
    if problems:
        shown = problems[:20] + ([f"and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise RefusedError(
            f"cannot resume run {found.entry.id} at {found.failed}: {len(problems)} item(s) of the "
            "stages before it no longer hold:\n" + listed(shown),
            hint="run `inv up` (from the start), or `inv plan` to see what changed",
        )


def summary(found: Resumable) -> dict[str, Any]:
    return {"run": found.entry.id, "failed": found.failed, "rechecked": found.before}
