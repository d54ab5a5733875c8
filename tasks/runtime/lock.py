"""One run at a time per area: an flock'd file under `.work/locks/` that names its holder."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from tasks.runtime.errors import ConfigError, RefusedError


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_identity(pid: int) -> str | None:
    """The boot and the kernel's start time of `pid` (Linux /proc; None elsewhere): after a power
    cut or a crash the pid of a dead run is soon another process's, and this tells them apart."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2, the command, may hold spaces and parentheses: fields are counted after its ")".
    fields = stat.rpartition(")")[2].split()
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None  # field 22, starttime


def run_alive(pid: int, identity: str | None) -> bool:
    """The process that wrote a record with this pid and identity is still running."""
    if not pid_alive(pid):
        return False
    now = process_identity(pid) if identity else None
    return now is None or now == identity


class RunLock:
    """Held for the life of a run; the kernel releases it if the process dies."""

    def __init__(self, path: Path, name: str, holder: dict[str, Any] | None = None):
        self.path = path
        self.name = name
        self.holder = dict(holder or {})
        self._fd: int | None = None
        self.took_over: dict | None = None

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        from tasks.runtime.trace import utc_now

        folder = self.path.parent
        if folder.exists() and not folder.is_dir():
            raise ConfigError(
                f"{folder} is not a folder: the runner keeps its locks there",
                hint=f"remove the file {folder} (or run `inv clean`)",
            )
        from tasks.runtime.files import make_private_dirs

        make_private_dirs(folder)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot open the lock file: {exc.strerror}") from None
        holder = self._wait_for_a_named_holder(fd)
        if holder is not None:
            os.close(fd)
            task = f"{holder['task']}, " if holder.get("task") else ""
            raise RefusedError(
                f"{self.name} is already in use by another run ({task}pid {holder.get('pid', '?')}, "
                f"started {holder.get('started', '?')}); lock file {self.path}",
                hint="wait for it to finish; a lock whose process has died is taken over automatically",
            ) from None
        previous = self._holder()
        if (
            previous.get("pid")
            and previous.get("pid") != os.getpid()
            and not pid_alive(int(previous["pid"]))
        ):
            self.took_over = previous
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "started": utc_now(), **self.holder}
        os.write(fd, json.dumps(record).encode())
        self._fd = fd
        return self

    def _wait_for_a_named_holder(self, fd: int) -> dict | None:
        """None when the lock is ours; else the holder's record. A holder between its flock and
        its record write (or releasing: the record is emptied before the unlock) has no pid yet:
        try again for up to a second rather than refuse naming nobody."""
        import time

        deadline = time.monotonic() + 1.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return None
            except BlockingIOError:
                holder = self._holder()
                if holder.get("pid") or time.monotonic() >= deadline:
                    return holder
                time.sleep(0.02)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
