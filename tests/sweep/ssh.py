"""Sweep cases for the SSH side: l3.*, l4.*, host.* against real sshd hosts and the stand-ins.

Secrets flow for real: the Cloudflare token is the Doppler sentinel, K3S_TOKEN the shell one,
and l3.exec hands a Doppler-provided secret to the remote command through --env.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

CASES = {
    "l3.hosts": [["l3.hosts"], ["l3.hosts", "--json"]],
    "l3.exec": [
        ["l3.exec", "id -un", "--dry-run"],
        [
            "l3.exec",
            'test -n "$SWEEP_DOPPLER_VALUE" && echo "$SWEEP_DOPPLER_VALUE"',
            "--env",
            "SWEEP_DOPPLER_VALUE,CLOUDFLARE_API_TOKEN",
        ],
        ["l3.exec", "echo sentinel-doppler-d0pp-77e2"],  # refused: a secret on the command line
    ],
    "l3.converge": [
        ["l3.converge", "all", "--dry-run"],
        ["l3.converge", "all", "--check"],
        ["l3.converge", "all", "--tags", "sysctl"],
    ],
    "l3.reboot": [["l3.reboot", "all"], ["l3.reboot", "all", "--apply"]],
    "l4.converge": [
        ["l4.converge", "all", "--dry-run"],
        ["l4.converge", "all", "--tags", "whoami"],
    ],
    "host.apply": [
        ["host.apply", "--dry-run"],
        ["host.apply"],
        ["host.apply", "--host-env", "{profile}"],
    ],
    "host.delete": [["host.delete", "--dry-run"], ["host.delete", "--yes"]],
}


@contextlib.contextmanager
def prepare(repo: Path, sentinels: dict[str, str]) -> Iterator[dict[str, str]]:
    from tasks.rehearsal.ssh_standins import (
        DnsApiStandin,
        K3sInstallerStandin,
        SshLab,
        sshd_unavailable_reason,
    )

    dns = DnsApiStandin(token=sentinels["doppler"]).start()
    dns.add_zone("example.net")
    installer = K3sInstallerStandin().start()
    env = {
        "CLOUDFLARE_API_URL": dns.url,
        "CLOUDFLARE_API_TOKEN": sentinels["doppler"],
        "DDNS_IP_URL": dns.ip_url,
        "K3S_INSTALL_URL": installer.url,
        "K3S_TOKEN": sentinels["shell"],
        "HOST_NAME": "k3s-1",
    }
    lab = None
    try:
        if sshd_unavailable_reason() is None:
            lab = SshLab(["k3s-1", "web1"])
            lab.write_inventory(repo)
        yield env
    finally:
        if lab is not None:
            lab.close()
        dns.close()
        installer.close()
