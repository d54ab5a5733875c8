"""The Run: one per `inv` invocation, and everything below a task receives it.

It holds the env chain, selected exactly once from the invoked task's flags (`--profile`,
`--host-env`, `--no-doppler`) and resolved on first use (so `inv --help` or a task that needs no
env never fetches Doppler); the typed settings, checked all at once before anything runs; the
dry-run switch (Invoke's `--dry`, `run.dry` and every task's `--dry-run` are the same switch);
the effects seam; the locks it holds; and the trace written when it ends.

    run.env.get("PVE_NODE")            # the resolved env (EnvLayers), one chain for the whole run
    run.settings.seconds("L3_WAIT", 120)
    run.effects.command(["git", "status"], mutates=False)
    run.execute(plan, yes=yes)         # the step engine: lock, confirm, steps, trace
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError, HomelabError
from tasks.runtime.project import Project
from tasks.runtime.secrets import mask, mask_data

if TYPE_CHECKING:
    from tasks.runtime.envlayers import EnvLayers
    from tasks.runtime.lock import RunLock
    from tasks.runtime.seam import Effects
    from tasks.runtime.settings import Settings
    from tasks.runtime.steps import Plan


class EnvSelection:
    """Which env chain a run resolves: the chain, the override file, Doppler on or off."""

    __slots__ = ("chain", "override", "doppler")

    def __init__(self, chain: str = "cluster", override: Path | None = None, doppler: bool = True):
        self.chain = chain
        self.override = override
        self.doppler = doppler

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnvSelection) and (
            self.chain,
            self.override,
            self.doppler,
        ) == (other.chain, other.override, other.doppler)

    __hash__ = None  # type: ignore[assignment]

    def differences(self, other: EnvSelection) -> tuple[str, str]:
        """(what `other` wants, what this selection has), in words, naming only what differs."""
        wanted, have = [], []
        if self.chain != other.chain:
            wanted.append(f"the {other.chain} env chain")
            have.append(f"the {self.chain} chain")
        if self.override != other.override:
            wanted.append(f"override {other.override}" if other.override else "no override file")
            have.append(f"override {self.override}" if self.override else "none")
        if self.doppler != other.doppler:
            wanted.append("Doppler's secrets" if other.doppler else "no Doppler")
            have.append("Doppler on" if self.doppler else "Doppler off (it needs no secrets)")
        return " and ".join(wanted), " and ".join(have)

    def describe(self) -> str:
        parts = [f"{self.chain} chain"]
        if self.override:
            parts.append(f"override {self.override}")
        if not self.doppler:
            parts.append("Doppler off")
        return ", ".join(parts)

    @classmethod
    def from_flags(
        cls,
        chain: str,
        *,
        profile: str | None = None,
        host_env: str | None = None,
        doppler: bool = True,
    ) -> EnvSelection:
        if profile and host_env:
            raise ConfigError(
                "--profile belongs to the cluster chain and --host-env to the host chain; give one"
            )
        if host_env:
            chain = "host"
        raw = profile or host_env
        override = None
        if raw:
            override = Path(str(raw)).expanduser()
            if not override.is_absolute():
                override = Path.cwd() / override
        return cls(chain, override, doppler)


class Run:
    """One invocation of the runner (see the module docstring)."""

    def __init__(
        self,
        project: Project,
        *,
        task: str,
        argv: list[str] | None = None,
        dry_run: bool = False,
        selection: EnvSelection | None = None,
        check_settings: bool = True,
        traced: bool = False,
        shell: dict[str, str] | None = None,
    ) -> None:
        from tasks.runtime.seam import Effects

        self.project = project
        self.tasks = [task]
        self.argv = list(sys.argv if argv is None else argv)
        self.dry_run = dry_run
        # What the operator asked for: `inv plan` turns the seam's dry run on for its reads, but
        # history retention (and anything else the operator's own choice decides) follows this.
        self.asked_dry_run = dry_run
        self.selection = selection or EnvSelection()
        self.check_settings = check_settings
        self.traced = traced
        self._shell = shell
        self.started = time.time()
        self.id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(self.started))}-{os.getpid()}"
        self._env: EnvLayers | None = None
        self._file_secrets_learnt = False
        self._identity: str | None = None  # this process's boot and start time, once
        self._file_env: EnvLayers | None = None  # a task without env: its files, for the trace
        self._settings: Settings | None = None
        self._locks: list[RunLock] = []
        self.steps: list[dict[str, Any]] = []
        self.running: tuple[str, ...] = ()  # the steps running now (for the journal)
        self.extra: dict[str, Any] = {}  # more fields for the trace
        self.memo: dict[Any, Any] = {}  # what this run already learned (hosts that answered...)
        self.effects: Effects = Effects(
            dry_run=dry_run, child_env=lambda: self.env.merged, work=project.work
        )

    @property
    def task(self) -> str:
        return self.tasks[0]

    # ------------------------------------------------------------------ env and settings

    @property
    def env(self) -> EnvLayers:
        """The resolved env chain, resolved on first use and then fixed for the whole run."""
        if self._env is None:
            from tasks.runtime.envlayers import resolve_env
            from tasks.runtime.settings import Settings

            env = resolve_env(
                self.project.inventory,
                chain=self.selection.chain,
                override_file=self.selection.override,
                shell=self._shell,
                doppler=self.selection.doppler,
                fetch_doppler=self._fetch_doppler,
                root=self.project.root,
            )
            settings = Settings(env)
            self._env, self._settings = env, settings
            from tasks.runtime.secrets import release_held_logs

            release_held_logs()  # `--debug` records waited for the secrets to be known
            if self.check_settings:
                settings.check()  # every bad value at once, before anything runs
        return self._env

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            _ = self.env
        assert self._settings is not None
        return self._settings

    def _fetch_doppler(self, control: dict[str, str]):
        from tasks.runtime.doppler import fetch_secrets

        env = {**(self._shell or os.environ), **control}
        return fetch_secrets(self.effects, env, self.project.root)

    def use_selection(self, selection: EnvSelection, task: str) -> None:
        """A second task of the same invocation: it must want the same env (one env per run)."""
        if selection != self.selection and not self._doppler_off_anyway(selection):
            first = self.tasks[0] if self.tasks else "the first task"
            wanted, have = self.selection.differences(selection)
            raise ConfigError(
                f"{task} wants {wanted}, but this run resolved its env for {first} with "
                f"{have}: one `inv` resolves one env",
                hint=f"run them one `inv` at a time: `inv {first} ...`, then `inv {task} ...`",
            )
        if task not in self.tasks:
            self.tasks.append(task)

    def _doppler_off_anyway(self, selection: EnvSelection) -> bool:
        """A task that wants Doppler after one that never needs it, when the env's own switch
        (DOPPLER=0, CI) turned Doppler off as well: both would resolve the same env."""
        mine = self.selection
        if (selection.chain, selection.override) != (mine.chain, mine.override) or mine.doppler:
            return False
        env = self.env
        layer = next((la for la in env.layers if la.name == "doppler"), None)
        return layer is not None and (layer.skipped or "") not in ("", "off: --no-doppler")

    # ------------------------------------------------------------------ locks and steps

    def lock(self, area: str) -> RunLock:
        """Hold the area's lock for the rest of the run; a second run refuses, naming the holder."""
        from tasks.runtime.console import say
        from tasks.runtime.lock import RunLock

        for held in self._locks:
            if held.name == area:
                return held
        import re

        # An area may carry a user's value (a cluster name): keep the lock file inside locks/.
        file_name = re.sub(r"[^A-Za-z0-9_.-]", "_", area).lstrip(".") or "_"
        lock = RunLock(
            self.project.work / "locks" / f"{file_name}.lock", area, holder=self._holder()
        )
        lock.acquire()
        if lock.took_over:
            say(f"note: took over a stale {area} lock left by pid {lock.took_over.get('pid')}")
        self._locks.append(lock)
        self.journal()
        return lock

    def _holder(self) -> dict[str, Any]:
        return {"task": " ".join(self.tasks), "run": self.id}

    def execute(self, plan: Plan, *, yes: bool = False) -> None:
        """Print the plan; unless a dry run: confirm, lock, run its steps, record them."""
        from tasks.runtime.steps import execute_plan

        execute_plan(self, plan, yes=yes)

    def record_step(self, record: dict[str, Any]) -> None:
        self.steps.append(mask_data(record))
        self.journal()

    def begin_steps(self, *step_ids: str) -> None:
        """Steps that start now (a fan-out group starts several): journalled as running."""
        self.running = step_ids
        if step_ids:
            self.journal()

    def journal(self) -> None:
        """The trace so far, as `<trace>.running.json`: if this process is killed outright the
        next run finds it and completes it (`complete_crashed_traces`)."""
        with contextlib.suppress(OSError):  # the journal must never be what stops a run
            self.write_trace("running", exit_code=0, error=None, running=True)

    # ------------------------------------------------------------------ the end

    def finish(self, outcome: str, *, exit_code: int = 0, error: str | None = None) -> Path | None:
        """Release the locks and write the trace (for every run that did or tried something);
        complete the traces of earlier runs that were killed outright."""
        try:
            path = None
            if self.traced or self.steps or self.effects.records or outcome != "ok":
                path = self.write_trace(outcome, exit_code=exit_code, error=error)
                if not self.asked_dry_run:  # a dry run removes nothing, history included
                    self._keep_history()
            self._trace_path(running=True).unlink(missing_ok=True)
            complete_crashed_traces(self.project.work / "traces")
        finally:
            for lock in reversed(self._locks):
                with contextlib.suppress(OSError):
                    lock.release()
            self._locks.clear()
        return path

    def _keep_history(self) -> None:
        """Retention on every run (a cron'd `inv plan` must not fill the disk): the traces older
        than the newest RUNS_KEEP runs go. Counting file names first keeps the common case cheap."""
        from tasks.history.store import DEFAULT_KEEP

        folder = self.project.work / "traces"
        keep = DEFAULT_KEEP
        layers = self._env or self._file_env  # the env files' value, for a task without env
        if layers is not None:
            from tasks.runtime.settings import Settings

            with contextlib.suppress(ConfigError):
                keep = Settings(layers).integer("RUNS_KEEP", DEFAULT_KEEP)
        with os.scandir(folder) as entries:
            finished = [
                e for e in entries if e.name.endswith(".json") and ".running." not in e.name
            ]
        if len(finished) <= keep:
            return
        from tasks.history.store import beyond_retention

        for old in beyond_retention(self.project.work, keep):
            old.unlink(missing_ok=True)

    def _trace_path(self, *, running: bool = False) -> Path:
        name = f"{self.task.replace('.', '-')}-{self.id}"
        return (
            self.project.work / "traces" / (f"{name}.running.json" if running else f"{name}.json")
        )

    def reporting_value(self, name: str) -> str:
        """A setting for reporting a failure (NOTIFY_URL): from the resolved env, or, when
        resolving it failed (Doppler down, a bad value), from the shell and env files alone."""
        if self._env is None:
            self._learn_file_secrets()
        layers = self._env or self._file_env
        return (layers.get(name) or "").strip() if layers is not None else ""

    def _learn_file_secrets(self) -> None:
        """A task that never needed the env must still not write a secret typed on its command
        line into its trace: the env files' secrets (never Doppler's: no network for a trace)
        are learnt, once, before argv is masked."""
        if self._env is not None or self._file_secrets_learnt:
            return
        self._file_secrets_learnt = True
        from tasks.runtime.envlayers import resolve_env

        # A broken env file: the task said so already, or never needed it.
        with contextlib.suppress(HomelabError):
            self._file_env = resolve_env(
                self.project.inventory,
                chain=self.selection.chain,
                override_file=self.selection.override,
                shell=self._shell,
                doppler=False,
                root=self.project.root,
            )

    def _process_identity(self) -> str | None:
        if self._identity is None:
            from tasks.runtime.lock import process_identity

            self._identity = process_identity(os.getpid()) or ""
        return self._identity or None

    def write_trace(
        self, outcome: str, *, exit_code: int, error: str | None, running: bool = False
    ) -> Path:
        import getpass
        import platform

        from tasks.runtime.files import atomic_write_json, make_private_dirs

        ended = time.time()
        self._learn_file_secrets()
        env_layers = self._env.layer_names() if self._env is not None else []
        try:
            operator = getpass.getuser()
        except (KeyError, OSError):
            operator = str(os.getuid())
        payload = {
            "run": self.id,
            "pid": os.getpid(),
            "process": self._process_identity(),
            "task": self.task,
            "tasks": self.tasks,
            "argv": [mask(a) for a in self.argv],
            "dry_run": self.dry_run,
            "env": self.selection.describe(),
            "env_layers": env_layers,
            "started": _iso(self.started),
            "started_epoch": round(self.started, 3),  # the timeline's origin, below a second
            "ended": _iso(ended),
            "seconds": round(ended - self.started, 3),
            "outcome": outcome,
            "exit_code": exit_code,
            "error": mask(error) if error else None,
            "operator": operator,
            "host": platform.node(),
            "locks": [lock.name for lock in self._locks],
            "steps": self.steps
            + ([{"id": step, "outcome": "running"} for step in self.running] if running else []),
            "effects": self.effects.trace_records(),
            **mask_data(self.extra),
        }
        path = self._trace_path(running=running)
        make_private_dirs(path.parent)
        atomic_write_json(path, payload, mode=0o600)
        return path


