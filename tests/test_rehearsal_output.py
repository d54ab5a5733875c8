"""How the rehearsal reports an act: the command shown, an expected refusal shown as one (never
as "error: ... ok"), a failure named with the exit it got and the one it expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.rehearsal.play import NEXT_STEPS, Act, Rehearsal, _play

FAKE_INV = """#!/bin/sh
echo "plan: flux.reconcile"
echo "error: the mode files are not pushed" >&2
exit 3
"""


@pytest.fixture
def fake_inv(tmp_path: Path) -> str:
    script = tmp_path / "inv"
    script.write_text(FAKE_INV)
    script.chmod(0o755)
    return str(script)


def test_an_expected_refusal_reads_as_one(tmp_path: Path, fake_inv: str, capsys) -> None:
    rehearsal = Rehearsal(tmp_path, tmp_path, {"PATH": "/usr/bin:/bin"})
    act = Act("reconcile: refused while not pushed", ("flux.reconcile",), expect_exit=3)
    assert _play(fake_inv, rehearsal, 7, 40, act) is None
    out = capsys.readouterr().out
    assert "== 7/40 reconcile: refused while not pushed" in out
    assert "$ inv flux.reconcile" in out
    assert "refused: the mode files are not pushed" in out and "error:" not in out
    assert "-- refused, as expected (exit 3" in out and "-- ok" not in out


def test_an_unexpected_exit_is_a_failure(tmp_path: Path, fake_inv: str, capsys) -> None:
    rehearsal = Rehearsal(tmp_path, tmp_path, {"PATH": "/usr/bin:/bin"})
    failure = _play(fake_inv, rehearsal, 1, 1, Act("reconcile", ("flux.reconcile",)))
    assert failure == "inv flux.reconcile exited 3 (expected 0)"
    assert "-- failed (exit 3" in capsys.readouterr().out


def test_the_dry_run_and_the_next_steps_fit_in_120_columns(sample_repo: Path) -> None:
    from helpers import run_inv

    result = run_inv(sample_repo, "rehearse", "--dry-run")
    assert result.returncode == 0, str(result)
    assert "fakepve" in result.stdout and "nothing was started" in result.stdout
    assert all(len(line) <= 120 for line in result.stdout.splitlines()), result.stdout
    assert len(NEXT_STEPS) == 3
