"""Rehearsal stage for the SSH side: real sshd hosts on loopback, Ansible, the host orchestrator.

Two real OpenSSH servers (as root; otherwise the SSH acts are skipped with the reason), a stand-in
for Cloudflare's DNS API and one for the k3s installer download (the only two things that cannot
run here), and an inventory for them written into the rehearsal's copy of the checkout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from tasks.rehearsal import Act, Rehearsal


@contextmanager
def stage(rehearsal: Rehearsal) -> Iterator[list[Act]]:
    from tasks.rehearsal.ssh_standins import (
        DnsApiStandin,
        K3sInstallerStandin,
        SshLab,
        sshd_unavailable_reason,
    )
    from tasks.runtime.console import say

    planning = [
        Act("list the sample host inventory", ("l3.hosts",)),
        Act("plan the host orchestrator", ("host.apply", "--dry-run")),
    ]
    reason = sshd_unavailable_reason()
    if reason:
        say(f"rehearsal: skipping the SSH acts: {reason}")
        yield planning
        return
    with ExitStack() as stack:
        lab = SshLab(["k3s-1", "web1"])
        stack.callback(lab.close)
        dns = DnsApiStandin(token="rehearsal-cloudflare-token").start()
        stack.callback(dns.close)
        dns.add_zone("example.net")
        installer = K3sInstallerStandin().start()
        stack.callback(installer.close)
        lab.write_inventory(rehearsal.workdir)
        rehearsal.env.update(
            {
                "HOST_NAME": "k3s-1",
                "CLOUDFLARE_API_URL": dns.url,
                "CLOUDFLARE_API_TOKEN": dns.token,
                "DDNS_IP_URL": dns.ip_url,
                "K3S_INSTALL_URL": installer.url,
                "K3S_TOKEN": "rehearsal-k3s-token",
            }
        )
        yield [
            Act("list the lab's hosts (two real sshd servers)", ("l3.hosts",)),
            Act(
                "run a command on every host in parallel",
                ("l3.exec", "uname -sr", "--hosts", "lab"),
            ),
            Act("converge L3 in check mode", ("l3.converge", "lab", "--check")),
            Act("converge L3", ("l3.converge", "lab")),
            Act("converge L3 again: nothing changes", ("l3.converge", "lab")),
            Act("converge one L4 app by tag", ("l4.converge", "lab", "--tags", "whoami")),
            Act("plan the host orchestrator", ("host.apply", "--dry-run")),
            Act("host orchestrator: DNS record and k3s", ("host.apply",)),
            Act("plan a rolling reboot (dry run)", ("l3.reboot", "lab")),
            Act("host orchestrator delete: k3s, then DNS", ("host.delete", "--yes")),
        ]
