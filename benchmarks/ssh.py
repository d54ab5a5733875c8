"""SSH benchmarks against real loopback sshd hosts (needs root, as CI has).

1. Fan-out of one command to 20 hosts: parallel against serial, in the same run (target >= 5x).
2. `inv l3.converge` of the sample playbook over 4 hosts against a bare `ansible-playbook` run of
   the same playbook with the same rendered inventory and config (runner overhead; target
   <= 1.15x). Both measured on converged hosts, so they do the same work.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from results import BIN, median_seconds, write_section  # noqa: E402
from run_support import standalone_effects  # noqa: E402

import tasks  # noqa: E402,F401  (the root tasks.py: makes `tasks.*` importable)
from tasks.rehearsal.ssh_standins import SshLab, sshd_unavailable_reason  # noqa: E402


def fan_out(lab: SshLab, runs: int = 5) -> tuple[float, float]:
    from tasks.adapters.ssh import SshSettings, SshTarget, run_everywhere

    known = lab.root / "bench_known_hosts"
    known.write_text(lab.known_hosts())
    settings = SshSettings(known, None, "strict", 10)
    targets = [
        SshTarget(h.name, h.address, h.port, lab.user, str(lab.client_key))
        for h in lab.hosts.values()
    ]

    def timed(parallel: int) -> float:
        times = []
        for _ in range(runs + 1):
            t0 = time.perf_counter()
            outcomes = run_everywhere(
                standalone_effects(),
                targets,
                settings,
                "uname -n",
                mutates=False,
                parallel=parallel,
            )
            times.append(time.perf_counter() - t0)
            assert all(o.ok for o in outcomes), [o.detail for o in outcomes if not o.ok]
        return statistics.median(times[1:])

    return timed(1), timed(len(targets))


def converge_overhead(runs: int = 5) -> tuple[float, float]:
    from helpers import base_env, copy_repo

    with tempfile.TemporaryDirectory() as tmp, SshLab([f"node{i}" for i in range(4)]) as lab:
        repo = copy_repo(Path(tmp) / "repo")
        lab.write_inventory(repo)
        env = base_env()
        inv = [str(BIN / "inv"), "l3.converge", "lab"]
        runner = median_seconds(inv, runs=runs, cwd=repo, env=env, warmup=1)
        work = repo / ".work" / "inventory"
        bare = [
            str(BIN / "ansible-playbook"),
            "-i",
            str(work / "hosts.yml"),
            str(repo / "layers/l3/site.yml"),
            "--limit",
            ",".join(lab.hosts),
        ]
        bare_env = {**env, "ANSIBLE_CONFIG": str(work / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
        baseline = median_seconds(bare, runs=runs, cwd=repo, env=bare_env, warmup=1)
        return runner, baseline


def main() -> None:
    reason = sshd_unavailable_reason()
    if reason:
        print(f"skipped: {reason}")
        return
    with SshLab([f"h{i:02d}" for i in range(20)]) as lab:
        serial, parallel = fan_out(lab)
    runner, baseline = converge_overhead()
    speedup = serial / parallel
    overhead = runner / baseline
    markdown = f"""## SSH (`benchmarks/ssh.py`)

Real OpenSSH servers on loopback (one sshd per host), the runner's fabric/paramiko adapter.

| measurement | seconds (median) | ratio | target |
|---|---|---|---|
| `uname -n` on 20 hosts, serial (1 at a time) | {serial:.3f} | baseline | |
| `uname -n` on 20 hosts, parallel (20 at a time) | {parallel:.3f} | **{speedup:.1f}x faster** | >= 5x |
| bare `ansible-playbook layers/l3/site.yml`, 4 hosts, converged | {baseline:.3f} | baseline | |
| `inv l3.converge lab`, same 4 hosts (SSH + cloud-init wait, render, summary) | {runner:.3f} | **{overhead:.2f}x** | <= 1.15x |
"""
    print(markdown)
    write_section("ssh", markdown)


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    main()
