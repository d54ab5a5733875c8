"""L2 specs: the VMs declared in HCL under layers/l2/, validated, with defaults applied.

A declaration file holds an optional `defaults { ... }` block (for the VMs of that file) and
`vm "NAME" { ... }` blocks:

    vm "web-1" {
      vmid          = 201            # or vmid_range = "200-299"; neither: the first free id
      node          = "pve1"         # default PVE_NODE
      template      = "debian-12"    # stable manifest name, template name or VMID
      cores         = 2
      memory        = 2048           # MiB
      disk "scsi0" { size = "20G" }  # grows the cloned disk; a new slot adds a disk
      network "net0" { bridge = "vmbr0"  vlan = 20 }
      cloud_init { user = "ops"  ssh_keys = ["ssh-ed25519 ..."]  ip = "10.0.20.11/24"  gateway = "10.0.20.1" }
      tags          = ["web"]
      groups        = ["webservers"]  # for the L3 inventory
      start_on_boot = true
    }

Only what is declared is managed: an attribute left out keeps the template's value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.runtime.errors import ConfigError

SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT])?$")
UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
DISK_SLOT = r"^(scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|sata[0-5]|ide[0-3])$"
TAG = r"^[a-z0-9_][a-z0-9_\-+.]*$"

_STR = {"type": "string", "minLength": 1}
VM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "vmid": {"type": "integer", "minimum": 100, "maximum": 999999999},
        "vmid_range": {"type": "string", "pattern": r"^\d+\s*-\s*\d+$"},
        "node": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9.\-]*$"},
        "template": {"type": ["string", "integer"]},
        "full_clone": {"type": "boolean"},
        "storage": _STR,
        "cores": {"type": "integer", "minimum": 1, "maximum": 1024},
        "sockets": {"type": "integer", "minimum": 1, "maximum": 4},
        "memory": {"type": "integer", "minimum": 16},
        "disk": {
            "type": "array",
            "items": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "propertyNames": {"pattern": DISK_SLOT},
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "string", "pattern": r"^\d+(\.\d+)?\s*[KMGT]?$"},
                        "storage": _STR,
                    },
                },
            },
        },
        "network": {
            "type": "array",
            "items": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "propertyNames": {"pattern": r"^net([0-9]|[1-2][0-9]|3[0-1])$"},
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["bridge"],
                    "properties": {
                        "bridge": {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]+$"},
                        "vlan": {"type": "integer", "minimum": 1, "maximum": 4094},
                        "model": {"enum": ["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"]},
                        "firewall": {"type": "boolean"},
                    },
                },
            },
        },
        "cloud_init": {
            "type": "array",
            "maxItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "user": _STR,
                    "ssh_keys": {"type": "array", "items": _STR},
                    "ip": {"type": "string", "pattern": r"^(dhcp|\d+\.\d+\.\d+\.\d+/\d+)$"},
                    "gateway": {"type": "string", "pattern": r"^\d+\.\d+\.\d+\.\d+$"},
                    "nameserver": _STR,
                    "searchdomain": _STR,
                },
            },
        },
        "tags": {"type": "array", "items": {"type": "string", "pattern": TAG}},
        "groups": {"type": "array", "items": {"type": "string", "pattern": r"^[A-Za-z0-9_\-]+$"}},
        "start_on_boot": {"type": "boolean"},
        "started": {"type": "boolean"},
        "agent": {"type": "boolean"},
        "reboot_for_changes": {"type": "boolean"},
    },
}
NAME = re.compile(r"^[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?)*$")


@dataclass(frozen=True)
class DiskSpec:
    slot: str
    size: int  # bytes
    storage: str | None = None


@dataclass(frozen=True)
class NetSpec:
    slot: str
    bridge: str
    vlan: int | None = None
    model: str = "virtio"
    firewall: bool | None = None


@dataclass(frozen=True)
class CloudInitSpec:
    user: str | None = None
    ssh_keys: tuple[str, ...] = ()
    ip: str | None = None
    gateway: str | None = None
    nameserver: str | None = None
    searchdomain: str | None = None


@dataclass(frozen=True)
class VmSpec:
    name: str
    source: str  # `layers/l2/vms.hcl: vm "web-1"`, for messages
    node: str
    vmid: int | None = None
    vmid_range: tuple[int, int] | None = None
    template: str | None = None
    full_clone: bool = True
    storage: str | None = None
    cores: int | None = None
    sockets: int | None = None
    memory: int | None = None
    disks: tuple[DiskSpec, ...] = ()
    networks: tuple[NetSpec, ...] = ()
    cloud_init: CloudInitSpec | None = None
    tags: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    start_on_boot: bool | None = None
    started: bool = True
    agent: bool | None = None
    reboot_for_changes: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def size_bytes(text: str) -> int:
    """`20G` -> bytes (a bare number is GiB, as PVE reads sizes)."""
    found = SIZE.match(str(text).strip())
    if not found:
        raise ValueError(f"not a size: {text!r}")
    return int(float(found.group(1)) * UNITS[found.group(2) or "G"])


def _blocks(items: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(label, body) for item in items for label, body in item.items()]


def parse_file(path: Path, rel: str, cache_dir: Path | None = None) -> dict[str, Any]:
    """One declaration file through the runner's one HCL loader (tasks/l1/hcl.py) and its parse
    cache: a syntax error names the line, an attribute set twice in a block names both lines."""
    from tasks.l1.hcl import HclError, load_hcl

    try:
        return load_hcl(path, cache_dir, rel).doc
    except HclError as exc:
        where = f" (line {exc.line}, column {exc.column})" if exc.line and exc.column else ""
        raise ConfigError(f"{rel}: not valid HCL{where}: {exc.detail}") from None


def _vm_from(name: str, body: dict[str, Any], source: str, default_node: str) -> VmSpec:
    from tasks.runtime.config import validate

    if not NAME.match(name):
        raise ConfigError(
            f"{source}: the name must be a DNS name (lower case letters, digits, '-', '.')"
        )
    try:
        validate(body, VM_SCHEMA, Path(source))
    except ConfigError as exc:
        raise ConfigError(
            exc.message.replace("does not match the expected shape", "invalid")
        ) from None
    if "vmid" in body and "vmid_range" in body:
        raise ConfigError(f"{source}: give vmid or vmid_range, not both")
    vmid_range = None
    if "vmid_range" in body:
        lo, hi = (int(x) for x in body["vmid_range"].split("-"))
        if lo < 100 or hi < lo:
            raise ConfigError(
                f"{source}: vmid_range {body['vmid_range']!r}: expected LOW-HIGH, LOW >= 100"
            )
        vmid_range = (lo, hi)
    disks = tuple(
        DiskSpec(slot, size_bytes(d["size"]), d.get("storage"))
        for slot, d in _blocks(body.get("disk", []))
    )
    nets = tuple(
        NetSpec(slot, n["bridge"], n.get("vlan"), n.get("model", "virtio"), n.get("firewall"))
        for slot, n in _blocks(body.get("network", []))
    )
    for what, slots in (("disk", [d.slot for d in disks]), ("network", [n.slot for n in nets])):
        dup = sorted({s for s in slots if slots.count(s) > 1})
        if dup:
            raise ConfigError(f"{source}: {what} {dup[0]!r} is declared twice")
    ci = None
    if body.get("cloud_init"):
        raw = body["cloud_init"][0]
        if raw.get("gateway") and raw.get("ip") in (None, "dhcp"):
            raise ConfigError(f"{source}: cloud_init: a gateway needs a static ip (CIDR)")
        ci = CloudInitSpec(
            user=raw.get("user"),
            ssh_keys=tuple(raw.get("ssh_keys") or ()),
            ip=raw.get("ip"),
            gateway=raw.get("gateway"),
            nameserver=raw.get("nameserver"),
            searchdomain=raw.get("searchdomain"),
        )
    template = body.get("template")
    return VmSpec(
        name=name,
        source=source,
        node=body.get("node") or default_node,
        vmid=body.get("vmid"),
        vmid_range=vmid_range,
        template=str(template) if template is not None else None,
        full_clone=body.get("full_clone", True),
        storage=body.get("storage"),
        cores=body.get("cores"),
        sockets=body.get("sockets"),
        memory=body.get("memory"),
        disks=disks,
        networks=nets,
        cloud_init=ci,
        tags=tuple(sorted(set(body.get("tags") or ()))),
        groups=tuple(body.get("groups") or ()),
        start_on_boot=body.get("start_on_boot"),
        started=body.get("started", True),
        agent=body.get("agent"),
        reboot_for_changes=body.get("reboot_for_changes", True),
    )


def declaration_files(layer_dir: Path) -> list[Path]:
    return sorted(p for p in layer_dir.rglob("*.hcl") if p.is_file())


def load_specs(layer_dir: Path, project_root: Path, default_node: str) -> list[VmSpec]:
    """Every declared VM, in file and declaration order. Errors name the file and the block."""
    specs: list[VmSpec] = []
    seen: dict[str, str] = {}
    vmids: dict[int, str] = {}
    cache_dir = project_root / ".work" / "l1" / "parse-cache"
    for path in declaration_files(layer_dir):
        rel = str(path.relative_to(project_root))
        data = parse_file(path, rel, cache_dir)
        unknown = sorted(set(data) - {"defaults", "vm"})
        if unknown:
            raise ConfigError(
                f'{rel}: unknown block {unknown[0]!r}; expected `defaults {{...}}` and `vm "NAME" {{...}}`'
            )
        if len(data.get("defaults", [])) > 1:
            raise ConfigError(f"{rel}: more than one defaults block")
        defaults = (data.get("defaults") or [{}])[0]
        if "vmid" in defaults:
            raise ConfigError(f"{rel}: defaults: vmid cannot be shared; use vmid_range")
        for name, body in _blocks(data.get("vm", [])):
            source = f'{rel}: vm "{name}"'
            if not isinstance(body, dict):
                raise ConfigError(f"{source}: expected a block")
            merged = {**defaults, **body}
            if "vmid" in body and "vmid_range" not in body:
                merged.pop("vmid_range", None)  # a VM's own vmid beats the file's range
            spec = _vm_from(name, merged, source, default_node)
            if name in seen:
                raise ConfigError(f"{source}: the name is also declared in {seen[name]}")
            seen[name] = source
            if spec.vmid is not None:
                if spec.vmid in vmids:
                    raise ConfigError(
                        f"{source}: vmid {spec.vmid} is also declared by {vmids[spec.vmid]}"
                    )
                vmids[spec.vmid] = source
            specs.append(spec)
    return specs
