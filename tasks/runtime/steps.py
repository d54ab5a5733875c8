"""The step runner behind every orchestrator: numbered steps, modes, gates, --only, plans.

An orchestrator is two ordered step lists (apply, delete). A plan resolves which steps run and
why the others do not; a dry run prints the plan and stops; a real run takes the lock, runs the
steps in order, stops at the first failure and writes a trace.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError, HomelabError
from tasks.runtime.trace import utc_now

if TYPE_CHECKING:
    from tasks.runtime.context import HomelabContext
    from tasks.runtime.envlayers import EnvLayers

MODES = ("apply", "delete")


@dataclass(frozen=True)
class Gate:
    """A feature switch from the env (`FEAT_VERIFY`), on or off by default."""

    variable: str
    default: bool = True

    def describe(self, env: EnvLayers) -> tuple[bool, str]:
        on = env.flag(self.variable, self.default)
        raw = env.get(self.variable)
        shown = raw if raw not in (None, "") else f"{str(self.default).lower()} (default)"
        return on, f"{self.variable}={shown}"


@dataclass
class StepContext:
    """What a step function gets: the task context, its env, the mode and a place to report."""

    c: HomelabContext
    env: EnvLayers
    mode: str
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def deleting(self) -> bool:
        return self.mode == "delete"

    def note(self, message: str) -> None:
        from tasks.runtime.console import say

        self.notes.append(message)
        say(f"    {message}")


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
    def build(
        cls, orch: Orchestrator, mode: str, env: EnvLayers, only: str | None = None
    ) -> StepPlan:
        """Resolve gates and the `--only` filter (falling back to `ONLY`); unknown steps are errors."""
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; expected apply or delete")
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
                on, shown = step.gate.describe(env)
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
        lines = [
            f"plan: {self.orchestrator.name} {self.mode}",
            f"env layers ({self.env.chain} chain, lowest first): "
            + ", ".join(
                f"{lyr.name}" + ("" if lyr.used else f" [skipped: {lyr.skipped}]")
                for lyr in self.env.layers
            ),
        ]
        if self.only:
            lines.append("only: " + ",".join(self.only))
        for index, entry in enumerate(self.entries, 1):
            mark = "run " if entry.included else "skip"
            modes = "/".join(m for m in MODES if m in entry.step.modes)
            summary = f" - {entry.step.summary}" if entry.step.summary else ""
            lines.append(f"  {index}. [{mark}] {entry.step.id} ({modes}; {entry.reason}){summary}")
        return lines


class StepRunner:
    """Runs a plan: confirmation, lock, steps in order, first failure stops, trace always."""

    def __init__(self, c: HomelabContext, task_name: str):
        self.c = c
        self.task_name = task_name

    def run(
        self,
        plan: StepPlan,
        *,
        dry_run: bool = False,
        yes: bool = False,
        options: dict[str, Any] | None = None,
    ) -> int:
        from tasks.runtime.confirm import confirm
        from tasks.runtime.console import rich_print, say, status_word
        from tasks.runtime.lock import RunLock
        from tasks.runtime.trace import Trace

        for line in plan.render():
            say(line)
        if dry_run:
            say("dry run: nothing was executed")
            return 0
        if not plan.selected:
            say("nothing to run: every step is skipped")
            return 0
        orch = plan.orchestrator
        if plan.mode == "delete" and orch.destructive_delete:
            confirm(f"{orch.name} delete", yes=yes)
        project = self.c.project
        lock = RunLock(project.work / "locks" / f"{orch.name}.lock", orch.name)
        trace = Trace(self.task_name, project.work, plan.env.layer_names(), mode=plan.mode)
        outcome = "failed"
        with lock:
            if lock.took_over:
                say(f"note: took over a stale lock left by pid {lock.took_over.get('pid')}")
            try:
                total = len(plan.selected)
                failure: HomelabError | None = None
                for entry in plan.entries:
                    record: dict[str, Any] = {
                        "id": entry.step.id,
                        "name": entry.step.name,
                        "number": entry.step.number,
                    }
                    if not entry.included:
                        trace.step({**record, "outcome": "skipped", "reason": entry.reason})
                        continue
                    if failure is not None:
                        trace.step(
                            {**record, "outcome": "not-run", "reason": "an earlier step failed"}
                        )
                        continue
                    position = plan.selected.index(entry.step) + 1
                    say(f"[{position}/{total}] {entry.step.id} ({plan.mode})")
                    sc = StepContext(self.c, plan.env, plan.mode, dict(options or {}))
                    started, t0 = (
                        utc_now(),
                        time.monotonic(),
                    )
                    try:
                        entry.step.action(sc)
                    except HomelabError as exc:
                        failure = exc
                    except KeyboardInterrupt:
                        trace.step(
                            {
                                **record,
                                "started": started,
                                "outcome": "interrupted",
                                "exit_code": 130,
                            }
                        )
                        raise
                    elapsed = time.monotonic() - t0
                    step_outcome = "failed" if failure else "ok"
                    trace.step(
                        {
                            **record,
                            "started": started,
                            "ended": utc_now(),
                            "seconds": round(elapsed, 3),
                            "outcome": step_outcome,
                            "exit_code": failure.exit_code if failure else 0,
                            "error": failure.message if failure else None,
                            "notes": sc.notes,
                        }
                    )
                    rich_print(f"    {status_word(step_outcome)} ({elapsed:.1f}s)")
                if failure is not None:
                    raise failure
                outcome = "ok"
            finally:
                path = trace.write(outcome)
                say(f"trace: {project.rel(path)}")
        return 0


def run_orchestrator(
    c: HomelabContext,
    orch: Orchestrator,
    mode: str,
    *,
    task_name: str,
    override: str | None = None,
    only: str | None = None,
    dry_run: bool = False,
    yes: bool = False,
    options: dict[str, Any] | None = None,
) -> None:
    """The whole front half of an orchestrator task: env chain, plan, run."""
    env = c.use_env(orch.chain, override)
    plan = StepPlan.build(orch, mode, env, only)
    StepRunner(c, task_name).run(plan, dry_run=dry_run, yes=yes, options=options)
