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
    "check": "report what would change (Ansible check and diff mode) and stop; change nothing",
    "wait": "how long to wait for SSH and cloud-init before giving up on a host "
    "(default L3_WAIT or L4_WAIT, else 120s)",
    "parallel": "hosts worked on at once (default 10)",
    "dry_run": "read only (SSH, then Ansible's check mode) and print the plan; change nothing",
}


def group_names() -> list[str]:
    """`all` and the inventory's groups, for the error when GROUP is left out (no env needed)."""
    try:
        from tasks.l3.inventory import load_inventory
        from tasks.runtime.project import Project

        return ["all", *load_inventory(Project.current()).groups]
    except Exception:  # the names are a courtesy: the task itself reports a broken inventory
        return []


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
    """Retry unreachable hosts until `wait` seconds pass; refusals and failures are final.

    A host found ready earlier in the same run (L3 before L4 in `inv up`) is not asked again.
    """
    from tasks.adapters.ssh import run_everywhere
    from tasks.runtime.fanout import Outcome

    deadline = time.monotonic() + wait
    outcomes: dict[str, Outcome] = {
        t.name: Outcome(t.name, detail="ready earlier in this run")
        for t in targets
        if run.memo.get(("ssh-ready", t.name, t.where))
    }
    pending = [t for t in targets if t.name not in outcomes]
    said_at = -30.0
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
        now = time.monotonic()
        if now >= said_at + 30:  # a new VM takes a while: say so, then every 30 s
            from tasks.runtime.console import progress

            names = ", ".join(t.name for t in pending)
            progress(
                f"waiting for SSH and cloud-init on {names} (up to {deadline - now:.0f}s more)"
            )
            said_at = now
        time.sleep(poll)
    for target in targets:
        if outcomes[target.name].ok:
            run.memo[("ssh-ready", target.name, target.where)] = True
    for outcome in outcomes.values():
        if outcome.status == "failed" and not outcome.detail.startswith("cloud-init"):
            outcome.detail = f"cloud-init did not finish cleanly: {outcome.detail}".rstrip(": ")
    return outcomes


class HostRow:
    """One host's line of the converge table."""

    __slots__ = ("name", "status", "ok", "changed", "failed", "detail")

    def __init__(self, name: str, status: str, ok=None, changed=None, failed=None, detail=""):
        self.name = name
        self.status = status
        self.ok = ok
        self.changed = changed
        self.failed = failed
        self.detail = detail

    def cells(self) -> list[object]:
        shown = ["-" if v is None else v for v in (self.ok, self.changed, self.failed)]
        return [self.name, self.status, *shown, self.detail]


