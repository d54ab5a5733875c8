"""Proxmox benchmarks: runway concurrency, l2.plan request count, l2.apply parallelism.

Run: .venv/bin/python benchmarks/proxmox.py   (writes the `proxmox` section of RESULTS.md)

Everything runs against fakepve over verified HTTPS in this process; `inv` runs as a subprocess
in a throwaway copy of the checkout, as an operator would run it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from helpers import base_env, copy_repo, run_inv  # noqa: E402
from results import write_section  # noqa: E402

import tasks  # noqa: E402,F401  (makes tasks/ importable as a package)
from tasks.rehearsal.proxmox import serve_fakepve  # noqa: E402


def declarations(count: int, first_vmid: int) -> str:
    blocks = [
        f'vm "bench-{n:02d}" {{\n  vmid = {first_vmid + n}\n  cores = 2\n  memory = 2048\n'
        f'  tags = ["bench"]\n  disk "scsi0" {{\n    size = "16G"\n  }}\n}}\n'
        for n in range(count)
    ]
    return 'defaults {\n  template = "debian12-k3s"\n  agent = false\n}\n\n' + "\n".join(blocks)


def check(result) -> None:
    if result.returncode != 0:
        raise SystemExit(f"benchmark run failed:\n{result}")


def runway(tmp: Path, latency: float) -> dict:
    repo = copy_repo(tmp / "runway")
    with serve_fakepve(tmp / "pve-runway", time_scale=1.0) as served:
        served.pve.slow_network(latency)
        env = base_env(**served.env(REQUESTS_CA_BUNDLE=served.cafile))
        out = {}
        for mode, extra in (("concurrent", []), ("serial", ["--serial"])):
            walls, slowest = [], []
            for _ in range(3):
                result = run_inv(repo, "l0.runway", "--json", *extra, env=env)
                check(result)
                data = json.loads(result.stdout)
                walls.append(data["seconds"])
                slowest.append(max(c["seconds"] for c in data["checks"]))
            out[mode] = (sorted(walls)[1], sorted(slowest)[1])
        return out


def plan_requests(tmp: Path, count: int) -> dict:
    repo = copy_repo(tmp / "plan")
    (repo / "layers" / "l2" / "vms.hcl").write_text(declarations(count, 400))
    with serve_fakepve(tmp / "pve-plan") as served:
        served.add_template(9000, "debian12-k3s")
        env = base_env(**served.env(REQUESTS_CA_BUNDLE=served.cafile))
        out = {}
        before = len(served.pve.requests)
        check(run_inv(repo, "l2.plan", env=env))
        out["nothing exists yet"] = len(served.pve.requests) - before
        check(run_inv(repo, "l2.apply", env=env))
        before = len(served.pve.requests)
        check(run_inv(repo, "l2.plan", env=env))
        out["all already as wanted"] = len(served.pve.requests) - before
        before = len(served.pve.requests)
        check(run_inv(repo, "l2.plan", "--deep", env=env))
        out["--deep (reads every config)"] = len(served.pve.requests) - before
        return out


def apply_parallel(tmp: Path, count: int, latency: float) -> dict:
    out = {}
    for parallel in (1, 8):
        repo = copy_repo(tmp / f"apply-{parallel}")
        (repo / "layers" / "l2" / "vms.hcl").write_text(declarations(count, 500))
        with serve_fakepve(tmp / f"pve-apply-{parallel}", time_scale=1.0) as served:
            served.add_template(9000, "debian12-k3s")
            served.pve.slow_network(latency)
            env = base_env(**served.env(REQUESTS_CA_BUNDLE=served.cafile))
            started = time.perf_counter()
            check(run_inv(repo, "l2.apply", "--parallel", str(parallel), env=env, timeout=900))
            out[parallel] = time.perf_counter() - started
            assert sum(1 for vm in served.pve.vms if not vm.template) == count
    return out


def main() -> None:
    latency = 0.1
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rw = runway(tmp, latency)
        plans = plan_requests(tmp, 50)
        apply = apply_parallel(tmp, 30, 0.06)
    conc_wall, _ = rw["concurrent"]
    serial_wall, slowest = rw["serial"]  # each check timed while running alone
    lines = [
        "## Proxmox (L0 runway, L2 VMs)",
        "",
        "Against fakepve over verified HTTPS; `inv` as a subprocess. Medians of 3 where repeated.",
        "",
        f"**runway under {latency * 1000:.0f} ms injected API latency** (check phase, from `--json`):",
        "",
        "| mode | wall | slowest single check (run alone) | wall / slowest |",
        "|---|---|---|---|",
        f"| concurrent (default) | {conc_wall:.2f} s | {slowest:.2f} s | **{conc_wall / slowest:.2f}x** (target <= 1.5x) |",
        f"| one by one (`--serial`) | {serial_wall:.2f} s | {slowest:.2f} s | {serial_wall / slowest:.2f}x |",
        "",
        "**`l2.plan` of 50 declared VMs: API requests** (target: constant, <= 5):",
        "",
        "| state | requests |",
        "|---|---|",
        *[f"| {state} | {n} |" for state, n in plans.items()],
        "",
        "**`l2.apply` of 30 VMs** (clone, configure, resize, start, each task waited for; 60 ms "
        "latency per API request):",
        "",
        "| --parallel | wall | speed-up |",
        "|---|---|---|",
        f"| 1 | {apply[1]:.1f} s | 1.0x |",
        f"| 8 | {apply[8]:.1f} s | **{apply[1] / apply[8]:.1f}x** (target >= 5x) |",
    ]
    write_section("proxmox", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
