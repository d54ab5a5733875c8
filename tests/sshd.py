"""Real OpenSSH servers for the tests: one sshd per host on its own 127.x.y.z with its own host
key, logging in as an unprivileged user (tasks/rehearsal/ssh_standins.py starts them).

As root (CI) the user is created if missing; otherwise the tests that need sshd are skipped with
the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks.rehearsal.ssh_standins import (
    DnsApiStandin,
    K3sInstallerStandin,
    SshLab,
    sshd_unavailable_reason,
)

CF_TOKEN = "cf-test-token-7d1e4b"  # what the Cloudflare stand-in of the `dns` fixture accepts


def dns_standin() -> Iterator[DnsApiStandin]:
    """The `dns` fixture (tests/conftest.py): Cloudflare's API with the zone example.net."""
    standin = DnsApiStandin(token=CF_TOKEN).start()
    standin.add_zone("example.net")
    yield standin
    standin.close()


def installer_standin() -> Iterator[K3sInstallerStandin]:
    """The `installer` fixture (tests/conftest.py): the k3s download."""
    standin = K3sInstallerStandin().start()
    yield standin
    standin.close()


def host_settings(dns: DnsApiStandin, installer: K3sInstallerStandin) -> dict[str, str]:
    """The host chain's settings that point the orchestrator at the stand-ins."""
    return {
        "CLOUDFLARE_API_URL": dns.url,
        "CLOUDFLARE_API_TOKEN": CF_TOKEN,
        "DDNS_IP_URL": dns.ip_url,
        "K3S_INSTALL_URL": installer.url,
    }


def start_lab(names: list[str]) -> SshLab:
    reason = sshd_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return SshLab(names)


def lab_fixture(names: tuple[str, ...] = ("web1", "web2", "db1")) -> Iterator[SshLab]:
    """Body of a test module's `lab` fixture: real sshd hosts, stopped afterwards."""
    lab = start_lab(list(names))
    try:
        yield lab
    finally:
        lab.close()


def fingerprint(public_key_line: str) -> str:
    """OpenSSH's own SHA256 fingerprint of a public key line (`ssh-keygen -lf`)."""
    import subprocess

    proc = subprocess.run(
        ["ssh-keygen", "-lf", "-"],
        input=public_key_line,
        text=True,
        capture_output=True,
        check=True,
    )
    return proc.stdout.split()[1]


def only_in(lab: SshLab, name: str, command: str) -> str:
    """A shell snippet that runs `command` only on host `name` (all hosts share one machine,
    so the server address in $SSH_CONNECTION tells them apart)."""
    host = lab.hosts[name]
    return f'case "$SSH_CONNECTION" in *" {host.address} {host.port}") {command};; esac'


def table_rows(stdout: str, lab: SshLab) -> dict[str, list[str]]:
    """The rows of a per-host result table, by host name."""
    return {
        line.split()[0]: line.split()
        for line in stdout.splitlines()
        if line.split() and line.split()[0] in lab.hosts
    }


# --- k3s on the lab: the installer stand-in's record ------------------------------------------


def k3s_lab(servers: list[str], agents: list[str]) -> SshLab:
    """Real sshd hosts made a k3s cluster: roles, and an API stand-in on each server."""
    lab = start_lab([*servers, *agents])
    lab.k3s_roles(servers, agents)
    return lab


def k3s_lab_fixture(servers: list[str], agents: list[str]) -> Iterator[SshLab]:
    """Body of a test module's `lab` fixture: a k3s_lab, stopped afterwards."""
    lab = k3s_lab(servers, agents)
    try:
        yield lab
    finally:
        lab.close()


def k3s_records(lab: SshLab, name: str) -> list[dict[str, str]]:
    """The installer stand-in's record on host `name`: one dict per line (`event` is the first
    word: installed, uninstalled, kubectl; `key=value` words become keys)."""
    path = lab.state / name / "k3s" / "bin" / "k3s-standin.log"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        words = line.split()
        record = {"event": words[0], "line": line}
        if words[0] in ("installed", "uninstalled"):
            plain = [w for w in words[1:] if "=" not in w]
            record["version"], record["role"] = (
                (plain + ["", ""])[:2] if words[0] == "installed" else ("", plain[0])
            )
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if sep:
                record[key] = value
        records.append(record)
    return records


def installs(lab: SshLab, name: str) -> list[dict[str, str]]:
    return [r for r in k3s_records(lab, name) if r["event"] == "installed"]
