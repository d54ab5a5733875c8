"""The host inventory (spec): `inventory/hosts.yaml` merged with L2's VM inventory.

`hosts.yaml` declares SSH defaults, hosts, groups and vars; `.work/inventory/vms.json` (written by
`inv l2.apply`: a list of {name, node, vmid, ips, tags, groups?}) adds the VMs. A VM joins the
groups its `groups` entry names, and every declared group one of its tags names. An absent
vms.json means no VMs. The merged inventory is what every SSH task and Ansible use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.adapters.ssh import SshSettings, SshTarget
    from tasks.runtime.project import Project
    from tasks.runtime.run import Run

CONNECTION_FIELDS = ("user", "port", "key_file", "jump")


@dataclass
class HostSpec:
    name: str
    address: str
    source: str  # the file that declared it
    fields: dict[str, Any] = field(default_factory=dict)  # user/port/key_file/jump set on the host
    vars: dict[str, Any] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # direct memberships, declaration order


@dataclass
class GroupSpec:
    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    ssh: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class Inventory:
    path: Path
    ssh: dict[str, Any]
    vars: dict[str, Any]
    hosts: dict[str, HostSpec]
    groups: dict[str, GroupSpec]

    # --- membership -----------------------------------------------------------------------

    def members(self, group: str, _seen: tuple[str, ...] = ()) -> list[str]:
        """Every host in `group`, children included, in declaration order."""
        if group in _seen:
            chain = " -> ".join((*_seen, group))
            raise ConfigError(f"{self.path}: groups include each other in a loop: {chain}")
        spec = self.groups[group]
        found = list(spec.hosts)
        for child in spec.children:
            found += [h for h in self.members(child, (*_seen, group)) if h not in found]
        return found

    def select(self, pattern: str, limit: str | None = None) -> list[HostSpec]:
        """Hosts matched by `pattern` (group, host, `all`, comma-separated), narrowed by `limit`."""
        chosen = self._resolve(pattern, "hosts")
        if limit:
            narrowed = set(self._resolve(limit, "--limit"))
            chosen = [h for h in chosen if h in narrowed]
        return [self.hosts[h] for h in chosen]

    def _resolve(self, pattern: str, what: str) -> list[str]:
        names: list[str] = []
        for token in [t.strip() for t in pattern.split(",") if t.strip()]:
            if token == "all":
                found = list(self.hosts)
            elif token in self.groups:
                found = self.members(token)
            elif token in self.hosts:
                found = [token]
            else:
                groups = ", ".join(sorted(self.groups)) or "none"
                raise ConfigError(
                    f"{what} {token!r}: no such group or host in {self.path.name} or the VM "
                    f"inventory; groups: {groups}",
                    hint="`inv l3.hosts` lists every host and group",
                )
            names += [n for n in found if n not in names]
        if not names:
            raise ConfigError(
                f"{what} {pattern!r} matches no host yet (an empty group: L2's VMs join their "
                "groups once they exist)",
                hint="`inv l2.apply` makes the VMs (`inv l2.plan` shows them); `inv l3.hosts` "
                "lists every host and group",
            )
        return names

    def group_chain(self, host: HostSpec) -> list[str]:
        """The groups a host is in (directly or through a parent), nearest first."""
        chain = list(host.groups)
        for name in self.groups:
            if name not in chain and host.name in self.members(name):
                chain.append(name)
        return chain

    def host_vars(self, host: HostSpec) -> dict[str, Any]:
        """Variables as Ansible merges them: all < groups (farthest first) < the host."""
        merged = dict(self.vars)
        for group in reversed(self.group_chain(host)):
            merged.update(self.groups[group].vars)
        merged.update(host.vars)
        return merged

    # --- connection -----------------------------------------------------------------------

    def connection(self, host: HostSpec) -> dict[str, Any]:
        """user/port/key_file/jump for a host: host > its groups (nearest first) > ssh defaults."""
        resolved: dict[str, Any] = {"port": 22}
        resolved.update({k: v for k, v in self.ssh.items() if k in CONNECTION_FIELDS})
        for group in reversed(self.group_chain(host)):
            resolved.update(self.groups[group].ssh)
        resolved.update(host.fields)
        return resolved

    def target(self, host: HostSpec, _seen: tuple[str, ...] = ()) -> SshTarget:
        from tasks.adapters.ssh import SshTarget

        conn = self.connection(host)
        jump = None
        # A default jump host (ssh.jump) does not apply to the jump host itself.
        if conn.get("jump") and conn["jump"] != host.name:
            name = conn["jump"]
            if name in _seen:
                raise ConfigError(f"{self.path}: jump host loop at {host.name} -> {name}")
            if name not in self.hosts:
                raise ConfigError(
                    f"{self.path}: host {host.name}: jump host {name!r} is not in the inventory"
                )
            jump = self.target(self.hosts[name], (*_seen, host.name))
        key = conn.get("key_file")
        return SshTarget(
            host.name,
            host.address,
            int(conn["port"]),
            conn.get("user"),
            str(Path(key).expanduser()) if key else None,
            jump,
        )

    def settings(self, project: Project, run: Run | None = None) -> SshSettings:
        """Host-key checking and timeouts; SSH_HOST_KEY_CHECKING / SSH_CONNECT_TIMEOUT override."""
        from tasks.adapters.ssh import CHECKING_MODES, SshSettings

        checking = str(self.ssh.get("host_key_checking", "strict")).strip().lower()
        if checking not in CHECKING_MODES:
            raise ConfigError(
                f"{self.path}: ssh.host_key_checking {checking!r}: expected strict or accept-new"
            )
        try:
            timeout = float(self.ssh.get("connect_timeout", 10))
        except (TypeError, ValueError):
            raise ConfigError(f"{self.path}: ssh.connect_timeout: expected seconds") from None
        if run is not None:
            checking = run.settings.choice("SSH_HOST_KEY_CHECKING", checking)
            timeout = run.settings.seconds("SSH_CONNECT_TIMEOUT", timeout)
        return SshSettings(
            known_hosts=self.known_hosts_file(project),
            user_known_hosts=(
                Path("~/.ssh/known_hosts").expanduser()
                if self.ssh.get("use_user_known_hosts", True)
                else None
            ),
            host_key_checking=checking,
            connect_timeout=timeout,
        )

    def known_hosts_file(self, project: Project) -> Path:
        path = Path(self.ssh.get("known_hosts", "ssh/known_hosts")).expanduser()
        return path if path.is_absolute() else project.inventory / path


def load_vms(path: Path) -> list[dict[str, Any]]:
    """L2's VM inventory; an absent file is no VMs, a malformed one is an error naming it."""
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path}: not readable JSON: {exc}", hint="re-run `inv l2.apply`"
        ) from None
    entries = data.get("vms") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a list of VMs")
    for index, vm in enumerate(entries):
        if not isinstance(vm, dict) or not isinstance(vm.get("name"), str):
            raise ConfigError(f"{path}: entry {index}: expected an object with a 'name'")
        if not isinstance(vm.get("ips", []), list):
            raise ConfigError(f"{path}: entry {index} ({vm['name']}): 'ips' must be a list")
    return entries


