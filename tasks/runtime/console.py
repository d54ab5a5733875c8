"""Operator output: masked always, rich on a terminal, plain aligned text otherwise."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from tasks.runtime.secrets import mask


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def color_enabled() -> bool:
    return is_terminal() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def say(message: str = "") -> None:
    print(mask(message), flush=True)


def progress(message: str) -> None:
    """A status line that is not the task's output (retries, waits): stderr, so --json stays clean."""
    print(mask(message), file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(mask(f"warning: {message}"), file=sys.stderr, flush=True)


def table(
    columns: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None
) -> None:
    """A table; rows are masked. Plain text when not a terminal, so nothing is wrapped or cut."""
    cells = [[mask("" if c is None else str(c)) for c in row] for row in rows]
    title = mask(title) if title else title
    if color_enabled():
        from rich.console import Console
        from rich.table import Table

        tbl = Table(title=title)
        for col in columns:
            tbl.add_column(col)
        for row in cells:
            tbl.add_row(*row)
        Console().print(tbl)
        return
    widths = [len(c) for c in columns]
    for row in cells:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell))
    if title:
        print(title)

    def line(values: Sequence[str]) -> str:
        parts = [v.ljust(widths[i]) if i < len(values) - 1 else v for i, v in enumerate(values)]
        return "  ".join(parts).rstrip()

    print(line(list(columns)))
    print(line(["-" * w for w in widths[:-1]] + ["-" * len(columns[-1])]))
    for row in cells:
        print(line(row))
    sys.stdout.flush()


def status_word(outcome: str) -> str:
    if not color_enabled():
        return outcome
    colors = {"ok": "green", "failed": "red", "fail": "red", "warn": "yellow", "skipped": "dim"}
    color = colors.get(outcome)
    return f"[{color}]{outcome}[/{color}]" if color else outcome


def rich_print(message: str) -> None:
    """Print with rich markup on a terminal; strip it otherwise."""
    text = mask(message)
    if color_enabled():
        from rich.console import Console

        Console().print(text, highlight=False)
    else:
        import re

        print(re.sub(r"\[/?[a-z ]+\]", "", text), flush=True)
