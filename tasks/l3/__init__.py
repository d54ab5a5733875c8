"""L3: OS convergence over SSH - Ansible playbooks, ad-hoc commands and rolling reboots."""

from __future__ import annotations

from tasks.l3.converge import CONVERGE_HELP, HOSTS_HELP, group_names
from tasks.runtime.cli import task
from tasks.runtime.pipeline import LayerStage, register_stage


def _stage(sc) -> None:
    from tasks.l3.converge import converge

    run = sc.run
    converge(
        run,
        "l3",
        run.env.get("L3_GROUP") or "all",
        wait=run.settings.seconds("L3_WAIT", 120),
    )


register_stage(
    LayerStage("l3", "converge", _stage, "converge L3_GROUP (default all) with layers/l3")
)


@task(area="l3", help=CONVERGE_HELP, choices={"group": group_names})
def converge(
    run, group, tags=None, limit=None, check=False, wait=None, parallel=None, dry_run=False
):
    """Converge GROUP's OS with layers/l3 (Ansible over SSH, strict host keys)."""
    from tasks.l3.converge import converge as converge_layer
    from tasks.runtime.fanout import parse_parallel
    from tasks.runtime.settings import flag_seconds

    converge_layer(
        run,
        "l3",
        group,
        tags=tags,
        limit=limit,
        check=check,
        wait=flag_seconds("--wait", wait, run.settings.seconds("L3_WAIT", 120)),
        parallel=parse_parallel(parallel, 10),
    )


@task(
    area="l3",
    name="exec",
    help={
        "command": "the shell command to run on every host",
        "hosts": HOSTS_HELP + " (default all)",
        "limit": "narrow --hosts further",
        "parallel": "hosts at once (default 10)",
        "env": "names of resolved env variables to hand to the command (via stdin, never argv)",
        "timeout": "how long a host's command may run (default 300s; 90s, 5m...)",
        "dry_run": "print the hosts and the command; connect to nothing",
    },
)
def exec_(
    run, command, hosts="all", limit=None, parallel=None, env=None, timeout=None, dry_run=False
):
    """Run COMMAND on hosts in parallel; a per-host result table; non-zero if any failed."""
    from tasks.l3.adhoc import run_adhoc
    from tasks.runtime.fanout import parse_parallel
    from tasks.runtime.settings import flag_seconds

    run_adhoc(
        run,
        command,
        hosts,
        limit=limit,
        parallel=parse_parallel(parallel, 10),
        env_names=env,
        timeout=flag_seconds("--timeout", timeout, 300),
    )


@task(
    area="l3",
    traced=True,
    choices={"group": group_names},
    help={
        "group": HOSTS_HELP,
        "apply": "really reboot (without it: a dry run listing what would happen)",
        "dry_run": "list what would happen and change nothing, even with --apply",
        "yes": "do not ask for confirmation (needed without a terminal)",
        "limit": "narrow the group further",
        "timeout": "how long each host may take to come back (default 600s; 10m...)",
    },
)
def reboot(run, group, apply=False, dry_run=False, yes=False, limit=None, timeout=None):
    """Reboot GROUP one host at a time, waiting for each; a dry run unless --apply."""
    from tasks.l3.adhoc import rolling_reboot
    from tasks.runtime.settings import flag_seconds

    rolling_reboot(
        run,
        group,
        apply=apply,
        yes=yes,
        limit=limit,
        timeout=flag_seconds("--timeout", timeout, 600),
    )


@task(
    doppler=False,
    optional_positional=["group"],
    help={"group": HOSTS_HELP + " (default all)", "json": "print JSON"},
)
def hosts(run, group=None, json=False):
    """List the merged inventory (hosts.yaml + L2's VMs): addresses, users, groups."""
    from tasks.l3.adhoc import list_hosts

    list_hosts(run, group or "all", as_json=json)
