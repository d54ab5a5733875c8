"""How `inv plan` reports: a table per layer with a total line, `--json`, `--quiet` (one line per
drifted item), and the summary sent to NOTIFY_URL when something drifted or failed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.plan.readers import CHANGE, ERROR, OK, UNCHECKED, WARN, Item, LayerPlan

if TYPE_CHECKING:
    from tasks.runtime.run import Run

WIDTH = 120  # no line of the report is longer (unless one word, a path or URL, is)


def total_line(plan: LayerPlan) -> str:
    parts = [f"{plan.changes} to change", f"{plan.errors} in error"]
    for state, label in ((WARN, "warning(s)"), (UNCHECKED, "not checked")):
        if plan.count(state):
            parts.append(f"{plan.count(state)} {label}")
    parts.append(f"{plan.count(OK)} as declared")
    return f"total {plan.layer}: " + ", ".join(parts) + f" ({plan.seconds:.1f}s)"


def print_tables(plans: list[LayerPlan]) -> None:
    from tasks.runtime.console import is_terminal, plain_table, say, table, width, wrap
    from tasks.runtime.secrets import mask

    for plan in plans:
        say("")
        rows = [[i.name, i.state, i.detail] for i in plan.items]
        if is_terminal():
            table(["ITEM", "STATE", "DETAIL"], rows, title=plan.title, status_column=1)
        else:
            say(plan.title)
            cells = [[mask(str(c)) for c in row] for row in rows]
            for line in plain_table(["ITEM", "STATE", "DETAIL"], cells, min(width(), WIDTH)):
                say(line)
        for item in plan.items:
            for extra in item.lines:
                for line in wrap(f"  {item.name}: {extra}", indent="      ", limit=WIDTH):
                    say(line)
        say(total_line(plan))


def drift_lines(plans: list[LayerPlan]) -> list[str]:
    """One line per item that is not as declared (changes and errors), for --quiet and NOTIFY_URL."""
    out = []
    for plan in plans:
        for item in plan.items:
            if item.state in (CHANGE, ERROR):
                extra = f" ({'; '.join(item.lines)})" if item.lines else ""
                out.append(f"{plan.layer}: {item.name}: {item.state}: {item.detail}{extra}")
    return out


def summary(plans: list[LayerPlan]) -> dict[str, Any]:
    changes = sum(p.changes for p in plans)
    errors = sum(p.errors for p in plans)
    return {
        "changes": changes,
        "errors": errors,
        "exit_code": 1 if errors else 2 if changes else 0,
        "layers": {p.layer: {"changes": p.changes, "errors": p.errors} for p in plans},
    }


def as_json(plans: list[LayerPlan]) -> str:
    import json

    return json.dumps({**summary(plans), "plans": [p.as_dict() for p in plans]}, indent=2)


def headline(plans: list[LayerPlan]) -> str:
    s = summary(plans)
    if s["errors"]:
        return f"homelab plan: {s['errors']} error(s), {s['changes']} change(s) pending"
    if s["changes"]:
        return f"homelab plan: {s['changes']} change(s) pending"
    return "homelab plan: as declared"


def notify(run: Run, plans: list[LayerPlan], was_dry: bool) -> bool:
    """POST the summary to NOTIFY_URL (ntfy-compatible: a text body with a Title header; any
    webhook that takes a POST gets the same), only when something drifted or failed. The URL is
    checked as a credential URL (https, or http to a loopback IP); NOTIFY_TOKEN, when set, goes
    as a bearer token. A notification that cannot be sent is a warning, not the plan's outcome.
    True when there was something to report (sent, or withheld by a dry run)."""
    lines = drift_lines(plans)
    if not run.reporting_value("NOTIFY_URL") or not lines:
        return False
    shown = lines[:50] + ([f"... and {len(lines) - 50} more"] if len(lines) > 50 else [])
    _post(run, run.reporting_value("NOTIFY_URL"), headline(plans), shown, was_dry)
    return True


def notify_failure(run: Run, message: str) -> None:
    """The plan itself failed (Doppler, a bad setting, an unreadable saved-plan path): a cron'd
    drift check must hear that too, or a broken check looks like a quiet homelab."""
    import contextlib

    from tasks.runtime.errors import ConfigError
    from tasks.runtime.seam.http import check_credential_url

    url = run.reporting_value("NOTIFY_URL")
    with contextlib.suppress(ConfigError):  # a bad NOTIFY_URL is the failure said already
        if url:
            check_credential_url(url, "NOTIFY_URL")
            _post(run, url, "homelab plan: failed", [message], run.asked_dry_run)


def _post(run: Run, url: str, head: str, lines: list[str], was_dry: bool) -> None:
    from tasks.runtime.console import warn
    from tasks.runtime.errors import HomelabError
    from tasks.runtime.secrets import mask

    body = mask("\n".join([head, *lines]))
    headers = {"Title": mask(head), "Tags": "warning", "Content-Type": "text/plain; charset=utf-8"}
    token = run.reporting_value("NOTIFY_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    effects = run.effects
    restore = effects.dry_run
    effects.dry_run = was_dry  # the plan's reads were a dry run; the report is sent for real
    try:
        answer = effects.http(
            "POST",
            url,
            mutates=True,
            credential="NOTIFY_URL",
            headers=headers,
            data=body.encode(),
            timeout=(5.0, 10.0),
            what="POST NOTIFY_URL (plan summary)",
        )
    except HomelabError as exc:
        warn(f"NOTIFY_URL: the summary was not sent: {exc.message}")
        return
    finally:
        effects.dry_run = restore
    if answer is not None and not answer.ok:
        warn(f"NOTIFY_URL: the summary was not accepted: HTTP {answer.status}")


__all__ = [
    "Item",
    "LayerPlan",
    "as_json",
    "drift_lines",
    "notify",
    "notify_failure",
    "print_tables",
    "summary",
]
