"""`inv rehearse` in a checkout whose L1 stable.json is committed (L1 -> L2's hand-off, which
layers/l1/layer.yaml says to commit): the rehearsal's throwaway copy must not carry the operator's
stable pointers into fakepve, which has none of their templates.

The whole rehearsal takes minutes; this runs the act that failed there ("L2 plan: the sample VMs,
nothing there yet": `inv l2.plan` exited 3, stable.json pointing at a VMID fakepve does not have)
in the rehearsal's own copy of such a checkout (tasks/rehearsal copy_checkout), against fakepve
serving the sample template, as the rehearsal's proxmox stage does.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers import git, run_inv
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401

from tasks.rehearsal.play import copy_checkout
from tasks.rehearsal.proxmox import SAMPLE_TEMPLATE_NAME, SAMPLE_TEMPLATE_VMID

# What `inv l1.build` promotes on the operator's own Proxmox (tasks/l1/artifacts.py's format).
OPERATOR_STABLE = {
    "name": "debian12-k3s",
    "template": "debian12-k3s",
    "build": "proxmox-clone.debian12-k3s",
    "node": "pve",
    "vmid": 9100,
    "storage": "local-lvm",
    "created_at": "2026-11-15T10:15:00Z",
    "description": "debian12-k3s built by inv l1.build",
    "fingerprint": "sha256:" + "3f" * 32,
    "inputs": {},
    "artifact": "debian12-k3s-20261115T101500Z.json",
    "promoted_at": "2026-11-15T10:20:00Z",
}


def test_the_rehearsal_copy_plans_l2_with_a_committed_stable_json(
    sample_repo: Path, tmp_path: Path, pve: PveFixture
) -> None:
    stable = sample_repo / "layers/l1/artifacts/debian12-k3s/stable.json"
    stable.parent.mkdir(parents=True)
    stable.write_text(json.dumps(OPERATOR_STABLE, indent=2) + "\n")
    git(sample_repo, "add", "-A")
    git(sample_repo, "commit", "-q", "-m", "stable manifest of my homelab")

    copy = tmp_path / "rehearsal-copy"
    copy_checkout(sample_repo, copy)
    pve.served.add_template(SAMPLE_TEMPLATE_VMID, SAMPLE_TEMPLATE_NAME)
    result = run_inv(copy, "l2.plan", env=pve.env())
    assert result.returncode == 0, str(result)
    assert "Traceback" not in result.output
    assert stable.read_text() == json.dumps(OPERATOR_STABLE, indent=2) + "\n"  # the checkout's own
