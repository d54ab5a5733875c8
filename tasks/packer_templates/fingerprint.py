"""A template's inputs and their fingerprint, like Taskfile's `sources`: unchanged inputs, no build.

The inputs are the template's HCL and auto.pkrvars files, every file it references (scripts,
http/ and cloud-init files, found by the spec), and the non-secret placement values the runner
hands Packer (node, storage). Each input has its own hash, so a stale template can say which input
changed; the fingerprint is the hash of that list.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from tasks.packer_templates.spec import TemplateSpec

# Packer's own by-products in a template folder: never inputs.
IGNORED_NAMES = frozenset({"packer_cache", ".packer.d", "__pycache__"})


@dataclass(frozen=True)
class Fingerprint:
    value: str  # "sha256:<hex>"
    inputs: dict[str, str]  # input name (checkout-relative path or "var:NAME") -> sha256 hex


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not IGNORED_NAMES.intersection(p.relative_to(path).parts)
    )


def compute(spec: TemplateSpec, placement: dict[str, str], root: Path) -> Fingerprint:
    """The fingerprint of `spec`'s inputs; paths are named relative to the checkout `root`."""
    root_text = str(root.resolve())
    inputs: dict[str, str] = {}
    manifest = os.path.abspath(spec.folder / spec.manifest_output) if spec.manifest_output else ""
    for path in [*spec.files, *spec.var_files, *spec.references]:
        for file in _files_under(path):
            absolute = os.path.abspath(file)
            if absolute == manifest:
                continue
            inputs[_rel(absolute, root_text)] = _file_hash(file)
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
