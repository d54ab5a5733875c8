"""`inv plan` for L3/L4: real ansible-playbook in check mode against real sshd hosts; the hosts'
files stay byte for byte as they were, and an unreachable host is an error (exit 1)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import base_env, run_inv
from sshd import lab_fixture

from tasks.rehearsal.ssh_standins import SshLab


@pytest.fixture
def lab() -> Iterator[SshLab]:
    yield from lab_fixture()


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _plan(repo: Path, *args: str):
    return run_inv(repo, "plan", "--layer", "l3", *args, env=base_env(L3_GROUP="lab"))


def test_l3_plan_reads_check_mode_and_names_drift_per_host(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    before = _digest(lab.state)
    fresh = _plan(sample_repo, "--json")
    assert fresh.returncode == 2, fresh
    (l3,) = json.loads(fresh.stdout)["plans"]
    states = {i["name"]: i["state"] for i in l3["items"]}
    assert states == {"web1": "change", "web2": "change", "db1": "change"}, l3
    assert all(i["lines"] for i in l3["items"]), "the tasks that would change are named"
    assert _digest(lab.state) == before, "a plan changed a host"

    converged = run_inv(sample_repo, "l3.converge", "lab")
    assert converged.returncode == 0, converged
    clean = _plan(sample_repo, "--quiet")
    assert clean.returncode == 0 and clean.stdout == "", clean

    # A file changed on one host behind the runner's back.
    sysctl = lab.state / "web1/etc/sysctl.d/90-homelab.conf"
    sysctl.write_text("net.ipv4.ip_forward = 0\n")
    after = _digest(lab.state)
    drifted = _plan(sample_repo, "--quiet")
    assert drifted.returncode == 2, drifted
    (line,) = drifted.stdout.splitlines()
    assert line.startswith("l3: web1: change: ") and "Kernel parameters are set" in line, line
    assert _digest(lab.state) == after

    lab.hosts["web2"].stop()
    down = _plan(sample_repo, "--quiet")
    assert down.returncode == 1, down
    assert any(ln.startswith("l3: web2: error: unreachable") for ln in down.stdout.splitlines())
    assert "Traceback" not in down.output
