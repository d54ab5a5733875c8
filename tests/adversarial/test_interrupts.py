"""Interrupts leave nothing behind: SIGINT (to the pid alone and to the group), SIGTERM and SIGHUP
stop the run with 130/143/129, the trace says where (the step `interrupted`), the lock is free for
the next run; SIGKILL leaves a journal the next run completes; a kill at any moment of a write
leaves the old file or the new one, never half, and no temp file after the next write."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import INV, base_env, run_inv
from sshd import lab_fixture

from tasks.rehearsal.ssh_standins import SshLab

pytestmark = pytest.mark.slow


@pytest.fixture
def lab():
    yield from lab_fixture(("web1",))


def _start(repo: Path, *argv: str, group: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [INV, *argv],
        cwd=repo,
        env=base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
    )


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _traces(repo: Path, pattern: str) -> list[dict]:
    folder = repo / ".work" / "traces"
    return [json.loads(p.read_text()) for p in sorted(folder.glob(pattern))]


@pytest.mark.parametrize(
    ("how", "code"),
    [("SIGINT-pid", 130), ("SIGINT-group", 130), ("SIGTERM", 143), ("SIGHUP", 129)],
)
def test_a_signal_stops_the_run_and_the_trace_says_where(
    sample_repo: Path, lab: SshLab, how: str, code: int
) -> None:
    lab.write_inventory(sample_repo)
    proc = _start(sample_repo, "l3.exec", "sleep 30", "--hosts", "lab", group=how.endswith("group"))
    _wait_for(sample_repo / ".work/locks/l3.lock")
    time.sleep(1.0)  # the command is running on the host
    started = time.monotonic()
    signum = {"SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}.get(how, signal.SIGINT)
    if how.endswith("group"):
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, (out, err)
    assert time.monotonic() - started < 10
    assert "Traceback" not in out + err
    (trace,) = _traces(sample_repo, "l3-exec-*[0-9].json")
    assert trace["outcome"] == "interrupted" and trace["exit_code"] == code
    assert trace["steps"][-1]["outcome"] == "interrupted"
    assert list((sample_repo / ".work/traces").glob("*.running.json")) == []
    # The lock is free: the next run goes ahead at once.
    assert run_inv(sample_repo, "l3.exec", "true", "--hosts", "lab").returncode == 0


def test_a_killed_run_is_completed_by_the_next(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    proc = _start(sample_repo, "l3.exec", "sleep 30", "--hosts", "lab")
    _wait_for(sample_repo / ".work/locks/l3.lock")
    time.sleep(1.0)
    proc.kill()
    proc.communicate(timeout=30)
    (journal,) = (sample_repo / ".work/traces").glob("l3-exec-*.running.json")
    nxt = run_inv(sample_repo, "l3.exec", "true", "--hosts", "lab")
    assert nxt.returncode == 0, nxt  # the dead holder's lock is taken over
    assert not journal.exists()
    killed = [t for t in _traces(sample_repo, "l3-exec-*.json") if t["outcome"] == "killed"]
    assert len(killed) == 1 and killed[0]["steps"][-1]["outcome"] == "interrupted"


def test_a_kill_at_any_moment_of_a_write_leaves_old_or_new(sample_repo: Path) -> None:
    settings = (
        sample_repo
        / "layers/gitops/clusters/home/flux-system/sources/configmap-platform-settings.yaml"
    )
    versions = {settings.read_text()}
    rng = random.Random(7)
    for trial in range(24):
        proc = _start(sample_repo, "platform.certs", "--prod" if trial % 2 else "--staging")
        time.sleep(rng.uniform(0.05, 0.4))
        proc.kill()
        proc.communicate(timeout=30)
        text = settings.read_text()
        assert "CERT_ISSUER" in text and text.count("\n") > 3, text
        versions.add(text)
    assert len(versions) <= 2  # the old file or the new one, never a half
    assert run_inv(sample_repo, "platform.certs", "--staging").returncode == 0
    assert list(settings.parent.glob(".*.tmp")) == []  # the next write removed dead temps


def _catches_sigterm(pid: int) -> bool:
    # Python itself never catches SIGTERM: once it is caught, the runner's first lines have run.
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_ctrl_c_while_loading_ends_quietly(sample_repo: Path) -> None:
    for delay in (0.0, 0.05, 0.12, 0.25):  # after the runner's first line ran
        proc = _start(sample_repo, "l0.runway")
        deadline = time.monotonic() + 20
        while not _catches_sigterm(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert "Traceback" not in out + err, err
        assert proc.returncode in (130, 2, 4), (proc.returncode, err)  # 2/4: it got further
