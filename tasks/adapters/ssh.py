"""The SSH adapter: hosts over SSH through the effects seam (tasks/runtime/seam/ssh.py).

Connections are reads (host keys checked; see the seam); each remote command says whether it
reads or mutates, so a dry run still gathers facts from the hosts and changes nothing on them.
`run_everywhere` is the bounded fan-out across hosts: one outcome per host, one host's failure
never stopping the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tasks.runtime.fanout import Outcome, fan_out
from tasks.runtime.seam.ssh import (
    CHECKING_MODES,
    RemoteResult,
    SshFailure,
    SshSettings,
    SshTarget,
    close_connection,
    fingerprint,
    known_hosts_name,
    secret_env_prologue,
)

if TYPE_CHECKING:
    from fabric import Connection

    from tasks.runtime.seam import Effects

__all__ = [
    "CHECKING_MODES",
    "RemoteResult",
    "SshFailure",
    "SshSettings",
    "SshTarget",
    "close_connection",
    "fingerprint",
    "known_hosts_name",
    "on_host",
    "run_everywhere",
    "secret_env_prologue",
]


def on_host(
    effects: Effects,
    target: SshTarget,
    settings: SshSettings,
    work: Callable[[Connection], Any],
) -> Any:
    """Open a checked connection to `target`, run `work(conn)`, always close it."""
    conn = effects.ssh_connect(target, settings)
    try:
        return work(conn)
    finally:
        close_connection(conn)


def run_everywhere(
    effects: Effects,
    targets: Iterable[SshTarget],
    settings: SshSettings,
    command: str,
    *,
    mutates: bool,
    env: Mapping[str, str] | None = None,
    parallel: int = 10,
    timeout: float | None = None,
    what: str | None = None,
) -> list[Outcome]:
    """`command` on every target; a non-zero exit is `failed` with the last line of stderr.

    Each outcome's `value` is the RemoteResult (None when the host was not reached).
    """

    def one(target: SshTarget) -> Outcome:
        def work(conn: Connection) -> Outcome:
            result = effects.ssh_run(
                conn, target.name, command, mutates=mutates, env=env, timeout=timeout, what=what
            )
            status = "ok" if result.exited == 0 else "failed"
            lines = (result.stdout if status == "ok" else (result.stderr or result.stdout)).strip()
            last = lines.splitlines()[-1] if lines else ""
            return Outcome(target.name, status, detail=last, value=result, exit_code=result.exited)

        return on_host(effects, target, settings, work)

    return fan_out(list(targets), one, name=lambda t: t.name, parallel=parallel)
