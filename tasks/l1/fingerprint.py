"""A build's inputs and their fingerprint, like Taskfile's `sources`: unchanged inputs, no build.

The inputs are the folder's HCL and auto.pkrvars files (a file linked in from a shared folder is
named by the file it leads to), every file the build's attributes name (found by evaluating them:
tasks/l1/inputs.py), and the non-secret placement values the runner hands Packer (node, storage).
Each input has its own hash, so a stale template can say which input changed; the fingerprint is
the hash of that list.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any

from tasks.l1.parsecache import sha256
from tasks.l1.spec import real_folder
from tasks.runtime.records import Record

if TYPE_CHECKING:
    from tasks.l1.hcl import HclFile, VarsFile
    from tasks.l1.inputs import Analysis
    from tasks.l1.spec import TemplateSpec

# Packer's own by-products in a template folder: never inputs.
IGNORED_NAMES = frozenset({"packer_cache", ".packer.d", "__pycache__"})


class Fingerprint(Record):
    __slots__ = ("value", "inputs")

    def __init__(self, value: str, inputs: dict[str, str]) -> None:
        self.value = value  # "sha256:<hex>"
        self.inputs = inputs  # input name (checkout-relative path or "var:NAME") -> sha256 hex


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MiB chunks (inputs are mostly one chunk)."""
    if algorithm == "sha256":
        digest: Any = sha256()
    else:
        import hashlib

        digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _files_under(path: str) -> list[str]:
    """`path` itself when it is a file, else every file below it (not following folder links)."""
    if os.path.isfile(path):
        return [path]
    found = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d not in IGNORED_NAMES]
        found += [
            os.path.join(folder, f)
            for f in files
            if f not in IGNORED_NAMES and os.path.isfile(os.path.join(folder, f))
        ]
    return sorted(found)


def compute(
    spec: TemplateSpec,
    analysis: Analysis,
    placement: dict[str, str],
    root: Path,
    digest: Callable[..., str] | None = None,
) -> Fingerprint:
    """The fingerprint of `spec`'s inputs; paths are named relative to the checkout `root`.
    `digest` hashes one file (the layer's stat cache, or reading it)."""
    if digest is None:

        def digest(path: str, st: os.stat_result | None = None) -> str:
            return file_digest(path)

    root_text = real_folder(os.fspath(root))
    inputs: dict[str, str] = {}
    folder = spec.folder_spec
    manifest = ""
    if spec.manifest_output:
        manifest = os.path.normpath(os.path.join(analysis.cwd, spec.manifest_output))
    parsed: list[HclFile | VarsFile] = [*folder.files, *folder.var_files]
    linked = folder.linked
    for hcl in parsed:
        path = os.path.abspath(hcl.path)
        is_link = hcl.path.name in linked if linked is not None else os.path.islink(path)
        if is_link:
            real = os.path.realpath(path)
            if real.startswith(root_text + os.sep):
                path = real  # a file linked in from a shared folder is named by its own path
        inputs[_rel(path, root_text)] = hcl.digest
    for reference in analysis.references:
        try:
            st = os.stat(reference)
        except OSError:
            continue
        found = (
            [(reference, st)]
            if S_ISREG(st.st_mode)
            else [(f, None) for f in _files_under(reference)]
        )
        for file, file_st in found:
            if file == manifest:
                continue
            name = _rel(file, root_text)
            if name not in inputs:
                inputs[name] = digest(file, file_st)
    for name, value in sorted(placement.items()):
        inputs[f"var:{name}"] = sha256(value.encode()).hexdigest()
    listing = "".join(f"{k}\0{v}\n" for k, v in sorted(inputs.items()))
    return Fingerprint("sha256:" + sha256(listing.encode()).hexdigest(), inputs)


def _rel(path: str, root: str) -> str:
    return path[len(root) + 1 :] if path.startswith(root + os.sep) else path


def changes(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """What differs between a recorded input list and the current one, for the operator."""
    changed = sorted(k for k in current if k in recorded and recorded[k] != current[k])
    added = sorted(k for k in current if k not in recorded)
    removed = sorted(k for k in recorded if k not in current)
    return (
        [f"changed {k}" for k in changed]
        + [f"added {k}" for k in added]
        + [f"removed {k}" for k in removed]
    )
