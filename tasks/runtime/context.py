"""HomelabContext: Invoke's Context carrying the invocation's Run; `c.run` goes through the seam."""

from __future__ import annotations

import io
from typing import Any

from invoke import Context

from tasks.runtime.secrets import MASKER


class MaskedStream(io.TextIOBase):
    """A line-buffered writer that masks secrets before they reach the terminal.

    Whole lines are masked so a secret split across two reads of the child's pipe is still caught.
    """

    def __init__(self, target):
        self.target = target
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            complete, self._pending = self._pending.rsplit("\n", 1)
            self.target.write(MASKER.mask(complete) + "\n")
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def finish(self) -> None:
        if self._pending:
            self.target.write(MASKER.mask(self._pending))
            self._pending = ""
        self.target.flush()


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
