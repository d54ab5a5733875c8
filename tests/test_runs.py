"""Run history through the front door: `inv runs`, `inv runs.show`, retention in `inv clean`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from helpers import base_env, run_inv

SECRET = "argv-secret-value-1234"


def _env(**extra: str) -> dict[str, str]:
    return base_env(COLUMNS="200", **extra)


def test_a_failed_run_is_listed_with_its_failed_step_and_shown_on_a_timeline(
    sample_repo: Path,
) -> None:
    failed = run_inv(sample_repo, "up", "--to", "l0", env=_env())
    assert failed.returncode != 0, failed
    listed = run_inv(sample_repo, "runs", env=_env())
    assert listed.returncode == 0, listed
    (line,) = [ln for ln in listed.stdout.splitlines() if ln.endswith("up --to l0")]
    assert "failed (exit" in line and "at 00_l0_runway" in line and "@" in line
    assert max(len(ln) for ln in listed.stdout.splitlines()) <= 120

    shown = run_inv(sample_repo, "runs.show", "last", env=_env())
    assert shown.returncode == 0, shown
    assert "failed at step 00_l0_runway" in shown.stdout
    timeline = [ln for ln in shown.stdout.splitlines() if ln.startswith("step ")]
    assert timeline and timeline[0].split()[1] == "00_l0_runway"
    assert any(ch in shown.stdout for ch in "█▌▏"), "a bar per step"
    assert max(len(ln.rstrip()) for ln in shown.stdout.splitlines()) <= 120

    as_json = json.loads(run_inv(sample_repo, "runs.show", "last", "--json", env=_env()).stdout)
    assert as_json["failed_step"] == "00_l0_runway"
    (step,) = [r for r in as_json["timeline"] if r["kind"] == "step"]
    assert step["outcome"] == "failed" and step["seconds"] >= 0
    # The runway's probes take milliseconds: placed to the millisecond, not all at second 0.
    effects = [r["offset"] for r in as_json["timeline"] if r["kind"] == "effect"]
    assert len(effects) > 2 and any(offset % 1 for offset in effects), effects
    assert effects == sorted(effects) and effects[-1] <= as_json["trace"]["seconds"], effects
    assert as_json["command"] == "up --to l0"


def test_arguments_are_masked_in_the_listing(sample_repo: Path) -> None:
    secrets = sample_repo / "inventory" / "profiles" / "secrets.env"
    secrets.write_text(f"SOME_PASSWORD={SECRET}\n")
    missing = run_inv(sample_repo, "runs.show", SECRET, env=_env())
    assert missing.returncode == 2 and SECRET not in missing.output, missing
    listed = run_inv(sample_repo, "runs", "--json", env=_env())
    (entry,) = json.loads(listed.stdout)
    assert entry["command"] == "runs.show ***" and entry["outcome"] == "failed"
    assert SECRET not in listed.stdout
    for trace in (sample_repo / ".work" / "traces").glob("*.json"):
        assert SECRET not in trace.read_text()


def test_an_id_that_is_not_there_is_exit_2_naming_the_runs(sample_repo: Path) -> None:
    result = run_inv(sample_repo, "runs.show", "nope", env=_env())
    assert result.returncode == 2 and "no runs recorded yet" in result.stderr, str(result)
    run_inv(sample_repo, "runs.show", "nope", env=_env())  # now one (failed) run is recorded
    again = run_inv(sample_repo, "runs.show", "nope", env=_env())
    assert again.returncode == 2 and "no run 'nope'" in again.stderr, again
    bare = run_inv(sample_repo, "runs.show", env=_env())
    assert bare.returncode == 2 and "needs ID: one of last, " in bare.stderr, bare
    empty = run_inv(sample_repo, "runs", "--last", "", env=_env())
    assert empty.returncode == 2 and "--last: no number given" in empty.stderr, empty


def _fake_trace(folder: Path, n: int) -> Path:
    stamp = f"2026-01-0{n}T10:00:00Z"
    path = folder / f"l2-apply-2026010{n}T100000Z-{100 + n}.json"
    path.write_text(
        json.dumps(
            {
                "run": f"2026010{n}T100000Z-{100 + n}",
                "task": "l2.apply",
                "argv": ["inv", "l2.apply"],
                "started": stamp,
                "ended": stamp,
                "seconds": 1.0,
                "outcome": "ok",
                "exit_code": 0,
                "operator": "ops",
                "host": "lab",
                "steps": [],
                "effects": [],
            }
        )
    )
    return path


def test_retention_keeps_the_last_runs_and_clean_all_removes_the_history(
    sample_repo: Path,
) -> None:
    folder = sample_repo / ".work" / "traces"
    folder.mkdir(parents=True)
    made = [_fake_trace(folder, n) for n in range(1, 6)]
    listed = run_inv(sample_repo, "runs", env=_env())
    assert listed.stdout.index("20260105T") < listed.stdout.index("20260101T"), "newest first"

    dry = run_inv(sample_repo, "clean", "--dry-run", env=_env(RUNS_KEEP="3"))
    assert dry.returncode == 0, dry
    assert "the newest RUNS_KEEP=3 stay" in dry.stdout
    assert all(p.exists() for p in made)
    done = run_inv(sample_repo, "clean", env=_env(RUNS_KEEP="3"))
    assert done.returncode == 0, done
    # The two newest runs stay (the dry clean's and the last fake one), and this clean makes three.
    assert [p.exists() for p in made] == [False, False, False, False, True]
    left = json.loads(run_inv(sample_repo, "runs", "--json", env=_env()).stdout)
    assert [r["task"] for r in left] == ["clean", "clean", "l2.apply"]
    assert [r["dry_run"] for r in left[:2]] == [False, True]

    bad = run_inv(sample_repo, "clean", env=_env(RUNS_KEEP="0"))
    assert bad.returncode == 2 and "RUNS_KEEP" in bad.stderr, bad

    everything = run_inv(sample_repo, "clean", "--all", env=_env())
    assert everything.returncode == 0, everything
    assert "remove  .work/traces/" in everything.stdout
    assert not any(p.exists() for p in made)


def test_every_run_keeps_only_the_last_runs(sample_repo: Path) -> None:
    """Retention is not left to `inv clean`: a cron'd task must not fill the disk."""
    for _ in range(4):
        done = run_inv(sample_repo, "app.mode", "staging-le-prod", env=_env(RUNS_KEEP="2"))
        assert done.returncode == 0, done
    traces = sorted((sample_repo / ".work" / "traces").glob("*.json"))
    assert len(traces) == 2, traces


