"""L3/L4 convergence: wait until the hosts accept SSH and cloud-init is done, then ansible-playbook."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tasks.runtime.errors import ConfigError, ExternalError

if TYPE_CHECKING:
    from tasks.adapters.ssh import SshSettings, SshTarget
    from tasks.l3.inventory import HostSpec
    from tasks.runtime.fanout import Outcome
    from tasks.runtime.run import Run

HOSTS_HELP = "a group or host from the inventory, `all`, or a comma-separated list"
CONVERGE_HELP = {
    "group": HOSTS_HELP,
    "tags": "only run playbook tasks with these Ansible tags (comma-separated)",
    "limit": "narrow the group further (hosts or groups, comma-separated)",
    "check": "Ansible check and diff mode: report what would change, change nothing",
    "wait": "how long to wait for SSH and cloud-init before giving up on a host (default 120s)",
    "parallel": "hosts worked on at once (default 10)",
    "dry_run": "print the hosts and the ansible-playbook command; connect to nothing",
}

# cloud-init's `status --wait` exits 0 when done and 2 when done with recoverable errors.
CLOUD_INIT_WAIT = (
    "command -v cloud-init >/dev/null 2>&1 || exit 0; "
    "cloud-init status --wait >/dev/null 2>&1; s=$?; "
    '[ "$s" -eq 0 ] || [ "$s" -eq 2 ] || { cloud-init status --long 2>&1 | tail -3; exit 1; }'
)


def wait_ready(
    run: Run,
    targets: list[SshTarget],
    settings: SshSettings,
    *,
    wait: float,
    parallel: int,
    poll: float = 2.0,
) -> dict[str, Outcome]:
    """Retry unreachable hosts until `wait` seconds pass; refusals and failures are final."""
    from tasks.adapters.ssh import run_everywhere

    deadline = time.monotonic() + wait
    pending = list(targets)
    outcomes: dict[str, Outcome] = {}
    while pending:
        for outcome in run_everywhere(
            run.effects,
            pending,
            settings,
            CLOUD_INIT_WAIT,
            mutates=False,
            parallel=parallel,
            what="wait for cloud-init",
        ):
            outcomes[outcome.name] = outcome
        pending = [t for t in pending if outcomes[t.name].status == "unreachable"]
        if not pending or time.monotonic() + poll > deadline:
            break
        time.sleep(poll)
    for outcome in outcomes.values():
        if outcome.status == "failed" and not outcome.detail.startswith("cloud-init"):
            outcome.detail = f"cloud-init did not finish cleanly: {outcome.detail}".rstrip(": ")
    return outcomes


def converge(
    run: Run,
    layer: str,
    group: str,
    *,
    tags: str | None = None,
    limit: str | None = None,
    check: bool = False,
    wait: float = 120.0,
    parallel: int = 10,
) -> None:
    """Converge `group` with `layers/<layer>/site.yml`; a per-host summary; non-zero on failures."""
    import shlex

    from tasks.l3.ansible import Rendered, parse_recap, playbook_argv, render
    from tasks.l3.inventory import load_inventory
    from tasks.runtime.console import say, table
    from tasks.runtime.fanout import check_parallel
    from tasks.runtime.steps import Action, Plan

    check_parallel(parallel)
    project = run.project
    playbook = project.layers / layer / "site.yml"
    if not playbook.exists():
        raise ConfigError(f"{project.rel(playbook)}: the {layer} playbook is missing")
    inv = load_inventory(project)
    hosts: list[HostSpec] = inv.select(group, limit)
    settings = inv.settings(project, run)
    mode = "check and diff mode" if check else "apply"
    say(f"{layer}: {group} ({len(hosts)} host(s): {', '.join(h.name for h in hosts)}), {mode}")
    folder = project.work / "inventory"
    preview = playbook_argv(
        Rendered(folder / "hosts.yml", folder / "ansible.cfg"),
        playbook,
        [h.name for h in hosts],
        tags=tags,
        check=check,
    )
    state: dict[str, object] = {}

    def ready(sc) -> None:
        targets = [inv.target(h) for h in hosts]
        state["readiness"] = wait_ready(run, targets, settings, wait=wait, parallel=parallel)

    def play(sc) -> None:
        rendered = render(project, inv, settings, forks=parallel)
        readiness: dict[str, Outcome] = state["readiness"]  # type: ignore[assignment]
        ready_hosts = [h.name for h in hosts if readiness[h.name].ok]
        rows: dict[str, list[object]] = {}
        for name, outcome in readiness.items():
            if not outcome.ok:
                rows[name] = [name, outcome.status, "-", "-", "-", outcome.detail]
        exited = 0
        if ready_hosts:
            argv = playbook_argv(rendered, playbook, ready_hosts, tags=tags, check=check)
            result = run.effects.command(
                argv,
                mutates=not check,
                env={"ANSIBLE_CONFIG": str(rendered.config), "ANSIBLE_NOCOLOR": "1"},
                check=False,
                on_stdout=lambda line: print(line, end="", flush=True),
                on_stderr=lambda line: print(line, end="", flush=True),
                what=f"ansible-playbook {project.rel(playbook)} --limit {','.join(ready_hosts)}",
            )
            exited = result.exited
            recap = parse_recap(result.stdout)
            for name in ready_hosts:
                counts = recap.get(name)
                if counts is None:
                    rows[name] = [name, "failed", "-", "-", "-", "no PLAY RECAP line (see above)"]
                    continue
                status = (
                    "unreachable"
                    if counts["unreachable"]
                    else "failed"
                    if counts["failed"]
                    else "ok"
                )
                rows[name] = [name, status, counts["ok"], counts["changed"], counts["failed"], ""]
        ordered = [rows[h.name] for h in hosts]
        say("")
        table(
            ["HOST", "RESULT", "OK", "CHANGED", "FAILED", "DETAIL"],
            ordered,
            title=f"{layer} converge: {group}{' (check)' if check else ''}",
        )
        bad = [r for r in ordered if r[1] != "ok"]
        if bad or exited:
            names = ", ".join(f"{r[0]} ({r[1]})" for r in bad) or f"ansible-playbook exit {exited}"
            raise ExternalError(
                f"{layer} converge: {len(bad)} of {len(hosts)} host(s) did not converge: {names}",
                hint="the table above and Ansible's output name the task that failed",
            )
        changed = sum(int(r[3]) for r in ordered if isinstance(r[3], int))
        if changed == 0:
            say(f"{layer}: every host already as wanted")
        else:
            verb = "would change" if check else "changed"
            say(f"{layer}: {verb} {changed} thing(s) across {len(hosts)} host(s)")

    plan = Plan(
        title=f"{layer}.converge {group}",
        area=layer,
        actions=[
            Action("wait", f"wait for SSH and cloud-init on {len(hosts)} host(s)", ready),
            Action("ansible-playbook", shlex.join(preview), play),
        ],
    )
    run.execute(plan)
