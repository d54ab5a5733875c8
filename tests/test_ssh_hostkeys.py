"""Host keys against real sshd: unknown and changed keys are refused; accept-new records, then pins."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import base_env, run_inv
from sshd import fingerprint, lab_fixture

from tasks.rehearsal.ssh_standins import SshLab


@pytest.fixture
def lab() -> Iterator[SshLab]:
    yield from lab_fixture()


def test_unknown_host_is_refused_naming_host_and_fingerprint(
    sample_repo: Path, lab: SshLab
) -> None:
    lab.write_inventory(sample_repo, pinned=False)
    result = run_inv(sample_repo, "l3.exec", "true", "--hosts", "web1")
    assert result.returncode == 3, str(result)
    assert "unknown host key for web1" in result.output
    assert fingerprint(lab.hosts["web1"].host_key_pub) in result.output
    assert "refused" in result.stdout
    assert (sample_repo / "inventory/ssh/known_hosts").read_text() == ""


def test_changed_host_key_is_refused(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    known = sample_repo / "inventory/ssh/known_hosts"
    web1, db1 = lab.hosts["web1"], lab.hosts["db1"]
    # web1's line now carries db1's key: what a rebuilt host (or a man in the middle) looks like.
    known.write_text(
        known.read_text().replace(web1.host_key_pub.split()[1], db1.host_key_pub.split()[1])
    )
    result = run_inv(sample_repo, "l3.exec", "echo hi", "--hosts", "all")
    assert result.returncode == 3, str(result)
    assert "host key for web1" in result.output and "does not match" in result.output
    assert fingerprint(web1.host_key_pub) in result.output
    rows = {
        line.split()[0]: line.split()[1]
        for line in result.stdout.splitlines()
        if line.split() and line.split()[0] in lab.hosts
    }
    assert rows == {"web1": "refused", "web2": "ok", "db1": "ok"}


def test_accept_new_records_then_pins(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo, pinned=False)
    env = base_env(SSH_HOST_KEY_CHECKING="accept-new")
    first = run_inv(sample_repo, "l3.exec", "true", "--hosts", "all", env=env)
    assert first.returncode == 0, first
    known = (sample_repo / "inventory/ssh/known_hosts").read_text()
    for host in lab.hosts.values():
        assert host.known_hosts_line in known
    # Strict mode now trusts the recorded keys.
    assert run_inv(sample_repo, "l3.exec", "true", "--hosts", "all").returncode == 0

    # web1 comes back with a new host key: accept-new never accepts a changed key.
    web1 = lab.hosts["web1"]
    web1.stop()
    key = web1.config.parent / "ssh_host_ed25519_key"
    key.unlink()
    Path(f"{key}.pub").unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    web1.start()
    again = run_inv(sample_repo, "l3.exec", "true", "--hosts", "web1", env=env)
    assert again.returncode == 3, again
    assert "does not match" in again.output
    assert (sample_repo / "inventory/ssh/known_hosts").read_text() == known


def test_wrong_key_fails_authentication_clearly(
    sample_repo: Path, lab: SshLab, tmp_path: Path
) -> None:
    import yaml

    lab.write_inventory(sample_repo)
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    path = sample_repo / "inventory/hosts.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["hosts"]["web2"]["key_file"] = str(other)
    path.write_text(yaml.safe_dump(doc))
    result = run_inv(sample_repo, "l3.exec", "true", "--hosts", "all")
    assert result.returncode == 4, str(result)
    assert "web2: authentication as homelab-test with key" in result.output
    assert "Traceback" not in result.output


def test_jump_host_for_exec_and_ansible(sample_repo: Path, lab: SshLab) -> None:
    import yaml

    bastion = lab.add("bastion")
    lab.write_inventory(sample_repo)
    path = sample_repo / "inventory/hosts.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["hosts"]["db1"]["jump"] = "bastion"
    path.write_text(yaml.safe_dump(doc))
    result = run_inv(sample_repo, "l3.exec", 'echo "$SSH_CONNECTION"', "--hosts", "db1")
    assert result.returncode == 0, str(result)
    # The session reached db1 from the bastion's side (a forwarded connection), not directly.
    db1 = lab.hosts["db1"]
    assert f"{db1.address} {db1.port}" in result.stdout
    converge = run_inv(sample_repo, "l3.converge", "db1", "--tags", "sysctl")
    assert converge.returncode == 0, converge
    assert (lab.state / "db1/etc/sysctl.d/90-homelab.conf").exists()
    # Proof the path goes through the bastion: without it, db1 (still up) is unreachable.
    bastion.stop()
    assert db1.running
    down = run_inv(sample_repo, "l3.exec", "true", "--hosts", "db1")
    assert down.returncode == 4, down
    assert "unreachable" in down.stdout and "db1: via jump host bastion" in down.output
