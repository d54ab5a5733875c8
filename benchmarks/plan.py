"""`inv plan` wall time against its slowest single layer's reads run alone, in the same script, on a
copy of the sample repo (with a local bare Git remote as its upstream) against fakepve for L0-L2
and three real sshd hosts (tasks/rehearsal/ssh_standins.py SshLab) for L3/L4 (group `lab`) and
the host orchestrator (HOST_NAME=k3s: one server, two agents, with the k3s download and
Cloudflare stand-ins). The hosts are converged first (`l3.converge`, `l4.converge`,
`host.apply`), so those layers are the reads a drift check makes: the check-mode playbooks and
the k3s/DNS facts; GitOps diffs each Kustomization through the handed-off kubeconfig against the
recording kubectl/flux stand-ins. The layers' reads run at once, so the whole plan should cost about its
slowest layer: target ratio <= 1.3, the median of the per-round ratios (each round runs the
whole plan and then every layer alone). Also: fakepve requests for the L2 part with 3 and with
30 declared VMs (constant: one listing call), and the machine's floor: the CPU-s every
layer alone made the whole machine spend (the sshd hosts' side included), over its cores,
against the slowest layer alone; when the hosts share the controller's cores, that bounds the
ratio from below. Without sshd (not root, no OpenSSH server) the
host layers are left out, and the script says so.

    .venv/bin/python benchmarks/plan.py [ROUNDS]
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gitops_support import kube_env  # noqa: E402
from helpers import INV, copy_repo, git  # noqa: E402
from results import compile_runner, paired_ratio  # noqa: E402
from sshd import CF_TOKEN, host_settings  # noqa: E402

from tasks.rehearsal.proxmox import serve_fakepve  # noqa: E402
from tasks.rehearsal.ssh_standins import (  # noqa: E402
    DnsApiStandin,
    K3sInstallerStandin,
    SshLab,
    sshd_unavailable_reason,
)

LAYERS = ("l0", "l1", "l2", "l3", "l4", "host", "gitops")
ON_HOSTS = ("l3", "l4", "host")
SERVERS, AGENTS = ["web1"], ["web2", "db1"]
TARGET = 1.3
S = TypeVar("S", DnsApiStandin, K3sInstallerStandin)


CPU: dict[str, list[float]] = {}  # CPU seconds of each `inv plan --layer X` run (controller side)
BUSY: dict[str, list[float]] = {}  # how busy the machine's cores were during each run (0-1)
MACHINE: dict[str, list[float]] = {}  # CPU seconds of every process on the machine, per run
TICK = os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_ticks() -> tuple[int, int]:
    """(all, idle) jiffies of every core since boot (/proc/stat), for a busy fraction."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def _busy_seconds(before: tuple[int, int], after: tuple[int, int]) -> float:
    """CPU-s every core of the machine spent between two `_cpu_ticks()` readings."""
    return ((after[0] - before[0]) - (after[1] - before[1])) / TICK


def timed(repo: Path, env: dict[str, str], *args: str) -> float:
    """Wall time of one `inv plan ARGS` (exit 0 or 2); its CPU time (the runner, Ansible and
    their children, not the hosts' side of SSH) goes to CPU under its arguments."""
    cpu0, ticks0, t0 = _children_cpu(), _cpu_ticks(), time.perf_counter()
    proc = subprocess.run(
        [INV, "plan", *args], cwd=repo, env=env, capture_output=True, stdin=subprocess.DEVNULL
    )
    seconds = time.perf_counter() - t0
    ticks = _cpu_ticks()
    CPU.setdefault(" ".join(args), []).append(_children_cpu() - cpu0)
    busy = 1 - (ticks[1] - ticks0[1]) / max(1, ticks[0] - ticks0[0])
    BUSY.setdefault(" ".join(args), []).append(busy)
    MACHINE.setdefault(" ".join(args), []).append(_busy_seconds(ticks0, ticks))
    if proc.returncode not in (0, 2):
        raise SystemExit(
            f"inv plan {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-800:]!r}"
        )
    return seconds


def startup_cpu(repo: Path, env: dict[str, str]) -> float:
    """Machine CPU-s of one runner start-up (`inv --list`): the share each layer run alone pays
    again but the whole plan pays once."""
    ticks0 = _cpu_ticks()
    subprocess.run([INV, "--list"], cwd=repo, env=env, capture_output=True, check=True)
    return _busy_seconds(ticks0, _cpu_ticks())


def machine_floor(layers: tuple[str, ...], startup: float) -> float:
    """The least wall time the whole plan can take here: the CPU-s every layer alone made the
    machine spend (the sshd hosts' side included, medians), one start-up taken off each but one,
    spread over every core. When the hosts share the controller's cores, this, not the slowest
    layer, bounds the plan."""
    spent = sum(statistics.median(MACHINE[f"--layer {layer}"]) for layer in layers)
    return (spent - startup * (len(layers) - 1)) / (os.cpu_count() or 1)


def more_vms(repo: Path, count: int) -> None:
    extra = "".join(
        f'\nvm "bench-{n}" {{\n  template = "debian12-k3s"\n  cores = 1\n}}\n' for n in range(count)
    )
    path = repo / "layers" / "l2" / "bench.hcl"
    path.write_text(extra)


