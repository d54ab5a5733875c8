"""Adopting a template that already exists on Proxmox: an artifact without a build.

A homelab that already has templates starts without rebuilding them: `inv l1.adopt NAME --vmid N`
reads the VM's config from the API (it must be a template), records an artifact for it with the
fingerprint of the template's inputs today, and makes it stable. From then on `l1.list` calls the
template up to date until its inputs change, and L2 clones it like any built one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.l1.artifacts import artifact_head
from tasks.l1.facts import is_template, read_vms
from tasks.runtime.console import say
from tasks.runtime.errors import ConfigError, RefusedError

if TYPE_CHECKING:
    from tasks.l1.layer import L1Layer
    from tasks.l1.spec import TemplateSpec
    from tasks.runtime.steps import Plan


def adopt_plan(l1: L1Layer, spec: TemplateSpec, vmid: int, node: str | None) -> Plan | None:
    """The plan that records VM `vmid` as `spec`'s stable artifact (None: already as wanted)."""
    from tasks.runtime.steps import Action, Plan

    fp, _pv = l1.fingerprint(spec)
    for warning in l1.analysis(spec).warnings:
        say(f"note: {spec.name}: {warning}")
    store = l1.store(spec)
    pve = l1.pve()
    vm = read_vms(pve).get(vmid)
    if vm is None:
        raise ConfigError(
            f"no VM {vmid} on Proxmox to adopt as {spec.name}",
            hint="give the VMID of the existing template (the Proxmox UI or `qm list` shows it)",
        )
    if node and vm.node != node:
        raise ConfigError(
            f"VM {vmid} is on node {vm.node}, not {node}", hint=f"use --node {vm.node}"
        )
    config = pve.vm_config(vmid, vm.node)
    if not is_template(config):
        raise RefusedError(
            f"refusing to adopt VM {vmid} ({vm.name or 'no name'}) on {vm.node}: it is not a "
            "template, and L2 would clone a VM that may be running",
            hint=f"convert it on Proxmox first (`qm template {vmid}`), or build one: "
            f"inv l1.build {spec.name}",
        )
    _workdir, cwd, _target = l1.workdir(spec)
    data: dict[str, Any] = {
        **artifact_head(spec, vm, vmid, config, pve.storage, fp),
        "adopted": True,
        "packer_version": None,
        "builder": spec.source.type,
        "workdir": _workdir,
        "cwd": l1.project.rel(cwd),
        "config": {k: config[k] for k in sorted(config) if k in _CONFIG_KEYS},
    }
    stable = store.stable()
    if (
        stable
        and str(stable.get("vmid")) == str(vmid)
        and stable.get("node") == vm.node
        and stable.get("fingerprint") == fp.value
    ):
        say(
            f"{spec.name}: already as wanted: stable is vmid {vmid} on {vm.node} with today's "
            "inputs"
        )
        return None
    before = f"vmid {stable.get('vmid')} on {stable.get('node')}" if stable else "none"
    state: dict[str, Any] = {}

    def record(sc) -> None:
        state["artifact"] = store.write(data)
        say(
            f"{spec.name}: adopted vmid {vmid} on {vm.node}: {l1.project.rel(state['artifact'].path)}"
        )

    def promote(sc) -> None:
        store.promote(state["artifact"])
        say(f"{spec.name}: stable -> {state['artifact'].file}; was: {before}")

    return Plan(
        f"l1.adopt {spec.name}",
        "l1",
        [
            Action(
                f"record {spec.name}",
                f"an artifact for VM {vmid} ({data['name']}) on {vm.node}, storage "
                f"{data['storage']}, fingerprint of today's inputs",
                record,
            ),
            Action(f"promote {spec.name}", f"point stable.json at it (now: {before})", promote),
        ],
    )


_CONFIG_KEYS = frozenset(
    {"name", "cores", "sockets", "memory", "cpu", "ostype", "scsihw", "agent", "bios", "machine"}
)
