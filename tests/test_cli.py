"""The command surface: listing, docs in step with it, clear errors for bad input."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import INV, REPO, base_env, run_inv, task_names


def test_every_task_is_in_the_readme_table(sample_repo: Path) -> None:
    readme = (REPO / "README.md").read_text()
    rows = set(re.findall(r"^\| `inv ([a-z0-9_.-]+)", readme, re.M))
    missing = sorted(set(task_names(sample_repo)) - rows)
    assert missing == [], f"tasks missing from README's Tasks table: {missing}"


def test_every_task_has_a_docstring_and_help_for_every_flag() -> None:
    import tasks as root

    ns = root.ns
    undocumented = []
    for name in ns.task_names:
        task = ns[name]
        if not (task.__doc__ or "").strip():
            undocumented.append(f"{name}: no docstring")
        for arg in task.get_arguments():
            if not arg.help:
                undocumented.append(f"{name} --{arg.name}: no help")
    assert undocumented == []


def test_up_rejects_bad_layer_ranges(sample_repo: Path) -> None:
    bad = run_inv(sample_repo, "up", "--from", "l9")
    assert bad.returncode == 2 and "--from 'l9': expected one of l0, l1, l2, l3, l4" in bad.stderr
    backwards = run_inv(sample_repo, "up", "--from", "l3", "--to", "l1")
    assert backwards.returncode == 2 and "--from l3 comes after --to l1" in backwards.stderr
    assert "Traceback" not in bad.output + backwards.output


@pytest.mark.parametrize("argv", [["--list"], ["env.show", "--all"]])
def test_a_closed_pipe_ends_quietly_with_141(sample_repo: Path, argv: list[str]) -> None:
    """`inv ... | head`: Invoke's own output (--list) and a task's alike stop without a traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        proc = subprocess.run(
            [INV, *argv],
            cwd=sample_repo,
            env=base_env(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, "")
