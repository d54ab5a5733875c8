"""Saved plans through the front door: `inv plan --out FILE` on a copy of the sample repo against
fakepve, then `inv up --plan FILE`: applied as saved (only the stages it had changes for), refused
(exit 3, naming the layer and item) after a fact changed, behind the runner's back or by another
run, refused when a declaration changed, and refused when older than PLAN_MAX_AGE. Checked from
the output, the traces and fakepve's request log."""

from __future__ import annotations

import json
import re
import stat
import time
from pathlib import Path

import pytest
from helpers import run_inv
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401

VMS = {"k3s-server-1", "k3s-agent-1", "k3s-agent-2"}


@pytest.fixture
def lab(sample_repo: Path, pve: PveFixture) -> tuple[Path, PveFixture]:
    pve.served.add_template(9000, "debian12-k3s")
    return sample_repo, pve


def inv(lab, *args: str, **env: str):
    repo, pve = lab
    return run_inv(repo, *args, env=pve.env(**env))


def up_traces(repo: Path) -> list[dict]:
    paths = sorted((repo / ".work/traces").glob("up-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text()) for p in paths]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_a_saved_plan_is_applied_as_saved_then_refused_once_its_facts_changed(lab) -> None:
    repo, pve = lab
    made = inv(lab, "plan", "--layer", "l2", "--out", "fresh.json")
    assert made.returncode == 2, made  # changes pending, as without --out
    assert "plan saved to" in made.stderr and "inv up --plan fresh.json" in _flat(made.stderr)
    saved = repo / "fresh.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    data = json.loads(saved.read_text())
    assert data["layers"] == ["l2"] and data["stages"] == ["l2"]
    assert set(data["facts"]["l2"]["items"]) == VMS
    assert all(i["digest"].startswith("sha256:") for i in data["facts"]["l2"]["items"].values())
    assert data["declarations"]["layers/l2/vms.hcl"].startswith("sha256:")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["created"])
    second = inv(lab, "plan", "--layer", "l2", "--out", "second.json")
    assert second.returncode == 2, second
    assert pve.writes() == []

    applied = inv(lab, "up", "--plan", "fresh.json")
    assert applied.returncode == 0, applied
    assert "every fact as it was; stages with changes: l2" in _flat(applied.stdout)
    (trace,) = up_traces(repo)
    ids = [s["id"] for s in trace["steps"]]
    assert ids[0] == "plan l2" and "02_l2_apply" in ids
    assert not any(i.startswith(("00_", "01_", "03_", "04_", "05_", "06_")) for i in ids), ids
    assert trace["saved_plan"]["stages"] == ["l2"]
    assert {vm.name for vm in pve.fake.vms} >= VMS
    writes = len(pve.writes())
    assert writes > 0

    # The same facts, read before that run: now the VMs exist, so the plan no longer holds.
    stale = inv(lab, "up", "--plan", "second.json")
    assert stale.returncode == 3, stale
    err = _flat(stale.stderr)
    assert "the saved plan second.json no longer holds: 3 fact(s) differ" in err
    assert "l2: k3s-agent-1: was change: create: clone debian12-k3s" in err
    assert "now ok: already as wanted" in err
    assert len(pve.writes()) == writes, "a refused plan must change nothing"
    assert "Traceback" not in stale.output

    # Drift behind the runner's back: a converged plan saved, then a VM's memory changed.
    deep = inv(lab, "plan", "--layer", "l2", "--deep", "--out", "deep.json")
    assert deep.returncode == 0, deep
    nothing = inv(lab, "up", "--plan", "deep.json")
    assert nothing.returncode == 0, nothing
    assert "has no changes: nothing to apply" in nothing.stdout
    (agent,) = [vm for vm in pve.fake.vms if vm.name == "k3s-agent-1"]
    agent.config["memory"] = "2048"
    drifted = inv(lab, "up", "--plan", "deep.json")
    assert drifted.returncode == 3, drifted
    lines = [ln.strip() for ln in drifted.stderr.splitlines() if ln.strip().startswith("l2: ")]
    assert len(lines) == 1 and lines[0].startswith("l2: k3s-agent-1: was ok"), drifted.stderr
    assert "memory" in lines[0]
    assert len(pve.writes()) == writes
    assert max(len(line) for line in drifted.output.splitlines()) <= 120


def test_a_changed_declaration_refuses_the_plan_and_the_file_is_masked(lab) -> None:
    repo, pve = lab
    (repo / "inventory/profiles/secrets.env").write_text("PLAN_SAMPLE_SECRET=k3s-agent-2\n")
    made = inv(lab, "plan", "--layer", "l2", "--out", "plan.json")
    assert made.returncode == 2, made
    text = (repo / "plan.json").read_text()
    assert "k3s-agent-2" not in text and "***" in text
    vms = repo / "layers/l2/vms.hcl"
    before = vms.read_text()
    edited = re.sub(r"memory(\s*)= 4096", r"memory\1= 6144", before, count=1)
    assert edited != before, "the sample changed: update this test"
    vms.write_text(edited)
    refused = inv(lab, "up", "--plan", "plan.json")
    assert refused.returncode == 3, refused
    assert "1 declaration file(s) changed since then" in refused.stderr
    assert "layers/l2/vms.hcl: changed" in refused.stderr
    assert "k3s-agent-2" not in refused.output
    assert pve.writes() == []
    vms.write_text(before)  # the same bytes again: the plan holds again
    assert inv(lab, "up", "--plan", "plan.json").returncode == 0


def test_a_plan_older_than_plan_max_age_is_refused(lab) -> None:
    repo, pve = lab
    assert inv(lab, "plan", "--layer", "l2", "--out", "plan.json").returncode == 2
    time.sleep(2.2)
    old = inv(lab, "up", "--plan", "plan.json", PLAN_MAX_AGE="1s")
    assert old.returncode == 3, old
    assert "older than PLAN_MAX_AGE=1s (the shell environment)" in _flat(old.stderr)
    assert pve.writes() == []
    bad = inv(lab, "up", "--plan", "plan.json", PLAN_MAX_AGE="soon")
    assert bad.returncode == 2 and "PLAN_MAX_AGE" in bad.stderr, bad
    assert inv(lab, "up", "--plan", "plan.json", PLAN_MAX_AGE="1h").returncode == 0
    assert {vm.name for vm in pve.fake.vms} >= VMS


def test_bad_saved_plans_and_flag_mixes_are_exit_2(lab) -> None:
    repo, _pve = lab
    (repo / "junk.json").write_text("{not json")
    junk = inv(lab, "up", "--plan", "junk.json")
    assert junk.returncode == 2 and "not a saved plan" in junk.stderr, junk
    missing = inv(lab, "up", "--plan", "nowhere.json")
    assert missing.returncode == 2 and "no such file" in missing.stderr, missing
    both = inv(lab, "up", "--plan", "junk.json", "--resume")
    assert both.returncode == 2 and "give one of them" in both.stderr, both
    ranged = inv(lab, "up", "--plan", "junk.json", "--to", "l2")
    assert ranged.returncode == 2 and "leave out --from/--to" in ranged.stderr, ranged
    assert "Traceback" not in junk.output + missing.output + both.output + ranged.output
    # `inv up --plan "$PLAN"` with PLAN unset: refused, never a whole unchecked `inv up`.
    empty = inv(lab, "up", "--plan", "")
    assert empty.returncode == 2 and "--plan: no file given" in empty.stderr, empty
    assert up_traces(repo)[-1]["steps"] == [], "no stage ran"
    assert inv(lab, "plan", "--layer", "l2", "--out", "ok.json").returncode == 2
    good = json.loads((repo / "ok.json").read_text())
    for key, value, said in (
        ("created_epoch", float("nan"), "created_epoch"),
        ("layers", "l2", "layers"),
        ("summary", [], "summary"),
        ("layers", ["bogus"], "layers (unknown: bogus)"),
        ("facts", {"l2": "x"}, "facts.l2"),
        ("facts", {"l2": {"digest": "d", "items": {"vm": [1, 2]}}}, "facts.l2"),
    ):
        (repo / "edited.json").write_text(json.dumps({**good, key: value}))
        edited = inv(lab, "up", "--plan", "edited.json")
        assert edited.returncode == 2, edited
        assert f"not a saved plan: {said} missing or malformed" in edited.stderr, edited
        assert "a bug in the runner" not in edited.stderr, edited


def test_a_bad_out_is_said_before_the_reads_and_never_inside_the_declarations(lab) -> None:
    repo, pve = lab
    (repo / ".work").mkdir(exist_ok=True)
    cases = {
        "": "--out: no file given",
        ".work": "is a folder",
        "nowhere/plan.json": "does not exist",
        "inventory/plan.json": "inside inventory/",
    }
    before = len(pve.served.pve.requests)
    for out, said in cases.items():
        result = inv(lab, "plan", "--layer", "l2", "--out", out)
        assert result.returncode == 1, result
        assert "bad input to plan" in result.stderr and said in result.stderr, result
    assert len(pve.served.pve.requests) == before, (
        "nothing was read for a plan that cannot be saved"
    )
    assert not (repo / "inventory" / "plan.json").exists()
    # A device, pipe or link would be replaced by a regular file (the write is a rename).
    for special in ("/dev/null", str(_fifo(repo)), str(_link(repo))):
        result = inv(lab, "plan", "--layer", "l2", "--out", special)
        assert result.returncode == 1 and "not a regular file" in result.stderr, result
    assert stat.S_ISCHR(Path("/dev/null").stat().st_mode)
    assert stat.S_ISFIFO(_fifo(repo).lstat().st_mode) and _link(repo).is_symlink()
    assert not (repo / "target.json").exists()
    history = inv(lab, "plan", "--layer", "l2", "--out", ".work/traces/x.json")
    assert history.returncode == 1 and "keeps for itself" in history.stderr, history
    assert len(pve.served.pve.requests) == before


def _fifo(repo: Path) -> Path:
    import os

    path = repo / "plan.fifo"
    if not path.exists():
        os.mkfifo(path)
    return path


def _link(repo: Path) -> Path:
    path = repo / "plan-link.json"
    if not path.is_symlink():
        path.symlink_to(repo / "target.json")
    return path


def test_a_fresh_checkouts_work_folder_takes_a_plan_and_a_dry_run_writes_none(lab) -> None:
    import shutil

    sample_repo, _pve = lab
    shutil.rmtree(sample_repo / ".work", ignore_errors=True)
    dry = inv(lab, "--dry", "plan", "--layer", "l2", "--out", ".work/dry.json")
    assert dry.returncode == 2 and "the plan was not saved" in dry.stderr, dry
    assert not (sample_repo / ".work" / "dry.json").exists()
    saved = inv(lab, "plan", "--layer", "l2", "--out", ".work/plans/plan.json")
    assert saved.returncode == 2 and "plan saved to" in saved.stderr, saved
    assert (sample_repo / ".work" / "plans" / "plan.json").is_file()
    for folder in (sample_repo / ".work", sample_repo / ".work" / "plans"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    broken = inv(
        lab,
        "plan",
        "--layer",
        "l2",
        "--out",
        ".work/p.json",
        PVE_ACCESS_HOST="https://127.0.0.1:9",
        PVE_RETRIES="1",
    )
    assert broken.returncode == 1 and "refuses it" in " ".join(broken.stderr.split()), broken


def test_the_declarations_digest_skips_what_runs_write_and_never_hashes_a_secret(
    sample_repo: Path,
) -> None:
    from run_support import make_run

    from tasks.plan.saved import declaration_changes, declarations

    project = make_run(sample_repo).project
    before = declarations(project)
    assert "layers/l2/vms.hcl" in before and "inventory/hosts.yaml" in before
    # What runs write there themselves does not count: recorded host keys, L1's artifacts, the
    # layers' generated files.
    (sample_repo / "inventory/ssh").mkdir(exist_ok=True)
    (sample_repo / "inventory/ssh/known_hosts").write_text("[127.0.0.9]:22 ssh-ed25519 AAAA\n")
    (sample_repo / "layers/l1/artifacts/x").mkdir(parents=True)
    (sample_repo / "layers/l1/artifacts/x/stable.json").write_text("{}\n")
    (sample_repo / "layers/l3/site.retry").write_text("web1\n")
    # Nor an editor's leftovers beside a declaration (vim swap, emacs backup and lock, macOS).
    for leftover in (".vms.hcl.swp", "vms.hcl~", ".#vms.hcl", "#vms.hcl#", ".DS_Store"):
        (sample_repo / "layers/l2" / leftover).write_text("x\n")
    assert declarations(project) == before
    (sample_repo / "layers/l2/extra.hcl").write_text("# a new declaration\n")
    assert "layers/l2/extra.hcl" in declarations(project)
    (sample_repo / "layers/l2/extra.hcl").unlink()
    # A secret's value never reaches a digest: by name in a file of secrets, or in any env file.
    secrets = sample_repo / "inventory/profiles/secrets.env"
    secrets.write_text("PVE_TOKEN_SECRET=first-value\n")
    config = sample_repo / "inventory/config.env"
    plain = config.read_text()
    config.write_text(plain + "EXTRA_API_TOKEN=one\n")
    named = declarations(project)
    secrets.write_text("PVE_TOKEN_SECRET=second-value\n")
    config.write_text(plain + "EXTRA_API_TOKEN=two\n")
    assert declarations(project) == named
    config.write_text(plain + "EXTRA_API_TOKEN=two\nL3_GROUP=edge\n")
    assert declaration_changes(named, declarations(project)) == ["inventory/config.env: changed"]
    secrets.write_text("PVE_TOKEN_SECRET=x\nANOTHER_SECRET=y\n")
    assert "inventory/profiles/secrets.env: changed" in declaration_changes(
        named, declarations(project)
    )
