"""Artifact manifests and the stable pointer, per template: `ARTIFACTS/<template>/`.

Each build writes `<name>-<UTC stamp>.json` (a build of a folder of several lives under
`ARTIFACTS/FOLDER/BUILD/` as `BUILD-<stamp>.json`); `stable.json` is a copy of the promoted one
plus the name of the file it was promoted from. L2 clones from `stable.json`'s `vmid` on `node`; it
is only ever replaced whole (atomic rename), so a reader sees the old pointer or the new one.

A `stable.json` written by hand or imported from elsewhere may lack the `artifact` key: it is
still the stable pointer (`stable_view` says which artifact it matches, by VMID and node, or that
it matches none), and `l1.list` and `l1.history` read it the same way.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError
from tasks.runtime.records import Record

if TYPE_CHECKING:
    from tasks.runtime.seam import Effects

STABLE = "stable.json"
# What L2 needs from the stable manifest; a manifest without them is refused, never promoted.
REQUIRED_KEYS = ("name", "node", "vmid", "storage")


def utc_stamp(now: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


def utc_iso(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def artifact_head(spec: Any, vm: Any, vmid: int, config: dict[str, Any], storage: str, fp: Any):
    """The fields every artifact starts with, built or adopted: the template as Proxmox has it
    (name, node, VMID, disk storage, description) and the fingerprint of today's inputs."""
    from tasks.l1.facts import disk_storage

    return {
        "name": str(config.get("name") or vm.name),
        "template": spec.name,
        "build": spec.packer_name,
        "node": vm.node,
        "vmid": vmid,
        "storage": disk_storage(config) or storage,
        "created_at": utc_iso(),
        "description": str(config.get("description") or "").strip(),
        "fingerprint": fp.value,
        "inputs": fp.inputs,
    }


def update_stable_wanted(value: str | None) -> bool:
    """UPDATE_STABLE: `yes` (the default when unset) promotes; any other value leaves stable alone."""
    if value is None or value.strip() == "":
        return True
    return value.strip().lower() == "yes"


class Artifact(Record):
    __slots__ = ("path", "data")

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @property
    def file(self) -> str:
        return self.path.name


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    missing = [k for k in REQUIRED_KEYS if data.get(k) in (None, "")]
    if missing:
        raise ConfigError(f"{path}: artifact manifest lacks {', '.join(missing)}")
    return data


class ArtifactStore:
    """The artifact manifests of one template."""

    def __init__(self, artifacts_dir: Path, template: str, effects: Effects | None = None):
        self.template = template
        self.folder = artifacts_dir / template
        self.prefix = template.rsplit("/", 1)[-1]  # FOLDER/BUILD writes BUILD-<stamp>.json
        self.effects = effects  # writes go through the seam (the folder is outside .work/)

    @property
    def stable_path(self) -> Path:
        return self.folder / STABLE

    def artifacts(self) -> list[Artifact]:
        """Every artifact manifest, oldest first (the UTC stamp in the name sorts by time)."""
        if not self.folder.is_dir():
            return []
        paths = sorted(
            (p for p in self.folder.glob(f"{self.prefix}-*.json") if not p.name.startswith(".")),
            key=self._order,
        )
        return [Artifact(p, _read(p)) for p in paths]

    def _order(self, path: Path) -> tuple[str, int]:
        """(stamp, n): `NAME-STAMP-2.json`, written in the same second, comes after `NAME-STAMP.json`."""
        rest = path.stem[len(self.prefix) + 1 :]
        stamp, _, n = rest.partition("-")
        return stamp, int(n) if n.isdigit() else 1

    def find(self, name: str | None) -> Artifact:
        """The artifact named `name` (file name, with or without .json), or the newest."""
        found = self.artifacts()
        if not found:
            raise ConfigError(
                f"template {self.template} has no artifacts under {self.folder}",
                hint=f"build one first: inv l1.build {self.template}",
            )
        if name is None:
            return found[-1]
        wanted = name if name.endswith(".json") else f"{name}.json"
        for artifact in found:
            if artifact.file == Path(wanted).name:
                return artifact
        raise ConfigError(
            f"template {self.template} has no artifact {name!r}",
            hint="inv l1.history " + self.template + " lists them",
        )

    def stable(self) -> dict[str, Any] | None:
        if not self.stable_path.exists():
            return None
        return _read(self.stable_path)

    def write(self, manifest: dict[str, Any], now: float | None = None) -> Artifact:
        """Write a new artifact manifest; never overwrites an earlier one."""
        stamp = utc_stamp(now)
        path = self.folder / f"{self.prefix}-{stamp}.json"
        n = 2
        while path.exists():
            path = self.folder / f"{self.prefix}-{stamp}-{n}.json"
            n += 1
        self._write(path, manifest)
        return Artifact(path, manifest)

    def promote(self, artifact: Artifact, now: float | None = None) -> dict[str, Any]:
        """Point stable.json at `artifact`, atomically."""
        pointer = {**artifact.data, "artifact": artifact.file, "promoted_at": utc_iso(now)}
        self._write(self.stable_path, pointer)
        return pointer

    def _write(self, path: Path, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, indent=2) + "\n"
        if self.effects is None:
            raise RuntimeError("ArtifactStore: writing needs the run's effects")
        self.effects.write_file(path, text)


