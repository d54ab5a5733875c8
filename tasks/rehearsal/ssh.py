"""Rehearsal stage for the SSH side: real sshd hosts on loopback, Ansible, the host orchestrator.

Three real OpenSSH servers stand for the sample's VMs (k3s-server-1, k3s-agent-1, k3s-agent-2 of
layers/l2/vms.hcl), as root (otherwise the SSH acts are skipped with the reason). Their inventory
is the sample's own shape: the k3s groups carry the roles, and when the proxmox stage's fakepve is
up the VMs L2 created there (`.work/inventory/vms.json`) put the hosts into those groups, so the
chain runs fakepve VMs -> these hosts -> k3s. Stand-ins only for what cannot run here: Cloudflare's
DNS API, the k3s installer download, and a k3s server's API port (ssh_standins.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from tasks.rehearsal.play import Act, Rehearsal

SERVERS = ["k3s-server-1"]
AGENTS = ["k3s-agent-1", "k3s-agent-2"]


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
        lab = SshLab([*SERVERS, *AGENTS])
        stack.callback(lab.close)
        lab.k3s_roles(SERVERS, AGENTS)
        dns = DnsApiStandin(token="rehearsal-cloudflare-token").start()
        stack.callback(dns.close)
        dns.add_zone("example.net")
        installer = K3sInstallerStandin().start()
        stack.callback(installer.close)
        # With fakepve up, group membership comes from the VMs L2 creates there.
        from_vms = bool(rehearsal.env.get("PVE_ACCESS_HOST"))
        lab.write_inventory(rehearsal.workdir, members=not from_vms)
        api = lab.apis[SERVERS[0]]
        rehearsal.stood_up += [
            f"three real OpenSSH servers standing for the VMs {', '.join([*SERVERS, *AGENTS])} ("
            + ", ".join(f"{h.address}:{h.port}" for h in lab.hosts.values())
            + "), pinned host keys"
            + ("; their k3s groups filled by L2's VMs on fakepve" if from_vms else ""),
            f"a Cloudflare DNS API stand-in ({dns.url}), a k3s installer stand-in "
            f"({installer.url}) and a stand-in for {SERVERS[0]}'s k3s API ({api.url}/ping)",
        ]
        rehearsal.env.update(
            {
                "CLOUDFLARE_API_URL": dns.url,
                "CLOUDFLARE_API_TOKEN": dns.token,
                "DDNS_IP_URL": dns.ip_url,
                "K3S_INSTALL_URL": installer.url,
                "K3S_API_WAIT": "30",
            }
        )
        yield [
            Act("list the lab's hosts and their k3s groups", ("l3.hosts",)),
            Act(
                "run a command on every host in parallel",
                ("l3.exec", "uname -sr", "--hosts", "lab"),
            ),
            Act("converge L3 in check mode", ("l3.converge", "lab", "--check")),
            Act("converge L3", ("l3.converge", "lab")),
            Act("converge L3 again: nothing changes", ("l3.converge", "lab")),
            Act("converge one L4 app by tag", ("l4.converge", "lab", "--tags", "whoami")),
            Act("plan the host orchestrator: each host's k3s plan", ("host.apply", "--dry-run")),
            Act(
                "host orchestrator: DNS record, k3s server, two agents joining, kubeconfig",
                ("host.apply",),
            ),
            Act("host orchestrator again: nothing changes", ("host.apply",)),
            Act("plan a rolling reboot (dry run)", ("l3.reboot", "lab")),
            Act(
                "host orchestrator delete: agents drained and removed, then the server, then DNS",
                ("host.delete", "--yes"),
            ),
        ]
