"""The host inventory: schema errors, the merge with L2's vms.json, the rendered Ansible inventory."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from helpers import base_env, run_inv

from tasks.adapters.ssh import SshSettings
from tasks.l3.ansible import ansible_document
from tasks.l3.inventory import load_inventory
from tasks.runtime.project import Project


def test_sample_inventory_lists_out_of_the_box(sample_repo: Path) -> None:
    result = run_inv(sample_repo, "l3.hosts", "--json")
    assert result.returncode == 0, str(result)
    hosts = {h["name"]: h for h in json.loads(result.stdout)}
    assert hosts["edge1"]["groups"] == ["edge", "homelab"] and hosts["edge1"]["user"] == "ops"
    assert set(hosts) == {"edge1"}  # the k3s VMs join once L2 has made them (vms.json)

    # The sample's addresses are a LAN's; tests reach only loopback. A dry run plans with Ansible's
    # check mode, so a host nobody listens for is reported unreachable: exit 4 (a plan that could
    # not look is not "nothing to change"), and that is all.
    inventory = sample_repo / "inventory/hosts.yaml"
    text = inventory.read_text()
    assert "address: 10.0.20.5" in text
    inventory.write_text(text.replace("address: 10.0.20.5", "address: 127.0.0.1\n    port: 1"))
    dry = run_inv(sample_repo, "l3.converge", "homelab", "--dry-run", env=base_env(L3_WAIT="1"))
    assert dry.returncode == 4, dry
    assert "site.yml --limit edge1" in dry.stdout and "not checked: edge1" in dry.stdout
    assert "nothing was changed" in dry.stdout and "edge1 (unreachable)" in dry.stderr
    plan = run_inv(
        sample_repo, "l3.converge", "homelab", "--dry-run", "--check", env=base_env(L3_WAIT="1")
    )
    assert plan.returncode == 4, plan
    assert "edge1 (unreachable)" in plan.output, plan
    assert "Traceback" not in plan.output and "Traceback" not in dry.output


def test_schema_error_names_file_and_location(sample_repo: Path) -> None:
    path = sample_repo / "inventory/hosts.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["hosts"]["edge1"]["port"] = "twenty-two"
    path.write_text(yaml.safe_dump(doc))
    result = run_inv(sample_repo, "l3.hosts")
    assert result.returncode == 2, str(result)
    assert "hosts.yaml" in result.stderr and "hosts.edge1.port" in result.stderr


def test_group_naming_an_unknown_host_is_an_error(sample_repo: Path) -> None:
    path = sample_repo / "inventory/hosts.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["groups"]["edge"]["hosts"].append("ghost")
    path.write_text(yaml.safe_dump(doc))
    result = run_inv(sample_repo, "l3.hosts")
    assert result.returncode == 2, str(result)
    assert "ghost" in result.stderr and "l2.apply" in result.stderr


def test_vms_from_l2_are_merged(sample_repo: Path) -> None:
    vms = sample_repo / ".work/inventory/vms.json"
    vms.parent.mkdir(parents=True)
    vms.write_text(
        json.dumps(
            [
                {
                    "name": "k3s-2",
                    "node": "pve1",
                    "vmid": 201,
                    "ips": ["192.168.10.22/24"],
                    "tags": ["k3s", "homelab-managed"],
                },
                {
                    "name": "dev1",
                    "node": "pve1",
                    "vmid": 300,
                    "ips": ["10.0.0.9"],
                    "tags": [],
                    "groups": ["dev"],
                },
                {"name": "booting", "node": "pve1", "vmid": 301, "ips": [], "tags": ["k3s"]},
            ]
        )
    )
    inv = load_inventory(Project(sample_repo))
    assert inv.hosts["k3s-2"].address == "192.168.10.22"
    assert [h.name for h in inv.select("k3s")] == ["k3s-2"]  # joined by tag
    assert [h.name for h in inv.select("dev")] == ["dev1"]  # a group from `groups`
    assert "booting" not in inv.hosts  # no address yet
    assert "k3s-2" in [h.name for h in inv.select("homelab")]  # through the child group
    assert inv.host_vars(inv.hosts["k3s-2"])["proxmox_vmid"] == 201

    settings = SshSettings(sample_repo / "inventory/ssh/known_hosts")
    doc = ansible_document(inv, settings)
    assert doc["all"]["hosts"]["k3s-2"]["ansible_host"] == "192.168.10.22"
    assert "k3s-2" in doc["all"]["children"]["k3s"]["hosts"]
    assert doc["all"]["children"]["homelab"]["children"] == {"edge": None, "k3s": None}


def test_absent_or_broken_vm_inventory(sample_repo: Path) -> None:
    assert "k3s-2" not in load_inventory(Project(sample_repo)).hosts
    vms = sample_repo / ".work/inventory/vms.json"
    vms.parent.mkdir(parents=True)
    vms.write_text("{not json")
    result = run_inv(sample_repo, "l3.hosts")
    assert result.returncode == 2, str(result)
    assert "vms.json" in result.stderr


def test_jump_host_renders_a_checked_proxy_command(sample_repo: Path) -> None:
    path = sample_repo / "inventory/hosts.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["hosts"]["bastion"] = {"address": "198.51.100.1", "user": "jump"}
    doc["ssh"]["jump"] = "bastion"
    path.write_text(yaml.safe_dump(doc))
    inv = load_inventory(Project(sample_repo))
    assert inv.target(inv.hosts["bastion"]).jump is None  # the default does not apply to itself
    settings = SshSettings(sample_repo / "inventory/ssh/known_hosts")
    rendered = ansible_document(inv, settings)["all"]["hosts"]["edge1"]["ansible_ssh_common_args"]
    assert "ProxyCommand=" in rendered and "StrictHostKeyChecking=yes" in rendered
    assert "jump@198.51.100.1" in rendered
