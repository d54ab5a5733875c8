"""Actions on local files: one-key YAML edits that keep comments, order and quoting; diffs."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from tasks.runtime.errors import ConfigError


def unified_diff(old: str, new: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
    )


def _safe_load(text: str, where: str) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None


def _data(doc: Any, key: str, where: str) -> dict[str, Any]:
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict) or key not in data:
        raise ConfigError(
            f"{where}: no data.{key} in this ConfigMap", hint=f"add `{key}:` under data:"
        )
    return data


def set_data_value(path: Path, key: str, value: str, where: str) -> tuple[str, str, str | None]:
    """Set `data.KEY` of the ConfigMap in `path`; return (old text, new text, old value).

    ruamel.yaml (round-trip) finds the value's exact line and column; only that scalar is replaced
    in the text, in its original quote style, so comments, order, spacing and quoting elsewhere are
    byte-for-byte kept and the Git diff is one line. The result is re-parsed to prove that only
    that key changed. (PyYAML's C loader does the quick reads: "already set?" and the proof.)
    """
    try:
        old_text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    data = _data(_safe_load(old_text, where), key, where)
    old_value = data[key]
    if str(old_value) == value:
        return old_text, old_text, str(old_value)

    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    try:
        line_no, col = yaml.load(old_text)["data"].lc.value(key)
    except (YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot locate data.{key}: {exc}".replace("\n", " ")) from None
    lines = old_text.splitlines(keepends=True)
    line = lines[line_no]
    quote = line[col] if line[col] in "'\"" else ""
    if quote:
        end = line.index(quote, col + 1) + 1
    else:
        rest = line[col:].rstrip("\r\n")
        hash_at = rest.find(" #")
        end = col + len((rest[:hash_at] if hash_at >= 0 else rest).rstrip())
    if not quote and (not value or value[0] in "'\"&*!|>%@`#{[" or ": " in value or " #" in value):
        quote = '"'  # a plain scalar that would not stay a plain string
    lines[line_no] = f"{line[:col]}{quote}{value}{quote}{line[end:]}"
    new_text = "".join(lines)
    expected = {**data, key: value}
    if _data(_safe_load(new_text, where), key, where) != expected:
        raise ConfigError(
            f"{where}: could not change data.{key} without touching other keys; edit it by hand"
        )
    return old_text, new_text, None if old_value is None else str(old_value)


def apply_local_edit(settings, path: Path, old: str, new: str, *, dry_run: bool, what: str) -> bool:
    """Print the diff, write `new` atomically (unless a dry run), then the next steps.

    Mode targets edit the local tree only: Flux reads the remote, so nothing reconciles here.
    """
    from tasks.runtime.console import say
    from tasks.runtime.files import atomic_write

    rel = settings.rel(path)
    if old == new:
        say(f"{what}: already as wanted; {rel} unchanged")
        return False
    say(unified_diff(old, new, rel).rstrip("\n"))
    if dry_run:
        say(f"dry run: {rel} not written")
        return False
    atomic_write(path, new)
    say(f"{what}: wrote {rel}")
    say("next steps (this changed the local tree only; Flux reads the remote):")
    say(f"  git add {rel} && git commit -m '{what}' && git push")
    say("  inv flux.reconcile")
    return True
