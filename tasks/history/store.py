"""The run history: every run's trace under `.work/traces/` (written by tasks/runtime/run.py), read
back as an index, newest first; and the retention rule (keep the last RUNS_KEEP runs).

No index file is kept: the traces are the index (one small JSON file per run, read once per
`inv runs`), so the history can never disagree with what the runs recorded.
"""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.runtime.errors import ConfigError

DEFAULT_KEEP = 50


@dataclass
class RunEntry:
    path: Path
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.data.get("run") or self.path.stem)

    @property
    def running(self) -> bool:
        return self.path.name.endswith(".running.json")

    @property
    def started(self) -> str:
        return str(self.data.get("started") or "")

    @property
    def outcome(self) -> str:
        if self.running:
            return "running"
        outcome = str(self.data.get("outcome") or "?")
        code = self.data.get("exit_code")
        if self.data.get("task") == "plan" and code == 2:
            return "changes pending"  # plan's exit 2 (Terraform's -detailed-exitcode)
        return outcome if code in (0, None) else f"{outcome} (exit {code})"

    @property
    def command(self) -> str:
        argv = [str(a) for a in self.data.get("argv") or []][1:]  # masked when written
        return " ".join(argv) or str(self.data.get("task") or "?")

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
        return [self.id, self.started.replace("T", " "), outcome, shown, who, self.command]

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.data.get("task"),
            "command": self.command,
            "started": self.started,
            "ended": self.data.get("ended"),
            "seconds": self.data.get("seconds"),
            "outcome": self.data.get("outcome"),
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
    """Every readable trace, newest first (an unreadable file is skipped, never fatal)."""
    folder = traces_dir(work)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found.append(RunEntry(path, data))
    found.sort(key=lambda e: (e.started, e.path.stat().st_mtime, e.id), reverse=True)
    return found


def find_run(work: Path, wanted: str) -> RunEntry:
    """A run by its id, a unique part of it (the pid, the stamp), its trace name, or `last`."""
    runs = load_runs(work)
    if not runs:
        raise ConfigError("no runs recorded yet under .work/traces/", hint="`inv runs` lists them")
    text = wanted.strip()
    if text in ("last", "latest"):
        return runs[0]
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
    """The recorded run ids, newest first (for the error when `inv runs.show` gets none)."""
    try:
        from tasks.runtime.project import Project

        return [r.id for r in load_runs(Project.current().work)[:20]] or ["(no runs yet)"]
    except Exception:  # the names are a courtesy
        return []


def to_epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def beyond_retention(work: Path, keep: int) -> list[Path]:
    """The finished traces older than the newest `keep` runs (a run in progress is never one)."""
    finished = [r for r in load_runs(work) if not r.running]
    return [r.path for r in finished[keep:]]
