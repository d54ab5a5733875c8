"""The rehearsal behind `inv rehearse`: the whole runner driven against local stand-ins.

Each area contributes a module here with `stage(rehearsal)`, a context manager that starts what
the area needs (fakepve, sshd, a bare git remote...), adds to `rehearsal.env`, and yields the
acts to run: real `inv` commands, run through the front door in a throwaway copy of the checkout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Stages are entered in this order; a later stage sees the env earlier ones set.
STAGE_MODULES = ("foundation", "proxmox", "templates", "ssh", "gitops")


@dataclass(frozen=True)
class Act:
    title: str
    argv: tuple[str, ...]
    expect_exit: int = 0


@dataclass
class Rehearsal:
    workdir: Path  # the throwaway copy of the checkout the acts run in
    scratch: Path  # room for certificates, keys, remotes
    env: dict[str, str] = field(default_factory=dict)
