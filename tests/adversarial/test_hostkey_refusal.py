"""A host-key refusal is one exit code everywhere: every task that opens SSH, run against a real
sshd whose key does not match the project's known_hosts (a rebuilt host, or a man in the
middle) or is not in it at all, exits 3 ("refused": the runner declining for safety, README's
exit-code table), names the host, the known_hosts file and how to fix it, prints no traceback,
records no key and changes nothing on the host.

`inv plan` keeps its own Terraform-style codes (docs/decisions.md): a refused host is an error
item there, exit 1, with the same message. `l3.exec --dry-run` connects to nothing, so it is not
here.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import base_env, copy_repo, run_inv
from sshd import fingerprint, k3s_lab

from tasks.rehearsal.ssh_standins import DnsApiStandin, K3sInstallerStandin, SshLab

HOST = "k3s-1"
TOKEN = "cf-hostkey-token-3e9a01"
REFUSED = 3

# (id, argv, extra env, expected exit code)
CASES: list[tuple[str, tuple[str, ...], dict[str, str], int]] = [
    ("l3.exec", ("l3.exec", "MARK", "--hosts", HOST), {}, REFUSED),
    ("l3.converge", ("l3.converge", HOST, "--wait", "5"), {}, REFUSED),
    ("l3.converge-check", ("l3.converge", HOST, "--check", "--wait", "5"), {}, REFUSED),
    ("l3.converge-dry", ("l3.converge", HOST, "--dry-run"), {}, REFUSED),
    ("l4.converge", ("l4.converge", HOST, "--wait", "5"), {}, REFUSED),
    ("l3.reboot", ("l3.reboot", HOST, "--apply", "--yes", "--timeout", "10"), {}, REFUSED),
    ("host.apply-ddns", ("host.apply",), {}, REFUSED),
    ("host.apply", ("host.apply",), {"FEAT_DYNAMIC_DNS": "false"}, REFUSED),
    # Needs tasks/host/group.py read_facts/preview to stop on a refusal (the report says how).
    ("host.apply-dry", ("host.apply", "--dry-run"), {"FEAT_DYNAMIC_DNS": "false"}, REFUSED),
    ("host.delete", ("host.delete", "--yes"), {"FEAT_DYNAMIC_DNS": "false"}, REFUSED),
    ("plan-l3", ("plan", "--layer", "l3"), {}, 1),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[SshLab]:
    lab = k3s_lab([HOST], [])
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def standins() -> Iterator[tuple[DnsApiStandin, K3sInstallerStandin]]:
    dns = DnsApiStandin(token=TOKEN).start()
    dns.add_zone("example.net")
    installer = K3sInstallerStandin().start()
    yield dns, installer
    dns.close()
    installer.close()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, lab: SshLab) -> Path:
    repo = copy_repo(tmp_path_factory.mktemp("hostkeys") / "repo")
    marker = lab.state / HOST / "touched"
    lab.write_inventory(repo, reboot_command=f"touch {marker}")
    return repo


def _other_key(tmp: Path) -> str:
    key = tmp / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return Path(f"{key}.pub").read_text().split()[1]


def _snapshot(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else ""
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("flavour", ["changed", "unknown"])
@pytest.mark.parametrize(
    ("argv", "extra", "expected"),
    [pytest.param(argv, extra, code, id=name) for name, argv, extra, code in CASES],
)
def test_host_key_refusal_is_one_exit_code(
    repo: Path,
    lab: SshLab,
    standins: tuple[DnsApiStandin, K3sInstallerStandin],
    tmp_path: Path,
    flavour: str,
    argv: tuple[str, ...],
    extra: dict[str, str],
    expected: int,
) -> None:
    host = lab.hosts[HOST]
    known = repo / "inventory/ssh/known_hosts"
    if flavour == "changed":
        known.write_text(
            host.known_hosts_line.replace(host.host_key_pub.split()[1], _other_key(tmp_path)) + "\n"
        )
    else:
        known.write_text("")
    before_known = known.read_bytes()
    before_host = _snapshot(lab.state / HOST)
    dns, installer = standins
    dns.requests.clear()
    marker = lab.state / HOST / "touched"
    args = [a.replace("MARK", f"touch {marker}") for a in argv]
    env = base_env(
        HOST_NAME=HOST,
        CLOUDFLARE_API_URL=dns.url,
        CLOUDFLARE_API_TOKEN=TOKEN,
        DDNS_IP_URL=dns.ip_url,
        K3S_INSTALL_URL=installer.url,
        K3S_TOKEN="k3s-hostkey-token-77c2",
        **extra,
    )
    result = run_inv(repo, *args, env=env, timeout=120)

    assert result.returncode == expected, str(result)
    assert "Traceback" not in result.output, str(result)
    text = " ".join(result.output.split())
    assert HOST in text, str(result)
    assert fingerprint(host.host_key_pub) in text, str(result)
    assert "inventory/ssh/known_hosts" in text, str(result)
    fix = "SSH_HOST_KEY_CHECKING=accept-new" if flavour == "unknown" else "remove its old line"
    assert fix in text, str(result)
    # Nothing recorded, nothing changed on the host, nothing sent to the DNS API.
    assert known.read_bytes() == before_known
    assert _snapshot(lab.state / HOST) == before_host
    assert not marker.exists()
    assert [m for m, _, _ in dns.requests if m != "GET"] == []
    assert installer.downloads == 0
