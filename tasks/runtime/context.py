"""HomelabContext: Invoke's Context carrying the invocation's Run; `c.run` goes through the seam."""

from __future__ import annotations

from typing import Any

from invoke import Context


class HomelabContext(Context):
    """The context Invoke hands a task; the runner's tasks receive its Run instead."""

    homelab_run: Any = None

    def run(self, command: str, **kwargs: Any):  # type: ignore[override]
        """A shell command from code written against plain Invoke: a mutation, through the seam."""
        import sys

        run = self.homelab_run
        if run is None:
            raise RuntimeError("this context belongs to no Run (use the runner's executor)")
        hide = kwargs.get("hide", self.config.run.hide)
        show = hide not in (True, "both", "out")
        result = run.effects.command(
            ["sh", "-c", command],
            mutates=True,
            env=kwargs.get("env"),
            check=not kwargs.get("warn", False),
            on_stdout=(lambda line: sys.stdout.write(line)) if show else None,
            on_stderr=(lambda line: sys.stderr.write(line)) if show else None,
            what=command,
        )
        return result
