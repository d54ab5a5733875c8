"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Under `.work/` (generated state: caches, traces, kubeconfigs, rendered inventories) new files are
0600 and new folders 0700, whoever writes them. A temp file left by a writer that was killed
outright (`.NAME.<pid>.<random>.tmp`) is removed by the next write of the same file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


def _private(path: Path) -> bool:
    return ".work" in path.parts


def dead_temps(path: Path) -> list[Path]:
    """`.NAME.<pid>.*.tmp` beside `path` whose writer is gone (killed before its rename)."""
    from tasks.runtime.lock import pid_alive

    found = []
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        pid = leftover.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            found.append(leftover)
    return found


def _remove_dead_temps(path: Path) -> None:
    for leftover in dead_temps(path):
        with contextlib.suppress(OSError):
            leftover.unlink()


def make_private_dirs(folder: Path) -> None:
    """`folder` and every missing folder above it, each 0700 (`mkdir(parents=True)` gives the
    parents the umask's mode: `.work/` itself would be world-readable)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        with contextlib.suppress(FileExistsError):
            each.mkdir(mode=0o700)


def make_dirs(folder: Path) -> None:
    """`folder` and its missing parents: 0700 under `.work/` (generated state is private), the
    umask's mode elsewhere."""
    if _private(folder):
        make_private_dirs(folder)
    else:
        folder.mkdir(parents=True, exist_ok=True)


def _refuse_special(path: Path) -> None:
    """A write replaces the file (a rename): a device such as /dev/null, a pipe or a socket would
    be swapped for a regular file, so they are refused (links are replaced, as before)."""
    import stat

    from tasks.runtime.errors import ConfigError

    try:
        kind = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):
        raise ConfigError(
            f"{path}: not a regular file (a device, pipe or socket); the runner writes a file by "
            "replacing it",
            hint="name a regular file, or move this one away",
        )


def _stage(path: Path, data: str | bytes, mode: int | None) -> str:
    """Write `data` to a temporary file beside `path` (fsynced, final mode set); its name."""
    _refuse_special(path)
    private = _private(path)
    make_dirs(path.parent)
    if mode is None and private and not path.exists():
        mode = 0o600
    _remove_dead_temps(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write(path: Path, data: str | bytes, mode: int | None = None) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it into place."""
    path = Path(path)
    tmp = _stage(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_all(files: Mapping[Path, str | bytes], mode: int | None = None) -> None:
    """Several files, all or nothing: each is staged first; only when all are staged does one
    pass rename them into place, with SIGINT/SIGTERM/SIGHUP held off until it is done (an
    interrupt then lands after the set is complete). A failure while staging leaves every old
    file as it was."""
    import signal

    staged: list[tuple[str, Path]] = []
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    try:
        for path, data in files.items():
            staged.append((_stage(Path(path), data, mode), Path(path)))
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            while staged:
                tmp, path = staged[0]
                os.replace(tmp, path)
                staged.pop(0)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    finally:
        for tmp, _path in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def atomic_write_json(path: Path, payload: object, mode: int | None = None) -> None:
    import json

    atomic_write(path, json.dumps(payload, indent=2, sort_keys=False) + "\n", mode=mode)
