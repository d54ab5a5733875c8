"""SSH on the wire: the only module of the runner that uses fabric and paramiko.

Host keys are always checked. fabric's `Connection` accepts any key (it hard-codes paramiko's
AutoAddPolicy and loads no known_hosts), so every connection made here replaces the policy before
it opens: `strict` refuses an unknown or changed key, naming the host and the fingerprint;
`accept-new` (trust on first use) records an unknown key in the project's known_hosts and never
accepts a changed one. In a dry run a first-seen key is trusted for that connection only and not
recorded (`record_new_keys=False`).

Secrets never reach a remote command line (fabric's default inlines env vars into it, visible in
the remote process list): they travel on the channel's stdin into a 0600 temp file that the
remote shell sources and removes before the command runs.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import select
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection

from tasks.runtime.errors import ConfigError
from tasks.runtime.seam.stop import STOP

CHECKING_MODES = ("strict", "accept-new")

# paramiko's transport thread logs a failed handshake (with its traceback) at ERROR; with no
# handler configured, Python's last-resort handler would print that to the terminal. The runner
# reports the failure itself, once; `--debug` (which configures handlers) still shows paramiko's.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom to log in; `jump` is the bastion to go through, if any."""

    name: str
    address: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    jump: SshTarget | None = None

    @property
    def where(self) -> str:
        via = f" via {self.jump.name}" if self.jump else ""
        return f"{self.user + '@' if self.user else ''}{self.address}:{self.port}{via}"


@dataclass(frozen=True)
class SshSettings:
    """How to check host keys and how long to wait."""

    known_hosts: Path  # the project's file: pinned keys, and where accept-new records
    user_known_hosts: Path | None = None  # also trusted (never written)
    host_key_checking: str = "strict"
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.host_key_checking not in CHECKING_MODES:
            raise ConfigError(
                f"host key checking {self.host_key_checking!r}: expected strict or accept-new"
            )


class SshFailure(Exception):
    """One host's failure, classified for the result table: unreachable, refused or failed."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint (`ssh-keygen -lf`)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


class _CheckedPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for a host with no known key (a changed key raises before)."""

    def __init__(self, settings: SshSettings, target_name: str, record: bool = True):
        self.settings = settings
        self.target_name = target_name
        self.record = record

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey):
        if self.settings.host_key_checking != "accept-new":
            files = ", ".join(str(p) for p in self._files())
            raise SshFailure(
                "refused",
                f"unknown host key for {self.target_name} ({hostname}): {key.get_name()} "
                f"{fingerprint(key)} is not in {files}; check the fingerprint on the host "
                "(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then add it, or run once with "
                "SSH_HOST_KEY_CHECKING=accept-new",
            )
        if self.record:
            record_host_key(self.settings.known_hosts, hostname, key, self.target_name)
        client.get_host_keys().add(hostname, key.get_name(), key)

    def _files(self) -> list[Path]:
        return [p for p in (self.settings.known_hosts, self.settings.user_known_hosts) if p]


def record_host_key(path: Path, hostname: str, key: paramiko.PKey, target_name: str) -> None:
    """Append a first-seen key under a lock; another process's differing record wins (refused)."""
    from tasks.runtime.files import make_dirs

    make_dirs(path.parent)
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        known = paramiko.HostKeys()
        for line in fh.read().splitlines():
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
            if entry is not None:
                for name in entry.hostnames:
                    known.add(name, entry.key.get_name(), entry.key)
        existing = known.lookup(hostname)
        if existing is not None:
            same = existing.get(key.get_name())
            if same == key:
                return
            raise SshFailure(
                "refused",
                f"host key for {target_name} ({hostname}) changed while recording it: "
                f"offered {fingerprint(key)}, {path} has another key; refusing",
            )
        fh.seek(0, 2)
        fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def _load_known_hosts(client: paramiko.SSHClient, settings: SshSettings) -> None:
    if settings.user_known_hosts and settings.user_known_hosts.exists():
        client.load_system_host_keys(str(settings.user_known_hosts))
    if settings.known_hosts.exists():
        # Loaded into the "system" set too: paramiko's load_host_keys would make the client
        # rewrite the whole file on close, and accept-new records through its own locked append.
        client.load_system_host_keys(str(settings.known_hosts))


def _file_holding(settings: SshSettings, target: SshTarget, key: paramiko.PKey) -> Path:
    """Which known_hosts file has `key` for the target: the project's, or the operator's own."""
    name = known_hosts_name(target.address, target.port)
    for path in (settings.known_hosts, settings.user_known_hosts):
        if path is None or not path.exists():
            continue
        try:
            entry = paramiko.HostKeys(str(path)).lookup(name)
        except (OSError, paramiko.SSHException):
            continue
        if entry is not None and any(k == key for k in entry.values()):
            return path
    return settings.known_hosts


