"""Test-only: pause an `inv` child at a write's temp-file moment (tests/adversarial/test_interrupts.py).

Put this folder on PYTHONPATH and set HL_PAUSE_AT to a glob (fnmatch, against the absolute target
path). The first `os.replace(tmp, target)` whose target matches, made while the staged temp file
exists beside it (tasks/runtime/files.py: written, fsynced, mode set; not yet renamed), writes
HL_PAUSE_MARK (the temp file's path, the target's, the thread's name) and waits there: the test
then signals the process. A signal raised in this thread ends the wait (the exception leaves
through the rename, as a real interrupt would); with the run's signals blocked (a multi-file
write's rename pass) the wait ends when one is pending, and in a worker thread when the run is
stopping (tasks/runtime/seam/stop.py STOP); then the rename goes ahead. After HL_PAUSE_SECONDS
(default 30) the write goes on anyway.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import sys
import threading
import time

_PATTERN = os.environ.get("HL_PAUSE_AT")
_MARK = os.environ.get("HL_PAUSE_MARK")
_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}

if _PATTERN and _MARK:
    _real_replace = os.replace
    _done = threading.Event()

    def _paused_replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        target = os.path.abspath(os.fspath(dst))
        staged = os.path.basename(os.fspath(src))
        if (
            not _done.is_set()
            and fnmatch.fnmatch(target, _PATTERN)
            and staged.startswith(f".{os.path.basename(target)}.")
            and staged.endswith(".tmp")
            and os.path.exists(src)
        ):
            _done.set()
            with open(_MARK + ".part", "w") as fh:
                fh.write(f"{os.fspath(src)}\n{target}\n{threading.current_thread().name}\n")
            _real_replace(_MARK + ".part", _MARK)
            blocked = _SIGNALS & signal.pthread_sigmask(signal.SIG_BLOCK, [])
            worker = threading.current_thread() is not threading.main_thread()
            deadline = time.monotonic() + float(os.environ.get("HL_PAUSE_SECONDS", "30"))
            while time.monotonic() < deadline:
                if blocked and blocked & signal.sigpending():
                    break
                stop = getattr(sys.modules.get("tasks.runtime.seam.stop"), "STOP", None)
                if worker and stop is not None and stop.is_set():
                    break
                time.sleep(0.02)
        return _real_replace(src, dst, *args, **kwargs)

    os.replace = _paused_replace
