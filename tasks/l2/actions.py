"""L2 actions: from specs and facts to a plan (what to change), and executing one VM's plan.

Computing the plan changes nothing, so `l2.plan` and `--dry-run` are the same code stopping early.
A VM the plan finds already as wanted yields no action; a second apply therefore sends no write.

Ownership: every VM the runner creates carries the owner tag (layers/l2/layer.yaml, `owner_tag`)
and a spec digest tag `<owner>.spec-<hash>` written last, once the VM matches its declaration. A
VM without the owner tag is never modified or destroyed; a name or VMID clash with one is an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tasks.l2.facts import (
    CLONE_MARK,
    ActualVm,
    ClusterView,
    decode_sshkeys,
    disk_size,
    encode_sshkeys,
    flag,
    parse_net,
    parse_props,
    split_tags,
)
from tasks.l2.journal import CloneJournal
from tasks.l2.sizes import GiB, format_size
from tasks.l2.spec import VmSpec

# Config keys a running VM takes at once; anything else waits for a reboot.
HOTPLUG = {"name", "onboot", "tags", "description", "agent"}


@dataclass(frozen=True)
class TemplateRef:
    vmid: int
    node: str
    name: str
    source: str  # "stable manifest layers/l1/artifacts/x/stable.json", "template name", "VMID"


@dataclass
class Change:
    field: str
    old: str
    new: str


@dataclass
class VmPlan:
    name: str
    action: str  # create | update | none | orphan | error
    node: str
    vmid: int | None
    spec: VmSpec | None = None
    actual: ActualVm | None = None
    template: TemplateRef | None = None
    changes: list[Change] = field(default_factory=list)
    error: str | None = None
    config_updates: dict[str, str] = field(default_factory=dict)
    resizes: list[tuple[str, str]] = field(default_factory=list)
    tags: str | None = None  # the tags value to write last, if it changes
    reboot: bool = False
    start: bool = False
    read_config: bool = False

    @property
    def detail(self) -> str:
        if self.error:
            return self.error
        if self.action == "create" and self.template:
            return f"clone {self.template.name} ({self.template.vmid} on {self.template.node})"
        if self.action == "update":
            return ", ".join(c.field for c in self.changes)
        if self.action == "orphan":
            return "managed by the runner, no longer declared (inv l2.destroy NAME removes it)"
        return "already as wanted"


def gib(size: int) -> str:
    """Bytes as PVE's size spelling: 20G, or 512M when not whole GiB."""
    return format_size(size)


def desired_config(spec: VmSpec) -> dict[str, str]:
    """The PVE config keys the declaration manages (disks and tags are handled apart)."""
    want: dict[str, str] = {"name": spec.name}
    if spec.cores is not None:
        want["cores"] = str(spec.cores)
    if spec.sockets is not None:
        want["sockets"] = str(spec.sockets)
    if spec.memory is not None:
        want["memory"] = str(spec.memory)
    if spec.start_on_boot is not None:
        want["onboot"] = "1" if spec.start_on_boot else "0"
    if spec.agent is not None:
        want["agent"] = "1" if spec.agent else "0"
    for net in spec.networks:
        value = f"{net.model},bridge={net.bridge}"
        if net.firewall is not None:
            value += f",firewall={1 if net.firewall else 0}"
        if net.vlan is not None:
            value += f",tag={net.vlan}"
        want[net.slot] = value
    ci = spec.cloud_init
    if ci is not None:
        if ci.user:
            want["ciuser"] = ci.user
        if ci.ssh_keys:
            want["sshkeys"] = encode_sshkeys(ci.ssh_keys)
        if ci.ip:
            want["ipconfig0"] = f"ip={ci.ip}" + (f",gw={ci.gateway}" if ci.gateway else "")
        if ci.nameserver:
            want["nameserver"] = ci.nameserver
        if ci.searchdomain:
            want["searchdomain"] = ci.searchdomain
    return want


def spec_digest(spec: VmSpec) -> str:
    """A short hash of everything declared that a cheap listing cannot show."""
    blob = {
        "config": desired_config(spec),
        "disks": [(d.slot, d.size, d.storage) for d in spec.disks],
        "tags": list(spec.tags),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:10]


