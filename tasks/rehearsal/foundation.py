"""Rehearsal stage for the foundation: env resolution and the `up` plan."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tasks.rehearsal.play import Act, Rehearsal


@contextmanager
def stage(rehearsal: Rehearsal) -> Iterator[list[Act]]:
    yield [
        Act("resolve the layered environment", ("env.show",)),
        Act("plan the layer pipeline", ("up", "--dry-run")),
    ]