def _playbook(run: Run, argv: list[str], rendered, hosts: list[str], *, mutates: bool, what: str):
    """One ansible-playbook run, its output streamed, its PLAY RECAP read back per host."""
    from tasks.l3.ansible import parse_recap

    result = run.effects.command(
        argv,
        mutates=mutates,
        env={"ANSIBLE_CONFIG": str(rendered.config), "ANSIBLE_NOCOLOR": "1"},
        check=False,
        on_stdout=lambda line: print(line, end="", flush=True),
        on_stderr=lambda line: print(line, end="", flush=True),
        what=what,
    )
    recap = parse_recap(result.stdout)
    rows: dict[str, HostRow] = {}
    for name in hosts:
        counts = recap.get(name)
        if counts is None:
            rows[name] = HostRow(name, "failed", detail="no PLAY RECAP line (see above)")
            continue
        status = "unreachable" if counts["unreachable"] else "failed" if counts["failed"] else "ok"
        rows[name] = HostRow(name, status, counts["ok"], counts["changed"], counts["failed"])
    return result.exited, rows


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
    """Converge `group` with `layers/<layer>/site.yml`: plan from reads (wait for SSH and
    cloud-init, then `ansible-playbook --check --diff`), then run the playbook for real only on
    the hosts where the check reports changes. A converged fleet sees no mutating call at all.
    `check` (and a dry run) stop after the reads."""
    import shlex

    from tasks.adapters.ssh import host_key_refusal
    from tasks.l3.ansible import playbook_argv, render
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
    names = [h.name for h in hosts]
    say(f"{layer}: {group} ({len(hosts)} host(s): {', '.join(names)})")
    # The reads: reachable hosts, then what Ansible's check mode says would change.
    targets = [inv.target(h) for h in hosts]
    readiness = wait_ready(
        run, targets, settings, wait=0.0 if run.dry_run else wait, parallel=parallel
    )
    rows = {n: HostRow(n, o.status, detail=o.detail) for n, o in readiness.items() if not o.ok}
    ready = [n for n in names if readiness[n].ok]
    rendered = render(project, inv, settings, forks=parallel)
    rel = project.rel(playbook)
    exited = 0
    if ready:
        argv = playbook_argv(rendered, playbook, ready, tags=tags, check=True)
        exited, checked = _playbook(
            run, argv, rendered, ready, mutates=False, what=f"ansible-playbook {rel} --check"
        )
        rows.update(checked)
    pending = [n for n in ready if rows[n].status != "ok" or (rows[n].changed or 0) > 0]
    unreached = [n for n in names if n not in ready]

    def report(title_suffix: str) -> None:
        say("")
        table(
            ["HOST", "RESULT", "OK", "CHANGED", "FAILED", "DETAIL"],
            [rows[n].cells() for n in names],
            title=f"{layer} converge: {group}{title_suffix}",
        )

    def fail_for(bad: list[str], code: int) -> None:
        if bad or code:
            listed = (
                ", ".join(f"{n} ({rows[n].status})" for n in bad) or f"ansible-playbook exit {code}"
            )
            message = (
                f"{layer} converge: {len(bad)} of {len(hosts)} host(s) did not converge: {listed}"
            )
            refused = [n for n in bad if rows[n].status == "refused"]
            if refused:  # a refused host key outranks the other failures: exit 3
                details = "; ".join(rows[n].detail for n in refused)
                raise host_key_refusal(f"{message}\n  {details}", settings)
            raise ExternalError(
                message, hint="the table above and Ansible's output name the task that failed"
            )

    report(" (check)")  # what the reads found, always
    if check:
        fail_for([n for n in names if rows[n].status != "ok"], exited)
        changed = sum(rows[n].changed or 0 for n in ready)
        say(
            f"{layer}: "
            + (f"would change {changed} thing(s)" if changed else "every host already as wanted")
        )
        return

    def apply(sc) -> None:
        argv = playbook_argv(rendered, playbook, pending, tags=tags)
        code, applied = _playbook(
            run,
            argv,
            rendered,
            pending,
            mutates=True,
            what=f"ansible-playbook {rel} --limit {','.join(pending)}",
        )
        rows.update(applied)
        report("")
        fail_for([n for n in names if rows[n].status != "ok"], code)
        changed = sum(rows[n].changed or 0 for n in pending)
        say(f"{layer}: changed {changed} thing(s) across {len(pending)} host(s)")

    preview = playbook_argv(rendered, playbook, pending or names, tags=tags)
    plan = Plan(
        title=f"{layer}.converge {group}",
        area=layer,
        actions=[
            Action(
                "ansible-playbook",
                shlex.join(preview),
                apply,
                included=bool(pending),
                reason=""
                if pending
                else "the check reports nothing to change"
                if not unreached
                else f"nothing to change on the hosts reached; not checked: {', '.join(unreached)}",
                details=[
                    f"{n}: {rows[n].changed} change(s) pending" for n in pending if rows[n].changed
                ],
            )
        ],
        nothing=f"{layer}: every host already as wanted"
        if not unreached
        else f"{layer}: nothing to change on the hosts reached",
    )
    run.execute(plan)
    if unreached:  # a dry run that could not look is not "nothing to change"
        fail_for(unreached, 0)
