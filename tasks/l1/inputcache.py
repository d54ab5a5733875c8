"""Remembering a build's evaluated inputs between runs, and checking which of them exist.

Evaluating a build's HCL (tasks/l1/inputs.py) gives the words that may name its inputs and the
files its functions read. That result depends only on the folder's HCL and var files (by digest),
the build, its working directory, the non-secret values the runner supplies, and the content of
the files read; so it is remembered under a key made of those (`.work/l1/digests.json`, 0600) and
reused while every file read still has the same digest. What existence of those words says is
checked on every run (a file may appear or go). Never remembered: a result that used a secret's
value, a folder listing (`fileset`) or the environment (`env`), or that had warnings; nor the
words of var files, which are read on every run (they may hold secrets).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tasks.l1.hcl import path_words
from tasks.l1.parsecache import sha256
from tasks.l1.spec import real_folder
from tasks.runtime.records import Record

if TYPE_CHECKING:
    from tasks.l1.digests import DigestCache
    from tasks.l1.inputs import IsoRef
    from tasks.l1.spec import PackerVariables, TemplateFolder, TemplateSpec

TAG = "l1-inputs/v1"


class Analysis(Record):
    __slots__ = (
        "references",
        "warnings",
        "cwd",
        "workdir",
        "isos",
        "iso_problems",
        "words",
        "reads",
        "cacheable",
    )

    def __init__(self, cwd: str, workdir: str) -> None:
        self.references: list[str] = []  # absolute paths (links resolved), sorted
        self.warnings: list[str] = []
        self.cwd = cwd
        self.workdir = workdir
        self.isos: list[IsoRef] = []
        self.iso_problems: list[str] = []  # "stage this ISO yourself: ..." per unresolvable ISO
        # What the walk found (before the folder-wide words and the existence check), the files
        # functions read, and whether that may be remembered for the next run (tasks/l1/inputcache.py).
        self.words: list[str] = []
        self.reads: list[str] = []
        self.cacheable = True


def _strings(value: Any) -> list[str]:
    out: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return out


def static_words(folder: TemplateFolder) -> list[str]:
    """The path-like words of the folder's literal variable defaults, locals and var-file values:
    what a build may use without naming it in its own blocks (once per folder and run)."""
    found = folder.static_words
    if found is None:
        words: dict[str, None] = {}
        for hcl in folder.files:
            words.update(dict.fromkeys(hcl.static))
        for value in folder.auto_values.values():
            for text in _strings(value):
                words.update(dict.fromkeys(path_words(text)))
        found = folder.static_words = list(words)
    return found


def key(
    spec: TemplateSpec, pv: PackerVariables, cwd: str, workdir: str, listing: list[str] | None
) -> str:
    """What the evaluated inputs of `spec` depend on, hashed (secret values left out). The working
    directory's listing is part of it, so only words naming one of its entries need be kept."""
    folder = spec.folder_spec
    parts = [TAG, spec.name, spec.packer_name, folder.abs_path, cwd, workdir]
    parts.append("/".join(sorted(listing)) if listing is not None else "?")
    parts += [f"{f.shown}={f.digest}" for f in folder.files]
    parts += [f"{f.shown}={f.digest}" for f in folder.var_files]
    env = pv._env
    for var in sorted(pv.mapped):
        if var in pv.secret_names:
            continue
        template, names, _group = pv.mapped[var]
        parts.append(f"{var}={template}|" + "|".join(f"{n}={env.get(n, '')}" for n in names))
        if "PVE_API_URL" in names:
            parts.append(f"PVE_ACCESS_HOST={env.get('PVE_ACCESS_HOST', '')}")
    for var in sorted(pv.from_env):
        declared = spec.variables.get(var)
        if declared is None or declared.sensitive or var in pv.secret_names:
            continue
        parts.append(f"PKR_VAR_{var}={pv.from_env[var]}")
    return sha256("\0".join(parts).encode()).hexdigest()