class StableView(Record):
    """What the stable pointer points at, read the same way by `l1.list` and `l1.history`."""

    __slots__ = ("pointer", "artifact", "note")

    def __init__(self, pointer: dict[str, Any] | None, artifact: str | None, note: str) -> None:
        self.pointer = pointer  # stable.json's content (None: no stable pointer)
        self.artifact = artifact  # the artifact file it matches, if any
        self.note = note  # how it matches, for the operator

    @property
    def summary(self) -> dict[str, Any] | None:
        if self.pointer is None:
            return None
        keys = ("name", "node", "vmid", "created_at")
        return {"artifact": self.artifact, **{k: self.pointer.get(k) for k in keys}}


def stable_view(store: ArtifactStore, artifacts: list[Artifact] | None = None) -> StableView:
    """The stable pointer and the artifact it matches: by its `artifact` key, else (a hand-written
    or imported stable.json) by VMID and node."""
    pointer = store.stable()
    if pointer is None:
        return StableView(None, None, "no stable artifact yet")
    named = pointer.get("artifact")
    if named:
        present = (
            any(a.file == named for a in artifacts)
            if artifacts is not None
            else (store.folder / str(named)).is_file()
        )
        if present:
            return StableView(pointer, str(named), f"stable: {named}")
        return StableView(
            pointer, str(named), f"stable points at {named}, which is no longer in {store.folder}"
        )
    found = store.artifacts() if artifacts is None else artifacts
    same = [
        a
        for a in found
        if str(a.data.get("vmid")) == str(pointer.get("vmid"))
        and str(a.data.get("node")) == str(pointer.get("node"))
    ]
    where = f"vmid {pointer.get('vmid')} on {pointer.get('node')}"
    if same:
        return StableView(
            pointer,
            same[-1].file,
            f"stable: {where} (stable.json names no artifact; it matches {same[-1].file})",
        )
    return StableView(
        pointer, None, f"stable: {where} (written by hand or imported: not one of the artifacts)"
    )


def stable_manifests(artifacts_dir: Path) -> dict[str, Path]:
    """Every template's stable.json: `NAME` -> ARTIFACTS/NAME/stable.json, and for a folder of
    several builds `FOLDER/BUILD` -> ARTIFACTS/FOLDER/BUILD/stable.json (the L1 -> L2 hand-off)."""
    if not artifacts_dir.is_dir():
        return {}
    found = {}
    for pattern in ("*/" + STABLE, "*/*/" + STABLE):
        for path in sorted(artifacts_dir.glob(pattern)):
            found[path.parent.relative_to(artifacts_dir).as_posix()] = path
    return dict(sorted(found.items()))
