"""What to change, computed from specs and facts without changing anything.

A dry run prints these decisions; a real run carries them out. "Nothing to do" is a decision too,
and is said out loud ("already as wanted").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.l1.fingerprint import Fingerprint, changes
from tasks.runtime.records import Record

if TYPE_CHECKING:
    from tasks.l1.facts import VmFact
    from tasks.l1.inputs import IsoRef


class BuildDecision(Record):
    __slots__ = ("template", "build", "reasons")

    def __init__(self, template: str, build: bool, reasons: list[str]) -> None:
        self.template = template
        self.build = build
        self.reasons = reasons

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


def input_staleness(fp: Fingerprint, stable: dict[str, Any] | None) -> list[str]:
    """Why the stable artifact no longer matches the inputs (empty: it matches)."""
    if stable is None:
        return ["no stable artifact"]
    if stable.get("fingerprint") == fp.value:
        return []
    recorded = stable.get("inputs")
    if not isinstance(recorded, dict):
        return ["inputs changed since the stable build"]
    found = changes(recorded, fp.inputs)
    shown = found[:4] + ([f"and {len(found) - 4} more"] if len(found) > 4 else [])
    return ["inputs changed: " + ", ".join(shown)] if found else ["fingerprint differs"]


def live_staleness(stable: dict[str, Any] | None, vms: dict[int, VmFact] | None) -> list[str]:
    """Why the stable template is unusable on Proxmox (vms None: not checked)."""
    if stable is None or vms is None:
        return []
    vmid = int(stable["vmid"])
    vm = vms.get(vmid)
    if vm is None:
        return [f"stable template {vmid} is gone from Proxmox"]
    if not vm.template:
        return [f"VM {vmid} on Proxmox is no longer a template"]
    return []


def decide_build(
    template: str,
    fp: Fingerprint,
    stable: dict[str, Any] | None,
    vms: dict[int, VmFact] | None,
    force: bool = False,
) -> BuildDecision:
    reasons = input_staleness(fp, stable) + live_staleness(stable, vms)
    if force:
        return BuildDecision(template, True, ["--force", *reasons])
    if reasons:
        return BuildDecision(template, True, reasons)
    where = f"stable template {stable['vmid']} on {stable['node']}" if stable else ""
    return BuildDecision(template, False, [f"up to date ({where})"])


# ------------------------------------------------------------------ ISOs


class IsoAction(Record):
    __slots__ = ("ref", "volid", "action", "detail")

    def __init__(self, ref: IsoRef, volid: str, action: str, detail: str = "") -> None:
        self.ref = ref
        self.volid = volid
        # "present", "download", "upload", "missing" (no source), "conflict", "unchecked" (a dry
        # run that could not reach Proxmox)
        self.action = action
        self.detail = detail

    @property
    def changes(self) -> bool:
        return self.action in ("download", "upload")


def plan_isos(
    refs: list[IsoRef],
    volumes: dict[str, dict[str, dict[str, Any]]],
    ledger: dict[str, Any],
    default_storage: str,
    local_sizes: dict[str, int] | None = None,
) -> list[IsoAction]:
    """One action per distinct ISO volume: what to do to get it onto its storage.

    `volumes` is {storage: {volid: item}}; `ledger` records the checksum each volume the runner
    staged was verified against (PVE's API lists sizes, never checksums).
    """
    local_sizes = local_sizes or {}
    planned: dict[str, IsoAction] = {}
    for ref in refs:
        volid = ref.volid(default_storage)
        if volid in planned:
            continue
        storage = volid.split(":", 1)[0]
        present = volumes.get(storage, {}).get(volid)
        recorded = (ledger.get(volid) or {}).get("checksum")
        if present is not None:
            size = local_sizes.get(volid)
            if ref.checksum and recorded and recorded != ref.checksum:
                planned[volid] = IsoAction(
                    ref,
                    volid,
                    "conflict",
                    f"present, but staged with {recorded}; the template now wants {ref.checksum}",
                )
            elif size is not None and int(present.get("size") or 0) not in (0, size):
                planned[volid] = IsoAction(
                    ref,
                    volid,
                    "conflict",
                    f"present with {present.get('size')} bytes; the local file has {size}",
                )
            elif ref.checksum and recorded == ref.checksum:
                planned[volid] = IsoAction(
                    ref, volid, "present", f"checksum {ref.checksum} matches"
                )
            else:
                planned[volid] = IsoAction(
                    ref, volid, "present", "not staged by the runner; its checksum is not recorded"
                )
            continue
        if ref.local_path is not None:
            planned[volid] = IsoAction(ref, volid, "upload", f"from {ref.local_path.name}")
        elif ref.url:
            planned[volid] = IsoAction(ref, volid, "download", f"from {ref.url}")
        else:
            planned[volid] = IsoAction(
                ref, volid, "missing", "not on the storage and the template gives no iso_url"
            )
    return list(planned.values())
