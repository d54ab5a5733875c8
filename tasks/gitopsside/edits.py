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


def set_data_value(path: Path, key: str, value: str, where: str) -> tuple[str, str, str | None]:
    """Set `data.KEY` of the ConfigMap in `path`; return (old text, new text, old value).

    ruamel.yaml (round-trip) finds the value's exact line and column; only that scalar is replaced
    in the text, in its original quote style, so comments, order, spacing and quoting elsewhere are
    byte-for-byte kept and the Git diff is one line. The result is re-parsed to prove that only
    that key changed.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        old_text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096

    def load(text: str) -> Any:
        try:
            return yaml.load(text)
        except YAMLError as exc:
            raise ConfigError(f"{where}: invalid YAML: {exc}".replace("\n", " ")) from None

    doc = load(old_text)
    data: Any = doc.get("data") if hasattr(doc, "get") else None
    if not hasattr(data, "get") or key not in data:
        raise ConfigError(
            f"{where}: no data.{key} in this ConfigMap", hint=f"add `{key}:` under data:"
        )
    old_value = data[key]
    if str(old_value) == value:
        return old_text, old_text, str(old_value)
    line_no, col = data.lc.value(key)
    lines = old_text.splitlines(keepends=True)
    line = lines[line_no]
    start = col
    quote = line[start] if line[start] in "'\"" else ""
    if quote:
        end = line.index(quote, start + 1) + 1
    else:
        rest = line[start:].rstrip("\r\n")
        hash_at = rest.find(" #")
        end = start + len((rest[:hash_at] if hash_at >= 0 else rest).rstrip())
    if not quote and (not value or value[0] in "'\"&*!|>%@`#{[" or ": " in value or " #" in value):
        quote = '"'  # a plain scalar that would not stay a plain string
    token = f"{quote}{value}{quote}"
    lines[line_no] = line[:start] + token + line[end:]
    new_text = "".join(lines)
    new_doc = load(new_text)
    expected = dict(data)
    expected[key] = value
    if {k: str(v) for k, v in (new_doc.get("data") or {}).items()} != {
        k: str(v) for k, v in expected.items()
    }:
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
