"""Ad-hoc work across hosts: `l3.exec`, `l3.reboot` and `l3.hosts`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError, ExternalError, HomelabError, RefusedError

if TYPE_CHECKING:
    from tasks.runtime.fanout import Outcome
    from tasks.runtime.run import Run


def outcome_table(outcomes: list[Outcome], title: str) -> None:
    from tasks.runtime.console import table

    table(
        ["HOST", "RESULT", "EXIT", "SECONDS", "DETAIL"],
        [
            [
                o.name.removeprefix("host "),
                o.status,
                "-" if o.exit_code is None else o.exit_code,
                f"{o.seconds:.2f}",
                o.detail,
            ]
            for o in outcomes
        ],
        title=title,
    )


def _secret_env(run: Run, env_names: str | None) -> dict[str, str]:
    names = [n.strip() for n in (env_names or "").split(",") if n.strip()]
    values = run.env.merged
    missing = [n for n in names if n not in values]
    if missing:
        raise ConfigError(
            f"--env: not set in the resolved env: {', '.join(missing)}",
            hint="`inv env.show` lists what is set and where",
        )
    return {n: values[n] for n in names}


def run_adhoc(
    run: Run,
    command: str,
    pattern: str,
    *,
    limit: str | None,
    parallel: int,
    env_names: str | None,
    timeout: float,
) -> None:
    """COMMAND on every host of PATTERN on the engine: a fan-out, one outcome per host."""
    from tasks.adapters.ssh import host_key_refusal, on_host, refused_hosts
    from tasks.l3.inventory import load_inventory
    from tasks.runtime.console import say
    from tasks.runtime.fanout import Outcome, check_parallel
    from tasks.runtime.secrets import MASKER, mask
    from tasks.runtime.steps import Action, Plan

    check_parallel(parallel)
    inv = load_inventory(run.project)
    hosts = inv.select(pattern, limit)
    settings = inv.settings(run.project, run)  # resolves the env: secrets become known
    env = _secret_env(run, env_names)
    if MASKER.contains_secret(command):
        raise RefusedError(
            f"refusing to put a secret on the hosts' command lines: {mask(command)}",
            hint="hand it over with --env NAME: it travels on stdin into a 0600 file",
        )
    header = [f"{len(hosts)} host(s), {parallel} at a time: {command}"]
    if env:
        header.append(f"with env from stdin: {', '.join(env)}")

    def on(host):
        target = inv.target(host)

        def action(sc) -> Outcome:
            def work(conn) -> Outcome:
                result = run.effects.ssh_run(
                    conn, host.name, command, mutates=True, env=env, timeout=timeout
                )
                ok = result.exited == 0
                lines = (result.stdout if ok else (result.stderr or result.stdout)).strip()
                return Outcome(
                    f"host {host.name}",
                    "ok" if ok else "failed",
                    detail=lines.splitlines()[-1] if lines else "",
                    value=result,
                    exit_code=result.exited,
                )

            return on_host(run.effects, target, settings, work)

        return action

    seen: list[Outcome] = []

    def report(outcomes: list[Outcome]) -> None:
        seen.extend(outcomes)
        for outcome in outcomes:
            result = outcome.value
            if result is None:
                continue
            for line in (result.stdout + result.stderr).splitlines():
                say(f"[{outcome.name.removeprefix('host ')}] {line}")
        say("")
        outcome_table(outcomes, f"exec on {pattern}: {command}")

    actions = [
        Action(f"host {h.name}", h.address, on(h), group="hosts", item=h.name) for h in hosts
    ]
    plan = Plan(
        f"l3.exec on {pattern}",
        "l3",
        actions,
        parallel=parallel,
        header=header,
        report=report,
        unit="host",
    )
    try:
        run.execute(plan)
    except HomelabError as exc:
        refused = refused_hosts(seen)
        if not refused:
            raise
        # A refused host key outranks the other hosts' failures: exit 3, whatever else failed.
        details = "\n  ".join(o.detail for o in seen if o.status == "refused")
        raise host_key_refusal(
            f"{exc.message}; host key refused for {', '.join(refused)}:\n  {details}", settings
        ) from None


def rolling_reboot(
    run: Run, pattern: str, *, apply: bool, yes: bool, limit: str | None, timeout: float
) -> None:
    from tasks.adapters.ssh import host_key_refusal
    from tasks.l3.inventory import load_inventory
    from tasks.l3.reboot import DEFAULT_REBOOT_COMMAND, reboot_one
    from tasks.runtime.console import say, table
    from tasks.runtime.steps import Action, Plan

    inv = load_inventory(run.project)
    hosts = inv.select(pattern, limit)
    commands = {
        h.name: str(inv.host_vars(h).get("reboot_command") or DEFAULT_REBOOT_COMMAND) for h in hosts
    }
    rows: list[list[object]] = []

    def reboot(host):
        def action(sc) -> None:
            settings = inv.settings(run.project, run)
            say(f"rebooting {host.name} ...")
            result = reboot_one(
                run.effects, inv.target(host), settings, commands[host.name], timeout=timeout
            )
            rows.append([host.name, result.status, f"{result.seconds:.1f}", result.detail])
            if result.status == "refused":
                raise host_key_refusal(
                    f"reboot: {result.detail}; the remaining hosts were left alone", settings
                )
            if result.status != "ok":
                raise ExternalError(
                    f"reboot: {host.name} did not come back cleanly ({result.status}: "
                    f"{result.detail}); the remaining hosts were left alone"
                )

        return action

    plan = Plan(
        f"reboot {len(hosts)} host(s) of {pattern}, one at a time",
        "l3",
        [
            Action(f"reboot {h.name}", f"{h.address}: {commands[h.name]}", reboot(h), True)
            for h in hosts
        ],
    )
    if not apply and not run.dry_run:
        for line in plan.render():
            say(line)
        say("dry run: nothing was rebooted; add --apply to reboot")
        return
    try:
        run.execute(plan, yes=yes)
    finally:
        if rows:
            say("")
            done = {r[0] for r in rows}
            rest: list[list[object]] = [
                [h.name, "not-run", "-", "stopped after a failure"]
                for h in hosts
                if h.name not in done
            ]
            table(["HOST", "RESULT", "SECONDS", "DETAIL"], rows + rest, title=f"reboot {pattern}")


def list_hosts(run: Run, pattern: str, *, as_json: bool) -> None:
    import json

    from tasks.l3.inventory import load_inventory
    from tasks.runtime.console import say, table

    inv = load_inventory(run.project)
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
