"""Ansible hand-off: the rendered inventory and config under `.work/inventory/`, the playbook
command line, and the PLAY RECAP read back into a per-host summary."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.adapters.ssh import SshSettings, SshTarget
    from tasks.l3.inventory import Inventory
    from tasks.runtime.project import Project

RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Rendered:
    inventory: Path
    config: Path


def _known_hosts_option(settings: SshSettings) -> str:
    files = [str(settings.known_hosts)]
    if settings.user_known_hosts:
        files.append(str(settings.user_known_hosts))
    return "UserKnownHostsFile=" + " ".join(files)


def _proxy_command(jump: SshTarget, settings: SshSettings) -> str:
    """OpenSSH's ProxyJump does not pass -o options to the jump leg: spell the leg out."""
    parts = [
        "ssh",
        "-F",
        "/dev/null",
        "-W",
        "%h:%p",
        "-p",
        str(jump.port),
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        _known_hosts_option(settings),
        "-o",
        f"ConnectTimeout={int(settings.connect_timeout)}",
    ]
    if jump.key_file:
        parts += ["-i", jump.key_file]
    parts.append(f"{jump.user}@{jump.address}" if jump.user else jump.address)
    return shlex.join(parts)


def ansible_document(inv: Inventory, settings: SshSettings) -> dict[str, Any]:
    """The merged inventory in Ansible's YAML inventory format."""
    hosts: dict[str, Any] = {}
    for host in inv.hosts.values():
        target = inv.target(host)
        entry: dict[str, Any] = {"ansible_host": target.address, "ansible_port": target.port}
        if target.user:
            entry["ansible_user"] = target.user
        if target.key_file:
            entry["ansible_ssh_private_key_file"] = target.key_file
        if target.jump:
            command = _proxy_command(target.jump, settings)
            entry["ansible_ssh_common_args"] = f"-o ProxyCommand={shlex.quote(command)}"
        entry.update(host.vars)
        hosts[host.name] = entry
    children: dict[str, Any] = {}
    for group in inv.groups.values():
        body: dict[str, Any] = {}
        if group.hosts:
            body["hosts"] = {name: None for name in group.hosts}
        if group.children:
            body["children"] = {name: None for name in group.children}
        if group.vars:
            body["vars"] = dict(group.vars)
        children[group.name] = body or None
    document: dict[str, Any] = {"all": {"hosts": hosts}}
    if inv.vars:
        document["all"]["vars"] = dict(inv.vars)
    if children:
        document["all"]["children"] = children
    return document


def ansible_config(settings: SshSettings, forks: int) -> str:
    ssh_args = [
        # The inventory is the one source of truth, as for the runner's own SSH: no ~/.ssh/config.
        "-F /dev/null",
        "-o ControlMaster=auto",
        "-o ControlPersist=10s",
        "-o StrictHostKeyChecking=yes",
        f"-o '{_known_hosts_option(settings)}'",
        f"-o ConnectTimeout={int(settings.connect_timeout)}",
        "-o BatchMode=yes",
    ]
    return "\n".join(
        [
            "# Rendered by the runner from inventory/hosts.yaml and .work/inventory/vms.json;",
            "# every run rewrites it. Host keys are checked strictly against the project's",
            "# known_hosts (accept-new records new keys before Ansible starts).",
            "[defaults]",
            "inventory = hosts.yml",
            "host_key_checking = True",
            "retry_files_enabled = False",
            "interpreter_python = auto_silent",
            f"forks = {forks}",
            "nocows = True",
            "",
            "[ssh_connection]",
            "pipelining = True",
            "ssh_args = " + " ".join(ssh_args),
            "",
        ]
    )


def render(project: Project, inv: Inventory, settings: SshSettings, forks: int = 10) -> Rendered:
    """Write `.work/inventory/hosts.yml` and `ansible.cfg`, the pair all or nothing (an interrupt
    never leaves a new inventory beside an old config)."""
    import yaml

    from tasks.runtime.files import atomic_write_all

    folder = project.work / "inventory"
    document = ansible_document(inv, settings)
    inventory_path = folder / "hosts.yml"
    config_path = folder / "ansible.cfg"
    header = "# Rendered by the runner: inventory/hosts.yaml merged with L2's vms.json.\n"
    atomic_write_all(
        {
            inventory_path: header + yaml.safe_dump(document, sort_keys=False),
            config_path: ansible_config(settings, forks),
        }
    )
    return Rendered(inventory_path, config_path)


def ansible_playbook() -> str:
    """ansible-playbook from the runner's own virtualenv first (`.venv/bin/inv` runs without
    the venv on PATH), then PATH."""
    import shutil
    import sys

    from tasks.runtime.errors import ConfigError

    beside = Path(sys.executable).with_name("ansible-playbook")
    if beside.exists():
        return str(beside)
    found = shutil.which("ansible-playbook")
    if found is None:
        raise ConfigError(
            "ansible-playbook not found", hint="run `bash setup.sh` (ansible-core is a dependency)"
        )
    return found


def playbook_argv(
    rendered: Rendered,
    playbook: Path,
    hosts: list[str],
    *,
    tags: str | None = None,
    check: bool = False,
) -> list[str]:
    argv = [
        ansible_playbook(),
        "-i",
        str(rendered.inventory),
        str(playbook),
        "--limit",
        ",".join(hosts),
    ]
    if tags:
        argv += ["--tags", tags]
    if check:
        argv += ["--check", "--diff"]
    return argv


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """`host : ok=3 changed=1 unreachable=0 failed=0 ...` lines, by host."""
    found: dict[str, dict[str, int]] = {}
    for match in RECAP.finditer(output):
        found[match.group("host")] = {
            k: int(match.group(k)) for k in ("ok", "changed", "unreachable", "failed")
        }
    return found
