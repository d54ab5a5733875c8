"""Ad-hoc work across hosts: `l3.exec`, `l3.reboot` and `l3.hosts`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError, ExternalError, RefusedError

if TYPE_CHECKING:
    from tasks.adapters.ssh import HostOutcome


def outcome_table(outcomes: list[HostOutcome], title: str) -> None:
    from tasks.runtime.console import table

    table(
        ["HOST", "RESULT", "EXIT", "SECONDS", "DETAIL"],
        [
            [o.host, o.status, "-" if o.exited is None else o.exited, f"{o.seconds:.2f}", o.detail]
            for o in outcomes
        ],
        title=title,
    )


def raise_for_failures(what: str, outcomes: list[HostOutcome]) -> None:
    bad = [o for o in outcomes if not o.ok]
    if bad:
        names = ", ".join(f"{o.host} ({o.status})" for o in bad)
        raise ExternalError(f"{what}: {len(bad)} of {len(outcomes)} host(s) failed: {names}")


def _secret_env(c, env_names: str | None) -> dict[str, str]:
    names = [n.strip() for n in (env_names or "").split(",") if n.strip()]
    missing = [n for n in names if n not in c.env]
    if missing:
        raise ConfigError(
            f"--env: not set in the resolved env: {', '.join(missing)}",
            hint="`inv env.show` lists what is set and where",
        )
    return {n: c.env[n] for n in names}


def run_adhoc(
    c,
    command: str,
    pattern: str,
    *,
    limit: str | None,
    parallel: int,
    env_names: str | None,
    timeout: float,
    dry_run: bool,
) -> None:
    from tasks.adapters.ssh import run_everywhere
    from tasks.fleet.inventory import load_inventory
    from tasks.runtime.console import say
    from tasks.runtime.secrets import MASKER, mask

    inv = load_inventory(c.project)
    hosts = inv.select(pattern, limit)
    settings = inv.settings(c.project, c.env_layers)  # resolves the env: secrets become known
    env = _secret_env(c, env_names)
    if MASKER.contains_secret(command):
        raise RefusedError(
            f"refusing to put a secret on the hosts' command lines: {mask(command)}",
            hint="hand it over with --env NAME: it travels on stdin into a 0600 file",
        )
    names = ", ".join(h.name for h in hosts)
    if dry_run:
        say(f"would run on {len(hosts)} host(s) ({names}), {parallel} at a time: {command}")
        if env:
            say(f"with env from stdin: {', '.join(env)}")
        say("dry run: nothing was executed")
        return
    outcomes = run_everywhere(
        [inv.target(h) for h in hosts],
        settings,
        command,
        env=env,
        parallel=parallel,
        timeout=timeout,
    )
    for outcome in outcomes:
        result = outcome.value
        if result is None:
            continue
        for line in (result.stdout + result.stderr).splitlines():
            say(f"[{outcome.host}] {line}")
    say("")
    outcome_table(outcomes, f"exec on {pattern}: {command}")
    raise_for_failures("exec", outcomes)


def rolling_reboot(
    c, pattern: str, *, apply: bool, yes: bool, limit: str | None, timeout: float
) -> None:
    from tasks.fleet.inventory import load_inventory
    from tasks.fleet.reboot import DEFAULT_REBOOT_COMMAND, reboot_one
    from tasks.runtime.confirm import confirm
    from tasks.runtime.console import say, table

    inv = load_inventory(c.project)
    hosts = inv.select(pattern, limit)
    commands = {
        h.name: str(inv.host_vars(h).get("reboot_command") or DEFAULT_REBOOT_COMMAND) for h in hosts
    }
    say(f"rolling reboot of {pattern}: {len(hosts)} host(s), one at a time:")
    for index, host in enumerate(hosts, 1):
        say(f"  {index}. {host.name} ({host.address}): {commands[host.name]}")
    if not apply:
        say("dry run: nothing was rebooted; add --apply to reboot")
        return
    confirm(f"reboot {len(hosts)} host(s) of {pattern}", yes=yes)
    settings = inv.settings(c.project, c.env_layers)
    rows = []
    failed = None
    for host in hosts:
        if failed is not None:
            rows.append([host.name, "not-run", "-", f"stopped after {failed} failed"])
            continue
        say(f"rebooting {host.name} ...")
        result = reboot_one(inv.target(host), settings, commands[host.name], timeout=timeout)
        rows.append([host.name, result.status, f"{result.seconds:.1f}", result.detail])
        if result.status != "ok":
            failed = host.name
    say("")
    table(["HOST", "RESULT", "SECONDS", "DETAIL"], rows, title=f"reboot {pattern}")
    if failed is not None:
        raise ExternalError(
            f"reboot: {failed} did not come back cleanly; the remaining hosts were left alone"
        )


def list_hosts(c, pattern: str, *, as_json: bool) -> None:
    import json

    from tasks.fleet.inventory import load_inventory
    from tasks.runtime.console import say, table

    inv = load_inventory(c.project)
    rows: list[dict[str, Any]] = []
    for host in inv.select(pattern):
        target = inv.target(host)
        rows.append(
            {
                "name": host.name,
                "address": target.address,
                "port": target.port,
                "user": target.user,
                "jump": target.jump.name if target.jump else None,
                "groups": inv.group_chain(host),
                "source": host.source,
            }
        )
    if as_json:
        say(json.dumps(rows, indent=2))
        return
    table(
        ["HOST", "ADDRESS", "PORT", "USER", "JUMP", "GROUPS", "FROM"],
        [
            [
                r["name"],
                r["address"],
                r["port"],
                r["user"] or "-",
                r["jump"] or "-",
                ",".join(r["groups"]),
                r["source"],
            ]
            for r in rows
        ],
    )
