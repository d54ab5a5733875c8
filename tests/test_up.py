"""`inv up` for real, end to end: L0 runway, L1 Packer build, L2 VMs on fakepve, L3 and L4 over
real sshd with real Ansible. The first run converges every layer; the second records no mutating
effect, seen at the seam (its trace) and from fakepve's side (its request log)."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import pytest
from helpers import git, run_inv
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401
from sshd import lab_fixture

from tasks.rehearsal.ssh_standins import SshLab

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not installed"),
]


@pytest.fixture
def hosts():
    yield from lab_fixture(("web1", "web2"))


def _last_trace(repo: Path, task: str) -> dict:
    folder = repo / ".work" / "traces"
    paths = sorted(folder.glob(f"{task}-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(paths[-1].read_text())


def test_up_converges_every_layer_then_changes_nothing(
    sample_repo: Path, pve: PveFixture, hosts: SshLab
) -> None:
    pve.fake.password = "pw-" + secrets.token_hex(12)
    pve.served.add_template(9000, "debian12-base")
    # Debian's Packer 1.6.6 cannot build the proxmox-iso base template (it needs Packer 1.7 and
    # its plugin); fakepve serves that base, and the repo keeps the clone template only.
    shutil.rmtree(sample_repo / "layers/l1/templates/debian12-base")
    hosts.write_inventory(sample_repo)
    git(sample_repo, "add", "-A")
    git(sample_repo, "commit", "-qm", "the lab")
    env = pve.env(
        PM_USER="root@pam",
        PM_PASSWORD=pve.fake.password,
        L3_GROUP="lab",
        L4_GROUP="lab",
        L4_TAGS="whoami",
        L3_WAIT="5",
    )

    first = run_inv(sample_repo, "up", env=env, timeout=600)
    assert first.returncode == 0, first
    trace = _last_trace(sample_repo, "up")
    assert [s["outcome"] for s in trace["steps"] if s["id"].startswith("0")] == ["ok"] * 5
    assert any(e["kind"] == "pve" and e["mutates"] for e in trace["effects"])
    stable = json.loads((sample_repo / "layers/l1/artifacts/debian12-k3s/stable.json").read_text())
    vms = {vm.name: vm for vm in pve.fake.vms}
    assert {"k3s-server-1", "k3s-agent-1", "k3s-agent-2"} <= set(vms)
    assert pve.fake.vm(stable["vmid"]).template
    assert (hosts.state / "web1/etc/sysctl.d/90-homelab.conf").exists()

    seen = len(pve.fake.requests)
    second = run_inv(sample_repo, "up", env=env, timeout=600)
    assert second.returncode == 0, second
    trace = _last_trace(sample_repo, "up")
    assert trace["outcome"] == "ok"
    carried_out = [e for e in trace["effects"] if e["mutates"] and e["outcome"] != "skipped"]
    assert carried_out == []
    assert [m for m, _p, _b in pve.fake.requests[seen:] if m != "GET"] == []
    assert "already as wanted" in second.stdout
