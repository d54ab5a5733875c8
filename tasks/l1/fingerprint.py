"""A template's inputs and their fingerprint, like Taskfile's `sources`: unchanged inputs, no build.

The inputs are the template's HCL and auto.pkrvars files, every file it references (scripts,
http/ and cloud-init files, found by the spec), and the non-secret placement values the runner
hands Packer (node, storage). Each input has its own hash, so a stale template can say which input
changed; the fingerprint is the hash of that list.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.l1.spec import real_folder
from tasks.runtime.records import Record

if TYPE_CHECKING:
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


def compute(spec: TemplateSpec, placement: dict[str, str], root: Path) -> Fingerprint:
    """The fingerprint of `spec`'s inputs; paths are named relative to the checkout `root`."""
    root_text = real_folder(os.fspath(root))
    inputs: dict[str, str] = {}
    manifest = os.path.abspath(spec.folder / spec.manifest_output) if spec.manifest_output else ""
    for path in [*spec.files, *spec.var_files, *spec.references]:
        absolute = os.path.abspath(path)
        # An HCL file's hash is known from parsing it; anything else is read now.
        known = spec.digests.get(absolute)
        for file in [absolute] if known else _files_under(absolute):
            if file == manifest:
                continue
            inputs[_rel(file, root_text)] = known or file_digest(file)
    for name, value in sorted(placement.items()):
        inputs[f"var:{name}"] = hashlib.sha256(value.encode()).hexdigest()
    listing = "".join(f"{k}\0{v}\n" for k, v in sorted(inputs.items()))
    return Fingerprint("sha256:" + hashlib.sha256(listing.encode()).hexdigest(), inputs)


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
