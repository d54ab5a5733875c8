"""One bounded fan-out for every "the same work on many items" (VMs, hosts, probes, renders).

Each item gets one `Outcome`; one item's failure never stops the others; results come back in
the items' order whatever order they finished in; `on_done` hears of each as it finishes (the
step engine prints progress from it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from tasks.runtime.errors import ConfigError, HomelabError

T = TypeVar("T")


class Outcome:
    """One item's result: `status` is ok, failed, unreachable, refused or not-run."""

    __slots__ = ("name", "status", "seconds", "detail", "value", "error", "exit_code")

    def __init__(
        self,
        name: str,
        status: str = "ok",
        *,
        seconds: float = 0.0,
        detail: str = "",
        value: Any = None,
        error: BaseException | None = None,
        exit_code: int | None = None,
    ) -> None:
        self.name = name
        self.status = status
        self.seconds = seconds
        self.detail = detail
        self.value = value
        self.error = error
        self.exit_code = exit_code

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __repr__(self) -> str:
        return f"Outcome({self.name!r}, {self.status!r}, detail={self.detail!r})"


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(status, one-line detail) for an exception raised by one item's work."""
    status = getattr(exc, "status", None)
    message = getattr(exc, "message", None)
    if isinstance(status, str) and isinstance(message, str):  # SshFailure: unreachable/refused
        return status, message
    if isinstance(exc, HomelabError):
        return "failed", " ".join(line.strip() for line in exc.message.splitlines())
    return "failed", f"unexpected {type(exc).__name__}: {exc} (a bug in the runner)"


def parse_parallel(raw: object, default: int, flag: str = "--parallel") -> int:
    """A `--parallel` flag's value (a string from the command line, or None: `default`)."""
    if raw is None or raw == "":
        return check_parallel(default, flag)
    text = str(raw).strip()
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{flag} {text!r}: expected a whole number of 1 or more")
    return int(text)


def check_parallel(parallel: int, flag: str = "--parallel") -> int:
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ConfigError(f"{flag} {parallel!r}: expected a whole number of 1 or more")
    return parallel


def fan_out(
    items: Iterable[T],
    work: Callable[[T], Any],
    *,
    name: Callable[[T], str] = str,
    parallel: int = 10,
    on_done: Callable[[Outcome, int, int], None] | None = None,
) -> list[Outcome]:
    """Run `work(item)` for every item, at most `parallel` at a time.

    `work` returns the item's value, or an `Outcome` of its own (to report a status other than
    ok without raising). An exception becomes a failed (or unreachable/refused) outcome.
    """
    from concurrent.futures import ThreadPoolExecutor

    chosen: Sequence[T] = list(items)
    check_parallel(parallel)
    if not chosen:
        return []
    results: list[Outcome | None] = [None] * len(chosen)
    done = 0
    lock = threading.Lock()

    def one(index: int) -> None:
        nonlocal done
        item = chosen[index]
        label = name(item)
        started = time.monotonic()
        try:
            value = work(item)
        except Exception as exc:  # one item's failure must not stop the others
            status, detail = describe_failure(exc)
            outcome = Outcome(label, status, detail=detail, error=exc)
        else:
            outcome = value if isinstance(value, Outcome) else Outcome(label, value=value)
        outcome.seconds = time.monotonic() - started
        with lock:
            results[index] = outcome
            done += 1
            if on_done is not None:
                on_done(outcome, done, len(chosen))

    pool = ThreadPoolExecutor(max_workers=min(parallel, len(chosen)))
    try:
        for future in [pool.submit(one, i) for i in range(len(chosen))]:
            future.result()
    except BaseException:
        # Ctrl-C: start nothing new, and tell what is running to stop at its next poll.
        from tasks.runtime.seam.stop import STOP

        STOP.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return [r for r in results if r is not None]
