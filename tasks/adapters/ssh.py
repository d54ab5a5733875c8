"""The SSH adapter: hosts over SSH through the effects seam (tasks/runtime/seam/ssh.py).

Connections are reads (host keys checked; see the seam); each remote command says whether it
reads or mutates, so a dry run still gathers facts from the hosts and changes nothing on them.
`run_everywhere` is the bounded fan-out across hosts: one outcome per host, one host's failure
never stopping the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import RefusedError
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
    "host_key_refusal",
    "known_hosts_name",
    "on_host",
    "refused_hosts",
    "run_everywhere",
    "secret_env_prologue",
]


def host_key_hint(settings: SshSettings) -> str:
    """How to fix a refused host key: compare, then correct the project's known_hosts."""
    return (
        "compare the fingerprint above with the host's own (`ssh-keygen -lf "
        "/etc/ssh/ssh_host_*_key.pub` on its console); `inv l3.hosts` shows its address and "
        "port, `ssh-keyscan -p PORT ADDRESS` the key it offers. If the host is genuine, fix its "
        f"line in {settings.known_hosts} (commit it), or record first-seen keys with "
        "SSH_HOST_KEY_CHECKING=accept-new (a changed key is refused there too)"
    )


def host_key_refusal(message: str, settings: SshSettings) -> RefusedError:
    """THE error for a refused host key, whichever task met it: exit 3 (refused for safety, like
    an unsafe target), never 4 (the host answered; the runner declined to trust it)."""
    return RefusedError(message, hint=host_key_hint(settings))


def refused_hosts(outcomes: Iterable[Outcome]) -> list[str]:
    """The hosts of a fan-out whose host key was refused (status `refused`, from SshFailure)."""
    return [o.name.removeprefix("host ") for o in outcomes if o.status == "refused"]


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
