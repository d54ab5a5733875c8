"""Rolling reboot: one host at a time, each waited for until it answers again."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.adapters.ssh import RemoteResult, SshSettings, SshTarget
    from tasks.runtime.seam import Effects

BOOT_ID = "cat /proc/sys/kernel/random/boot_id"
DEFAULT_REBOOT_COMMAND = "sudo -n /sbin/shutdown -r now"


@dataclass
class RebootResult:
    host: str
    status: str  # ok | failed | unreachable | refused
    seconds: float
    detail: str


def reboot_command(custom: str | None) -> str:
    """Detach the reboot so the session returns before the host goes down."""
    import shlex

    command = custom or DEFAULT_REBOOT_COMMAND
    return f"nohup sh -c {shlex.quote('sleep 1; ' + command)} >/dev/null 2>&1 &"


def _boot_id(effects: Effects, target: SshTarget, settings: SshSettings) -> str:
    from tasks.adapters.ssh import on_host

    def read(conn) -> str:
        result = effects.ssh_run(
            conn, target.name, BOOT_ID, mutates=False, timeout=settings.connect_timeout
        )
        return result.stdout.strip()

    return on_host(effects, target, settings, read)


def reboot_one(
    effects: Effects,
    target: SshTarget,
    settings: SshSettings,
    command: str,
    *,
    timeout: float,
    poll: float = 0.5,
) -> RebootResult:
    """Reboot, see it go down (or its boot id change), see it come back; within `timeout`.

    The boot id before and the reboot command share one connection.
    """
    from tasks.adapters.ssh import SshFailure, on_host

    started = time.monotonic()

    def reboot(conn) -> tuple[str, RemoteResult]:
        before = effects.ssh_run(
            conn, target.name, BOOT_ID, mutates=False, timeout=settings.connect_timeout
        ).stdout.strip()
        result = effects.ssh_run(
            conn,
            target.name,
            reboot_command(command),
            mutates=True,
            timeout=settings.connect_timeout,
            what=f"reboot ({command})",
        )
        return before, result

    try:
        before, result = on_host(effects, target, settings, reboot)
        if result.exited != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            return RebootResult(
                target.name,
                "failed",
                time.monotonic() - started,
                f"reboot command failed: {detail[-1] if detail else result.exited}",
            )
    except SshFailure as exc:
        return RebootResult(target.name, exc.status, time.monotonic() - started, exc.message)
    seen_down = False
    deadline = started + timeout
    while time.monotonic() < deadline:
        time.sleep(poll)
        try:
            now = _boot_id(effects, target, settings)
        except SshFailure as exc:
            if exc.status == "refused":
                return RebootResult(target.name, "refused", time.monotonic() - started, exc.message)
            seen_down = True
            continue
        if now != before or seen_down:
            return RebootResult(
                target.name,
                "ok",
                time.monotonic() - started,
                "back with a new boot id" if now != before else "back",
            )
    return RebootResult(
        target.name,
        "failed",
        time.monotonic() - started,
        f"not back within {timeout:g}s" + ("" if seen_down else " (never saw it go down)"),
    )
