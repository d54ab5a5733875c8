"""The one step engine: plan from reads first, then execute, for every task that changes anything.

A `Plan` is an ordered list of `Action`s computed from reads (nothing changed yet). Executing it:

1. prints the plan; a dry run stops here (exit 0, nothing changed);
2. with nothing to do, says so and stops;
3. asks for confirmation when an action is destructive (`--yes` skips it; no terminal: refused);
4. takes the plan's area lock (a second run of the area refuses, naming the holder);
5. runs the actions in order, the first failure stopping the rest (but `always` actions);
   consecutive actions of one `group` go through the bounded fan-out instead, where one item's
   failure never stops the others;
6. records every action's outcome in the run's trace, interrupted ones as `interrupted`.

Orchestrators (the seed's numbered steps) are a plan too: `StepPlan` resolves an orchestrator's
step list for a mode (gates, `--only`/`ONLY`) and `StepPlan.to_plan()` hands it to the engine.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError, ExternalError, HomelabError

if TYPE_CHECKING:
    from tasks.runtime.envlayers import EnvLayers
    from tasks.runtime.fanout import Outcome
    from tasks.runtime.run import Run

MODES = ("apply", "delete")


class StepContext:
    """What an action gets: the run, the mode, options, shared state and a place to report."""

    def __init__(
        self, run: Run, mode: str = "apply", options: dict[str, Any] | None = None, state=None
    ):
        self.run = run
        self.mode = mode
        self.options = dict(options or {})
        self.state: dict[str, Any] = state if state is not None else {}
        self.notes: list[str] = []

    @property
    def env(self) -> EnvLayers:
        return self.run.env

    @property
    def effects(self):
        return self.run.effects

    @property
    def deleting(self) -> bool:
        return self.mode == "delete"

    def note(self, message: str) -> None:
        from tasks.runtime.console import say

        self.notes.append(message)
        say(f"    {message}")


@dataclass
class Action:
    """One planned step: what it will do (for the plan) and how."""

    id: str
    summary: str
    run: Callable[[StepContext], Any]
    destructive: bool = False
    group: str | None = None  # consecutive actions of one group run through the fan-out
    details: Sequence[str] = ()
    always: bool = False  # runs even after an earlier failure (writing an inventory, say)
    included: bool = True
    reason: str = ""  # why it is (not) included, shown in the plan
    number: int | None = None
    item: str | None = None  # what the action works on (a VM, a host), for messages


@dataclass
class Plan:
    title: str
    area: str  # the lock: one run of this area at a time
    actions: list[Action]
    mode: str = "apply"
    parallel: int = 1
    header: list[str] = field(default_factory=list)
    nothing: str = "nothing to do: already as wanted"
    options: dict[str, Any] = field(default_factory=dict)
    # Prints the fan-out results of a group (a per-VM or per-host table); None: the default table.
    report: Callable[[list[Outcome]], None] | None = None
    show_plan: bool = True
    unit: str = "step"  # what a group's actions are, for the summary ("1 of 3 VM(s) failed")
    show_mode: bool = False  # orchestrators say apply or delete at every step

    @property
    def selected(self) -> list[Action]:
        return [a for a in self.actions if a.included]

    def render(self) -> list[str]:
        from tasks.runtime.console import wrap

        lines = [f"plan: {self.title}"]
        for line in self.header:
            lines += wrap(line, indent="    ")
        for index, action in enumerate(self.actions, 1):
            mark = "run " if action.included else "skip"
            reason = f" ({action.reason})" if action.reason else ""
            # An action's line and details often hold a command: kept whole, to be copied.
            lines.append(f"  {index}. [{mark}] {action.id}{reason}: {action.summary}".rstrip(": "))
            lines += [f"       {d}" for d in action.details]
        return lines


class PlanResult:
    def __init__(self, outcomes: dict[str, Outcome], state: dict[str, Any]):
        self.outcomes = outcomes
        self.state = state


def _record(run: Run, action: Action, outcome: str, **extra: Any) -> None:
    run.record_step({"id": action.id, "number": action.number, "outcome": outcome, **extra})


def execute_plan(run: Run, plan: Plan, *, yes: bool = False) -> PlanResult:
    from tasks.runtime.confirm import confirm
    from tasks.runtime.console import say

    if plan.show_plan:
        for line in plan.render():
            say(line)
    state: dict[str, Any] = {}
    outcomes: dict[str, Outcome] = {}
    if run.dry_run:
        for action in plan.actions:
            _record(run, action, "planned" if action.included else "skipped", reason=action.reason)
        say("dry run: nothing was changed")
        return PlanResult(outcomes, state)
    if not plan.selected:
        for action in plan.actions:
            _record(run, action, "skipped", reason=action.reason)
        say(plan.nothing)
        return PlanResult(outcomes, state)
    destructive = [a for a in plan.selected if a.destructive]
    if destructive:
        confirm(plan.title, yes=yes)
    run.lock(plan.area)
    failure: HomelabError | None = None
    actions = plan.actions
    total = len(plan.selected)
    position = 0
    index = 0
    while index < len(actions):
        action = actions[index]
        if not action.included:
            _record(run, action, "skipped", reason=action.reason)
            index += 1
            continue
        if failure is not None and not action.always:
            _record(run, action, "not-run", reason="an earlier step failed")
            index += 1
            continue
        if action.group is not None:
            batch = [action]
            while (
                index + len(batch) < len(actions)
                and actions[index + len(batch)].group == action.group
                and actions[index + len(batch)].included
            ):
                batch.append(actions[index + len(batch)])
            failure = _run_batch(run, plan, batch, state, outcomes, position, total) or failure
            position += len(batch)
            index += len(batch)
            continue
        position += 1
        say(f"[{position}/{total}] {action.id}" + (f" ({plan.mode})" if plan.show_mode else ""))
        outcome = _run_one(run, plan, action, state)
        outcomes[action.id] = outcome
        if not outcome.ok and failure is None:
            failure = _as_error(outcome)
        index += 1
    if failure is not None:
        raise failure
    return PlanResult(outcomes, state)


def _as_error(outcome: Outcome) -> HomelabError:
    if isinstance(outcome.error, HomelabError):
        return outcome.error
    return ExternalError(f"{outcome.name}: {outcome.detail}")


def _run_one(run: Run, plan: Plan, action: Action, state: dict[str, Any]) -> Outcome:
    from tasks.runtime.console import rich_print, status_word
    from tasks.runtime.fanout import Outcome, describe_failure
    from tasks.runtime.trace import utc_now

    sc = StepContext(run, plan.mode, plan.options, state)
    started, t0 = utc_now(), time.monotonic()
    begun = {"started": started, "started_epoch": round(time.time(), 3)}
    run.begin_steps(action.id)
    try:
        value = action.run(sc)
    except KeyboardInterrupt as exc:
        run.begin_steps()
        code = getattr(exc, "exit_code", 130)
        _record(run, action, "interrupted", **begun, notes=sc.notes, exit_code=code)
        raise
    except Exception as exc:
        run.begin_steps()
        status, detail = describe_failure(exc)
        if not isinstance(exc, HomelabError):
            raise  # a bug: the executor reports it (with the traceback under --debug)
        outcome = Outcome(action.id, "failed", detail=detail, error=exc)
    else:
        run.begin_steps()
        outcome = Outcome(action.id, value=value)
    outcome.seconds = time.monotonic() - t0
    _record(
        run,
        action,
        outcome.status,
        **begun,
        ended=utc_now(),
        seconds=round(outcome.seconds, 3),
        exit_code=outcome.error.exit_code if isinstance(outcome.error, HomelabError) else 0,
        error=outcome.detail if not outcome.ok else None,
        notes=sc.notes,
    )
    rich_print(f"    {status_word(outcome.status)} ({outcome.seconds:.1f}s)")
    return outcome


def _run_batch(
    run: Run,
    plan: Plan,
    batch: list[Action],
    state: dict[str, Any],
    outcomes: dict[str, Outcome],
    position: int,
    total: int,
) -> HomelabError | None:
    """A group of actions through the fan-out; one failed item never stops the others."""
    from tasks.runtime.console import say
    from tasks.runtime.fanout import fan_out

    say(
        f"[{position + 1}-{position + len(batch)}/{total}] {len(batch)} at once (at most {plan.parallel})"
    )

    def work(action: Action) -> Any:
        sc = StepContext(run, plan.mode, plan.options, state)
        value = action.run(sc)
        return value

    items = {a.id: a.item or a.id for a in batch}

    def done(outcome: Outcome, count: int, of: int) -> None:
        word = outcome.status if outcome.ok else f"{outcome.status}: {outcome.detail}"
        say(f"  ({count}/{of}) {items.get(outcome.name, outcome.name)}: {word}")

    run.begin_steps(*(a.id for a in batch))
    from tasks.runtime.trace import utc_now

    begun = {"started": utc_now(), "started_epoch": round(time.time(), 3)}  # at once, as a batch
    try:
        results = fan_out(
            batch, work, name=lambda a: a.id, parallel=max(1, plan.parallel), on_done=done
        )
    except KeyboardInterrupt as exc:
        run.begin_steps()
        for action in batch:
            _record(run, action, "interrupted", **begun, exit_code=getattr(exc, "exit_code", 130))
        raise
    run.begin_steps()
    for action, outcome in zip(batch, results, strict=True):
        outcomes[action.id] = outcome
        _record(
            run,
            action,
            outcome.status,
            **begun,
            seconds=round(outcome.seconds, 3),
            error=outcome.detail if not outcome.ok else None,
        )
    if plan.report is not None:
        plan.report(results)
    bad = [(a, o) for a, o in zip(batch, results, strict=True) if not o.ok]
    if not bad:
        return None
    if len(results) == 1 and isinstance(bad[0][1].error, HomelabError):
        return bad[0][1].error
    names = ", ".join(f"{a.item or a.id} ({o.status})" for a, o in bad)
    rest = "; the others went ahead" if len(bad) < len(results) else ""
    return ExternalError(
        f"{plan.title}: {len(bad)} of {len(results)} {plan.unit}(s) failed: {names}{rest}",
        hint="fix the causes above, then run it again",
    )


# ---------------------------------------------------------------------- orchestrators


@dataclass(frozen=True)
class Gate:
    """A feature switch from the env (`FEAT_VERIFY`), on or off by default."""

    variable: str
    default: bool = True

    def describe(self, run: Run) -> tuple[bool, str]:
        on = run.settings.flag(self.variable, self.default)
        raw = run.env.get(self.variable)
        shown = raw if raw not in (None, "") else f"{str(self.default).lower()} (default)"
        return on, f"{self.variable}={shown}"


@dataclass(frozen=True)
class Step:
    name: str
    action: Callable[[StepContext], None]
    modes: frozenset[str] = frozenset(MODES)
    number: int | None = None
    gate: Gate | None = None
    summary: str = ""

    @property
    def id(self) -> str:
        return f"{self.number:02d}_{self.name}" if self.number is not None else self.name

    def supports(self, mode: str) -> bool:
        return mode in self.modes


def _normalise(token: str) -> str:
    token = token.strip().lower().rsplit("/", 1)[-1]
    token = re.sub(r"\.(sh|py)$", "", token).replace("-", "_")
    return token


def _matches(step: Step, token: str) -> bool:
    """`15`, `verify_cluster_access`, `15_verify_cluster_access` and `bootstrap/install-flux.sh` all match."""
    if token.isdigit():
        return step.number is not None and int(token) == step.number
    norm = _normalise(token)
    if norm in (step.name, step.id):
        return True
    numbered = re.match(r"^(\d+)_(.+)$", norm)
    if numbered is None:
        return False
    return numbered.group(2) == step.name and (
        step.number is None or int(numbered.group(1)) == step.number
    )


@dataclass
class Orchestrator:
    """A named pair of ordered step lists; `destructive_delete` makes delete ask first."""

    name: str
    apply_steps: Sequence[Step]
    delete_steps: Sequence[Step]
    chain: str = "cluster"
    destructive_delete: bool = True

    def steps(self, mode: str) -> Sequence[Step]:
        return self.apply_steps if mode == "apply" else self.delete_steps

    def all_steps(self) -> list[Step]:
        seen: dict[str, Step] = {}
        for step in [*self.apply_steps, *self.delete_steps]:
            seen.setdefault(step.id, step)
        return list(seen.values())


@dataclass
class PlanEntry:
    step: Step
    included: bool
    reason: str


@dataclass
class StepPlan:
    orchestrator: Orchestrator
    mode: str
    entries: list[PlanEntry]
    env: EnvLayers
    only: list[str]

    @classmethod
    def build(cls, orch: Orchestrator, mode: str, run: Run, only: str | None = None) -> StepPlan:
        """Resolve gates and the `--only` filter (falling back to `ONLY`); unknown steps are errors."""
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; expected apply or delete")
        env = run.env
        raw_only = only if only not in (None, "") else (env.get("ONLY") or "")
        tokens = [t.strip() for t in str(raw_only).split(",") if t.strip()]
        steps = list(orch.steps(mode))
        for token in tokens:
            if any(_matches(s, token) for s in steps):
                continue
            other = next((s for s in orch.all_steps() if _matches(s, token)), None)
            if other is not None:
                supported = " and ".join(sorted(other.modes))
                raise ConfigError(
                    f"step {other.id} supports {supported} only; it is not part of {orch.name} {mode}",
                    hint=f"run it with {orch.name}.{sorted(other.modes)[0]}",
                )
            valid = ", ".join(s.id for s in steps)
            source = "--only" if only else "ONLY"
            raise ConfigError(
                f"{source}: unknown step {token!r} for {orch.name} {mode}; valid steps: {valid}"
            )
        entries = []
        for step in steps:
            if tokens and not any(_matches(step, t) for t in tokens):
                entries.append(
                    PlanEntry(
                        step, False, "not selected by --only" if only else "not selected by ONLY"
                    )
                )
                continue
            if step.gate is not None:
                on, shown = step.gate.describe(run)
                if not on:
                    entries.append(PlanEntry(step, False, f"gated off: {shown}"))
                    continue
                entries.append(PlanEntry(step, True, f"gate on: {shown}"))
                continue
            entries.append(PlanEntry(step, True, "default"))
        return cls(orch, mode, entries, env, tokens)

    @property
    def selected(self) -> list[Step]:
        return [e.step for e in self.entries if e.included]

    def render(self) -> list[str]:
        return self.to_plan().render()

    def to_plan(self, options: dict[str, Any] | None = None) -> Plan:
        orch = self.orchestrator
        header = [
            f"env layers ({self.env.chain} chain, lowest first): "
            + ", ".join(
                f"{lyr.name}" + ("" if lyr.used else f" [skipped: {lyr.skipped}]")
                for lyr in self.env.layers
            )
        ]
        if self.only:
            header.append("only: " + ",".join(self.only))
        actions = [
            Action(
                id=e.step.id,
                summary=e.step.summary,
                run=e.step.action,
                destructive=self.mode == "delete" and orch.destructive_delete,
                included=e.included,
                reason="/".join(m for m in MODES if m in e.step.modes) + "; " + e.reason,
                number=e.step.number,
            )
            for e in self.entries
        ]
        return Plan(
            title=f"{orch.name} {self.mode}",
            area=orch.name,
            actions=actions,
            mode=self.mode,
            header=header,
            nothing="nothing to run: every step is skipped",
            options=dict(options or {}),
            show_mode=True,
        )


def run_orchestrator(
    run: Run,
    orch: Orchestrator,
    mode: str,
    *,
    only: str | None = None,
    yes: bool = False,
    options: dict[str, Any] | None = None,
) -> None:
    """The whole front half of an orchestrator task: plan, then the engine."""
    run.extra["mode"] = mode
    plan = StepPlan.build(orch, mode, run, only)
    run.execute(plan.to_plan(options), yes=yes)
