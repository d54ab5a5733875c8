"""`inv plan` wall time against its slowest single layer's reads run alone, in the same script, on a
copy of the sample repo against fakepve (L0, L1, L2, GitOps; L3/L4 need sshd hosts: see
tests/test_plan_hosts.py). The layers' reads run at once, so the whole plan should cost about its
slowest layer: target ratio <= 1.3. Also: fakepve requests for the L2 part with 3 and with 30
declared VMs (constant: one listing call).

    .venv/bin/python benchmarks/plan.py [ROUNDS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import INV, copy_repo  # noqa: E402
from results import compile_runner, paired_ratio  # noqa: E402

from tasks.rehearsal.proxmox import serve_fakepve  # noqa: E402

LAYERS = ("l0", "l1", "l2", "gitops")
TARGET = 1.3


def timed(repo: Path, env: dict[str, str], *args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [INV, "plan", *args], cwd=repo, env=env, capture_output=True, stdin=subprocess.DEVNULL
    )
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 2):
        raise SystemExit(
            f"inv plan {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-800:]!r}"
        )
    return seconds


def more_vms(repo: Path, count: int) -> None:
    extra = "".join(
        f'\nvm "bench-{n}" {{\n  template = "debian12-k3s"\n  cores = 1\n}}\n' for n in range(count)
    )
    path = repo / "layers" / "l2" / "bench.hcl"
    path.write_text(extra)


def main(rounds: int = 9) -> None:
    from helpers import base_env

    compile_runner()
    with tempfile.TemporaryDirectory() as tmp:
        repo = copy_repo(Path(tmp) / "repo")
        with serve_fakepve(Path(tmp) / "fakepve") as served:
            served.add_template(9000, "debian12-k3s")
            env = base_env(**served.env(REQUESTS_CA_BUNDLE=served.cafile))
            whole: list[float] = []
            alone: dict[str, list[float]] = {layer: [] for layer in LAYERS}
            timed(repo, env, "--layer", ",".join(LAYERS))  # warm-up: caches, bytecode
            for _ in range(rounds):
                whole.append(timed(repo, env, "--layer", ",".join(LAYERS)))
                for layer in LAYERS:
                    alone[layer].append(timed(repo, env, "--layer", layer))
            medians = {layer: statistics.median(v) for layer, v in alone.items()}
            slowest = max(medians, key=lambda k: medians[k])
            ratio = paired_ratio(whole, alone[slowest])

            calls = []
            for vms in (0, 27):  # 3 and 30 declared
                if vms:
                    more_vms(repo, vms)
                before = len(served.pve.requests)
                timed(repo, env, "--layer", "l2")
                calls.append((3 + vms, len(served.pve.requests) - before))
    print(f"inv plan --layer {','.join(LAYERS)}: median {statistics.median(whole):.2f}s")
    for layer, seconds in medians.items():
        print(f"  inv plan --layer {layer} alone: median {seconds:.2f}s")
    verdict = "ok" if ratio <= TARGET else "over target"
    print(
        f"ratio to the slowest layer alone ({slowest}): {ratio:.2f} (target <= {TARGET}: {verdict})"
    )
    for vms, count in calls:
        print(f"L2 part with {vms} declared VMs: {count} fakepve request(s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
