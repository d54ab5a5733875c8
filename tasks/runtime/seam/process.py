"""Local processes: argv lists, no shell, output read on threads and masked line by line.

The only module of the runner that starts a local process. A child gets exactly the environment
it is given (the run's env, by default), its stdin from bytes or /dev/null, and its own
line-buffered readers, so a live stream (Packer, ansible-playbook) is masked before it reaches the
terminal or a log file while the whole output is still returned to the caller.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LineSink = Callable[[str], None]


class ProcessOutcome:
    __slots__ = ("exited", "stdout", "stderr", "seconds", "timed_out")

    def __init__(self, exited: int, stdout: str, stderr: str, seconds: float, timed_out: bool):
        self.exited = exited
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds
        self.timed_out = timed_out


def _reader(stream, chunks: list[str], sink: LineSink | None) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        chunks.append(line)
        if sink is not None:
            sink(line)
    stream.close()


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stdin: bytes | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    on_stdout: LineSink | None = None,
    on_stderr: LineSink | None = None,
) -> ProcessOutcome:
    """Run `argv` to completion. A missing program is exit 127, as a shell would report it."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError:
        return ProcessOutcome(127, "", f"{argv[0]}: command not found\n", 0.0, False)
    except PermissionError:
        return ProcessOutcome(126, "", f"{argv[0]}: permission denied\n", 0.0, False)
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=_reader, args=(proc.stdout, out, on_stdout), daemon=True),
        threading.Thread(target=_reader, args=(proc.stderr, err, on_stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    if stdin is not None and proc.stdin is not None:
        try:
            proc.stdin.write(stdin)
        except BrokenPipeError:
            pass  # the child exited without reading it all; its exit status says why
        finally:
            proc.stdin.close()
    from tasks.runtime.seam.stop import STOP, Interrupted

    timed_out = False
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if STOP.is_set():  # the run is stopping (Ctrl-C seen by the main thread)
                    raise Interrupted(f"{argv[0]}: stopped, the run was interrupted") from None
                if deadline is not None and time.monotonic() > deadline:
                    timed_out = True
                    proc.kill()
                    proc.wait()
                    break
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM): the child goes too, so nothing keeps running behind it.
        proc.kill()
        proc.wait()
        raise
    for reader in readers:
        reader.join()
    return ProcessOutcome(
        proc.returncode, "".join(out), "".join(err), time.monotonic() - started, timed_out
    )
