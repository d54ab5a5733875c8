"""Rehearsal stage for the whole chain as one `inv up`: fakepve's VMs (L2), the sshd hosts standing
for them (L3, L4), k3s on the server and the two agents joining (the installer stand-in records
each join), the kubeconfig handed off under .work/home/, and the cluster orchestrator against the
recording kubectl/flux stand-ins; then the same `inv up` again, which changes nothing.

It needs the stages before it (proxmox, ssh) and the GitOps stage's stand-ins and remote, so it
runs after the ssh stage has removed k3s again. Its settings come in one `--profile` file, which
`inv up` keeps for every stage: the lab's host groups, an empty KUBECONFIG (so the cluster stage
takes the k3s stage's hand-off, not the GitOps stage's stand-in kubeconfig) and a cluster of its
own for the stand-ins (a fresh state file and call log). L1 is left out of the chain here: the
sample's base template needs Packer 1.7, which this machine does not have (the templates stage
shows L1).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tasks.rehearsal.play import Act, Rehearsal


@contextmanager
def stage(rehearsal: Rehearsal) -> Iterator[list[Act]]:
    from tasks.rehearsal.ssh_standins import sshd_unavailable_reason

    plan = Act("plan the whole chain, each stage's inputs", ("up", "--from", "l2", "--dry-run"))
    if not rehearsal.env.get("PVE_ACCESS_HOST") or sshd_unavailable_reason():
        yield [plan]
        return
    folder = rehearsal.scratch / "chain"
    folder.mkdir(parents=True, exist_ok=True)
    profile = folder / "chain.env"
    profile.write_text(
        "# inv up's profile in the rehearsal: one env for every stage of the chain\n"
        "L3_GROUP=lab\nL4_GROUP=lab\nL4_TAGS=whoami\n"
        "KUBECONFIG=\n"
        f"KUBE_STANDIN_STATE={folder / 'cluster-state.json'}\n"
        f"KUBE_STANDIN_LOG={folder / 'kube.log'}\n"
    )
    up = ("up", "--from", "l2", "--to", "cluster", "--profile", str(profile))
    rehearsal.stood_up.append(
        f"for the chain: a fresh stand-in cluster ({folder}), reached through the kubeconfig the k3s "
        "stage hands off"
    )
    yield [
        Act("plan the whole chain, each stage's inputs", (*up, "--dry-run")),
        Act(
            "bring it all up: VMs, hosts, k3s server and agents, kubeconfig, Flux and the stack", up
        ),
        Act("bring it up again: nothing changes", up),
    ]