def converge(repo: Path, env: dict[str, str], *task: str) -> None:
    """`inv l3.converge lab` and the like: the hosts as declared before measuring."""
    proc = subprocess.run(
        [INV, *task], cwd=repo, env=env, capture_output=True, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise SystemExit(f"inv {' '.join(task)} exited {proc.returncode}:\n{proc.stderr[-800:]!r}")


@contextmanager
def _started(standin: S) -> Iterator[S]:
    standin.start()
    try:
        yield standin
    finally:
        standin.close()


def upstream(repo: Path, tmp: Path) -> None:
    """A local bare remote as the sample repo's upstream: the GitOps reads see it pushed."""
    remote = tmp / "remote.git"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "-u", "origin", "HEAD:main")


def main(rounds: int = 9) -> None:
    from contextlib import ExitStack

    from helpers import base_env

    compile_runner()
    load_before = os.getloadavg()[0]
    unavailable = sshd_unavailable_reason()
    layers = tuple(x for x in LAYERS if not unavailable or x not in ON_HOSTS)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        repo = copy_repo(Path(tmp) / "repo")
        upstream(repo, Path(tmp))
        served = stack.enter_context(serve_fakepve(Path(tmp) / "fakepve"))
        served.add_template(9000, "debian12-k3s")
        env = base_env(**served.env(REQUESTS_CA_BUNDLE=served.cafile))
        # The cluster: the recording kubectl/flux stand-ins (no API server can run here), reached
        # through the kubeconfig `host.apply` hands off (no KUBECONFIG), so GitOps runs a
        # `flux diff` for each Kustomization.
        kube = kube_env(Path(tmp))
        keep = ("PATH", "REAL_KUBECTL", "KUBE_STANDIN_LOG", "KUBE_STANDIN_STATE")
        env.update({k: kube[k] for k in keep})
        if unavailable:
            env["FEAT_DYNAMIC_DNS"] = "false"  # the host layer is left out; nothing to reach
        else:
            lab = SshLab([*SERVERS, *AGENTS])
            stack.callback(lab.close)
            lab.k3s_roles(SERVERS, AGENTS)
            lab.write_inventory(repo)
            dns = stack.enter_context(_started(DnsApiStandin(token=CF_TOKEN)))
            dns.add_zone("example.net")
            installer = stack.enter_context(_started(K3sInstallerStandin()))
            env.update(L3_GROUP="lab", L4_GROUP="lab", **host_settings(dns, installer))
            converge(repo, env, "l3.converge", "lab")
            converge(repo, env, "l4.converge", "lab")
            converge(repo, env, "host.apply")
        every = ",".join(layers)
        whole: list[float] = []
        alone: dict[str, list[float]] = {layer: [] for layer in layers}
        timed(repo, env, "--layer", every)  # warm-up: caches, bytecode
        for _ in range(rounds):
            whole.append(timed(repo, env, "--layer", every))
            for layer in layers:
                alone[layer].append(timed(repo, env, "--layer", layer))
        startup = statistics.median(startup_cpu(repo, env) for _ in range(5))
        medians = {layer: statistics.median(v) for layer, v in alone.items()}
        cpu = {every: statistics.median(CPU[f"--layer {every}"][1:])}  # without the warm-up
        cpu.update({layer: statistics.median(CPU[f"--layer {layer}"]) for layer in layers})
        busy = {every: statistics.median(BUSY[f"--layer {every}"][1:])}
        busy.update({layer: statistics.median(BUSY[f"--layer {layer}"]) for layer in layers})
        slowest = max(medians, key=lambda k: medians[k])
        ratio = paired_ratio(whole, alone[slowest])
        floor = machine_floor(layers, startup) / medians[slowest]

        calls = []
        for vms in (0, 27):  # 3 and 30 declared
            if vms:
                more_vms(repo, vms)
            before = len(served.pve.requests)
            timed(repo, env, "--layer", "l2")
            calls.append((3 + vms, len(served.pve.requests) - before))
    if unavailable:
        print(f"L3, L4 and host left out: {unavailable}")
    else:
        print(
            f"L3/L4/host: {len(SERVERS) + len(AGENTS)} real sshd hosts (group lab; k3s "
            f"{', '.join(SERVERS)} server, {', '.join(AGENTS)} agents), converged before measuring"
        )

    def figures(key: str) -> str:
        return f"{cpu[key]:.2f} CPU-s, cores {busy[key]:.0%} busy"

    print(f"inv plan --layer {every}: median {statistics.median(whole):.2f}s ({figures(every)})")
    for layer, seconds in medians.items():
        print(f"  inv plan --layer {layer} alone: median {seconds:.2f}s ({figures(layer)})")
    print(f"  sum of the layers alone: {sum(medians.values()):.2f}s")
    verdict = "ok" if ratio <= TARGET else "over target"
    print(
        f"ratio to the slowest layer alone ({slowest}): {ratio:.2f} (target <= {TARGET}: {verdict})"
    )
    print(
        f"the machine's floor: {floor:.2f} (every layer's CPU-s on the whole machine, start-up "
        f"counted once, over {os.cpu_count()} cores, against the slowest alone); the plan is "
        f"{ratio / floor:.2f}x that floor"
    )
    for vms, count in calls:
        print(f"L2 part with {vms} declared VMs: {count} fakepve request(s)")
    print(
        f"machine: {os.cpu_count()} cores; 1-minute load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (CPU-s: the runner's and Ansible's, not the hosts' side; "
        "busy: every process on the machine, the sshd hosts' included)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
