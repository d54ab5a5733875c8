"""`inv l1.list` over 20 templates: cold (no parse cache) and warm (parsed HCL cached by content
hash under .work/), as ratios against bare Invoke's start-up (`inv --list` on a one-task tasks.py)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import base_env, copy_repo  # noqa: E402
from results import BIN, compile_runner, median_seconds, write_section  # noqa: E402

TEMPLATES = 20


def _repo(tmp: Path) -> Path:
    repo = copy_repo(tmp / "repo")
    templates = repo / "layers" / "l1" / "templates"
    samples = sorted(p for p in templates.iterdir() if p.is_dir())
    for i in range(TEMPLATES - len(samples)):
        shutil.copytree(
            samples[i % len(samples)], templates / f"{samples[i % len(samples)].name}-{i:02d}"
        )
    return repo


def main() -> None:
    inv = str(BIN / "inv")
    env = base_env(PVE_NODE="pve1", PVE_STORAGE_VM="local-lvm")
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare"
        bare.mkdir()
        (bare / "tasks.py").write_text(
            "from invoke import task\n\n\n@task\ndef hello(c):\n    pass\n"
        )
        repo = _repo(Path(tmp))
        compile_runner(repo)  # as setup.sh does: Invoke itself never writes the runner's bytecode
        cache = repo / ".work" / "l1" / "parse-cache"
        baseline = median_seconds([inv, "--list"], cwd=bare, env=env, runs=15)
        listing = median_seconds([inv, "--list"], cwd=repo, env=env, runs=15)

        def cold_run() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        cold_times = []
        for _ in range(5):
            cold_run()
            cold_times.append(median_seconds([inv, "l1.list"], cwd=repo, env=env, runs=1, warmup=0))
        cold = sorted(cold_times)[len(cold_times) // 2]
        warm = median_seconds([inv, "l1.list"], cwd=repo, env=env, runs=15)
    rows = [
        ("bare invoke `inv --list` (one-task tasks.py)", baseline),
        ("`inv --list` (this runner)", listing),
        (f"`inv l1.list`, {TEMPLATES} templates, cold (no parse cache)", cold),
        (f"`inv l1.list`, {TEMPLATES} templates, warm (parse cache)", warm),
    ]
    lines = [
        "## L1 templates (`benchmarks/templates.py`)",
        "",
        "| run | median | vs bare invoke |",
        "|---|---|---|",
        *[f"| {name} | {secs * 1000:.0f} ms | {secs / baseline:.2f}x |" for name, secs in rows],
        "",
        f"Target: warm `l1.list` at most 1.3x bare invoke start-up; measured {warm / baseline:.2f}x. "
        "The warm path reads each HCL file, hashes it and loads the cached JSON: it imports neither "
        "python-hcl2 nor PyYAML.",
        f"Load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(other work on the machine makes the ratios noisy).",
    ]
    text = "\n".join(lines)
    print(text)
    write_section("templates", text)


if __name__ == "__main__":
    main()
