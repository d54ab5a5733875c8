"""host.apply / host.delete end to end over real SSH on one host (HOST_NAME a single server);
stand-ins only for the k3s download and Cloudflare's API (tasks/rehearsal/ssh_standins.py).
Groups of servers and agents: tests/test_k3s_join.py."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import base_env, run_inv
from sshd import CF_TOKEN, host_settings, lab_fixture

from tasks.rehearsal.ssh_standins import DnsApiStandin, K3sInstallerStandin, SshLab

K3S_TOKEN = "k3s-cluster-token-5a9c21"


@pytest.fixture
def lab() -> Iterator[SshLab]:
    yield from lab_fixture(("k3s-1",))


def _env(dns: DnsApiStandin, installer: K3sInstallerStandin, **extra: str) -> dict[str, str]:
    settings = {**host_settings(dns, installer), "K3S_TOKEN": K3S_TOKEN, "HOST_NAME": "k3s-1"}
    return base_env(**{**settings, **extra})


def _mutations(dns: DnsApiStandin) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in dns.requests if m in ("POST", "PATCH", "PUT", "DELETE")]


def test_apply_is_idempotent_and_delete_reverses_in_order(
    sample_repo: Path, lab: SshLab, dns: DnsApiStandin, installer: K3sInstallerStandin
) -> None:
    lab.write_inventory(sample_repo)
    env = _env(dns, installer)
    first = run_inv(sample_repo, "host.apply", env=env)
    assert first.returncode == 0, first
    record = next(iter(dns.records.values()))
    assert (record["type"], record["name"], record["content"]) == (
        "A",
        "home.example.net",
        "203.0.113.10",
    )
    assert "k3s v1.31.4+k3s1 server (was not installed)" in first.stdout
    bin_dir = lab.state / "k3s-1/k3s/bin"
    log = (bin_dir / "k3s-standin.log").read_text()
    assert "installed v1.31.4+k3s1 server" in log  # the pinned version reached the installer
    config = (lab.state / "k3s-1/k3s/etc/config.yaml").read_text()
    assert "homelab/role=server" in config and "traefik" in config  # config from the inventory

    kubeconfig = sample_repo / ".work/home/kubeconfig"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    host = lab.hosts["k3s-1"]
    assert f"server: https://{host.address}:6443" in kubeconfig.read_text()
    assert "127.0.0.1" not in kubeconfig.read_text()
    for secret in (CF_TOKEN, K3S_TOKEN):
        assert secret not in first.output

    dns.requests.clear()
    second = run_inv(sample_repo, "host.apply", env=env)
    assert second.returncode == 0, second
    assert "already as wanted" in second.stdout and _mutations(dns) == []
    assert installer.downloads == 1
    assert log == (bin_dir / "k3s-standin.log").read_text()

    dns.public_ip = "203.0.113.77"
    third = run_inv(sample_repo, "host.apply", "--only", "10", env=env)
    assert third.returncode == 0, third
    assert (
        "updated" in third.stdout and next(iter(dns.records.values()))["content"] == "203.0.113.77"
    )

    delete = run_inv(sample_repo, "host.delete", "--yes", env=env)
    assert delete.returncode == 0, delete
    assert delete.stdout.index("20_install_k3s (delete)") < delete.stdout.index(
        "10_dynamic_dns (delete)"
    )
    assert not (bin_dir / "k3s").exists() and not kubeconfig.exists()
    assert dns.records == {}


def test_dry_run_touches_nothing(
    sample_repo: Path, lab: SshLab, dns: DnsApiStandin, installer: K3sInstallerStandin
) -> None:
    lab.write_inventory(sample_repo)
    result = run_inv(sample_repo, "host.apply", "--dry-run", env=_env(dns, installer))
    assert result.returncode == 0, str(result)
    assert "10_dynamic_dns" in result.stdout and "20_install_k3s" in result.stdout
    assert dns.requests == [] and installer.downloads == 0
    assert not (lab.state / "k3s-1/k3s").exists()


def test_delete_needs_confirmation(
    sample_repo: Path, lab: SshLab, dns: DnsApiStandin, installer: K3sInstallerStandin
) -> None:
    lab.write_inventory(sample_repo)
    result = run_inv(sample_repo, "host.delete", env=_env(dns, installer))
    assert result.returncode == 3, str(result)
    assert dns.requests == []


def test_bad_token_is_a_clear_external_error(
    sample_repo: Path, lab: SshLab, dns: DnsApiStandin, installer: K3sInstallerStandin
) -> None:
    lab.write_inventory(sample_repo)
    env = _env(dns, installer, CLOUDFLARE_API_TOKEN="wrong-token-0000")
    result = run_inv(sample_repo, "host.apply", env=env)
    assert result.returncode == 4, str(result)
    assert "Authentication error" in result.stderr and "CLOUDFLARE_API_TOKEN" in result.stderr
    assert "wrong-token-0000" not in result.output
    assert installer.downloads == 0  # the first step failed: k3s was not touched


def test_host_env_file_overrides_and_gate(
    sample_repo: Path,
    lab: SshLab,
    dns: DnsApiStandin,
    installer: K3sInstallerStandin,
    tmp_path: Path,
) -> None:
    lab.write_inventory(sample_repo)
    override = tmp_path / "host.env"
    override.write_text("FEAT_DYNAMIC_DNS=false\n")
    result = run_inv(
        sample_repo, "host.apply", "--host-env", str(override), env=_env(dns, installer)
    )
    assert result.returncode == 0, str(result)
    assert "gated off: FEAT_DYNAMIC_DNS=false" in result.stdout
    assert dns.requests == []
    assert (sample_repo / ".work/home/kubeconfig").exists()


def test_missing_settings_are_config_errors(sample_repo: Path) -> None:
    result = run_inv(
        sample_repo,
        "host.apply",
        "--only",
        "20",
        env=base_env(HOST_NAME="", K3S_VERSION="v1.31.4+k3s1"),
    )
    assert result.returncode == 2, str(result)
    assert "HOST_NAME is not set" in result.stderr
    bad = run_inv(
        sample_repo,
        "host.apply",
        "--only",
        "install_k3s",
        env=base_env(HOST_NAME="edge1", K3S_VERSION="latest"),
    )
    assert bad.returncode == 2, bad
    assert "K3S_VERSION='latest'" in bad.stderr
    # The sample's HOST_NAME=k3s: a group whose hosts are L2's VMs, none made yet.
    empty = run_inv(sample_repo, "host.apply", "--only", "20", env=base_env())
    assert empty.returncode == 2, empty
    assert "HOST_NAME='k3s': no hosts yet" in empty.stderr and "inv l2.apply" in empty.stderr
