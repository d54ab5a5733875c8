"""`inv up --to cluster` for real, end to end, on a rehearsal-like lab: L0 runway, L1 Packer build,
L2 VMs on fakepve, real sshd hosts standing for those VMs (their k3s groups filled by L2's VM
inventory), L3 and L4 with real Ansible, k3s on the server and two agents joining (the installer
stand-in records it), the kubeconfig handed off under .work/home/, and the cluster orchestrator
against the recording kubectl/flux stand-ins with that kubeconfig. The first run converges every
stage; the second records no mutating effect, seen at the seam (its trace), from fakepve's side
(its request log) and from the stand-ins' side (their records)."""

from __future__ import annotations

import json
import secrets
import shutil
import stat
from pathlib import Path

import pytest
from gitops_support import RUNTIME_INPUTS, calls, kube_env
from helpers import git, run_inv
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401
from sshd import installs, k3s_lab

from tasks.rehearsal.ssh_standins import K3sInstallerStandin, SshLab

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not installed"),
]
SERVERS, AGENTS = ["k3s-server-1"], ["k3s-agent-1", "k3s-agent-2"]
STAGES = [
    "00_l0_runway",
    "01_l1_templates",
    "02_l2_apply",
    "03_l3_converge",
    "04_l4_converge",
    "05_k3s_install",
    "06_cluster_apply",
]
KUBE_READS = {("kubectl", "get"), ("kubectl", "version"), ("kubectl", "kustomize")}


@pytest.fixture
def hosts():
    lab = k3s_lab(SERVERS, AGENTS)
    try:
        yield lab
    finally:
        lab.close()


