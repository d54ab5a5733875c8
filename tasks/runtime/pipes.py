"""A reader that goes away (`inv --list | head`) ends the run quietly, as Unix tools do."""

from __future__ import annotations

import os
import sys

# What a shell reports for a tool that SIGPIPE ended: 128 + 13.
EXIT_BROKEN_PIPE = 141


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def quiet_broken_pipe() -> None:
    """Exit 141 without a traceback when a closed pipe breaks Invoke's own output.

    Tasks are covered by the executor; `--list`, `--help` and the like print from Invoke's Program,
    outside any task, so the hook catches what escapes there. Only the `inv`/`invoke` scripts get
    it: a test run or an importing program keeps its own hook.
    """
    if os.path.basename(sys.argv[0]) not in {"inv", "invoke"}:
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        if not issubclass(kind, BrokenPipeError):
            return previous(kind, value, tb)
        silence_stdout()
        sys.stderr.flush()
        os._exit(EXIT_BROKEN_PIPE)  # nothing is left to clean up once output is gone

    sys.excepthook = hook
