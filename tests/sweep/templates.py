"""Sweep cases for the L1 template tasks: fakepve over HTTPS with the Doppler sentinel as the
token secret and a sentinel as Packer's password, and Debian's real packer building the sample
proxmox-clone template (so the password travels through PKR_VAR_* and Packer's output and log).
The password is also set in an `*.auto.pkrvars.hcl` file, which must never reach the parse cache."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

NAME = "debian12-k3s"

CASES = {
    "l1.list": [
        ["l1.list"],
        ["l1.list", "--json"],
        ["l1.list", "--live", "--profile", "{profile}"],
    ],
    "l1.isos": [["l1.isos", "--dry-run"], ["l1.isos"], ["l1.isos", "--profile", "{profile}"]],
    "l1.build": [
        ["l1.build", NAME, "--dry-run"],
        ["l1.build", NAME],
        ["l1.build", NAME],
        ["l1.build", NAME, "--force", "--profile", "{profile}"],
        ["l1.build", "debian12-base"],
    ],
    "l1.promote": [["l1.promote", NAME, "--dry-run"], ["l1.promote", NAME]],
    "l1.history": [["l1.history", NAME], ["l1.history", NAME, "--json"]],
    "l1.adopt": [
        ["l1.adopt", NAME, "--vmid", "9000", "--dry-run"],
        ["l1.adopt", NAME, "--vmid", "9000", "--profile", "{profile}"],
        ["l1.list", "--json"],
    ],
}


@contextlib.contextmanager
def prepare(repo: Path, sentinels: dict[str, str]):
    from tasks.rehearsal.proxmox import serve_fakepve

    with tempfile.TemporaryDirectory() as tmp, serve_fakepve(Path(tmp)) as served:
        served.pve.apitokens[served.token_id] = sentinels["doppler"]
        served.pve.password = sentinels["shell"]
        served.add_template(9000, "debian12-base")
        pkrvars = repo / "layers/l1/templates" / NAME / "secret.auto.pkrvars.hcl"
        pkrvars.write_text(f'proxmox_password = "{sentinels["shell"]}"\n')
        env = served.env(PM_TOKEN_SECRET=sentinels["doppler"], REQUESTS_CA_BUNDLE=served.cafile)
        env.update({"PM_USER": "root@pam", "PM_PASSWORD": sentinels["shell"]})
        yield env
