"""What Proxmox says about L1's templates and ISOs, read through the Proxmox adapter.

Each fact is one adapter call plus a pure function over its answer, so the parsing is testable
without a server.
"""

from __future__ import annotations

import re
from typing import Any

from tasks.runtime.records import Record

# Disk keys of a qemu config; cloud-init and CD-ROM drives are not where a template's disk lives.
_DISK_KEY = re.compile(r"^(scsi|virtio|sata|ide|efidisk|tpmstate)\d+$")


class VmFact(Record):
    __slots__ = ("vmid", "node", "name", "template")

    def __init__(self, vmid: int, node: str, name: str, template: bool) -> None:
        self.vmid = vmid
        self.node = node
        self.name = name
        self.template = template


def vms_by_id(resources: list[dict[str, Any]]) -> dict[int, VmFact]:
    """`GET /cluster/resources?type=vm` as {vmid: VmFact} (qemu guests only)."""
    found = {}
    for item in resources or []:
        if item.get("type") not in (None, "qemu") or item.get("vmid") is None:
            continue
        vmid = int(item["vmid"])
        found[vmid] = VmFact(
            vmid,
            str(item.get("node") or ""),
            str(item.get("name") or ""),
            str(item.get("template") or "0") in ("1", "True", "true"),
        )
    return found


def read_vms(pve) -> dict[int, VmFact]:
    return vms_by_id(pve.resources("vm"))


def disk_storage(config: dict[str, Any]) -> str | None:
    """The storage of a VM config's first real disk (`scsi0: local-lvm:base-9001-disk-0,size=8G`)."""
    for key in sorted(config, key=lambda k: (not k.startswith(("scsi", "virtio")), k)):
        if not _DISK_KEY.match(key):
            continue
        value = str(config[key])
        if "media=cdrom" in value or "cloudinit" in value or ":" not in value:
            continue
        return value.split(":", 1)[0]
    return None


def is_template(config: dict[str, Any]) -> bool:
    return str(config.get("template", "0")) in ("1", "True", "true")


def iso_volumes(pve, node: str, storage: str) -> dict[str, dict[str, Any]]:
    """{volid: content item} of the ISO images on `storage`."""
    items = pve.storage_content(storage=storage, node=node, content="iso")
    return {str(item.get("volid")): item for item in items or [] if item.get("volid")}
