"""The run history: every run's trace under `.work/traces/` (written by tasks/runtime/run.py), read
back as an index, newest first; and the retention rule (keep the last RUNS_KEEP runs).

No index file is kept: the traces are the index (one small JSON file per run, read once per
`inv runs`), so the history can never disagree with what the runs recorded.
"""

from __future__ import annotations

import calendar
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.runtime.errors import ConfigError

DEFAULT_KEEP = 50


# The fields the history reads, and what each must be (a trace edited by hand, or cut short by a
# full disk, is listed as unreadable instead of breaking `inv runs` and `inv up --resume`).
HISTORY_TASKS = ("runs", "runs.show")  # looks at the history: never what `last` means
NONE = type(None)
_TEXT, _NUMBER, _LIST, _MAP = (str, NONE), (int, float, NONE), (list, NONE), (dict, NONE)
_FIELDS: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("run", "task", "started", "ended", "outcome", "operator", "host"), _TEXT),
    **dict.fromkeys(("seconds", "exit_code", "started_epoch"), _NUMBER),
    **dict.fromkeys(("argv", "steps", "effects", "up_chain"), _LIST),
    "up_steps": _MAP,
}
_ENTRY_FIELDS: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("started", "outcome", "kind", "target"), _TEXT),
    "id": (str, int, NONE),
    **dict.fromkeys(("seconds", "started_epoch"), _NUMBER),
}


def _wrong(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return True  # Infinity/NaN: `runs.show --json` would print JSON strict parsers reject
    return isinstance(value, bool) or not isinstance(value, types)


def _kind(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} (not a finite number)"
    return f"a {type(value).__name__}"


def shape_problem(data: Any) -> str | None:
    """Why a parsed trace cannot be read as one (None: it can)."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    for key, types in _FIELDS.items():
        if key in data and _wrong(data[key], types):
            return f"{key!r} is {_kind(data[key])}"
    for key in ("steps", "effects"):
        for entry in data.get(key) or []:
            if not isinstance(entry, dict):
                return f"{key!r} holds a {type(entry).__name__}"
            for field, types in _ENTRY_FIELDS.items():
                if field in entry and _wrong(entry[field], types):
                    return f"a {key[:-1]}'s {field!r} is {_kind(entry[field])}"
    if not all(isinstance(v, str) for v in (data.get("up_steps") or {}).values()):
        return "'up_steps' maps to something other than step ids"
    if not all(isinstance(v, str) for v in data.get("up_chain") or []):
        return "'up_chain' holds something other than stage names"
    return None


@dataclass
class RunEntry:
    path: Path
    data: dict[str, Any]
    problem: str | None = None  # why the trace could not be read (then `data` is empty)

    @property
    def id(self) -> str:
        return str(self.data.get("run") or _name_parts(self.path)[1])

    @property
    def running(self) -> bool:
        return self.path.name.endswith(".running.json")

    @property
    def started(self) -> str:
        if self.problem:  # the file's own time: it still sorts where it belongs
            try:
                return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.path.stat().st_mtime))
            except OSError:
                return ""
        return str(self.data.get("started") or "")

    @property
    def task(self) -> str | None:
        """The task that ran (from the trace; for an unreadable one, from its file name)."""
        if self.problem:
            return _name_parts(self.path)[0]
        return self.data.get("task")

    @property
    def outcome(self) -> str:
        if self.problem:
            return f"unreadable trace ({self.problem})"
        if self.running:
            return "running"
        state = str(self.state or "?")
        code = self.data.get("exit_code")
        if state == "changes pending" or code in (0, None):
            return state
        return f"{state} (exit {code})"

    @property
    def state(self) -> str | None:
        """The trace's outcome, with plan's exit 2 read as Terraform's "changes pending"."""
        if self.data.get("task") == "plan" and self.data.get("exit_code") == 2:
            return "changes pending"
        return self.data.get("outcome")

    @property
    def command(self) -> str:
        argv = [str(a) for a in self.data.get("argv") or []][1:]  # masked when written
        return " ".join(argv) or str(self.task or "?")

    @property
    def failed_step(self) -> str | None:
        failed = [
            str(step.get("id"))
            for step in self.data.get("steps") or []
            if step.get("outcome") in ("failed", "interrupted")
        ]
        if not failed:
            return None
        # An `up` records a stage's own steps before the stage: the stage is what failed.
        stages = set((self.data.get("up_steps") or {}).values())
        stage = next((f for f in failed if f in stages), None)
        if stage and failed[0] != stage:
            return f"{stage} ({failed[0]})"
        return stage or failed[0]

    def row(self) -> list[str]:
        seconds = self.data.get("seconds")
        who = f"{self.data.get('operator') or '?'}@{self.data.get('host') or '?'}"
        outcome = self.outcome + (f" at {self.failed_step}" if self.failed_step else "")
        shown = "-" if seconds is None else f"{float(seconds):.1f}"
        # ISO 8601 as one word: a table that must wrap never cuts the date from its time.
        return [self.id, self.started, outcome, shown, who, self.command]

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "command": self.command,
            "started": self.started,
            "ended": self.data.get("ended"),
            "seconds": self.data.get("seconds"),
            "outcome": "unreadable" if self.problem else self.state,
            "problem": self.problem,
            "exit_code": self.data.get("exit_code"),
            "dry_run": self.data.get("dry_run"),
            "failed_step": self.failed_step,
            "operator": self.data.get("operator"),
            "host": self.data.get("host"),
            "trace": self.path.name,
        }


