"""Run history: every run's trace, listed (`inv runs`) and shown step by step (`inv runs.show`)."""

from __future__ import annotations

from typing import Any

from tasks.runtime.cli import task

WIDTH = 120


def _ids() -> list[str]:
    from tasks.history.store import run_ids

    return run_ids()


def _lines_table(columns: list[str], rows: list[list[str]], title: str | None = None) -> None:
    """console.table on a terminal; off one, its plain layout within 120 columns."""
    from tasks.runtime.console import is_terminal, plain_table, say, table, width
    from tasks.runtime.secrets import mask

    if is_terminal():
        table(columns, rows, title=title)
        return
    if title:
        say(title)
    for line in plain_table(columns, [[mask(c) for c in r] for r in rows], min(width(), WIDTH)):
        say(line)


def _learn_secrets(run) -> None:
    """Resolve the env (files only, no Doppler) so its secrets are known to the masker before
    anything is printed or traced: a run id typed by mistake may be a secret."""
    import contextlib

    from tasks.runtime.errors import HomelabError

    # A broken env file is another task's error; the history is still readable.
    with contextlib.suppress(HomelabError):
        _ = run.env


@task(
    name="list",
    default=True,
    doppler=False,
    check_settings=False,
    help={"json": "print JSON", "last": "only the newest N runs (default: every recorded one)"},
)
def list_(run, json=False, last=None):
    """List recorded runs: started, outcome, seconds, operator@host, task and arguments (masked)."""
    from tasks.history.store import load_runs
    from tasks.runtime.console import say
    from tasks.runtime.fanout import parse_parallel

    _learn_secrets(run)
    runs = load_runs(run.project.work)
    if last is not None:
        if not str(last).strip():
            from tasks.runtime.errors import ConfigError

            raise ConfigError(
                "--last: no number given (an empty value)",
                hint="e.g. --last 10, or leave --last out for every recorded run",
            )
        runs = runs[: parse_parallel(last, 1, flag="--last")]
    if json:
        import json as jsonlib

        say(jsonlib.dumps([r.summary() for r in runs], indent=2))
        return
    if not runs:
        say("no runs recorded yet (.work/traces/ is empty)")
        return
    _lines_table(
        ["RUN", "STARTED (UTC)", "OUTCOME", "SECONDS", "BY", "TASK"], [r.row() for r in runs]
    )
    say(f"{len(runs)} run(s); `inv runs.show RUN` shows one")


def _epoch(record: dict) -> float | None:
    """When a run, step or effect started: to the millisecond where the trace says so (a run of
    sub-second steps would otherwise draw every bar at 0), else to the second."""
    from tasks.history.store import to_epoch

    precise = record.get("started_epoch")
    if isinstance(precise, (int, float)) and not isinstance(precise, bool):
        import math

        if math.isfinite(precise):
            return float(precise)
    return to_epoch(record.get("started"))


def timeline_rows(data: dict) -> list[dict[str, Any]]:
    """Each step and effect with its offset from the run's start and its duration (seconds)."""
    began = _epoch(data) or 0.0
    rows: list[dict[str, Any]] = []
    cursor = 0.0
    for step in data.get("steps") or []:
        at = _epoch(step)
        offset = max(0.0, at - began) if at is not None else cursor
        seconds = float(step.get("seconds") or 0.0)
        cursor = offset + seconds
        detail = step.get("reason") or step.get("error") or ""
        rows.append(
            {
                "kind": "step",
                "name": str(step.get("id")),
                "outcome": str(step.get("outcome")),
                "offset": round(offset, 3),
                "seconds": round(seconds, 3),
                "detail": str(detail),
            }
        )
    effects: list[dict[str, Any]] = []
    for effect in data.get("effects") or []:
        at = _epoch(effect)
        effects.append(
            {
                "kind": "effect",
                "name": f"{effect.get('kind')} {effect.get('target')}",
                "outcome": str(effect.get("outcome"))
                + (" (mutates)" if effect.get("mutates") else ""),
                "offset": round(max(0.0, at - began), 3) if at is not None else 0.0,
                "seconds": round(float(effect.get("seconds") or 0.0), 3),
                "detail": str(effect.get("detail") or "")
                + (f" x{effect['count']}" if effect.get("count") else ""),
            }
        )
    return rows + sorted(effects, key=lambda r: float(r["offset"]))


def draw_timeline(rows: list[dict], total: float) -> None:
    """A bar per step and effect, placed on the run's time axis (rich)."""
    from rich.bar import Bar
    from rich.table import Table

    from tasks.runtime.console import _console, width
    from tasks.runtime.secrets import mask

    span = max(total, max((r["offset"] + r["seconds"] for r in rows), default=0.0), 0.001)
    tbl = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("KIND", "NAME", "OUTCOME", "SECONDS"):
        tbl.add_column(column, overflow="fold", max_width=48 if column == "NAME" else None)
    tbl.add_column(f"TIMELINE (0 to {span:.1f}s)", width=32, no_wrap=True)
    for row in rows:
        begin = row["offset"]
        end = max(begin + row["seconds"], begin + span / 64)  # an instant still shows
        tbl.add_row(
            row["kind"],
            mask(row["name"]),
            row["outcome"],
            f"{row['seconds']:.2f}",
            Bar(size=span, begin=begin, end=min(end, span), width=32),
        )
    console = _console()
    console.width = min(width(), WIDTH)
    console.print(tbl)


@task(
    positional=["id"],
    choices={"id": _ids},
    doppler=False,
    check_settings=False,
    help={"id": "the run (its id from `inv runs`, a unique part of it, or `last`)", "json": "JSON"},
)
def show(run, id, json=False):
    """Show one run: its command, outcome, each step and effect on a timeline."""
    from tasks.history.store import find_run
    from tasks.runtime.console import say, wrap
    from tasks.runtime.errors import ConfigError

    _learn_secrets(run)
    entry = find_run(run.project.work, id)
    if entry.problem:
        raise ConfigError(
            f"run {entry.id}: its trace {entry.path} cannot be read ({entry.problem})",
            hint="a trace cut short or edited by hand; remove the file when you no longer need it",
        )
    data = entry.data
    rows = timeline_rows(data)
    if json:
        import json as jsonlib

        say(jsonlib.dumps({**entry.summary(), "timeline": rows, "trace": data}, indent=2))
        return
    head = [
        f"run {entry.id}: {entry.command}",
        f"started {entry.started} by {data.get('operator')}@{data.get('host')}, "
        f"{data.get('seconds')}s, {entry.outcome}" + (" (dry run)" if data.get("dry_run") else ""),
        f"env: {data.get('env')}; layers: {', '.join(data.get('env_layers') or []) or '-'}",
    ]
    if entry.failed_step:
        head.append(f"failed at step {entry.failed_step}")
    if data.get("error"):
        first = str(data["error"]).splitlines()[0]
        head.append(first if first.startswith("error:") else f"error: {first}")
    for line in head:
        for part in wrap(line, indent="  "):
            say(part)
    say(f"trace: .work/traces/{entry.path.name}")
    if not rows:
        say("no steps or effects recorded")
        return
    say("")
    draw_timeline(rows, float(data.get("seconds") or 0.0))
