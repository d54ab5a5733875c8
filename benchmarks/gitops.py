"""GitOps mode targets end to end (start-up included) against bare Invoke's start-up.

Run: .venv/bin/python benchmarks/gitops.py   (writes the `gitops` section of RESULTS.md)

Baseline: `inv hello` on a one-task tasks.py (bare Invoke 2.2, same interpreter). Measured: the
mode targets as an operator runs them, in a throwaway copy of the checkout: switching (alternating
between two values, so every run really writes the file), the no-op (already as wanted), and
listing the modes. Target: <= 1.5x.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]

from helpers import INV, base_env, copy_repo  # noqa: E402
from results import compile_runner, write_section  # noqa: E402

BARE_TASKS = 'from invoke import task\n\n\n@task\ndef hello(c):\n    """Say hello."""\n'
RUNS = 31


def _time(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [INV, *argv], cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"inv {' '.join(argv)} exited {proc.returncode}:\n{proc.stderr.decode()}")
    return elapsed


def paired(
    argvs: list[list[str]], cwd: Path, bare: Path, env: dict[str, str]
) -> tuple[float, float, float, float]:
    """Medians and minimums (baseline, measured) over RUNS pairs; each measured run follows a
    baseline run.

    Interleaving keeps a busy machine (two cores shared with test runs) from biasing one side;
    `argvs` are cycled so switching cases really change the file every run.
    """
    base, measured = [], []
    for i in range(RUNS + len(argvs)):
        b = _time(["hello"], bare, env)
        m = _time(argvs[i % len(argvs)], cwd, env)
        if i >= len(argvs):  # one warm-up cycle
            base.append(b)
            measured.append(m)
    return statistics.median(base), statistics.median(measured), min(base), min(measured)


def main() -> int:
    env = base_env()
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare"
        bare.mkdir()
        (bare / "tasks.py").write_text(BARE_TASKS)
        repo = copy_repo(Path(tmp) / "repo")
        compile_runner(repo)  # as setup.sh does: Invoke itself never writes the runner's bytecode
        rows = []
        cases = [
            (
                "`inv app.mode MODE` (switching)",
                [["app.mode", "staging-le-prod"], ["app.mode", "prod-le-prod"]],
            ),
            ("`inv app.mode MODE` (already as wanted)", [["app.mode", "prod-le-prod"]]),
            ("`inv app.mode` (list)", [["app.mode"]]),
            (
                "`inv platform.certs` (switching)",
                [["platform.certs", "--prod"], ["platform.certs", "--staging"]],
            ),
            ("`inv platform.certs --prod` (already as wanted)", [["platform.certs", "--prod"]]),
        ]
        for title, argvs in cases:
            baseline, seconds, base_min, best = paired(argvs, repo, bare, env)
            rows.append((title, baseline, seconds, seconds / baseline, best / base_min))
    worst = max(r[3] for r in rows)
    lines = [
        "## GitOps mode targets (`benchmarks/gitops.py`)",
        "",
        f"End to end, start-up included, medians of {RUNS} runs, each run paired with a run of bare",
        "Invoke 2.2 on a one-task `tasks.py` (`inv hello`), same interpreter, same script. Switching",
        "runs alternate between two values, so each one rewrites the file (diff, atomic write).",
        "",
        "| what | bare `inv hello` s (median) | this task s (median) | ratio of medians | ratio of minimums |",
        "|---|---|---|---|---|",
        *[f"| {t} | {b:.3f} | {s:.3f} | {r:.2f} | {m:.2f} |" for t, b, s, r, m in rows],
        "",
        f"Worst ratio of medians **{worst:.2f}** (target <= 1.5): {'met' if worst <= 1.5 else 'NOT met'};",
        f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the minimums",
        "are the less load-sensitive figure). The floor is the runner's own start-up (every",
        "collection's namespace; see the start-up section): the mode targets' own work is about",
        "10-25 ms of each run.",
    ]
    write_section("gitops", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
