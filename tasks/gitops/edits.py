"""Actions on local files: one-key YAML edits that keep comments, order and quoting; diffs."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from tasks.runtime.config import parse_yaml
from tasks.runtime.errors import ConfigError


def unified_diff(old: str, new: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
    )


def _data(doc: Any, key: str, where: str) -> dict[str, Any]:
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict) or key not in data:
        raise ConfigError(
            f"{where}: no data.{key} in this ConfigMap", hint=f"add `{key}:` under data:"
        )
    return data


def _value_node(text: str, key: str, where: str) -> Any:
    """The scalar node of `data.KEY`, with its exact start and end in the text."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    root = yaml.compose(text, Loader=loader)  # noqa: S506 (a safe loader)
    data = next(
        (v for k, v in getattr(root, "value", []) if getattr(k, "value", None) == "data"), None
    )
    value = next(
        (v for k, v in getattr(data, "value", []) if getattr(k, "value", None) == key), None
    )
    if isinstance(value, yaml.ScalarNode) and value.start_mark.line == value.end_mark.line:
        return value
    raise ConfigError(f"{where}: data.{key} is not a one-line value; edit it by hand")


def set_data_value(path: Path, key: str, value: str, where: str) -> tuple[str, str, str | None]:
    """Set `data.KEY` of the ConfigMap in `path`; return (old text, new text, old value).

    The parser locates the value's exact start and end; only that scalar is replaced in the text,
    in its original quote style, so comments, order, spacing and quoting elsewhere are kept byte for
    byte and the Git diff is one line. The result is re-parsed to prove only that key changed.
    (A round-trip dump with ruamel.yaml kept comments but re-spaced the inline comment of the
    changed line, and its import alone cost a tenth of this task's run.)
    """
    try:
        old_text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    data = _data(parse_yaml(old_text, where), key, where)
    old_value = data[key]
    if str(old_value) == value:
        return old_text, old_text, str(old_value)
    node = _value_node(old_text, key, where)
    quote = node.style if node.style in ("'", '"') else ""
    if not quote and (not value or value[0] in "'\"&*!|>%@`#{[" or ": " in value or " #" in value):
        quote = '"'  # a plain scalar that would not stay a plain string
    start, end = node.start_mark.index, node.end_mark.index
    new_text = f"{old_text[:start]}{quote}{value}{quote}{old_text[end:]}"
    if _data(parse_yaml(new_text, where), key, where) != {**data, key: value}:
        raise ConfigError(
            f"{where}: could not change data.{key} without touching other keys; edit it by hand"
        )
    return old_text, new_text, None if old_value is None else str(old_value)


def apply_local_edit(settings, path: Path, old: str, new: str, *, what: str) -> bool:
    """Plan the edit (its diff), then write `new` through the engine: `--dry-run` stops after
    the diff. Then the next steps: mode targets edit the local tree only; Flux reads the remote,
    so nothing reconciles here."""
    from tasks.runtime.console import say
    from tasks.runtime.steps import Action, Plan

    run = settings.run
    rel = settings.rel(path)
    if old == new:
        say(f"{what}: already as wanted; {rel} unchanged")
        return False
    say(unified_diff(old, new, rel).rstrip("\n"))

    def write(sc) -> None:
        sc.effects.write_file(path, new, what=rel)

    plan = Plan(
        title=what,
        area="gitops-tree",
        actions=[Action(f"write {rel}", what, write)],
        show_plan=False,
    )
    run.execute(plan)
    if run.dry_run:
        return False
    say(f"{what}: wrote {rel}")
    say("next steps (this changed the local tree only; Flux reads the remote):")
    say(f"  git add {rel} && git commit -m '{what}' && git push")
    say("  inv flux.reconcile")
    return True
