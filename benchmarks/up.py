"""Converged `inv up` on a rehearsal-style lab (fakepve over verified HTTPS, two real sshd hosts,
real Ansible) against the same reads done by hand in the same script: the runway's API probes and
one `/cluster/resources` call with curl, then `ansible-playbook --check` of L3 and of L4 on the
same converged hosts. Writes the `up` section of RESULTS.md."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from helpers import base_env, copy_repo, git  # noqa: E402
from results import (  # noqa: E402
    BIN,
    compile_runner,
    interleaved,
    paired_ratio,
    run_seconds,
    write_section,
)

import tasks  # noqa: E402,F401  (makes tasks/ importable as a package)
from tasks.rehearsal.proxmox import serve_fakepve  # noqa: E402
from tasks.rehearsal.ssh_standins import SshLab, sshd_unavailable_reason  # noqa: E402

TARGET = 1.2
ROUNDS = 7
PROBES = ("/version", "/access/permissions", "/nodes", "/nodes/pve1/storage", "/cluster/resources")


def by_hand(repo: Path, served, header: Path) -> list[list[str]]:
    """The reads an operator would make by hand for the same answers."""
    work = repo / ".work" / "inventory"
    curl = [
        "curl",
        "-fsS",
        "--cacert",
        served.cafile,
        "-H",
        f"@{header}",
        *[arg for path in PROBES for arg in ("-o", "/dev/null", f"{served.url}/api2/json{path}")],
    ]
    playbooks = [
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(work / "hosts.yml"),
            str(repo / f"layers/{layer}/site.yml"),
            "--limit",
            "lab",
            "--check",
            "--diff",
            *(["--tags", "whoami"] if layer == "l4" else []),
        ]
        for layer in ("l3", "l4")
    ]
    return [curl, *playbooks]


def main() -> int:
    reason = sshd_unavailable_reason()
    if reason or shutil.which("packer") is None or shutil.which("curl") is None:
        print(f"skipped: {reason or 'packer or curl is not installed'}")
        return 0
    compile_runner()
    with tempfile.TemporaryDirectory() as tmp, serve_fakepve(Path(tmp) / "pve") as served:
        served.pve.password = "bench-root-pw-5c2e"
        served.add_template(9000, "debian12-base")
        repo = copy_repo(Path(tmp) / "repo")
        shutil.rmtree(repo / "layers/l1/templates/debian12-base")  # Packer 1.6.6 cannot build it
        with SshLab(["web1", "web2"]) as lab:
            lab.write_inventory(repo)
            git(repo, "add", "-A")
            git(repo, "commit", "-qm", "bench lab")
            env = base_env(
                **served.env(REQUESTS_CA_BUNDLE=served.cafile),
                PM_USER="root@pam",
                PM_PASSWORD=served.pve.password,
                L3_GROUP="lab",
                L4_GROUP="lab",
                L4_TAGS="whoami",
            )
            inv = [
                str(BIN / "inv"),
                "up",
                "--to",
                "l4",
            ]  # the layers; the k3s and cluster stages apart
            run_seconds(inv, repo, env)  # converge once: every later run changes nothing
            header = Path(tmp) / "auth-header"
            header.write_text(
                f"Authorization: PVEAPIToken={served.token_id}={served.token_secret}\n"
            )
            hand = by_hand(repo, served, header)
            hand_env = {
                **env,
                "ANSIBLE_CONFIG": str(repo / ".work/inventory/ansible.cfg"),
                "ANSIBLE_NOCOLOR": "1",
            }

            def reads() -> float:
                return sum(run_seconds(argv, repo, hand_env) for argv in hand)

            up_t, hand_t = interleaved([lambda: run_seconds(inv, repo, env), reads], ROUNDS)
            writes = [m for m, _p, _b in served.pve.requests if m != "GET"]
            before = len(writes)
            subprocess.run(inv, cwd=repo, env=env, capture_output=True, check=True)
            after = len([m for m, _p, _b in served.pve.requests if m != "GET"])
    ratio = paired_ratio(up_t, hand_t)
    up_s, hand_s = statistics.median(up_t), statistics.median(hand_t)
    met = ratio <= TARGET
    write_section(
        "up",
        f"""## Converged `inv up` (`benchmarks/up.py`)

A lab like the rehearsal's: fakepve over verified HTTPS, the sample VMs (3) applied, the clone
template built by Debian's Packer 1.6.6, two real sshd hosts converged with L3 and L4. Each
round runs a converged `inv up` (L0 runway, L1 fingerprints, L2 plan, L3 and L4 check mode;
nothing to change) and then the same reads by hand: curl for the runway's API probes and one
`/cluster/resources`, `ansible-playbook --check` of L3 and of L4 on the same hosts. {ROUNDS}
rounds; medians, and the median of the per-round ratios.

| what | seconds |
|---|---|
| the reads by hand | {hand_s:.2f} |
| converged `inv up` | {up_s:.2f} |
| **ratio** | **{ratio:.2f}** (target <= {TARGET}) {"met" if met else "MISSED"} |

Writes fakepve saw during one more converged `inv up`: {after - before} (target 0).""",
    )
    print(f"up {up_s:.2f}s  by hand {hand_s:.2f}s  ratio {ratio:.2f}  writes {after - before}")
    return 0 if met and after == before else 1


if __name__ == "__main__":
    sys.exit(main())
