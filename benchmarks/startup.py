"""Start-up: `inv --list` of the full project against bare Invoke listing a one-task tasks.py,
and how many times one `inv` run fetches Doppler. Writes the `startup` section of RESULTS.md."""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from doppler_api import DopplerApiStandIn  # noqa: E402
from helpers import base_env, copy_repo, run_inv  # noqa: E402
from results import (  # noqa: E402
    BIN,
    ROOT,
    compile_runner,
    interleaved,
    paired_ratio,
    run_seconds,
    write_section,
)  # noqa: E402

TARGET = 1.3
BARE_TASKS = 'from invoke import task\n\n\n@task\ndef hello(c):\n    """Say hello."""\n'


def main() -> int:
    inv = str(BIN / "inv")
    env = base_env()
    compile_runner()
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare"
        bare.mkdir()
        (bare / "tasks.py").write_text(BARE_TASKS)
        runs = 31
        # Alternate the two run by run so drift in the machine's speed hits both alike.
        bare_t, full_t = interleaved(
            [
                lambda: run_seconds([inv, "--list"], bare, env),
                lambda: run_seconds([inv, "--list"], ROOT, env),
            ],
            rounds=runs,
        )
        bare_s, full_s = statistics.median(bare_t), statistics.median(full_t)
        ratio = paired_ratio(full_t, bare_t)

        repo = copy_repo(Path(tmp) / "repo")
        counts = {}
        with DopplerApiStandIn({"SOME_SECRET": "value-1234"}) as api:
            denv = base_env(DOPPLER_TOKEN=api.token, DOPPLER_API_HOST=api.url)
            denv.pop("DOPPLER")
            for label, argv in (
                ("inv --list", ["--list"]),
                ("inv --help env.show", ["--help", "env.show"]),
                ("inv env.show --no-doppler", ["env.show", "--no-doppler"]),
                ("inv env.show", ["env.show"]),
                ("inv up --dry-run", ["up", "--dry-run"]),
                ("inv env.check l0", ["env.check", "l0"]),
            ):
                before = len(api.requests)
                run_inv(repo, *argv, env=denv)
                counts[label] = len(api.requests) - before
    expected = {"inv --list": 0, "inv --help env.show": 0, "inv env.show --no-doppler": 0}
    ok_counts = all(counts[k] == expected.get(k, 1) for k in counts)
    rows = "\n".join(f"| `{k}` | {v} | {expected.get(k, 1)} |" for k, v in counts.items())
    write_section(
        "startup",
        f"""## Start-up (`benchmarks/startup.py`)

`inv --list` of this project against bare Invoke 2.2 listing a one-task `tasks.py`, same
interpreter, same script; {runs} rounds, the two alternating run by run. The table shows
medians; the ratio is the median of the per-round ratios.

| what | seconds |
|---|---|
| bare invoke `--list` | {bare_s:.3f} |
| this project `inv --list` | {full_s:.3f} |
| **ratio** | **{ratio:.2f}** (target <= {TARGET}) {"met" if ratio <= TARGET else "MISSED"} |

Doppler fetches per `inv` run (REST stand-in counting requests):

| run | fetches | target |
|---|---|---|
{rows}

Fetch counts {"as targeted" if ok_counts else "OFF TARGET"}.""",
    )
    print(f"bare {bare_s:.3f}s  full {full_s:.3f}s  ratio {ratio:.2f}  doppler {counts}")
    return 0 if ratio <= TARGET and ok_counts else 1


if __name__ == "__main__":
    sys.exit(main())
