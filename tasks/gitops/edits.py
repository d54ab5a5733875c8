"""Actions on local files: one-key YAML edits that keep comments, order, quoting, line endings and
encoding; diffs; next steps runnable from any directory."""

from __future__ import annotations

import codecs
import difflib
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.gitops.settings import GitOpsSettings

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True)
class Encoding:
    """How a file is stored: its codec, byte-order mark and line ending (kept when rewritten)."""

    codec: str = "utf-8"
    bom: bytes = b""
    newline: str = "\n"

    def encode(self, text: str) -> bytes:
        return self.bom + text.encode(self.codec)

    def adapt(self, text: str) -> str:
        """`text` with this file's line endings."""
        plain = text.replace("\r\n", "\n")
        return plain.replace("\n", self.newline) if self.newline != "\n" else plain


def read_text(path: Path, where: str) -> tuple[str, Encoding]:
    """A file's text exactly as stored (no newline translation) and how it is stored."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    codec, bom = "utf-8", b""
    for mark, name in _BOMS:
        if raw.startswith(mark):
            codec, bom = name, mark
            break
    try:
        text = raw[len(bom) :].decode(codec)
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 or UTF-16 text; edit it by hand") from None
    newline = "\r\n" if "\r\n" in text else "\n"
    return text, Encoding(codec, bom, newline)


def unified_diff(old: str, new: str, name: str) -> str:
    return "".join(
        line.replace("\r", "")
        for line in difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
    )


def _loader():
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _documents(text: str, where: str) -> list[Any]:
    import yaml

    try:
        return list(yaml.load_all(text, Loader=_loader()))  # noqa: S506 (a safe loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark else where
        raise ConfigError(f"{at}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from None


def _configmap_index(docs: list[Any], name: str | None, key: str, where: str) -> int:
    """The document that is the ConfigMap `name` (by kind and name, in any position); else the
    one ConfigMap holding data.KEY."""
    configmaps = [
        i for i, d in enumerate(docs) if isinstance(d, dict) and d.get("kind") == "ConfigMap"
    ]
    named = [
        i
        for i in configmaps
        if name is not None and ((docs[i].get("metadata") or {}).get("name") == name)
    ]
    holding = [
        i for i in configmaps if isinstance(docs[i].get("data"), dict) and key in docs[i]["data"]
    ]
    for found in (named, holding):
        if len(found) == 1:
            return found[0]
        if found:
            raise ConfigError(
                f"{where}: {len(found)} ConfigMaps match (documents "
                + ", ".join(str(i + 1) for i in found)
                + "); edit it by hand"
            )
    if len(docs) == 1:
        return 0
    raise ConfigError(f"{where}: no ConfigMap {name or ''} with data.{key} in this file")


def _data(doc: Any, key: str, where: str) -> dict[str, Any]:
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict) or key not in data:
        raise ConfigError(
            f"{where}: no data.{key} in this ConfigMap", hint=f"add `{key}:` under data:"
        )
    return data


def _value_node(text: str, index: int, key: str, where: str) -> Any:
    """The scalar node of document `index`'s `data.KEY`, with its exact place in the text."""
    import yaml

    roots = list(yaml.compose_all(text, Loader=_loader()))  # noqa: S506 (a safe loader)
    root = roots[index]
    data = next(
        (v for k, v in getattr(root, "value", []) if getattr(k, "value", None) == "data"), None
    )
    value = next(
        (v for k, v in getattr(data, "value", []) if getattr(k, "value", None) == key), None
    )
    if isinstance(value, yaml.ScalarNode) and value.start_mark.line == value.end_mark.line:
        return value
    raise ConfigError(f"{where}: data.{key} is not a one-line value; edit it by hand")


def read_data_value(path: Path, key: str, where: str, *, name: str | None = None) -> str | None:
    """`data.KEY` of the ConfigMap `name` in `path`, as set_data_value finds it."""
    text, _encoding = read_text(path, where)
    docs = _documents(text, where)
    value = _data(docs[_configmap_index(docs, name, key, where)], key, where)[key]
    return None if value is None else str(value)


