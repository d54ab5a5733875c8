"""Actions on local files: one-key YAML edits that keep comments, order and quoting; diffs."""

from __future__ import annotations

import difflib
import io
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

    ruamel.yaml round-trip keeps comments, key order and the original quote style, so the Git
    diff is the one line that changed.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

    try:
        old_text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    try:
        doc = yaml.load(old_text)
    except YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}".replace("\n", " ")) from None
    data: Any = doc.get("data") if hasattr(doc, "get") else None
    if not hasattr(data, "get") or key not in data:
        raise ConfigError(
            f"{where}: no data.{key} in this ConfigMap", hint=f"add `{key}:` under data:"
        )
    old_value = data[key]
    if str(old_value) == value:
        return old_text, old_text, str(old_value)
    if isinstance(old_value, SingleQuotedScalarString):
        data[key] = SingleQuotedScalarString(value)
    elif isinstance(old_value, DoubleQuotedScalarString):
        data[key] = DoubleQuotedScalarString(value)
    else:
        data[key] = value
    out = io.StringIO()
    yaml.dump(doc, out)
    return old_text, out.getvalue(), None if old_value is None else str(old_value)


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
