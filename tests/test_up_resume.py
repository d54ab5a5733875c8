"""`inv up --resume` through the front door: L2 on fakepve, L3/L4 with real Ansible against real
sshd hosts. A run that fails at L3 (one sshd stopped) is listed with its failed step; resuming is
refused while a declaration differs or a stage before L3 no longer reads as converged; once sshd
is back, `inv up --resume` re-reads L2 (no write on fakepve) and runs L3 and L4 only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_inv
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401
from sshd import start_lab

from tasks.rehearsal.ssh_standins import SshLab

pytestmark = pytest.mark.slow


@pytest.fixture
def hosts() -> Iterator[SshLab]:
    lab = start_lab(["web1", "web2"])
    try:
        yield lab
    finally:
        lab.close()


def _up_traces(repo: Path) -> list[dict]:
    paths = sorted((repo / ".work/traces").glob("up-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text()) for p in paths]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_resume_continues_a_failed_up_from_l3_after_rereading_l2(
    sample_repo: Path, pve: PveFixture, hosts: SshLab
) -> None:
    pve.served.add_template(9000, "debian12-k3s")
    hosts.write_inventory(sample_repo)
    env = pve.env(L3_GROUP="lab", L4_GROUP="lab", L4_TAGS="whoami", L3_WAIT="2", L4_WAIT="2")

    def inv(*args: str):
        return run_inv(sample_repo, *args, env=env, timeout=600)

    nothing_yet = inv("up", "--resume")
    assert nothing_yet.returncode == 3 and "no `inv up` to resume" in nothing_yet.stderr

    hosts.hosts["web2"].stop()
    failed = inv("up", "--from", "l2", "--to", "l4")
    assert failed.returncode == 4, failed
    trace = _up_traces(sample_repo)[-1]
    steps = {s["id"]: s["outcome"] for s in trace["steps"]}
    assert steps["02_l2_apply"] == "ok" and steps["03_l3_converge"] == "failed"
    assert steps["04_l4_converge"] == "not-run"
    assert trace["up_chain"] == ["l2", "l3", "l4"] and trace["declarations_digest"]
    listed = inv("runs")
    assert listed.returncode == 0, listed
    (row,) = [ln for ln in listed.stdout.splitlines() if ln.startswith(trace["run"])]
    assert "failed (exit 4) at" in row and "up --from l2 --to l4" in row
    (entry,) = [r for r in json.loads(inv("runs", "--json").stdout) if r["id"] == trace["run"]]
    assert entry["failed_step"].startswith("03_l3_converge")  # the stage, then its inner step
    shown = inv("runs.show", trace["run"])
    assert shown.returncode == 0, shown
    assert "failed at step 03_l3_converge" in shown.stdout  # the stage, not its inner step
    (stage,) = [
        ln
        for ln in shown.stdout.splitlines()
        if "03_l3_converge" in ln and "failed at step" not in ln
    ]
    assert "failed" in stage.split()
    sysctl = hosts.state / "web2/etc/sysctl.d/90-homelab.conf"
    assert not sysctl.exists()

    # A declaration changed since the failed run: refused, naming the file.
    site = sample_repo / "layers/l3/site.yml"
    original = site.read_bytes()
    site.write_bytes(original + b"# an edit\n")
    changed = inv("up", "--resume")
    assert changed.returncode == 3, changed
    assert f"cannot resume run {trace['run']}" in _flat(changed.stderr)
    assert "layers/l3/site.yml: changed" in changed.stderr
    site.write_bytes(original)

    # A stage before L3 no longer holds (a VM gone behind the runner's back): refused, named.
    writes = len(pve.writes())
    pve.fake.vms[:] = [vm for vm in pve.fake.vms if vm.name != "k3s-agent-2"]
    gone = inv("up", "--resume")
    assert gone.returncode == 3, gone
    assert "stages before it no longer hold" in _flat(gone.stderr)
    assert "l2: k3s-agent-2: change: create" in gone.stderr
    assert len(pve.writes()) == writes, "the re-read of L2 must not write"
    assert inv("l2.apply").returncode == 0  # put it back (not an `up`: the failed run stays last)

    hosts.hosts["web2"].start()
    writes = len(pve.writes())
    # A dry run shows what a resume would run; its own trace is never the one resumed.
    dry = inv("up", "--resume", "--dry-run")
    assert dry.returncode == 0, dry
    planned = [ln.split()[3].rstrip(":") for ln in dry.stdout.splitlines() if "[run ]" in ln]
    assert planned[-2:] == ["03_l3_converge", "04_l4_converge"], dry.stdout
    assert "02_l2_apply" not in planned and "dry run: nothing was changed" in dry.stdout
    resumed = inv("up", "--resume")
    assert resumed.returncode == 0, resumed
    out = _flat(resumed.stdout)
    assert f"resume: run {trace['run']}" in out and "failed at l3" in out
    assert "re-reading l2" in out
    last = _up_traces(sample_repo)[-1]
    ids = [s["id"] for s in last["steps"]]
    assert "plan l2" in ids and "02_l2_apply" not in ids
    stages = [i for i in ids if i[:3] in ("00_", "01_", "02_", "03_", "04_", "05_", "06_")]
    assert stages == ["03_l3_converge", "04_l4_converge"], ids
    assert {s["outcome"] for s in last["steps"] if s["id"] in stages} == {"ok"}
    assert last["resumed"] == {"run": trace["run"], "failed": "l3", "rechecked": ["l2"]}
    assert len(pve.writes()) == writes, "L2 was re-read, not applied"
    assert sysctl.exists()
    # The resume's own lines fit in 120 columns (L3's plan keeps its commands whole, by design).
    mine = [ln for ln in resumed.stdout.splitlines() if ln.startswith(("resume", "plan: up"))]
    assert len(mine) == 3 and max(len(ln) for ln in mine) <= 120, mine

    again = inv("up", "--resume")
    assert again.returncode == 3, again
    assert "nothing to resume: the last `inv up`" in again.stderr and "succeeded" in again.stderr