def _fake_up(folder: Path, day: int, *, ran: bool) -> Path:
    """An `inv up` trace: one that failed in its L3 stage, or one that ran no stage (refused)."""
    run = f"2026010{day}T100000Z-{day}"
    steps = [{"id": "stage l3", "outcome": "failed"}] if ran else []
    path = folder / f"up-{run}.json"
    path.write_text(
        json.dumps(
            {
                "run": run,
                "task": "up",
                "started": f"2026-01-0{day}T10:00:00Z",
                "outcome": "failed",
                "exit_code": 4 if ran else 3,
                "up_chain": ["l0", "l1", "l2", "l3"] if ran else [],
                "up_steps": {"l3": "stage l3"} if ran else {},
                "steps": steps,
            }
        )
    )
    return path


def test_a_plan_keeps_only_the_last_runs_but_the_up_to_resume_stays(sample_repo: Path) -> None:
    """`inv plan` (a dry run of the seam, not of the operator's choosing) applies retention too,
    and retention never takes the `inv up` that `inv up --resume` reads, also when a newer `up`
    that ran no stage (a refused `--plan`) came since."""
    folder = sample_repo / ".work" / "traces"
    folder.mkdir(parents=True)
    failed = _fake_up(folder, 1, ran=True)
    _fake_up(folder, 2, ran=False)
    for n in range(3, 6):
        _fake_trace(folder, n)
    for _ in range(3):
        planned = run_inv(sample_repo, "plan", "--layer", "l1", env=_env(RUNS_KEEP="2"))
        assert planned.returncode in (1, 2), planned  # L1 without Proxmox: an error row
    left = sorted(p.name for p in folder.glob("*.json"))
    assert len(left) == 3 and failed.name in left, left


def test_last_is_the_last_operation_not_a_look_at_the_history(sample_repo: Path) -> None:
    folder = sample_repo / ".work" / "traces"
    folder.mkdir(parents=True)
    _fake_trace(folder, 1)
    typo = run_inv(sample_repo, "runs.show", "lats", env=_env())
    assert typo.returncode == 2, typo  # a failed look, itself recorded
    shown = json.loads(run_inv(sample_repo, "runs.show", "last", "--json", env=_env()).stdout)
    assert shown["task"] == "l2.apply", shown
    plan = json.loads(_fake_trace(folder, 2).read_text())
    (folder / "plan-20260102T100000Z-102.json").write_text(
        json.dumps({**plan, "task": "plan", "outcome": "failed", "exit_code": 2})
    )
    listed = json.loads(run_inv(sample_repo, "runs", "--json", env=_env()).stdout)
    (entry,) = [r for r in listed if r["task"] == "plan"]
    assert entry["outcome"] == "changes pending", entry  # as the table says, not "failed"