def desired_tags(spec: VmSpec, owner: str, with_digest: bool = True) -> list[str]:
    tags = set(spec.tags) | {owner}
    if with_digest:
        tags.add(f"{owner}.spec-{spec_digest(spec)}")
    return sorted(tags)


def _same(key: str, want: str, have: Any) -> bool:
    if have is None:
        return False
    if key.startswith("net"):
        w, h = parse_net(want), parse_net(have)
        return all(
            w[k] == h[k] for k in ("model", "bridge", "vlan") if k != "model" or w[k] is not None
        ) and (w["firewall"] is None or w["firewall"] == h["firewall"])
    if key == "sshkeys":
        return decode_sshkeys(want) == decode_sshkeys(have)
    if key in ("onboot", "agent"):
        return flag(want) == flag(have)
    if key.startswith("ipconfig"):
        return parse_props(want)[1] == parse_props(have)[1]
    return str(have).strip() == want


def _shown(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "sshkeys":
        return f"{len(decode_sshkeys(value))} key(s)"
    if key.startswith("net"):
        net = parse_net(value)
        text = f"{net['model']},bridge={net['bridge']}"
        return text + (f",tag={net['vlan']}" if net["vlan"] else "")
    return str(value)


def diff_config(
    plan: VmPlan, spec: VmSpec, config: dict[str, Any], running: bool, owner: str, storage: str
) -> None:
    """Fill `plan` with what must change for `config` to match `spec` (field by field)."""
    for key, want in desired_config(spec).items():
        have = config.get(key)
        if _same(key, want, have):
            continue
        value = want
        if key.startswith("net") and have is not None:
            # Keep the VM's MAC address: a new one would look like a new NIC to the guest.
            mac = parse_net(have)["mac"]
            model = parse_net(want)["model"]
            if mac:
                value = want.replace(model, f"{model}={mac}", 1)
        plan.config_updates[key] = value
        plan.changes.append(Change(key, _shown(key, have), _shown(key, want)))
    for disk in spec.disks:
        have = config.get(disk.slot)
        if have is None:
            plan.config_updates[disk.slot] = f"{disk.storage or storage}:{disk.size // GiB or 1}"
            plan.changes.append(Change(disk.slot, "-", f"new disk {gib(disk.size)}"))
            continue
        current = disk_size(have) or 0
        if current < disk.size:
            plan.resizes.append((disk.slot, gib(disk.size)))
            plan.changes.append(Change(f"{disk.slot} size", gib(current), gib(disk.size)))
        elif current > disk.size:
            plan.error = (
                f"{disk.slot} is {gib(current)}, declared {gib(disk.size)}: disks cannot shrink; "
                "declare the current size or larger"
            )
    want_tags = desired_tags(spec, owner)
    have_tags = split_tags(config.get("tags"))
    if set(have_tags) != set(want_tags):
        plan.tags = ";".join(want_tags)
        user_old = [t for t in have_tags if not t.startswith(owner)]
        user_new = [t for t in want_tags if not t.startswith(owner)]
        if user_old != user_new or owner not in have_tags:
            plan.changes.append(
                Change("tags", ";".join(have_tags) or "-", ";".join(user_new + [owner]))
            )
        elif plan.config_updates or plan.resizes:
            pass  # the digest follows the fields listed above
        else:
            plan.changes.append(Change("spec digest", "outdated", "current"))
    if running and spec.reboot_for_changes and set(plan.config_updates) - HOTPLUG:
        plan.reboot = True
        plan.changes.append(Change("power", "running", "reboot to apply"))
    if spec.started and not running:
        plan.start = True
        plan.changes.append(Change("status", "stopped", "running"))


def looks_unchanged(vm: ActualVm, spec: VmSpec, owner: str) -> bool:
    """True when the listing alone proves the VM matches: digest tag and the fields it shows."""
    if f"{owner}.spec-{spec_digest(spec)}" not in vm.tags or owner not in vm.tags:
        return False
    if set(vm.tags) != set(desired_tags(spec, owner)):
        return False
    if (
        spec.cores is not None
        and vm.maxcpu is not None
        and vm.maxcpu != spec.cores * (spec.sockets or 1)
    ):
        return False
    if spec.memory is not None and vm.maxmem is not None and vm.maxmem != spec.memory * 1024**2:
        return False
    return not (spec.started and vm.status != "running")


def free_vmid(used: set[int], low: int = 100, high: int = 999999999) -> int | None:
    vmid = low
    while vmid <= high:
        if vmid not in used:
            return vmid
        vmid += 1
    return None


def build_plan(
    specs: list[VmSpec],
    view: ClusterView,
    *,
    owner: str,
    storage: str,
    read_config: Callable[[ActualVm], dict[str, Any]],
    resolve_template: Callable[[VmSpec, ClusterView], TemplateRef],
    deep: bool = False,
    interrupted_clone: Callable[[ActualVm], bool] = lambda vm: False,
) -> list[VmPlan]:
    """Desired against actual, per VM, in declaration order, then orphans. A VM without the
    owner tag is the runner's only when `interrupted_clone` (the runner's own clone journal)
    names it and it still carries the clone mark."""
    plans: list[VmPlan] = []
    matched: set[int] = set()
    for spec in specs:
        plan = VmPlan(spec.name, "none", spec.node, spec.vmid, spec=spec)
        plans.append(plan)
        if spec.node not in view.nodes:
            known = ", ".join(sorted(view.nodes)) or "none"
            plan.action, plan.error = (
                "error",
                f"node {spec.node!r} is not in the cluster (nodes: {known})",
            )
            continue
        if view.nodes[spec.node] != "online":
            plan.action, plan.error = "error", f"node {spec.node!r} is {view.nodes[spec.node]}"
            continue
        named = view.named(spec.name)
        ours = [vm for vm in named if vm.managed(owner)]
        if not ours:
            # A clone whose first config write never happened: named by this runner's own
            # record of that run, and still carrying the mark (never the mark alone).
            ours = [
                vm
                for vm in named
                if interrupted_clone(vm)
                and CLONE_MARK in str(read_config(vm).get("description", ""))
            ]
        if len(ours) > 1:
            ids = ", ".join(str(vm.vmid) for vm in ours)
            plan.action, plan.error = (
                "error",
                f"several managed VMs are named {spec.name!r} ({ids})",
            )
            continue
        if not ours and named:
            clash = named[0]
            plan.action, plan.error = (
                "error",
                (
                    f"a VM named {spec.name!r} (VMID {clash.vmid} on {clash.node}) exists without the "
                    f"tag {owner!r}: the runner does not touch it; rename one of them"
                ),
            )
            continue
        actual: ActualVm | None = ours[0] if ours else None
        if actual is None:
            if spec.vmid is not None and (other := view.by_vmid(spec.vmid)) is not None:
                whose = "managed" if other.managed(owner) else "not managed by the runner"
                plan.action, plan.error = (
                    "error",
                    (f"VMID {spec.vmid} is taken by {other.name or 'a guest'!r} ({whose})"),
                )
                continue
            plan.action = "create"
            continue
        matched.add(actual.vmid)
        plan.actual, plan.vmid = actual, actual.vmid
        if spec.vmid is not None and spec.vmid != actual.vmid:
            plan.action, plan.error = (
                "error",
                (
                    f"declared VMID {spec.vmid}, but the managed VM {spec.name!r} is {actual.vmid}; "
                    "a VMID cannot change (destroy it and apply again)"
                ),
            )
            continue
        if actual.node != spec.node:
            plan.action, plan.error = (
                "error",
                (
                    f"the VM is on node {actual.node}, declared on {spec.node}: migrate it in PVE or "
                    "change the declaration"
                ),
            )
            continue
        if not deep and looks_unchanged(actual, spec, owner):
            continue
        plan.read_config = True
        diff_config(plan, spec, read_config(actual), actual.status == "running", owner, storage)
        if plan.error:
            plan.action = "error"
        elif plan.changes or plan.tags:
            plan.action = "update"
            if actual.lock:
                plan.action, plan.error = "error", f"VM is locked ({actual.lock}); try again later"
    # VMIDs and templates for the creates, once every existing VM is accounted for. Every
    # explicit VMID is reserved before any range hands one out, so a range never takes a VMID
    # another declaration names (two declarations naming one VMID are refused by the spec).
    used = view.used_vmids()
    creates = [p for p in plans if p.action == "create" and p.spec is not None]
    used.update(p.spec.vmid for p in creates if p.spec is not None and p.spec.vmid is not None)
    for plan in creates:
        if plan.action != "create" or plan.spec is None:
            continue
        spec = plan.spec
        if spec.vmid is not None:
            vmid: int | None = spec.vmid
        elif spec.vmid_range is not None:
            vmid = free_vmid(used, *spec.vmid_range)
        else:
            vmid = free_vmid(used)
        if vmid is None:
            plan.action, plan.error = "error", f"no free VMID in {spec.vmid_range}"
            continue
        used.add(vmid)
        plan.vmid = vmid
        try:
            plan.template = resolve_template(spec, view)
        except Exception as exc:  # ConfigError from the resolver, reported per VM
            plan.action, plan.error = "error", getattr(exc, "message", str(exc))
    declared = {spec.name for spec in specs}
    for vm in view.vms:
        if vm.template or vm.vmid in matched or not vm.managed(owner):
            continue
        if vm.name in declared:
            continue
        plans.append(VmPlan(vm.name, "orphan", vm.node, vm.vmid, actual=vm))
    return plans


def execute(
    client: Any,
    plan: VmPlan,
    *,
    owner: str,
    storage: str,
    progress: Callable[[str], None],
    task_timeout: float = 900.0,
    journal: CloneJournal | None = None,
) -> None:
    """Carry out one VM's plan: clone, configure, resize, mark, reboot or start. Raises on failure.
    A clone is in `journal` from before its request until the owner tag is on."""
    spec = plan.spec
    assert spec is not None and plan.vmid is not None
    base = f"/nodes/{spec.node}/qemu/{plan.vmid}"
    if plan.action == "create":
        tpl = plan.template
        assert tpl is not None
        progress(f"cloning {tpl.name} ({tpl.vmid}) to VMID {plan.vmid} on {spec.node}")
        params: dict[str, Any] = {
            "newid": plan.vmid,
            "name": spec.name,
            "description": CLONE_MARK,
            "full": spec.full_clone,
        }
        if spec.full_clone:
            params["storage"] = spec.storage or storage
        if tpl.node != spec.node:
            params["target"] = spec.node
        if journal is not None:
            journal.begin(plan.vmid, spec.node, spec.name)
        client.run_task(
            "POST", f"/nodes/{tpl.node}/qemu/{tpl.vmid}/clone", task_timeout=task_timeout, **params
        )
        config = client.get(f"{base}/config") or {}
        diff_config(plan, spec, config, False, owner, storage)
        if plan.error:
            raise _failed(plan.error)
        # The owner tag goes on with the first write; the digest only once everything is done.
        plan.config_updates["tags"] = ";".join(desired_tags(spec, owner, with_digest=False))
    if plan.config_updates:
        progress("configuring " + ", ".join(sorted(plan.config_updates)))
        client.put(f"{base}/config", **plan.config_updates)
    for slot, size in plan.resizes:
        progress(f"resizing {slot} to {size}")
        client.run_task("PUT", f"{base}/resize", task_timeout=task_timeout, disk=slot, size=size)
    if plan.tags is not None:
        client.put(f"{base}/config", tags=plan.tags)
    if journal is not None:
        journal.end(plan.vmid)  # the owner tag is on (written with the first config write)
    if plan.reboot:
        progress("rebooting to apply the changes")
        client.run_task("POST", f"{base}/status/reboot", task_timeout=task_timeout)
    if plan.start:
        progress("starting")
        client.run_task("POST", f"{base}/status/start", task_timeout=task_timeout)


def _failed(message: str):
    from tasks.runtime.errors import ExternalError

    return ExternalError(message)