def complete_crashed_traces(folder: Path) -> list[Path]:
    """Every `*.running.json` whose process is gone (killed outright, SIGKILL or power cut; its
    pid perhaps another process's by now) becomes a finished trace: outcome `killed`, its last
    step `interrupted`."""
    journals = sorted(folder.glob("*.running.json")) if folder.is_dir() else []
    if not journals:  # the usual case: nothing more to import
        return []
    import json

    from tasks.runtime.files import atomic_write_json
    from tasks.runtime.lock import run_alive

    done = []
    for journal in journals:
        try:
            data = json.loads(journal.read_text(encoding="utf-8"))
            pid = int(data.get("pid") or 0)
            identity = data.get("process")
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # not a journal this runner wrote: `inv runs` lists it as unreadable
        if run_alive(pid, identity if isinstance(identity, str) else None):
            continue
        data["outcome"] = "killed"
        data["exit_code"] = 137
        data["error"] = "the run was killed before it could finish; completed by a later run"
        data["ended"] = _iso(journal.stat().st_mtime)
        steps = data.get("steps")
        for step in steps if isinstance(steps, list) else []:
            if isinstance(step, dict) and step.get("outcome") == "running":
                step["outcome"] = "interrupted"
        final = journal.with_name(journal.name.replace(".running.json", ".json"))
        atomic_write_json(final, data, mode=0o600)
        journal.unlink(missing_ok=True)
        done.append(final)
    return done


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
