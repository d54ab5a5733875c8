"""L2 through the front door: `inv l2.plan/apply/destroy` on the sample declarations, fakepve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_inv
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401

from tasks.l2.actions import spec_digest
from tasks.l2.facts import CLONE_MARK, encode_sshkeys, parse_net
from tasks.l2.spec import load_specs

SAMPLE = ("k3s-server-1", "k3s-agent-1", "k3s-agent-2")
OWNER = "homelab-runner"


@pytest.fixture
def lab(sample_repo: Path, pve: PveFixture) -> tuple[Path, PveFixture]:
    pve.served.add_template(9000, "debian12-k3s")
    return sample_repo, pve


def inv(lab, *args: str, **env: str):
    repo, pve = lab
    return run_inv(repo, *args, env=pve.env(**env))


def vms(pve: PveFixture) -> dict:
    return {vm.name: vm for vm in pve.fake.vms if not vm.template}


def test_plan_apply_converge_and_second_apply_writes_nothing(lab) -> None:
    repo, pve = lab
    planned = inv(lab, "l2.plan")
    assert planned.returncode == 0, planned
    assert planned.stdout.count(" create ") == 3
    assert pve.writes() == []

    applied = inv(lab, "l2.apply")
    assert applied.returncode == 0, applied
    made = vms(pve)
    assert set(made) == set(SAMPLE)
    server = made["k3s-server-1"]
    assert server.vmid == 211 and server.status == "running"
    assert {made["k3s-agent-1"].vmid, made["k3s-agent-2"].vmid} == {210, 212}
    cfg = server.config
    assert cfg["cores"] == "2" and cfg["memory"] == "4096" and cfg["onboot"] == "1"
    assert "size=32G" in cfg["scsi0"]
    net = parse_net(cfg["net0"])
    assert (net["bridge"], net["vlan"], net["mac"]) == ("vmbr0", 20, parse_net(cfg["net0"])["mac"])
    assert cfg["ipconfig0"] == "ip=10.0.20.11/24,gw=10.0.20.1"
    assert cfg["ciuser"] == "ops"
    assert OWNER in cfg["tags"].split(";") and "k3s" in cfg["tags"]
    assert made["k3s-agent-1"].config["memory"] == "8192"

    inventory = json.loads((repo / ".work" / "inventory" / "vms.json").read_text())
    by_name = {e["name"]: e for e in inventory["vms"]}
    assert by_name["k3s-server-1"] == {
        "name": "k3s-server-1",
        "node": "pve1",
        "vmid": 211,
        "ips": ["10.0.20.11"],
        "tags": ["k3s", "server"],
        "groups": ["k3s_servers"],
    }

    before = len(pve.fake.requests)
    again = inv(lab, "l2.plan")
    assert again.returncode == 0, again
    assert again.stdout.count("  none  ") == 3
    assert "3 already as wanted" in again.stdout
    assert len(pve.fake.requests) - before == 1, "a plan must cost one list call, not one per VM"

    writes = len(pve.writes())
    second = inv(lab, "l2.apply")
    assert second.returncode == 0, second
    assert "nothing to do" in second.stdout
    assert len(pve.writes()) == writes, "a second apply must send no write"

    deep = inv(lab, "l2.plan", "--deep", "--json")
    assert {p["action"] for p in json.loads(deep.stdout)} == {"none"}


def test_update_is_shown_field_by_field_and_converges(lab) -> None:
    repo, pve = lab
    assert inv(lab, "l2.apply").returncode == 0
    hcl = repo / "layers" / "l2" / "vms.hcl"
    text = hcl.read_text().replace(
        'vm "k3s-server-1" {', 'vm "k3s-server-1" {\n  memory = 6144\n  cores = 4', 1
    )
    hcl.write_text(text.replace('size = "32G"', 'size = "40G"'))
    planned = inv(lab, "l2.plan")
    assert planned.returncode == 0, planned
    assert "k3s-server-1: memory: 4096 -> 6144" in planned.stdout
    assert "k3s-server-1: cores: 2 -> 4" in planned.stdout
    assert "k3s-server-1: scsi0 size: 32G -> 40G" in planned.stdout
    assert "k3s-server-1: power: running -> reboot to apply" in planned.stdout
    assert planned.stdout.count("  none  ") == 2
    writes = len(pve.writes())
    applied = inv(lab, "l2.apply", "--dry-run")
    assert applied.returncode == 0 and "dry run" in applied.stdout
    assert len(pve.writes()) == writes, "a dry run must send no write"
    assert inv(lab, "l2.apply").returncode == 0
    server = vms(pve)["k3s-server-1"]
    assert server.config["memory"] == "6144" and "size=40G" in server.config["scsi0"]
    assert inv(lab, "l2.plan").stdout.count("  none  ") == 3


def test_unmarked_vm_with_a_declared_name_is_an_error(lab) -> None:
    _repo, pve = lab
    pve.fake.add_vm(300, "k3s-agent-1", node="pve1", config={"cores": 1, "tags": "prod"})
    result = inv(lab, "l2.apply")
    assert result.returncode == 3, str(result)
    assert "exists without the tag 'homelab-runner'" in result.stderr
    assert "nothing was changed" in result.stderr
    assert pve.writes() == []


def test_a_detached_vm_with_the_clone_mark_is_never_adopted(lab) -> None:
    _repo, pve = lab
    config = {"cores": 16, "memory": 65536, "tags": "prod", "description": CLONE_MARK}
    pve.fake.add_vm(300, "k3s-agent-1", node="pve1", config=config)
    result = inv(lab, "l2.apply")
    assert result.returncode == 3, str(result)
    assert "exists without the tag 'homelab-runner'" in result.stderr
    assert pve.writes() == []
    vm = vms(pve)["k3s-agent-1"]
    assert (vm.config["cores"], vm.config["tags"]) in (("16", "prod"), (16, "prod"))


def test_an_interrupted_clone_is_adopted_from_the_runners_own_record(lab) -> None:
    repo, pve = lab
    # The clone is served, its first config write is not: the VM has the mark, not the tag.
    pve.fake.fail("PUT", "/nodes/pve1/qemu/211/config", 500, "connection lost", times=1)
    first = inv(lab, "l2.apply", PVE_RETRIES="1")
    assert first.returncode == 4, first
    record = json.loads((repo / ".work" / "l2" / "clones.json").read_text())
    assert [(e["vmid"], e["node"], e["name"]) for e in record["clones"]] == [
        (211, "pve1", "k3s-server-1")
    ]
    assert OWNER not in str(vms(pve)["k3s-server-1"].config.get("tags", ""))
    again = inv(lab, "l2.apply")
    assert again.returncode == 0, again
    made = vms(pve)
    assert sorted(made) == sorted(SAMPLE) and made["k3s-server-1"].vmid == 211
    assert OWNER in made["k3s-server-1"].config["tags"].split(";")
    assert json.loads((repo / ".work" / "l2" / "clones.json").read_text())["clones"] == []


def test_vmid_clash_is_an_error(lab) -> None:
    _repo, pve = lab
    pve.fake.add_vm(211, "someone-elses", node="pve1")
    result = inv(lab, "l2.plan")
    assert result.returncode == 3, str(result)
    assert "VMID 211 is taken by 'someone-elses' (not managed by the runner)" in result.stderr


def _three_vms(repo: Path, explicit: dict[str, int]) -> None:
    """vms.hcl with range VMs declared before the ones that name a VMID."""
    body = ['defaults {\n  template   = "debian12-k3s"\n  vmid_range = "210-249"\n}\n']
    for name in ("range-a", "range-b", "fixed-a", "fixed-b"):
        vmid = f"\n  vmid = {explicit[name]}" if name in explicit else ""
        body.append(f'vm "{name}" {{{vmid}\n  cores = 1\n}}\n')
    (repo / "layers" / "l2" / "vms.hcl").write_text("\n".join(body))


def test_explicit_vmids_are_reserved_before_ranges_hand_out(lab) -> None:
    repo, pve = lab
    _three_vms(repo, {"fixed-a": 210, "fixed-b": 211})
    applied = inv(lab, "l2.apply")
    assert applied.returncode == 0, applied
    made = {name: vm.vmid for name, vm in vms(pve).items()}
    assert made == {"fixed-a": 210, "fixed-b": 211, "range-a": 212, "range-b": 213}


def test_two_declarations_naming_one_vmid_are_a_config_error(lab) -> None:
    repo, pve = lab
    _three_vms(repo, {"fixed-a": 215, "fixed-b": 215})
    result = inv(lab, "l2.plan")
    assert result.returncode == 2, str(result)
    assert 'vm "fixed-b": vmid 215 is also declared by layers/l2/vms.hcl: vm "fixed-a"' in (
        result.stderr
    )
    assert pve.fake.requests == []


def test_partial_failure_reports_pve_reason_and_rerun_converges(lab) -> None:
    _repo, pve = lab
    pve.fake.fail("PUT", "/nodes/pve1/qemu/210/resize", 500, "storage 'local-lvm' is full", times=1)
    result = inv(lab, "l2.apply")
    assert result.returncode == 4, str(result)
    assert (
        "k3s-agent-1: failed: Proxmox API PUT /nodes/pve1/qemu/210/resize failed: HTTP 500 storage 'local-lvm' is full"
        in result.stdout
    )
    assert "1 of 3 VM(s) failed: k3s-agent-1" in result.stderr
    assert vms(pve)["k3s-server-1"].status == "running"
    assert vms(pve)["k3s-agent-1"].status == "stopped"
    planned = inv(lab, "l2.plan")
    assert "k3s-agent-1: scsi0 size: 8G -> 64G" in planned.stdout
    assert inv(lab, "l2.apply").returncode == 0
    assert inv(lab, "l2.plan").stdout.count("  none  ") == 3


def test_failed_task_and_locked_vm(lab) -> None:
    _repo, pve = lab
    assert inv(lab, "l2.apply").returncode == 0
    vm = vms(pve)["k3s-agent-2"]
    vm.start_error = "start failed: QEMU exited with code 1"
    vm.status = "stopped"
    pve.fake.snapshot_lock(211, "backup")
    vms(pve)["k3s-server-1"].status = "stopped"
    result = inv(lab, "l2.apply")
    assert result.returncode == 3, str(result)
    assert "k3s-server-1: VM is locked (backup)" in result.stderr
    pve.fake.unlock(211)
    result = inv(lab, "l2.apply")
    assert result.returncode == 4, str(result)
    assert "Proxmox task qmstart" in result.stdout and "QEMU exited with code 1" in result.stdout


def test_orphan_and_destroy(lab) -> None:
    repo, pve = lab
    assert inv(lab, "l2.apply").returncode == 0
    hcl = repo / "layers" / "l2" / "vms.hcl"
    text = hcl.read_text()
    hcl.write_text(text[: text.index('vm "k3s-agent-2"')])
    planned = inv(lab, "l2.plan")
    assert "k3s-agent-2   orphan" in planned.stdout
    refused = inv(lab, "l2.destroy", "--name", "k3s-agent-2")
    assert refused.returncode == 3 and "confirmation" in refused.stderr
    assert "k3s-agent-2" in vms(pve)
    pve.fake.add_vm(400, "handmade", node="pve1")
    assert inv(lab, "l2.destroy", "--name", "handmade", "--yes").returncode == 3
    assert "handmade" in vms(pve)
    dry = inv(lab, "l2.destroy", "--name", "k3s-agent-2", "--dry-run")
    assert dry.returncode == 0 and "k3s-agent-2" in vms(pve)
    gone = inv(lab, "l2.destroy", "--name", "k3s-agent-2", "--yes")
    assert gone.returncode == 0, gone
    assert "k3s-agent-2" not in vms(pve)
    inventory = json.loads((repo / ".work" / "inventory" / "vms.json").read_text())
    assert [e["name"] for e in inventory["vms"]] == ["k3s-server-1", "k3s-agent-1"]
    assert inv(lab, "l2.destroy", "--yes").returncode == 0
    assert set(vms(pve)) == {"handmade"}


def test_destroy_with_a_lost_answer_reads_the_cluster_again(lab) -> None:
    _repo, pve = lab
    pve.fake.add_vm(401, "k3s-agent-1", node="pve1", config={"tags": OWNER})
    # The DELETE is served (the VM goes), but its task's status can never be read back.
    pve.fake.fail("GET", "/status", 500, "connection lost")
    gone = inv(lab, "l2.destroy", "--name", "k3s-agent-1", "--yes", PVE_RETRIES="1")
    assert gone.returncode == 0, gone
    assert "the answer was lost; reading the cluster again shows it gone" in gone.stdout
    assert "not destroyed" not in gone.output and "k3s-agent-1" not in vms(pve)


def test_stable_manifest_is_the_template(lab) -> None:
    repo, pve = lab
    pve.served.add_template(9100, "debian12-k3s-20260101")
    manifest = repo / "layers" / "l1" / "artifacts" / "debian12-k3s" / "stable.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        json.dumps({"name": "debian12-k3s", "node": "pve1", "vmid": 9100, "storage": "local-lvm"})
    )
    planned = inv(lab, "l2.plan")
    assert "clone debian12-k3s (9100 on pve1)" in planned.stdout
    assert inv(lab, "l2.apply").returncode == 0
    assert any(p.endswith("/qemu/9100/clone") for _m, p in pve.writes())


def test_stable_manifests_follow_l1s_artifacts_setting(lab) -> None:
    repo, pve = lab
    pve.served.add_template(9101, "debian12-k3s-20260102")
    layer = repo / "layers" / "l1" / "layer.yaml"
    layer.write_text(layer.read_text().replace("artifacts: artifacts", "artifacts: built", 1))
    manifest = repo / "layers" / "l1" / "built" / "debian12-k3s" / "stable.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(
        json.dumps({"name": "debian12-k3s", "node": "pve1", "vmid": 9101, "storage": "local-lvm"})
    )
    assert "clone debian12-k3s (9101 on pve1)" in inv(lab, "l2.plan").stdout


def test_invalid_declaration_names_file_and_block(lab) -> None:
    repo, pve = lab
    hcl = repo / "layers" / "l2" / "vms.hcl"
    hcl.write_text(hcl.read_text().replace("memory = 8192", "memroy = 8192", 1))
    result = inv(lab, "l2.plan")
    assert result.returncode == 2, str(result)
    assert 'layers/l2/vms.hcl: vm "k3s-agent-1"' in result.stderr and "memroy" in result.stderr
    hcl.write_text('vm "x" {\n  cores = \n}\n')
    result = inv(lab, "l2.plan")
    assert result.returncode == 2 and "layers/l2/vms.hcl: not valid HCL" in result.stderr
    assert pve.fake.requests == []


def test_unknown_template_and_node(lab) -> None:
    repo, _pve = lab
    hcl = repo / "layers" / "l2" / "vms.hcl"
    hcl.write_text(
        hcl.read_text()
        .replace('template      = "debian12-k3s"', 'template      = "nope"')
        .replace('vm "k3s-agent-2" {', 'vm "k3s-agent-2" {\n  node = "pve7"')
    )
    result = inv(lab, "l2.plan")
    assert result.returncode == 3, str(result)
    assert "template 'nope' is neither an L1 stable manifest nor a template" in result.stderr
    assert "node 'pve7' is not in the cluster (nodes: pve1)" in result.stderr


def test_api_down_is_one_clear_error(lab) -> None:
    _repo, pve = lab
    pve.fake.fail("GET", "/cluster/resources", 503, "service unavailable")
    result = inv(lab, "l2.plan")
    assert result.returncode == 4, str(result)
    # Each retry is shown, then one error.
    assert "retry 3/3" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "error: Proxmox API GET /cluster/resources failed: HTTP 503 service unavailable"
    )
    assert "Traceback" not in result.output


def test_spec_pure_parts(sample_repo: Path) -> None:
    specs = load_specs(sample_repo / "layers" / "l2", sample_repo, "pve1")
    assert [s.name for s in specs] == list(SAMPLE)
    server = specs[0]
    assert server.vmid == 211 and server.vmid_range is None and specs[1].vmid_range == (210, 249)
    assert spec_digest(server) != spec_digest(specs[1])
    assert encode_sshkeys(("ssh-ed25519 AAAA a@b",)) == "ssh-ed25519%20AAAA%20a%40b%0A"


def test_an_lxc_template_is_never_a_clone_template() -> None:
    """Containers share the VMID space (their ids stay taken) but are never cloned into a VM."""
    from tasks.l2.facts import ClusterView

    view = ClusterView.from_resources(
        [
            {"type": "node", "node": "pve1", "status": "online"},
            {"type": "lxc", "vmid": 300, "name": "debian12-k3s", "node": "pve1", "template": 1},
            {"type": "qemu", "vmid": 9000, "name": "debian12-k3s", "node": "pve1", "template": 1},
        ]
    )
    assert [vm.vmid for vm in view.templates_named("debian12-k3s")] == [9000]
    container = view.by_vmid(300)
    assert 300 in view.used_vmids() and container is not None
    assert not container.managed("homelab-runner")
