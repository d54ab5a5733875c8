"""L2 facts: what Proxmox says, parsed into plain values. Pure functions over API answers.

The plan reads the whole cluster with one call (`GET /cluster/resources`), and a VM's config only
when the cheap facts cannot prove it is already as wanted.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from tasks.l2.sizes import GiB, parse_size

# `description` of every VM the runner clones: its mark until the owner tag is written.
CLONE_MARK = "managed by the homelab runner (L2)"


def split_tags(value: Any) -> list[str]:
    """PVE keeps tags as one string separated by ';' (',' and spaces are accepted too)."""
    return sorted({t.lower() for t in re.split(r"[;, ]+", str(value or "")) if t})


def parse_props(value: Any) -> tuple[str | None, dict[str, str]]:
    """`virtio=AA:..,bridge=vmbr0,tag=20` -> (None, {...}); `local-lvm:vm-1-disk-0,size=8G` -> (vol, {...})."""
    first, props = None, {}
    for n, part in enumerate(str(value or "").split(",")):
        key, eq, val = part.partition("=")
        if eq:
            props[key.strip()] = val.strip()
        elif part and n == 0:
            first = part.strip()
    return first, props


NET_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3")


def parse_net(value: Any) -> dict[str, Any]:
    """The parts of a netN value the runner manages: model, MAC, bridge, VLAN tag, firewall."""
    first, props = parse_props(value)
    out: dict[str, Any] = {"model": None, "mac": None, "bridge": props.get("bridge")}
    if first in NET_MODELS:  # `virtio,bridge=vmbr0`: a model without a MAC yet
        out["model"] = first
    for model in NET_MODELS:
        if model in props:
            out["model"], out["mac"] = model, props[model]
    if out["model"] is None and "model" in props:
        out["model"], out["mac"] = props["model"], props.get("macaddr")
    out["vlan"] = int(props["tag"]) if props.get("tag", "").isdigit() else None
    out["firewall"] = props.get("firewall") in ("1", "true") if "firewall" in props else None
    return out


def disk_size(value: Any) -> int | None:
    """Bytes of a drive value from its size= option; `storage:10` (a disk being added) is 10 GiB."""
    first, props = parse_props(value)
    size = parse_size(props["size"]) if props.get("size") else None
    if size is not None:
        return size
    if first and re.fullmatch(r"[^:]+:\d+(\.\d+)?", first):
        return int(float(first.split(":")[1]) * GiB)
    return None


def flag(value: Any) -> bool | None:
    """`1`, `0`, `enabled=1,fstrim_cloned_disks=1` -> True/False; absent -> None."""
    if value is None:
        return None
    first, props = parse_props(value)
    raw = props.get("enabled", first)
    return str(raw).strip() in ("1", "true", "yes", "on")


def decode_sshkeys(value: Any) -> tuple[str, ...]:
    """PVE stores sshkeys URL-encoded; one key per line."""
    text = urllib.parse.unquote(str(value or ""))
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def encode_sshkeys(keys: tuple[str, ...]) -> str:
    """PVE wants sshkeys URL-encoded, spaces as %20 (not '+')."""
    return urllib.parse.quote("\n".join(keys) + "\n", safe="")


@dataclass
class ActualVm:
    """A guest as /cluster/resources shows it: a qemu VM, or an LXC container (`kind`)."""

    vmid: int
    name: str
    node: str
    status: str
    tags: list[str]
    template: bool
    lock: str | None
    maxcpu: int | None
    maxmem: int | None
    kind: str = "qemu"

    def managed(self, owner_tag: str) -> bool:
        return self.kind == "qemu" and owner_tag in self.tags


@dataclass
class ClusterView:
    """The cluster in one call: VMs (and templates), nodes, storages per node."""

    vms: list[ActualVm] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)  # name -> online/offline
    storages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def from_resources(cls, resources: list[dict[str, Any]]) -> ClusterView:
        view = cls()
        for item in resources:
            kind = item.get("type")
            if kind == "qemu":
                view.vms.append(
                    ActualVm(
                        vmid=int(item["vmid"]),
                        name=str(item.get("name") or ""),
                        node=str(item.get("node") or ""),
                        status=str(item.get("status") or "unknown"),
                        tags=split_tags(item.get("tags")),
                        template=bool(int(item.get("template") or 0)),
                        lock=item.get("lock") or None,
                        maxcpu=int(item["maxcpu"]) if item.get("maxcpu") is not None else None,
                        maxmem=int(item["maxmem"]) if item.get("maxmem") is not None else None,
                    )
                )
            elif kind == "node":
                view.nodes[str(item.get("node"))] = str(item.get("status") or "unknown")
            elif kind == "storage":
                view.storages.setdefault(str(item.get("node")), {})[str(item.get("storage"))] = item
            elif kind == "lxc":
                # Containers share the VMID space (a clone must not take their ids), but are
                # never a clone's template nor a declared VM.
                view.vms.append(
                    ActualVm(
                        int(item["vmid"]),
                        str(item.get("name") or ""),
                        str(item.get("node") or ""),
                        str(item.get("status") or ""),
                        split_tags(item.get("tags")),
                        bool(int(item.get("template") or 0)),
                        None,
                        None,
                        None,
                        kind="lxc",
                    )
                )
        return view

    def by_vmid(self, vmid: int) -> ActualVm | None:
        return next((vm for vm in self.vms if vm.vmid == vmid), None)

    def named(self, name: str) -> list[ActualVm]:
        return [vm for vm in self.vms if vm.name == name and not vm.template]

    def templates_named(self, name: str) -> list[ActualVm]:
        """qemu templates of that name: an LXC template can never be cloned into a VM."""
        return [vm for vm in self.vms if vm.name == name and vm.template and vm.kind == "qemu"]

    def used_vmids(self) -> set[int]:
        return {vm.vmid for vm in self.vms}


def agent_ips(answer: Any) -> list[str]:
    """Global IPv4/IPv6 addresses from `agent/network-get-interfaces` (loopback and link-local left out)."""
    result = answer.get("result", answer) if isinstance(answer, dict) else answer
    ips: list[str] = []
    for iface in result or []:
        for addr in iface.get("ip-addresses") or []:
            text = str(addr.get("ip-address") or "")
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if ip.is_loopback or ip.is_link_local:
                continue
            if text not in ips:
                ips.append(text)
    return ips
