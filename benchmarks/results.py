"""Shared benchmark plumbing: timing commands and writing one area's section of RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
BIN = Path(sys.executable).parent
HEADER = "# Benchmark results\n\nWritten by the scripts in `benchmarks/` (`python benchmarks/run.py` runs them all).\n"


def compile_runner(root: Path = ROOT) -> None:
    """What setup.sh does: cached bytecode for the runner (Invoke never writes it itself)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            str(root / "tasks.py"),
            str(root / "homelab_cli.py"),
            str(root / "tasks"),
        ],
        check=True,
    )


def run_seconds(
    argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> float:
    """Wall time of one run of a command, which must succeed."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr.decode()[-2000:]}"
        )
    return elapsed


def median_seconds(
    argv: Sequence[str],
    runs: int = 7,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    warmup: int = 1,
) -> float:
    """Median wall time of a command over `runs` runs, after `warmup` unmeasured ones."""
    for _ in range(warmup):
        run_seconds(argv, cwd, env)
    return statistics.median(run_seconds(argv, cwd, env) for _ in range(runs))


def interleaved(
    steps: Sequence[Callable[[], float]], rounds: int, warmup: int = 1
) -> list[list[float]]:
    """The times of each step over `rounds` rounds, the steps taken in turn within each round.

    On a shared machine the speed drifts over seconds; taking a baseline and the thing compared
    with it in alternation exposes both to the same drift, so their ratio stays meaningful.
    """
    times: list[list[float]] = [[] for _ in steps]
    for i in range(warmup + rounds):
        for slot, step in zip(times, steps, strict=True):
            elapsed = step()
            if i >= warmup:
                slot.append(elapsed)
    return times


def interleaved_medians(
    steps: Sequence[Callable[[], float]], rounds: int, warmup: int = 1
) -> list[float]:
    """Median time of each step, measured as `interleaved` does."""
    return [statistics.median(slot) for slot in interleaved(steps, rounds, warmup)]


def paired_ratio(measured: Sequence[float], baseline: Sequence[float]) -> float:
    """Median of the per-round ratios of two interleaved series.

    Each ratio compares runs taken moments apart, so a slow spell of the machine cancels out
    instead of landing on one side of a ratio of medians.
    """
    return statistics.median(m / b for m, b in zip(measured, baseline, strict=True))


def machine_line() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, {platform.system()}"


def write_section(area: str, markdown: str) -> None:
    """Replace this area's section of RESULTS.md (between its markers), keeping the others."""
    start, end = f"<!-- {area}:start -->", f"<!-- {area}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    block = f"{start}\n{markdown.strip()}\n\n_{time.strftime('%Y-%m-%d', time.gmtime())}, {machine_line()}_\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _m: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, RESULTS)
