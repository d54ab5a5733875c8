"""Operator output: masked always; rich on a terminal, plain aligned text otherwise.

On a terminal (or with FORCE_COLOR set, as rich and most tools read it) tables are drawn with rich,
wrapping long values instead of cutting them, statuses in colour unless NO_COLOR is set. Off a
terminal tables are plain aligned text that fits COLUMNS (default 100) by wrapping cells at word
boundaries; a single word longer than its column (a URL, a path) is kept whole, never cut.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

from tasks.runtime.secrets import mask

STATUS_STYLES = {
    "ok": "green",
    "fail": "red",
    "failed": "red",
    "warn": "yellow",
    "skip": "dim",
    "skipped": "dim",
    "unreachable": "red",
    "refused": "red",
    "interrupted": "yellow",
}


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


def color_enabled() -> bool:
    return is_terminal() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def width() -> int:
    # shutil.get_terminal_size's rules (COLUMNS first, then the terminal, else 100) without
    # importing shutil, which costs every run a few milliseconds.
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            stdout = sys.__stdout__
            columns = os.get_terminal_size(stdout.fileno()).columns if stdout else 100
        except (AttributeError, ValueError, OSError):
            columns = 100
    return max(40, columns or 100)


LINE_LIMIT = 120  # no plan or report line is longer, unless one word (a path, a URL) is


def wrap(line: str, *, indent: str = "", limit: int = LINE_LIMIT) -> list[str]:
    """`line` as lines of at most `limit` characters, broken between words only, so a long path
    or URL stays whole (on a line of its own); continuation lines start with `indent`."""
    if len(line) <= limit:
        return [line]
    import textwrap

    return textwrap.wrap(
        line,
        width=limit,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [line]


def say(message: str = "") -> None:
    print(mask(message), flush=True)


def progress(message: str) -> None:
    """A status line that is not the task's output (retries, waits): stderr, so --json stays clean."""
    print(mask(message), file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(mask(f"warning: {message}"), file=sys.stderr, flush=True)


def _console():
    from rich.console import Console

    plain = "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb"
    forced = bool(os.environ.get("FORCE_COLOR"))
    # NO_COLOR: no ANSI codes at all, bold included; FORCE_COLOR: colour even without a TERM.
    system = None if plain else ("standard" if forced and not os.environ.get("TERM") else "auto")
    return Console(highlight=False, color_system=system, force_terminal=forced or None)


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    title: str | None = None,
    *,
    status_column: int | None = None,
) -> None:
    """A table; rows are masked; long values wrap, nothing is cut."""
    cells = [[mask("" if c is None else str(c)) for c in row] for row in rows]
    title = mask(title) if title else title
    if is_terminal():
        from rich.table import Table
        from rich.text import Text

        tbl = Table(title=title, title_justify="left")
        for col in columns:
            tbl.add_column(col, overflow="fold")
        for row in cells:
            shown = [Text(c) for c in row]
            if status_column is not None and status_column < len(shown):
                style = STATUS_STYLES.get(row[status_column], "")
                shown[status_column] = Text(row[status_column], style=style)
            tbl.add_row(*shown)
        _console().print(tbl)
        return
    if title:
        print(title)
    for line in plain_table(list(columns), cells, width()):
        print(line)
    sys.stdout.flush()


def plain_table(columns: list[str], rows: list[list[str]], total: int) -> list[str]:
    """Aligned plain text within `total` columns: every column but the last as wide as its widest
    cell (capped), the last wraps at word boundaries; a word never breaks."""
    import textwrap

    count = len(columns)
    widths = [len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    # A column never gets narrower than its longest word (a run id, a path): words never break,
    # so a narrower column would push the rest of its row out of line.
    floors = [len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            floors[i] = max(floors[i], max((len(w) for w in cell.split()), default=0))
    gaps = 2 * (count - 1)
    cap = max(12, (total - gaps) // max(1, count))
    for i in range(count - 1):  # the leading columns give way first, to a fair share each
        if sum(widths) + gaps > total:
            widths[i] = min(widths[i], max(cap, floors[i]))
    last = max(20, total - gaps - sum(widths[:-1]))
    widths[-1] = min(widths[-1], last)

    def wrapped(text: str, size: int) -> list[str]:
        return textwrap.wrap(text, size, break_long_words=False, break_on_hyphens=False) or [""]

    out = []
    for index, row in enumerate([columns, ["-" * w for w in widths], *rows]):
        parts = [wrapped(cell, widths[i]) if index != 1 else [cell] for i, cell in enumerate(row)]
        for n in range(max(len(p) for p in parts)):
            line = [
                (p[n] if n < len(p) else "").ljust(widths[i])
                if i < count - 1
                else (p[n] if n < len(p) else "")
                for i, p in enumerate(parts)
            ]
            out.append("  ".join(line).rstrip())
    return out


def footnoted_table(
    columns: Sequence[str],
    rows: Sequence[tuple[Sequence[object], str]],
    *,
    status_column: int | None = None,
    notes_title: str = "notes:",
) -> None:
    """A table whose rows may carry a note (how to fix it): `[n]` in the row, the note in full
    below, so a command or URL in it is never wrapped into a table cell."""
    numbered: list[list[object]] = []
    notes: list[str] = []
    for cells, note in rows:
        row = list(cells)
        if note:
            notes.append(note)
            row[-1] = f"{row[-1]} [{len(notes)}]"
        numbered.append(row)
    table(columns, numbered, status_column=status_column)
    if notes:
        say(notes_title)
        for n, note in enumerate(notes, 1):
            say(f"  [{n}] {note}")


@contextlib.contextmanager
def status_line(message: str) -> Iterator[None]:
    """A live line while something slow runs (connecting...), on a terminal only."""
    if not (is_terminal(sys.stderr) and sys.stderr.isatty()):
        yield
        return
    from rich.console import Console

    with Console(stderr=True, highlight=False).status(mask(message)):
        yield


def status_word(outcome: str) -> str:
    if not color_enabled():
        return outcome
    color = STATUS_STYLES.get(outcome)
    return f"[{color}]{outcome}[/{color}]" if color else outcome


def rich_print(message: str) -> None:
    """Print with rich markup on a terminal; strip it otherwise."""
    text = mask(message)
    if color_enabled():
        _console().print(text)
    else:
        import re

        print(re.sub(r"\[/?[a-z ]+\]", "", text), flush=True)
