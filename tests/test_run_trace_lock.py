"""A mutating run's trace lists what it did, and one run at a time per area: a second run of the
same area refuses (exit 3) naming the holder, while another area goes ahead."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from helpers import INV, base_env, run_inv
from sshd import lab_fixture

from tasks.rehearsal.ssh_standins import SshLab


@pytest.fixture
def lab():
    yield from lab_fixture(("web1", "web2"))


def _traces(repo: Path, task: str) -> list[dict]:
    folder = repo / ".work" / "traces"
    paths = sorted(
        folder.glob(f"{task.replace('.', '-')}-*.json"), key=lambda p: p.stat().st_mtime_ns
    )
    return [json.loads(p.read_text()) for p in paths]


def test_a_second_run_of_an_area_refuses_naming_the_holder(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    lock = sample_repo / ".work" / "locks" / "l3.lock"
    holder = subprocess.Popen(
        [INV, "l3.exec", "sleep 4", "--hosts", "lab"],
        cwd=sample_repo,
        env=base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
            time.sleep(0.05)
        assert lock.read_text().strip(), "the first run never took the l3 lock"
        second = run_inv(sample_repo, "l3.converge", "lab")
        assert second.returncode == 3, second
        assert "l3 is already in use by another run (l3.exec, pid" in second.stderr
        # Another area is not held up: the GitOps tree's lock is free.
        other = run_inv(sample_repo, "platform.certs", "--prod")
        assert other.returncode == 0, other
    finally:
        out, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, (out, err)
    (refused,) = _traces(sample_repo, "l3.converge")
    assert refused["outcome"] == "refused" and refused["exit_code"] == 3
    (first,) = _traces(sample_repo, "l3.exec")
    assert first["outcome"] == "ok" and first["locks"] == ["l3"]
    commands = [e for e in first["effects"] if e["kind"] == "ssh" and e["mutates"]]
    assert sorted(e["target"] for e in commands) == ["web1: sleep 4", "web2: sleep 4"]
    assert all(e["outcome"] == "ok" for e in commands)
    assert [s["outcome"] for s in first["steps"]] == ["ok", "ok"]
