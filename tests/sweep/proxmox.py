"""Sweep cases for the Proxmox tasks (L0 runway, L2 VMs): fakepve over HTTPS whose API token
secret is the Doppler sentinel, so the secret really flows through every request."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

CASES = {
    "l0.runway": [
        ["l0.runway"],
        ["l0.runway", "--json"],
        ["l0.runway", "--serial", "--profile", "{profile}"],
    ],
    "l2.plan": [["l2.plan"], ["l2.plan", "--json", "--deep"]],
    "l2.apply": [["l2.apply", "--dry-run"], ["l2.apply"], ["l2.apply", "--profile", "{profile}"]],
    "l2.destroy": [
        ["l2.destroy", "--dry-run"],
        ["l2.destroy"],  # refused: no terminal, no --yes
        ["l2.destroy", "--name", "k3s-agent-2", "--yes"],
        ["l2.destroy", "--name", "not-there", "--yes"],
    ],
    "plan": [["plan"], ["plan", "--json"], ["plan", "--quiet", "--profile", "{profile}"]],
    "runs.list": [["runs"], ["runs", "--json"]],
    "runs.show": [["runs.show", "last"], ["runs.show", "last", "--json"]],
}


@contextlib.contextmanager
def prepare(repo: Path, sentinels: dict[str, str]):
    from tasks.rehearsal.proxmox import serve_fakepve

    with tempfile.TemporaryDirectory() as tmp, serve_fakepve(Path(tmp)) as served:
        served.pve.apitokens[served.token_id] = sentinels["doppler"]
        served.add_template(9000, "debian12-k3s")
        yield served.env(PM_TOKEN_SECRET=sentinels["doppler"], REQUESTS_CA_BUNDLE=served.cafile)