def set_data_value(
    path: Path, key: str, value: str, where: str, *, name: str | None = None
) -> tuple[str, str, str | None, Encoding]:
    """Set `data.KEY` of the ConfigMap `name` in `path` (any document of a multi-document file);
    return (old text, new text, old value, the file's encoding).

    The parser locates the value's exact start and end; only that scalar is replaced in the text,
    in its original quote style, so comments, order, spacing, quoting, line endings and encoding
    elsewhere are kept byte for byte and the Git diff is one line. The result is re-parsed to prove
    only that key changed. (A round-trip dump with ruamel.yaml kept comments but re-spaced the
    inline comment of the changed line, and its import alone cost a tenth of this task's run.)
    """
    old_text, encoding = read_text(path, where)
    docs = _documents(old_text, where)
    index = _configmap_index(docs, name, key, where)
    data = _data(docs[index], key, where)
    old_value = data[key]
    if str(old_value) == value:
        return old_text, old_text, str(old_value), encoding
    node = _value_node(old_text, index, key, where)
    quote = node.style if node.style in ("'", '"') else ""
    if not quote and (not value or value[0] in "'\"&*!|>%@`#{[" or ": " in value or " #" in value):
        quote = '"'  # a plain scalar that would not stay a plain string
    start, end = node.start_mark.index, node.end_mark.index
    new_text = f"{old_text[:start]}{quote}{value}{quote}{old_text[end:]}"
    new_docs = _documents(new_text, where)
    wanted = [*docs]
    wanted[index] = {**docs[index], "data": {**data, key: value}}
    if new_docs != wanted:
        raise ConfigError(
            f"{where}: could not change data.{key} without touching other keys; edit it by hand"
        )
    return old_text, new_text, None if old_value is None else str(old_value), encoding


def next_steps(settings: GitOpsSettings, path: Path, what: str) -> list[str]:
    """Commands that work from any directory: `git -C <repo> ...` with the path in that repo."""
    repo = _repository(path) or _git_toplevel(settings, path)
    if repo is None:
        return [
            f"{settings.rel(path)} is not in a Git repository: put it where Flux reads it "
            "(commit and push), then:",
            "  inv flux.reconcile",
        ]
    inside = path.resolve().relative_to(repo).as_posix()
    git = f"git -C {shlex.quote(str(repo))}"
    return [
        f"  {git} add {shlex.quote(inside)} && {git} commit -m {shlex.quote(what)} && {git} push",
        "  inv flux.reconcile",
    ]


def _repository(path: Path) -> Path | None:
    """The work tree holding `path`: the nearest folder above it with a `.git` (a folder, or the
    file of a worktree or submodule). Read off the disk: no git process for a mode target."""
    for folder in path.resolve().parents:
        if (folder / ".git").exists():
            return folder
    return None


def _git_toplevel(settings: GitOpsSettings, path: Path) -> Path | None:
    from tasks.adapters.git import Git

    return Git(settings.run.effects).toplevel(path.parent)


def apply_local_edit(
    settings: GitOpsSettings,
    path: Path,
    old: str,
    new: str,
    *,
    what: str,
    encoding: Encoding | None = None,
) -> bool:
    """Plan the edit (its diff), then write `new` (in the file's own encoding) through the engine:
    `--dry-run` stops after the diff. Then the next steps: mode targets edit the local tree only;
    Flux reads the remote, so nothing reconciles here."""
    from tasks.runtime.console import say
    from tasks.runtime.steps import Action, Plan

    run = settings.run
    rel = settings.rel(path)
    if old == new:
        say(f"{what}: already as wanted; {rel} unchanged")
        return False
    say(unified_diff(old, new, rel).rstrip("\n"))
    data = (encoding or Encoding()).encode(new)

    def write(sc) -> None:
        sc.effects.write_file(path, data, what=rel)

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
    for line in next_steps(settings, path, what):
        say(line)
    return True
