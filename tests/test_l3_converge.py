"""L3/L4 convergence with real ansible-playbook against real sshd hosts, and rolling reboots."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_inv
from sshd import lab_fixture, table_rows

from tasks.rehearsal.ssh_standins import SshLab


@pytest.fixture
def lab() -> Iterator[SshLab]:
    yield from lab_fixture()


def test_check_then_converge_then_nothing_changes(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    sysctl = lab.state / "web1/etc/sysctl.d/90-homelab.conf"
    dropin = lab.state / "web2/etc/ssh/sshd_config.d/90-homelab-hardening.conf"

    check = run_inv(sample_repo, "l3.converge", "lab", "--check")
    assert check.returncode == 0, check
    assert "would change" in check.stdout and not sysctl.exists()
    assert "--- before" in check.stdout  # diff mode

    first = run_inv(sample_repo, "l3.converge", "lab")
    assert first.returncode == 0, first
    rows = table_rows(first.stdout, lab)
    assert all(r[1] == "ok" and int(r[3]) > 0 for r in rows.values()), first.stdout
    assert "net.ipv4.ip_forward = 1" in sysctl.read_text()
    assert "PasswordAuthentication no" in dropin.read_text()
    rendered = sample_repo / ".work/inventory/hosts.yml"
    assert "ansible_host" in rendered.read_text()
    assert "StrictHostKeyChecking=yes" in (sample_repo / ".work/inventory/ansible.cfg").read_text()

    second = run_inv(sample_repo, "l3.converge", "lab")
    assert second.returncode == 0, second
    assert all(r[3] == "0" for r in table_rows(second.stdout, lab).values()), second.stdout
    assert "every host already as wanted" in second.stdout


def test_tags_and_limit_narrow_the_run(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    result = run_inv(sample_repo, "l3.converge", "lab", "--tags", "ssh", "--limit", "web1")
    assert result.returncode == 0, str(result)
    assert set(table_rows(result.stdout, lab)) == {"web1"}
    assert (lab.state / "web1/etc/ssh/sshd_config.d/90-homelab-hardening.conf").exists()
    assert not (lab.state / "web1/etc/sysctl.d/90-homelab.conf").exists()


def test_host_down_is_reported_and_the_others_converge(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    lab.hosts["db1"].stop()
    result = run_inv(sample_repo, "l3.converge", "all", "--wait", "1", "--tags", "sysctl")
    assert result.returncode == 4, str(result)
    rows = table_rows(result.stdout, lab)
    assert rows["db1"][1] == "unreachable"
    assert rows["web1"][1] == rows["web2"][1] == "ok"
    assert (lab.state / "web2/etc/sysctl.d/90-homelab.conf").exists()
    assert "1 of 3 host(s) did not converge: db1 (unreachable)" in result.stderr


def test_failing_task_on_one_host(sample_repo: Path, lab: SshLab) -> None:
    import yaml

    lab.write_inventory(sample_repo)
    path = sample_repo / "inventory/hosts.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["hosts"]["web2"]["vars"]["l3_packages"] = ["no-such-package-here"]
    path.write_text(yaml.safe_dump(doc))
    result = run_inv(sample_repo, "l3.converge", "all", "--tags", "packages")
    assert result.returncode == 4, str(result)
    rows = table_rows(result.stdout, lab)
    assert rows["web2"][1] == "failed" and rows["web1"][1] == "ok" and rows["db1"][1] == "ok"


def test_l4_converges_one_app_by_tag(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    result = run_inv(sample_repo, "l4.converge", "lab", "--tags", "whoami")
    assert result.returncode == 0, str(result)
    compose = lab.state / "web1/apps/whoami/compose.yaml"
    assert "traefik/whoami" in compose.read_text()
    assert not (lab.state / "web1/apps/uptime-kuma").exists()
    again = run_inv(sample_repo, "l4.converge", "lab", "--tags", "whoami")
    assert "every host already as wanted" in again.stdout, again


def test_unknown_group_is_a_clear_error(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    result = run_inv(sample_repo, "l3.converge", "nope")
    assert result.returncode == 2, str(result)
    assert "no such group or host" in result.stderr and "lab" in result.stderr


def test_reboot_is_a_dry_run_unless_apply(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo, groups={"lab": {"hosts": ["web1", "web2"]}})
    dry = run_inv(sample_repo, "l3.reboot", "lab")
    assert dry.returncode == 0, dry
    assert "1. [run ] reboot web1" in dry.stdout and "2. [run ] reboot web2" in dry.stdout
    assert "add --apply" in dry.stdout
    refused = run_inv(sample_repo, "l3.reboot", "lab", "--apply")
    assert refused.returncode == 3, refused


def test_rolling_reboot_one_host_at_a_time(sample_repo: Path, lab: SshLab) -> None:
    """The hosts "reboot" by asking the test to restart their sshd: down, then back."""
    requests = lab.state / "reboot-requests"
    requests.mkdir()
    requests.chmod(0o777)
    lab.write_inventory(
        sample_repo,
        groups={"lab": {"hosts": ["web1", "web2"]}},
        reboot_command=f'touch {requests}/"$(echo $SSH_CONNECTION | cut -d" " -f3,4 | tr " " _)"',
    )
    order: list[tuple[str, float]] = []
    stop = threading.Event()

    def power_cycle() -> None:
        by_address = {f"{h.address}_{h.port}": h for h in lab.hosts.values()}
        while not stop.is_set():
            for request in list(requests.iterdir()):
                host = by_address[request.name]
                request.unlink()
                order.append((host.name, time.monotonic()))
                host.power_cut()
                time.sleep(1.5)
                host.start()
            time.sleep(0.05)

    cycler = threading.Thread(target=power_cycle)
    cycler.start()
    try:
        result = run_inv(sample_repo, "l3.reboot", "lab", "--apply", "--yes", "--timeout", "30")
    finally:
        stop.set()
        cycler.join()
    assert result.returncode == 0, str(result)
    assert [name for name, _ in order] == ["web1", "web2"]
    rows = table_rows(result.stdout, lab)
    assert rows["web1"][1] == rows["web2"][1] == "ok"