def recall(
    state: DigestCache,
    spec: TemplateSpec,
    pv: PackerVariables,
    cwd: str,
    workdir: str,
    checkout: str | None,
    listing: list[str] | None,
) -> Analysis | None:
    """The remembered inputs of `spec`, checked against today's files (None: evaluate again)."""
    entry = state.inputs.get(key(spec, pv, cwd, workdir, listing))
    if not isinstance(entry, dict):
        return None
    reads = entry.get("reads")
    words = entry.get("words")
    if not isinstance(reads, dict) or not isinstance(words, list):
        return None
    for path, digest in reads.items():
        if _digest_or_none(state, path) != digest:
            return None
    analysis = Analysis(cwd, workdir)
    analysis.words = words
    analysis.reads = list(reads)
    candidates = dict.fromkeys(words)
    candidates.update(dict.fromkeys(static_words(spec.folder_spec)))
    analysis.references = existing(spec, candidates, dict.fromkeys(reads), cwd, checkout, listing)
    return analysis


def remember(
    state: DigestCache,
    spec: TemplateSpec,
    pv: PackerVariables,
    analysis: Analysis,
    listing: list[str] | None,
    checkout: str | None,
) -> None:
    """Keep `analysis` for the next run when it may be kept (see the module docstring)."""
    if not analysis.cacheable or listing is None:
        return
    from tasks.runtime.secrets import MASKER

    names = {*listing, ".."}
    inside = (checkout + os.sep) if checkout else "\0"
    words = [
        w
        for w in analysis.words
        if (w.startswith(inside) if w.startswith("/") else w.split("/", 1)[0] in names)
    ]
    if any(MASKER.contains_secret(w) for w in words):
        return
    reads = {path: _digest_or_none(state, path) for path in analysis.reads}
    entry = {"words": words, "reads": reads}
    state.remember(key(spec, pv, analysis.cwd, analysis.workdir, listing), entry)


def _digest_or_none(state: DigestCache, path: str) -> str | None:
    try:
        return state.digest(path)
    except OSError:
        return None


def existing(
    spec: TemplateSpec,
    candidates: dict[str, None],
    reads: dict[str, None],
    cwd: str,
    checkout: str | None,
    listing: list[str] | None,
) -> list[str]:
    """The candidates that name something inside the checkout, links resolved."""
    names = {*(listing if listing is not None else _safe_listing(cwd)), ".."}
    owner = spec.folder_spec
    folder = owner.abs_path
    parent = real_folder(os.path.dirname(folder))
    links = owner.links
    base = owner.real_path
    if base is None:
        base = owner.real_path = _real_under(
            parent, os.path.join(parent, os.path.basename(folder)), links
        )
    skip = {folder, base, *(os.path.join(folder, f.path.name) for f in owner.files)}
    if spec.manifest_output:
        skip.add(os.path.normpath(os.path.join(folder, spec.manifest_output)))
        skip.add(os.path.normpath(os.path.join(cwd, spec.manifest_output)))
    inside = (checkout + os.sep) if checkout else ""
    found: dict[str, None] = {}
    for word in candidates:
        if word.startswith("/"):
            if not (inside and word.startswith(inside)):
                continue
            path = os.path.normpath(word)
        else:
            if word.split("/", 1)[0] not in names:
                continue
            path = os.path.normpath(os.path.join(cwd, word))
        if path in skip or path in found or not os.path.exists(path):
            continue
        found[path] = None
    for path in reads:
        if path not in skip and os.path.exists(path):
            found[path] = None
    resolved = {
        _real_under(base, base + p[len(folder) :], links)
        if p.startswith(folder + os.sep)
        else _real_under(parent, p, links)
        for p in found
    }
    return sorted(p for p in resolved if p.startswith(inside))


def _safe_listing(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _real_under(real_base: str, path: str, links: dict[str, bool] | None = None) -> str:
    """`path` (absolute, normalised) with links resolved, given `real_base` that has none.

    Below `real_base` each part costs one lstat (remembered in `links` for the folders a run sees
    again), where `os.path.realpath` re-checks every part of the whole path; anywhere else, or
    past a link, realpath does the work.
    """
    if not path.startswith(real_base + os.sep):
        return os.path.realpath(path)
    seen = {} if links is None else links
    current = real_base
    for part in path[len(real_base) + 1 :].split(os.sep):
        current = os.path.join(current, part)
        is_link = seen.get(current)
        if is_link is None:
            is_link = seen[current] = os.path.islink(current)
        if is_link:
            return os.path.realpath(path)
    return path
