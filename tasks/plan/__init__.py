"""`inv plan`: is the homelab as declared, and what would `inv up` change? Read-only, every layer.

The layers' own reads (tasks/plan/readers.py) run at once through the bounded fan-out, with the
run's seam switched to a dry run first, so a mutation that reached it would be withheld and
recorded as such. Exit codes follow Terraform's `-detailed-exitcode`: 0 as declared, 2 changes
pending, 1 an error (a layer or host that could not be read is an error, never "no change").
Bad input to `inv plan` (an unknown `--layer`, a bad setting) is exit 1 too, with the message
saying it is bad input, and so is any other failure of the plan itself (Doppler, a lock): exit 2
means "changes pending" here, and cron reads every code but 0 and 2 as the plan failing.
"""

from __future__ import annotations

from tasks.runtime.cli import task

LAYER_NAMES = ("l0", "l1", "l2", "l3", "l4", "host", "gitops")


def parse_layers(raw: list[str] | None) -> list[str]:
    """`--layer l1 --layer l2` or `--layer l1,l2` (default: every layer), in layer order."""
    from tasks.runtime.errors import ConfigError

    wanted = [p.strip().lower() for value in raw or [] for p in str(value).split(",") if p.strip()]
    if raw and not wanted:  # `--layer "$L"` with L unset: never "every layer" (SSH to each host)
        raise ConfigError(
            "--layer: no layer named (an empty value)",
            hint=f"name one or more of {', '.join(LAYER_NAMES)}, or leave --layer out for all",
        )
    unknown = [w for w in wanted if w not in LAYER_NAMES]
    if unknown:
        raise ConfigError(
            f"--layer {', '.join(unknown)}: expected {', '.join(LAYER_NAMES)}",
            hint="repeat --layer or give a comma-separated list, e.g. --layer l1,l2",
        )
    return [name for name in LAYER_NAMES if not wanted or name in wanted]


def read_layers(run, layers: list[str], *, deep: bool = False):
    """Every chosen layer's reads, at once; a reader that fails is its layer's error item."""
    from tasks.plan.readers import ERROR, READERS, Item, LayerPlan, read_l2
    from tasks.runtime.fanout import fan_out

    def work(layer: str) -> LayerPlan:
        return read_l2(run, deep=deep) if layer == "l2" else READERS[layer](run)

    import time

    from tasks.runtime.trace import utc_now

    started, started_epoch = utc_now(), round(time.time(), 3)
    plans = []
    for outcome in fan_out(layers, work, parallel=len(layers) or 1):
        if outcome.ok:
            found = outcome.value
        else:
            found = LayerPlan(outcome.name, outcome.name.upper())
            found.items.append(Item(outcome.name, ERROR, f"{outcome.status}: {outcome.detail}"))
        found.seconds = outcome.seconds
        plans.append(found)
        state = "failed" if found.errors else "changes" if found.changes else "ok"
        run.record_step(
            {
                "id": f"plan {outcome.name}",
                "outcome": state,
                "started": started,
                "started_epoch": started_epoch,
                "seconds": round(outcome.seconds, 3),
                "reason": f"{found.changes} to change, {found.errors} in error",
            }
        )
    return plans


@task(
    traced=True,
    bad_input_exit=1,
    iterable=["layer"],
    help={
        "layer": "only this layer (l0, l1, l2, l3, l4, host, gitops); repeat it or give a comma list",
        "json": "print the plan as JSON",
        "quiet": "one line per drifted item, nothing when all is as declared (for cron and CI)",
        "deep": "L2: read every VM's config too (finds changes made by hand; one call per VM)",
        "profile": "extra env file, highest precedence",
        "out": "also save the plan to FILE (JSON, masked, with a digest of every fact read); "
        "`inv up --plan FILE` applies exactly it",
    },
)
def plan(run, layer=None, json=False, quiet=False, deep=False, profile=None, out=None):
    """Plan every layer read-only: what `inv up` would change (exit 0 none, 2 pending, 1 error)."""
    from tasks.runtime.errors import ConfigError, HomelabError

    reported = []  # the summary went to NOTIFY_URL: a later failure is in it
    try:
        _plan(run, layer, json, quiet, deep, out, reported)
    except HomelabError as exc:
        if not reported:
            from tasks.plan.report import notify_failure

            notify_failure(run, exc.message)
        if exc.exit_code == 1:
            raise
        # Terraform's -detailed-exitcode: cron reads 2 as "changes pending" and anything else
        # but 0 as trouble, so every failure of the plan itself is 1 (bad input, Doppler...).
        what = "bad input to plan" if isinstance(exc, ConfigError) else "plan failed"
        raise HomelabError(
            f"{what} (exit 1: plan's exit 2 means changes pending): {exc.message}",
            hint=exc.hint,
            code=1,
        ) from None


def _plan(run, layer, json, quiet, deep, out, reported: list[bool]) -> None:
    from invoke import Exit

    from tasks.plan.report import as_json, drift_lines, notify, print_tables, summary
    from tasks.runtime.console import say
    from tasks.runtime.errors import ConfigError, HomelabError

    was_dry = run.dry_run
    if json and quiet:
        raise ConfigError(
            "--json and --quiet: give one of them",
            hint="--json for the whole plan as data, --quiet for one line per drifted item",
        )
    layers = parse_layers(layer)
    _ = run.env  # resolved (and every setting checked) before the readers fan out
    notify_url = (run.env.get("NOTIFY_URL") or "").strip()
    if notify_url:
        from tasks.runtime.seam.http import check_credential_url

        check_credential_url(notify_url, "NOTIFY_URL")
    if out is not None:
        from tasks.plan.saved import check_out_path

        check_out_path(run.project, out)  # a bad --out is said before minutes of reads
    run.dry_run = run.effects.dry_run = True  # a plan is the seam's reads, every mutation withheld
    plans = read_layers(run, layers, deep=deep)
    result = summary(plans)
    run.extra["plan"] = result
    if json:
        say(as_json(plans))
    elif quiet:
        for line in drift_lines(plans):
            say(line)
    else:
        print_tables(plans)
        say("")
        say(
            f"plan: {result['changes']} change(s) pending, {result['errors']} error(s) "
            f"across {len(plans)} layer(s); nothing was changed"
        )
    if notify(run, plans, was_dry):  # before the file: a failed write leaves the report sent
        reported.append(True)
    if out is not None:
        # On stderr: stdout stays the plan (JSON with --json, drift lines with --quiet).
        from tasks.plan.saved import write_saved
        from tasks.runtime.console import progress, wrap

        saved = write_saved(run, out, plans, deep=deep, was_dry=was_dry)
        if saved is None:
            note = f"dry run: the plan was not saved to {out}"
        elif result["errors"]:
            note = (
                f"plan saved to {saved}, with {result['errors']} item(s) in error: "
                f"`inv up --plan {out}` refuses it until a plan reads every layer"
            )
        else:
            note = (
                f"plan saved to {saved}: apply it with `inv up --plan {out}` (within PLAN_MAX_AGE)"
            )
        for line in wrap(note, indent="  "):
            progress(line)
    if result["errors"]:
        raise HomelabError(
            f"plan: {result['errors']} item(s) could not be read or are broken",
            hint=(
                "the items in error say why"
                if json
                else "the lines above say why"
                if quiet
                else "the rows in error above say why"
            ),
            code=1,
        )
    if result["changes"]:
        raise Exit(code=2)
