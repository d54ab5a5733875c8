"""What a render reads, so a render can be cached by the content hash of its inputs.

A Flux Kustomization's render reads its folder and everything kustomize follows from there. For a
folder with a kustomization file: every file directly in it (the kustomization file and whatever
it names, plus neighbours: conservative, since a field this reader does not know may name one),
and, recursively, every local folder or file its reference fields name (`resources`, `bases`,
`components`, `crds`, `patches`, generators' `files`/`envs`, `replacements`, ...). For a folder
without one (Flux generates a kustomization listing its manifests): every `*.yaml`/`*.yml` below
it, and the folders below it that have a kustomization file of their own, as above.
A remote reference (a URL, `github.com/...`) or `helmCharts` makes the render uncacheable.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from tasks.gitops.layout import KUSTOMIZATION_FILES

_PATH_LISTS = (
    "resources",
    "bases",
    "components",
    "crds",
    "configurations",
    "generators",
    "transformers",
    "validators",
)


class Uncacheable(Exception):
    pass


def _remote(ref: str) -> bool:
    return "://" in ref or ref.startswith(("github.com/", "git@", "gitlab.com/")) or "?ref=" in ref


class Inputs:
    """Collects (path, digest) pairs; digests are shared between the renders of one run."""

    def __init__(self, digests: dict[Path, str]) -> None:
        self.digests = digests
        self.files: dict[str, str] = {}
        self._seen: set[Path] = set()

    def digest(self, path: Path) -> str:
        found = self.digests.get(path)
        if found is None:
            try:
                found = hashlib.sha256(path.read_bytes()).hexdigest()
            except FileNotFoundError:
                found = "missing"
            except OSError as exc:
                found = f"unreadable:{exc.errno}"
            self.digests[path] = found
        return found

    def add_file(self, path: Path) -> None:
        self.files[str(path)] = self.digest(path)

    def add_folder(self, folder: Path) -> None:
        folder = Path(os.path.realpath(folder))
        if folder in self._seen:
            return
        self._seen.add(folder)
        if not os.path.isdir(folder):
            self.files[str(folder)] = "missing-folder"
            return
        kfile = next(
            (folder / n for n in KUSTOMIZATION_FILES if os.path.isfile(os.path.join(folder, n))),
            None,
        )
        if kfile is None:
            self._generated(folder)
        else:
            self._kustomization(folder, kfile)

    def _generated(self, folder: Path) -> None:
        """What Flux's generated kustomization lists: manifests below, kustomization folders."""
        for top, dirs, names in os.walk(folder):
            here = Path(top)
            kept = []
            for d in sorted(dirs):
                sub = here / d
                if any((sub / n).is_file() for n in KUSTOMIZATION_FILES):
                    self.add_folder(sub)
                else:
                    kept.append(d)
            dirs[:] = kept
            self.files[f"{here}/"] = "|".join(sorted(names) + [d + "/" for d in kept])
            for name in sorted(names):
                if name.endswith((".yaml", ".yml")):
                    self.add_file(here / name)

    def _kustomization(self, folder: Path, kfile: Path) -> None:
        from tasks.runtime.config import parse_yaml
        from tasks.runtime.errors import ConfigError

        names = sorted(os.listdir(folder))
        self.files[f"{folder}/"] = "|".join(names)
        for name in names:
            if os.path.isfile(os.path.join(folder, name)):
                self.add_file(folder / name)
        try:
            data = parse_yaml(kfile.read_text(encoding="utf-8", errors="replace"), str(kfile))
        except ConfigError:
            return  # kustomize reports it; the file's digest is in the key already
        if not isinstance(data, dict):
            return
        if data.get("helmCharts") or data.get("helmChartInflationGenerator"):
            raise Uncacheable(f"{kfile}: helmCharts")
        for ref in references(data):
            if _remote(ref):
                raise Uncacheable(f"{kfile}: remote reference {ref}")
            target = os.path.realpath(os.path.join(folder, ref))
            if os.path.isdir(target):
                self.add_folder(Path(target))
            else:
                self.add_file(Path(target))

    def key(self, *extra: str) -> str:
        h = hashlib.sha256()
        for part in extra:
            h.update(part.encode())
            h.update(b"\0")
        for name in sorted(self.files):
            h.update(f"{name}\0{self.files[name]}\n".encode())
        return h.hexdigest()


def references(data: dict[str, Any]) -> list[str]:
    """Every local path a kustomization names (strings that are patches themselves excluded)."""
    refs: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str) and value and "\n" not in value:
            refs.append(value.split("=", 1)[-1] if "=" in value else value)

    for field in _PATH_LISTS:
        for item in data.get(field) or []:
            add(item)
    for item in data.get("patchesStrategicMerge") or []:
        add(item)
    for field in ("patches", "patchesJson6902", "replacements"):
        for item in data.get(field) or []:
            if isinstance(item, dict):
                add(item.get("path"))
    for field in ("configMapGenerator", "secretGenerator"):
        for gen in data.get(field) or []:
            if not isinstance(gen, dict):
                continue
            for item in gen.get("files") or []:
                add(item)
            for item in gen.get("envs") or []:
                add(item)
            add(gen.get("env"))
    openapi = data.get("openapi")
    if isinstance(openapi, dict):
        add(openapi.get("path"))
    return refs
