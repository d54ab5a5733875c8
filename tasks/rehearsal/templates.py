"""Rehearsal stage for L1 templates: list, stage ISOs, build the sample proxmox-clone template with
the real packer (its VMID read from Packer's machine-readable output), skip it when unchanged,
promote and show history, and plan adopting a template Proxmox already has, against the proxmox
stage's fakepve. Without that fakepve (no PVE env), only the acts that need no Proxmox run (the
build plan then works offline and says which checks needed the API)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from tasks.rehearsal.play import Act, Rehearsal

CLONE_TEMPLATE = "debian12-k3s"


@contextmanager
def stage(rehearsal: Rehearsal) -> Iterator[list[Act]]:
    acts = [
        Act("L1: templates, sources and whether they are up to date", ("l1.list",)),
        Act("L1: each template's inputs, as JSON", ("l1.list", "--json")),
    ]
    if not rehearsal.env.get("PVE_ACCESS_HOST"):
        yield acts
        return
    from tasks.rehearsal.proxmox import ROOT_PASSWORD, SAMPLE_TEMPLATE_NAME, SAMPLE_TEMPLATE_VMID

    # Packer 1.6 has no API-token login: it signs in with fakepve's own root login. The sample
    # k3s template clones the base template the proxmox stage serves.
    rehearsal.env.update({"PM_USER": "root@pam", "PM_PASSWORD": ROOT_PASSWORD})
    folder = rehearsal.workdir / "layers" / "l1" / "templates" / CLONE_TEMPLATE
    (folder / "rehearsal.auto.pkrvars.hcl").write_text(
        f'base_template = "{SAMPLE_TEMPLATE_NAME}"\n'
    )
    acts += [
        Act("L1: stage the ISOs templates boot from (dry run)", ("l1.isos", "--dry-run")),
        Act("L1: stage the ISOs (Proxmox downloads and verifies)", ("l1.isos",)),
        Act("L1: build plan for the clone template", ("l1.build", CLONE_TEMPLATE, "--dry-run")),
        Act(
            "L1: adopt the template Proxmox already has (dry run)",
            ("l1.adopt", CLONE_TEMPLATE, "--vmid", str(SAMPLE_TEMPLATE_VMID), "--dry-run"),
        ),
    ]
    if shutil.which("packer") is not None:
        acts += [
            Act("L1: build it with Packer; artifact + stable", ("l1.build", CLONE_TEMPLATE)),
            Act("L1: build again: inputs unchanged, skipped", ("l1.build", CLONE_TEMPLATE)),
            Act("L1: list, checked on Proxmox", ("l1.list", "--live")),
            Act("L1: promote (already the stable one)", ("l1.promote", CLONE_TEMPLATE)),
            Act("L1: artifact history", ("l1.history", CLONE_TEMPLATE)),
        ]
    yield acts