def traces_dir(work: Path) -> Path:
    return work / "traces"


def load_runs(work: Path) -> list[RunEntry]:
    """Every trace, newest first; one that cannot be read (cut short, edited by hand) is an entry
    with its `problem`, never fatal."""
    folder = traces_dir(work)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:  # removed meanwhile (retention of another run)
            continue
        except (OSError, ValueError) as exc:
            found.append(RunEntry(path, {}, f"{type(exc).__name__}: {exc}"[:80]))
            continue
        problem = shape_problem(data)
        found.append(RunEntry(path, {}, problem) if problem else RunEntry(path, data))
    found.sort(key=lambda e: (e.started, e.path.stat().st_mtime, e.id), reverse=True)
    return found


def _name_parts(path: Path) -> tuple[str | None, str]:
    """(task, run id) of a trace file's name, `<task with - for .>-<stamp>-<pid>[.running].json`
    (tasks/runtime/run.py `_trace_path`)."""
    stem = path.name.removesuffix(".json").removesuffix(".running")
    parts = stem.split("-")
    if len(parts) < 3:
        return None, stem
    return ".".join(parts[:-2]), "-".join(parts[-2:])


def find_run(work: Path, wanted: str) -> RunEntry:
    """A run by its id, a unique part of it (the pid, the stamp), its trace name, or `last`."""
    runs = load_runs(work)
    if not runs:
        raise ConfigError("no runs recorded yet under .work/traces/", hint="`inv runs` lists them")
    text = wanted.strip()
    if text in ("last", "latest"):  # the last operation, not an earlier look at the history
        return next((r for r in runs if r.task not in HISTORY_TASKS), runs[0])
    exact = [r for r in runs if text in (r.id, r.path.name, r.path.stem)]
    if exact:
        return exact[0]
    partial = [r for r in runs if text and text in r.id]
    if len(partial) == 1:
        return partial[0]
    if partial:
        listed = ", ".join(r.id for r in partial[:5])
        raise ConfigError(f"run {text!r} is ambiguous: {listed}", hint="give the whole id")
    raise ConfigError(f"no run {text!r} in .work/traces/", hint="`inv runs` lists the run ids")


def run_ids() -> list[str]:
    """`last` and the recorded run ids, newest first (for the error when `inv runs.show` gets
    none)."""
    try:
        from tasks.runtime.project import Project

        ids = [r.id for r in load_runs(Project.current().work)[:20]]
        return ["last", *ids] if ids else ["(no runs yet)"]
    except Exception:  # the names are a courtesy
        return []


def to_epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def ran_stages(entry: RunEntry) -> bool:
    """An `inv up` that got as far as running (not only planning) one of its stages."""
    data = entry.data
    steps = set((data.get("up_steps") or {}).values())
    return bool(data.get("up_chain")) and any(
        s.get("id") in steps and s.get("outcome") not in ("planned", "skipped")
        for s in data.get("steps") or []
    )


def resumable_up(runs: list[RunEntry]) -> RunEntry | None:
    """What `inv up --resume` reads: the newest real `up` that ran stages, or a newer one whose
    trace cannot be read (which then refuses the resume)."""
    return next(
        (
            e
            for e in runs
            if e.task == "up"
            and not e.running
            and not e.data.get("dry_run")
            and (e.problem or ran_stages(e))
        ),
        None,
    )


def beyond_retention(work: Path, keep: int) -> list[Path]:
    """The finished traces older than the newest `keep` runs (a run in progress is never one),
    except the `inv up` that `inv up --resume` reads, however many runs came since (a later `up`
    that ran no stage, a refused `--plan` say, does not replace it)."""
    finished = [r for r in load_runs(work) if not r.running]
    kept = resumable_up(finished)
    return [r.path for r in finished[keep:] if r is not kept]