def _last_trace(repo: Path, task: str) -> dict:
    folder = repo / ".work" / "traces"
    paths = sorted(folder.glob(f"{task}-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(paths[-1].read_text())


def test_up_to_cluster_converges_every_stage_then_changes_nothing(
    sample_repo: Path,
    pve: PveFixture,
    hosts: SshLab,
    installer: K3sInstallerStandin,
    tmp_path: Path,
) -> None:
    pve.fake.password = "pw-" + secrets.token_hex(12)
    pve.served.add_template(9000, "debian12-base")
    # Debian's Packer 1.6.6 cannot build the proxmox-iso base template (it needs Packer 1.7 and
    # its plugin); fakepve serves that base, and the repo keeps the clone template only.
    shutil.rmtree(sample_repo / "layers/l1/templates/debian12-base")
    # The hosts stand for the sample's VMs; L2's VM inventory puts them in the k3s groups.
    hosts.write_inventory(sample_repo, members=False)
    git(sample_repo, "add", "-A")
    git(sample_repo, "commit", "-qm", "the lab")
    remote = tmp_path / "remote.git"  # what Flux would read: the plan compares the tree with it
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(sample_repo, "remote", "add", "origin", str(remote))
    git(sample_repo, "push", "-q", "-u", "origin", "HEAD:main")
    kube = kube_env(tmp_path, **RUNTIME_INPUTS)
    kube.pop("KUBECONFIG")  # the cluster side takes the kubeconfig the k3s stage hands off
    env = pve.env(
        PATH=kube["PATH"],
        REAL_KUBECTL=kube["REAL_KUBECTL"],
        KUBE_STANDIN_LOG=kube["KUBE_STANDIN_LOG"],
        KUBE_STANDIN_STATE=kube["KUBE_STANDIN_STATE"],
        **RUNTIME_INPUTS,
        PM_USER="root@pam",
        PM_PASSWORD=pve.fake.password,
        L3_GROUP="lab",
        L4_GROUP="lab",
        L4_TAGS="whoami",
        L3_WAIT="5",
        K3S_INSTALL_URL=installer.url,
        K3S_API_WAIT="20",
        FEAT_DYNAMIC_DNS="false",  # `inv up` does not run dynamic DNS (host.apply does)
    )

    first = run_inv(sample_repo, "up", "--to", "cluster", env=env, timeout=900)
    assert first.returncode == 0, first
    trace = _last_trace(sample_repo, "up")
    ids = [s["id"] for s in trace["steps"]]
    stages = [s for s in trace["steps"] if s["id"] in STAGES]
    assert [s["id"] for s in stages] == STAGES
    assert {s["outcome"] for s in stages} == {"ok"}
    # Each stage's own steps are recorded inside it: the hosts inside k3s, the cluster
    # orchestrator's numbered steps inside the cluster stage.
    k3s_steps = ids[ids.index("04_l4_converge") + 1 : ids.index("05_k3s_install")]
    assert k3s_steps == [*SERVERS, *AGENTS, "kubeconfig"]
    cluster_steps = ids[ids.index("05_k3s_install") + 1 : ids.index("06_cluster_apply")]
    assert cluster_steps[0] == "15_verify_cluster_access" and "install_flux" in cluster_steps
    assert any(e["kind"] == "pve" and e["mutates"] for e in trace["effects"])
    assert {"k3s-server-1", "k3s-agent-1", "k3s-agent-2"} <= {vm.name for vm in pve.fake.vms}
    assert (hosts.state / "k3s-agent-1/etc/sysctl.d/90-homelab.conf").exists()
    # k3s: the server, then the two agents joining it (the installer stand-in's record).
    api = hosts.apis["k3s-server-1"].url
    assert [r["join"] for n in [*SERVERS, *AGENTS] for r in installs(hosts, n)] == [
        "none",
        api,
        api,
    ]
    assert [r["role"] for n in AGENTS for r in installs(hosts, n)] == ["agent", "agent"]
    kubeconfig = sample_repo / ".work/home/kubeconfig"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600 and api in kubeconfig.read_text()
    # The cluster orchestrator ran with that kubeconfig against the stand-ins.
    assert "kubeconfig .work/home/kubeconfig (handed off by the k3s install" in first.stdout
    commands = [" ".join([e["tool"], *e["argv"]]) for e in calls(tmp_path)]
    assert "flux install --namespace=flux-system" in commands
    assert any(c.startswith("flux reconcile kustomization tenants") for c in commands)
    for value in RUNTIME_INPUTS.values():
        assert value not in first.output

    seen_pve, seen_kube = len(pve.fake.requests), len(calls(tmp_path, with_kustomize=True))
    records = {n: installs(hosts, n) for n in [*SERVERS, *AGENTS]}
    second = run_inv(sample_repo, "up", "--to", "cluster", env=env, timeout=900)
    assert second.returncode == 0, second
    trace = _last_trace(sample_repo, "up")
    assert trace["outcome"] == "ok"
    carried_out = [e for e in trace["effects"] if e["mutates"] and e["outcome"] != "skipped"]
    assert carried_out == []
    assert [m for m, _p, _b in pve.fake.requests[seen_pve:] if m != "GET"] == []
    later = calls(tmp_path, with_kustomize=True)[seen_kube:]
    assert later and [e for e in later if (e["tool"], e["argv"][0]) not in KUBE_READS] == []
    assert {n: installs(hosts, n) for n in records} == records
    assert "every host already as wanted; kubeconfig current" in second.stdout
    assert "cluster: already as wanted (Flux installed" in second.stdout

    # And `inv plan`, every layer at once, agrees: all as declared, nothing changed.
    seen_pve, seen_kube = len(pve.fake.requests), len(calls(tmp_path, with_kustomize=True))
    plan = run_inv(sample_repo, "plan", env=env, timeout=600)
    assert plan.returncode == 0, str(plan)
    for total in ("l0", "l1", "l2", "l3", "l4", "host", "gitops"):
        assert f"total {total}: 0 to change, 0 in error" in plan.stdout, total
    plan_trace = _last_trace(sample_repo, "plan")
    assert [e for e in plan_trace["effects"] if e["mutates"] and e["outcome"] != "skipped"] == []
    assert [m for m, _p, _b in pve.fake.requests[seen_pve:] if m != "GET"] == []
    later = calls(tmp_path, with_kustomize=True)[seen_kube:]
    assert [
        e for e in later if (e["tool"], e["argv"][0]) not in {*KUBE_READS, ("flux", "diff")}
    ] == []
    assert {n: installs(hosts, n) for n in records} == records
