"""L0: runway - check env, credentials, the Proxmox API, nodes, storage and tools; change nothing."""

from __future__ import annotations

from tasks.runtime.cli import task
from tasks.runtime.pipeline import LayerStage, register_stage


def run_runway(run, *, serial=False, as_json=False) -> None:
    """The whole runway: gather inputs, run the probes, print, raise if a required check failed."""
    import json
    import time

    from tasks.l0.checks import (
        FAIL,
        api_probes,
        env_probes,
        run_probes,
        runway_inputs,
        tool_probes,
    )
    from tasks.runtime.console import say
    from tasks.runtime.errors import ConfigError, ExternalError

    inputs = runway_inputs(run)
    probes = env_probes(inputs) + tool_probes(run, inputs)
    client = None
    settings_error: ConfigError | None = None
    try:
        from tasks.adapters.proxmox import ProxmoxClient

        client = ProxmoxClient.from_run(run)
    except ConfigError as exc:
        settings_error = exc
    if client is not None:
        probes += api_probes(inputs, client)
    started = time.perf_counter()
    from tasks.runtime.console import status_line

    with status_line(f"runway: {len(probes)} checks, at once" + (" (serially)" if serial else "")):
        rows = run_probes(probes, serial=serial)
    wall = time.perf_counter() - started
    if settings_error is not None:
        from tasks.l0.checks import SKIP, Row

        # The env rows already name what is missing (one row per problem); a value that is there
        # but unusable (an http:// host, a CA file that does not exist) only shows up here.
        problems = getattr(settings_error, "problems", [settings_error.message])
        if problems:
            detail = "; ".join(problems)
            rows.append(Row("env: Proxmox settings", FAIL, detail, settings_error.hint or ""))
        rows.append(Row("api", SKIP, "skipped until the Proxmox settings above are complete"))
    failed = [r for r in rows if r.status == FAIL and r.required]
    if as_json:
        say(
            json.dumps(
                {
                    "ok": not failed,
                    "seconds": round(wall, 3),
                    "checks": [vars(r) | {"seconds": round(r.seconds, 3)} for r in rows],
                },
                indent=2,
            )
        )
    else:
        from tasks.runtime.console import footnoted_table

        footnoted_table(
            ["CHECK", "STATUS", "DETAIL"],
            [([r.check, r.status, r.detail], r.fix) for r in rows],
            status_column=1,
            notes_title="to fix:",
        )
    if failed:
        names = ", ".join(r.check for r in failed)
        if all(r.check.startswith(("env:", "l2:")) for r in failed):
            raise ConfigError(f"runway: {len(failed)} required check(s) failed: {names}")
        raise ExternalError(f"runway: {len(failed)} required check(s) failed: {names}")
    if not as_json:
        say(f"runway: all {len(rows)} checks passed; nothing was changed")


@task(
    help={
        "json": "print the checks as JSON",
        "serial": "run the checks one after another instead of at once (for comparison)",
        "profile": "extra env file, highest precedence",
    }
)
def runway(run, json=False, serial=False, profile=None):
    """Check env, credentials, token privileges, nodes, storage and tools; change nothing."""
    run_runway(run, serial=serial, as_json=json)


def _up_runway(sc) -> None:
    run_runway(sc.run)


register_stage(
    LayerStage(
        layer="l0",
        name="runway",
        run=_up_runway,
        summary="check env, API, token privileges, nodes, storage and tools (read-only)",
    )
)
