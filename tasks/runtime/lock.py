"""One run at a time per orchestrator: an flock'd file that names its holder."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from tasks.runtime.errors import RefusedError
from tasks.runtime.trace import utc_now


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """Held for the life of a run; the kernel releases it if the process dies."""

    def __init__(self, path: Path, name: str):
        self.path = path
        self.name = name
        self._fd: int | None = None
        self.took_over: dict | None = None

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self._holder()
            raise RefusedError(
                f"{self.name} is already running (pid {holder.get('pid', '?')}, "
                f"started {holder.get('started', '?')}); lock file {self.path}",
                hint="wait for it to finish; a lock whose process has died is taken over automatically",
            ) from None
        previous = self._holder()
        if (
            previous.get("pid")
            and previous.get("pid") != os.getpid()
            and not _alive(int(previous["pid"]))
        ):
            self.took_over = previous
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "started": utc_now()}
        os.write(fd, json.dumps(record).encode())
        self._fd = fd
        return self

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