def open_connection(
    target: SshTarget, settings: SshSettings, *, record_new_keys: bool = True
) -> Connection:
    """A connected fabric Connection with host keys checked; raises SshFailure."""
    gateway = None
    if target.jump is not None:
        try:
            gateway = open_connection(target.jump, settings, record_new_keys=record_new_keys)
        except SshFailure as exc:
            raise SshFailure(exc.status, f"{target.name}: via jump host {exc.message}") from None
    # The inventory is the source of truth: the operator's ~/.ssh/config is not consulted, so a
    # Host block there cannot silently redirect a homelab host or turn checking off.
    config = Config(overrides={"load_ssh_configs": False}, lazy=True)
    connect_kwargs: dict[str, Any] = {
        "banner_timeout": settings.connect_timeout,
        "auth_timeout": settings.connect_timeout,
        "allow_agent": True,
        "look_for_keys": target.key_file is None,
    }
    if target.key_file:
        connect_kwargs["key_filename"] = [str(Path(target.key_file).expanduser())]
    conn = Connection(
        target.address,
        user=target.user,
        port=target.port,
        config=config,
        gateway=gateway,
        connect_timeout=settings.connect_timeout,
        connect_kwargs=connect_kwargs,
    )
    conn.client.set_missing_host_key_policy(
        _CheckedPolicy(settings, target.name, record=record_new_keys)
    )
    _load_known_hosts(conn.client, settings)
    started = time.monotonic()
    try:
        conn.open()
    except SshFailure:
        close_connection(conn)
        raise
    except paramiko.BadHostKeyException as exc:
        close_connection(conn)
        raise SshFailure(
            "refused",
            f"host key for {target.name} ({known_hosts_name(target.address, target.port)}) "
            f"does not match: the host offers {exc.key.get_name()} {fingerprint(exc.key)}, "
            f"known_hosts has {fingerprint(exc.expected_key)}; refusing (a rebuilt host or a "
            f"man in the middle). If the host was rebuilt, remove its old line from "
            f"{_file_holding(settings, target, exc.expected_key)}",
        ) from None
    except paramiko.AuthenticationException as exc:
        close_connection(conn)
        how = f"key {target.key_file}" if target.key_file else "the agent and default keys"
        raise SshFailure(
            "failed",
            f"{target.name}: authentication as {target.user or 'the current user'} with {how} "
            f"failed ({exc})",
        ) from None
    except TimeoutError as exc:
        close_connection(conn)
        raise SshFailure(
            "unreachable",
            f"{target.name} ({target.where}): no answer within {settings.connect_timeout:g}s"
            f"{' (' + str(exc) + ')' if str(exc) else ''}",
        ) from None
    except paramiko.ssh_exception.NoValidConnectionsError:
        close_connection(conn)
        raise SshFailure(
            "unreachable",
            f"{target.name} ({target.where}): connection refused (is sshd running on that port?)",
        ) from None
    except paramiko.SSHException as exc:
        close_connection(conn)
        text = str(exc)
        waited = time.monotonic() - started
        if ("banner" in text or "No existing session" in text) and (
            waited >= 0.9 * settings.connect_timeout
        ):
            # The port answers but no SSH greeting (or no auth) arrives: a hung or busy sshd.
            text = f"no SSH answer within {settings.connect_timeout:g}s"
        elif "banner" in text:
            # Closed at once (paramiko says "banner" for that too): not a timeout, say what it is.
            reason = text.split("banner", 1)[1].strip() or "closed"
            text = (
                f"the port took the connection but dropped it before any SSH greeting ({reason}): "
                "not an SSH server there, or sshd turned it away (MaxStartups, TCP wrappers)"
            )
        raise SshFailure("unreachable", f"{target.name} ({target.where}): {text}") from None
    except (OSError, EOFError) as exc:
        close_connection(conn)
        raise SshFailure(
            "unreachable", f"{target.name} ({target.where}): {exc or type(exc).__name__}"
        ) from None
    return conn


def close_connection(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()
        if conn.gateway is not None and isinstance(conn.gateway, Connection):
            conn.gateway.close()


@dataclass
class RemoteResult:
    exited: int
    stdout: str
    stderr: str


def secret_env_prologue(env: Mapping[str, str]) -> tuple[str, bytes]:
    """A shell prologue that reads `env` from stdin into a 0600 temp file, sources it, removes it.

    Returns (prologue, payload). `head -c N` reads exactly the payload, so whatever follows on
    stdin is left for the command itself.
    """
    if not env:
        return "", b""
    for name in env:
        if not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise ConfigError(f"not a valid environment variable name: {name!r}")
    payload = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()).encode()
    prologue = (
        "_hl_u=$(umask); umask 077; _hl_f=$(mktemp) || exit 125; "
        f'head -c {len(payload)} > "$_hl_f" && . "$_hl_f"; _hl_s=$?; '
        'rm -f "$_hl_f"; umask "$_hl_u"; [ "$_hl_s" -eq 0 ] || exit 125; '
    )
    return prologue, payload


def run_command(
    conn: Connection,
    command: str,
    *,
    env: Mapping[str, str] | None = None,
    stdin: bytes = b"",
    timeout: float | None = None,
) -> RemoteResult:
    """Run `command` on an open connection; `env` arrives through stdin, never argv."""
    prologue, payload = secret_env_prologue(env or {})
    transport = conn.client.get_transport()
    if transport is None:
        raise SshFailure("unreachable", "connection is closed")
    try:
        channel = transport.open_session(timeout=timeout)
        channel.exec_command(prologue + command)
        data = payload + stdin
        if data:
            channel.sendall(data)
        channel.shutdown_write()
        out, err = bytearray(), bytearray()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            while channel.recv_ready():
                out += channel.recv(65536)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            if (
                channel.exit_status_ready()
                and not channel.recv_ready()
                and not (channel.recv_stderr_ready())
            ):
                break
            if not transport.is_active() or (channel.closed and not channel.exit_status_ready()):
                raise SshFailure("unreachable", "connection lost while the command ran")
            if deadline is not None and time.monotonic() > deadline:
                channel.close()
                raise SshFailure("failed", f"command timed out after {timeout:g}s")
            if STOP.is_set():  # the run is stopping: close the session, the remote command ends
                channel.close()
                raise SshFailure("failed", "stopped: the run was interrupted")
            select.select([channel], [], [], 0.2)
        exited = channel.recv_exit_status()
        channel.close()
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise SshFailure("unreachable", f"connection lost: {exc or type(exc).__name__}") from None
    return RemoteResult(exited, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