def test_traces_cut_short_or_edited_by_hand_are_listed_as_unreadable(sample_repo: Path) -> None:
    folder = sample_repo / ".work" / "traces"
    folder.mkdir(parents=True)
    _fake_trace(folder, 1)
    (folder / "l2-apply-20260102T100000Z-9.json").write_text('{"run": "20260102T1')
    (folder / "l2-apply-20260103T100000Z-8.json").write_text('{"steps": "x"}')
    (folder / "up-20260104T100000Z-6.running.json").write_text("[1, 2]")
    endless = json.loads(_fake_trace(folder, 5).read_text())  # JSON strict parsers reject
    (folder / "l2-apply-20260105T100000Z-105.json").write_text(
        json.dumps({**endless, "started_epoch": float("inf")})
    )
    listed = run_inv(sample_repo, "runs", env=_env())
    assert listed.returncode == 0 and "unreadable trace" in listed.stdout, listed
    runs = json.loads(run_inv(sample_repo, "runs", "--json", env=_env()).stdout)
    by_id = {r["id"]: r for r in runs}
    assert by_id["20260102T100000Z-9"]["outcome"] == "unreadable", runs
    assert by_id["20260103T100000Z-8"]["problem"] == "'steps' is a str", runs
    assert by_id["20260101T100000Z-101"]["outcome"] == "ok", runs
    assert "not a finite number" in by_id["20260105T100000Z-105"]["problem"], runs
    assert "Infinity" not in run_inv(sample_repo, "runs", "--json", env=_env()).stdout
    shown = run_inv(sample_repo, "runs.show", "20260103T100000Z-8", env=_env())
    assert shown.returncode == 2 and "cannot be read" in shown.stderr, shown
    resume = run_inv(sample_repo, "up", "--resume", env=_env())
    assert resume.returncode == 3, resume
    assert "up-20260104T100000Z-6.running.json" not in resume.stderr  # a journal: not an `up` run
    (folder / "up-20260105T100000Z-5.json").write_text('{"task": "up", "steps": [')
    resume = run_inv(sample_repo, "up", "--resume", env=_env())
    assert resume.returncode == 3 and "up-20260105T100000Z-5.json, cannot be read" in resume.stderr
    assert "Traceback" not in listed.output + shown.output + resume.output


def test_a_secret_on_the_command_line_of_a_task_without_env_is_masked_in_its_trace(
    sample_repo: Path,
) -> None:
    (sample_repo / "inventory/profiles/secrets.env").write_text(f"SOME_TOKEN={SECRET}\n")
    shown = run_inv(sample_repo, "runs.show", SECRET, env=_env())
    assert shown.returncode == 2, shown
    for trace in (sample_repo / ".work" / "traces").glob("*.json"):
        assert SECRET not in trace.read_text(), trace.name


def test_at_80_columns_every_row_stays_in_line(sample_repo: Path) -> None:
    """Run ids and paths never break: their column is as wide as its longest word."""
    run_inv(sample_repo, "up", "--to", "l0", env=_env())
    listed = run_inv(sample_repo, "runs", env=base_env(COLUMNS="80"))
    assert listed.returncode == 0, str(listed)
    header, rule, *rows = [ln for ln in listed.stdout.splitlines() if "run(s);" not in ln]
    starts = [i for i, ch in enumerate(rule) if ch == "-" and (i == 0 or rule[i - 1] == " ")]
    run_id = next(ln for ln in rows if ln and not ln.startswith(" "))
    assert len(rule.split()[0]) >= len(run_id.split()[0])  # the RUN column holds the id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run_id.split()[1]), run_id  # whole
    for line in rows:
        for start in starts[1:]:  # each column begins where its rule begins, or is blank there
            assert start >= len(line) or line[start - 1] == " ", (line, starts)


def test_plain_table_keeps_long_words_whole_and_aligned() -> None:
    from tasks.runtime.console import plain_table

    lines = plain_table(
        ["RUN", "STARTED", "TASK"],
        [["20261201T151351Z-14648", "2026-12-01 15:13:51Z", "l1.list env.check host"]],
        40,
    )
    rule = lines[1].split()
    assert len(rule[0]) == len("20261201T151351Z-14648")
    column = lines[0].index("STARTED")
    assert all(len(ln) <= column or ln[column - 1] == " " for ln in lines)