def _first_address(ips: list[Any]) -> str | None:
    for ip in ips:
        text = str(ip).split("/", 1)[0].strip()
        if text and not text.startswith(("127.", "fe80:", "::1")):
            return text
    return None


def load_inventory(project: Project) -> Inventory:
    """Parse and validate `inventory/hosts.yaml`, then merge `.work/inventory/vms.json`."""
    from tasks.runtime.config import load_yaml_file

    path = project.inventory / "hosts.yaml"
    schema_path = project.inventory / "hosts.schema.json"
    schema = json.loads(schema_path.read_text()) if schema_path.exists() else None
    if not path.exists():
        raw: dict[str, Any] = {}
    else:
        raw = load_yaml_file(path, schema, what="host inventory") or {}
    inv = Inventory(
        path=path,
        ssh=dict(raw.get("ssh") or {}),
        vars=dict(raw.get("vars") or {}),
        hosts={},
        groups={},
    )
    for name, spec in (raw.get("hosts") or {}).items():
        inv.hosts[name] = HostSpec(
            name,
            str(spec["address"]),
            project.rel(path),
            {k: spec[k] for k in CONNECTION_FIELDS if k in spec},
            dict(spec.get("vars") or {}),
        )
    for name, spec in (raw.get("groups") or {}).items():
        inv.groups[name] = GroupSpec(
            name,
            list(spec.get("hosts") or []),
            list(spec.get("children") or []),
            dict(spec.get("ssh") or {}),
            dict(spec.get("vars") or {}),
        )

    vms_path = project.work / "inventory" / "vms.json"
    for vm in load_vms(vms_path):
        address = _first_address(vm.get("ips") or [])
        host = inv.hosts.get(vm["name"])
        vm_vars = {
            "proxmox_node": vm.get("node"),
            "proxmox_vmid": vm.get("vmid"),
            "proxmox_tags": list(vm.get("tags") or []),
        }
        if host is None:
            if address is None:
                continue  # no address yet (still booting): nothing to reach
            host = inv.hosts[vm["name"]] = HostSpec(vm["name"], address, project.rel(vms_path))
        host.vars = {**vm_vars, **host.vars}
        wanted = list(vm.get("groups") or []) + [t for t in vm.get("tags") or [] if t in inv.groups]
        for group in wanted:
            spec = inv.groups.setdefault(group, GroupSpec(group))
            if vm["name"] not in spec.hosts:
                spec.hosts.append(vm["name"])

    for group in inv.groups.values():
        for name in group.hosts:
            if name not in inv.hosts:
                raise ConfigError(
                    f"{path}: group {group.name} lists host {name!r}, which is neither in hosts: "
                    f"nor in the VM inventory ({project.rel(vms_path)})",
                    hint="declare the host under hosts:, or run `inv l2.apply` to create the VM",
                )
            host = inv.hosts[name]
            if group.name not in host.groups:
                host.groups.append(group.name)
        for child in group.children:
            if child not in inv.groups:
                raise ConfigError(f"{path}: group {group.name}: unknown child group {child!r}")
    for name in inv.groups:
        inv.members(name)  # loop check
    for host in inv.hosts.values():
        inv.target(host)  # jump hosts exist
    return inv
