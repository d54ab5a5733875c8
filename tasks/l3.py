"""L3: OS convergence over SSH - Ansible playbooks, ad-hoc commands and rolling reboots."""

from __future__ import annotations

from invoke import task

from tasks.fleet.converge import CONVERGE_HELP, HOSTS_HELP
from tasks.runtime.pipeline import LayerStage, register_stage


def _stage(sc) -> None:
    from tasks.fleet.converge import converge

    converge(sc.c, "l3", sc.env.get("L3_GROUP") or "all", wait=float(sc.env.get("L3_WAIT") or 120))


register_stage(
    LayerStage("l3", "converge", _stage, "converge L3_GROUP (default all) with layers/l3")
)


@task(help=CONVERGE_HELP)
def converge(c, group, tags=None, limit=None, check=False, wait=120, parallel=10, dry_run=False):
    """Converge GROUP's OS with layers/l3 (Ansible over SSH, strict host keys)."""
    from tasks.fleet.converge import converge as run

    run(
        c,
        "l3",
        group,
        tags=tags,
        limit=limit,
        check=check,
        wait=float(wait),
        parallel=int(parallel),
        dry_run=dry_run,
    )


@task(
    name="exec",
    help={
        "command": "the shell command to run on every host",
        "hosts": HOSTS_HELP + " (default all)",
        "limit": "narrow --hosts further",
        "parallel": "hosts at once (default 10)",
        "env": "names of resolved env variables to hand to the command (via stdin, never argv)",
        "timeout": "seconds a host's command may run (default 300)",
        "dry_run": "print the hosts and the command; connect to nothing",
    },
)
def exec_(c, command, hosts="all", limit=None, parallel=10, env=None, timeout=300, dry_run=False):
    """Run COMMAND on hosts in parallel; a per-host result table; non-zero if any failed."""
    from tasks.fleet.adhoc import run_adhoc

    run_adhoc(
        c,
        command,
        hosts,
        limit=limit,
        parallel=int(parallel),
        env_names=env,
        timeout=float(timeout),
        dry_run=dry_run,
    )


@task(
    help={
        "group": HOSTS_HELP,
        "apply": "really reboot (without it: a dry run listing what would happen)",
        "yes": "do not ask for confirmation (needed without a terminal)",
        "limit": "narrow the group further",
        "timeout": "seconds each host may take to come back (default 600)",
    }
)
def reboot(c, group, apply=False, yes=False, limit=None, timeout=600):
    """Reboot GROUP one host at a time, waiting for each; a dry run unless --apply."""
    from tasks.fleet.adhoc import rolling_reboot

    rolling_reboot(c, group, apply=apply, yes=yes, limit=limit, timeout=float(timeout))


@task(help={"group": HOSTS_HELP + " (default all)", "json": "print JSON"})
def hosts(c, group="all", json=False):
    """List the merged inventory (hosts.yaml + L2's VMs): addresses, users, groups."""
    from tasks.fleet.adhoc import list_hosts

    list_hosts(c, group, as_json=json)
