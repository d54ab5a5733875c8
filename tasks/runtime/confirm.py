"""Confirmation for destructive flows: `--yes` skips it; without a terminal it refuses."""

from __future__ import annotations

import sys

from tasks.runtime.errors import RefusedError
from tasks.runtime.secrets import mask


def confirm(action: str, *, yes: bool, detail: str = "") -> None:
    """Return when the operator agreed to `action`; raise RefusedError otherwise."""
    if yes:
        return
    if not (sys.stdin and sys.stdin.isatty()):
        raise RefusedError(
            f"{action}: refusing to run without confirmation and without a terminal",
            hint="re-run with --yes once you have read the plan (add --dry-run to see it)",
        )
    if detail:
        print(mask(detail))
    answer = input(mask(f"{action}: type 'yes' to continue: ")).strip().lower()
    if answer not in {"yes", "y"}:
        raise RefusedError(f"{action}: not confirmed; nothing was changed")
