"""Real OpenSSH servers for the tests: one sshd per host on its own 127.x.y.z with its own host
key, logging in as an unprivileged user (tasks/rehearsal/ssh_standins.py starts them).

As root (CI) the user is created if missing; otherwise the tests that need sshd are skipped with
the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks.rehearsal.ssh_standins import SshLab, sshd_unavailable_reason


def start_lab(names: list[str]) -> SshLab:
    reason = sshd_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return SshLab(names)


@pytest.fixture
def ssh_lab() -> Iterator[SshLab]:
    """Three real sshd hosts: web1, web2, db1."""
    lab = start_lab(["web1", "web2", "db1"])
    try:
        yield lab
    finally:
        lab.close()
