"""The runner's tasks: Invoke tasks whose body receives the Run, and how each selects its env.

    from tasks.runtime.cli import task

    @task(help={"dry_run": "print the plan; change nothing"})
    def apply(run, dry_run=False):
        ...                      # `run` is this invocation's Run (tasks/runtime/run.py)

Declared per task: `env` (the chain: "cluster", "host", or a function of the task's arguments),
`doppler=False` for tasks that never need secrets (local edits, offline checks),
`check_settings=False` for the env diagnostics, which show bad values instead of refusing them,
`area` for the lock a real run of the task holds from its first read to its end (so two runs of
an area never plan against each other; a dry run takes none),
`optional_positional` for a positional that may be left out (`inv app.mode` lists the modes),
and `choices` naming a function that lists a positional's valid values (for the error when it is
missing or wrong; see tasks/runtime/program.py).
A task with a `dry_run` flag is a mutating task: it always writes a trace. The body's `dry_run`
argument is the run's dry-run switch, so `inv --dry TASK` and `inv TASK --dry-run` are one thing.

No task gets `-h` as a short flag: `-h`/`--help` after a task name is always that task's help.
This module is imported by `inv --list`: it imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from invoke import Context, Task

EnvChoice = str | Callable[[dict[str, Any]], str]


class RunnerTask(Task):
    def __init__(
        self,
        body: Callable,
        *,
        env: EnvChoice = "cluster",
        doppler: bool = True,
        check_settings: bool = True,
        traced: bool | None = None,
        optional_positional: tuple[str, ...] | list[str] = (),
        choices: dict[str, Callable[[], list[str]]] | None = None,
        area: str | Callable[[dict[str, Any]], str] | None = None,
        bad_input_exit: int = 2,
        **kwargs: Any,
    ) -> None:
        if optional_positional:
            kwargs.setdefault("positional", list(optional_positional))
        super().__init__(body, **kwargs)
        self.optional_positional = tuple(optional_positional)
        # The valid values of a positional, for the error when it is missing or wrong.
        self.choices = dict(choices or {})
        self.env_choice = env
        self.area = area  # the lock a real (not dry) run holds from its first read to its end
        self.doppler = doppler
        self.check_settings = check_settings
        # The exit code of bad input (an unknown flag...): 2, but 1 for `inv plan`, whose 2 is
        # "changes pending" (Terraform's -detailed-exitcode).
        self.bad_input_exit = bad_input_exit
        # The code object, not inspect.signature: this runs for every task at `inv --list`.
        code = body.__code__
        self.takes_dry_run = "dry_run" in code.co_varnames[: code.co_argcount]
        self.traced = self.takes_dry_run if traced is None else traced

    def env_chain(self, kwargs: dict[str, Any]) -> str:
        choice = self.env_choice
        return choice(kwargs) if callable(choice) else choice

    def lock_area(self, kwargs: dict[str, Any]) -> str | None:
        return self.area(kwargs) if callable(self.area) else self.area

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        # `-h` stays Invoke's help flag for every task.
        return super().arg_opts(name, default, taken_names | {"h"})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        context = args[0]
        if not isinstance(context, Context):
            raise TypeError(f"{self.name}: expected a Context as the first argument")
        run = getattr(context, "homelab_run", None)
        if run is None:
            raise TypeError(f"{self.name}: the runner's executor did not create a Run")
        if self.takes_dry_run:
            kwargs["dry_run"] = run.dry_run
        result = self.body(run, *args[1:], **kwargs)
        self.times_called += 1
        return result


def task(*args: Any, **kwargs: Any) -> Any:
    """Invoke's `@task`, making a RunnerTask (see the module docstring)."""
    kwargs.setdefault("klass", RunnerTask)
    from invoke import task as invoke_task

    return invoke_task(*args, **kwargs)
