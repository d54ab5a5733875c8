"""Staging the ISOs templates boot from onto the Proxmox ISO storage, through the API.

Proxmox downloads a URL itself (`download-url`, verifying the declared checksum) or receives an
upload of a local file (checksum verified here first, and again by Proxmox). The API lists an
ISO's size but never its checksum, so the runner records the checksum each volume was verified
against in `ARTIFACTS/isos.json`; a present volume with a recorded, matching checksum is skipped.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.l1.actions import IsoAction, plan_isos
from tasks.l1.artifacts import utc_iso
from tasks.l1.facts import iso_volumes
from tasks.l1.fingerprint import file_digest
from tasks.l1.layer import L1Layer
from tasks.l1.spec import IsoRef, TemplateSpec, iso_refs
from tasks.runtime.console import say, table
from tasks.runtime.errors import ConfigError, ExternalError, RefusedError

if TYPE_CHECKING:
    from tasks.runtime.steps import Action

LEDGER = "isos.json"
TRANSFER_TIMEOUT = 4 * 3600.0


class _UploadFile(io.BufferedReader):
    """A file opened for upload whose multipart file name is the ISO's name on the storage."""

    def __init__(self, path: Path, upload_name: str):
        super().__init__(io.FileIO(str(path), "rb"))
        self._upload_name = upload_name

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._upload_name


def _ledger_path(l1: L1Layer) -> Path:
    return l1.settings.artifacts_dir / LEDGER


def read_ledger(l1: L1Layer) -> dict[str, Any]:
    path = _ledger_path(l1)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def _record(l1: L1Layer, volid: str, entry: dict[str, Any]) -> None:
    ledger = read_ledger(l1)
    ledger[volid] = entry
    text = json.dumps(dict(sorted(ledger.items())), indent=2) + "\n"
    l1.run.effects.write_file(_ledger_path(l1), text)


def plan(l1: L1Layer, specs: list[TemplateSpec]) -> list[IsoAction]:
    refs: list[IsoRef] = []
    for spec in specs:
        refs += iso_refs(spec, l1.variables(spec).values)
    if not refs:
        return []
    local_sizes: dict[str, int] = {}
    for ref in refs:
        if ref.local_path is None:
            continue
        if not ref.local_path.is_file():
            raise ConfigError(
                f"template {ref.template}: ISO file {l1.project.rel(ref.local_path)} does not exist",
                hint="fix iso_url, or put the file there",
            )
        local_sizes[ref.volid(l1.iso_storage)] = ref.local_path.stat().st_size
    pve = l1.pve()
    storages = sorted({ref.volid(l1.iso_storage).split(":", 1)[0] for ref in refs})
    volumes = {s: iso_volumes(pve, pve.node, s) for s in storages}
    return plan_isos(refs, volumes, read_ledger(l1), l1.iso_storage, local_sizes)


def iso_actions(l1: L1Layer, specs: list[TemplateSpec]) -> list[Action]:
    """Plan the staging (a table of what each ISO needs) and the actions that do it."""
    from tasks.runtime.steps import Action

    actions = plan(l1, specs)
    if not actions:
        say("no template references an ISO; nothing to do")
        return []
    verbs = {
        "download": "would download" if l1.run.dry_run else "download",
        "upload": "would upload" if l1.run.dry_run else "upload",
    }
    table(
        ["template", "volume", "action", "detail"],
        [[a.ref.template, a.volid, verbs.get(a.action, a.action), a.detail] for a in actions],
    )
    blocked = [a for a in actions if a.action in ("conflict", "missing")]
    if blocked:
        first = blocked[0]
        if first.action == "conflict":
            raise RefusedError(
                f"{len(blocked)} ISO volume(s) cannot be staged; nothing was changed: "
                f"{first.volid}: {first.detail}",
                hint="remove the old ISO on Proxmox, or give the new one another file name (iso_file)",
            )
        raise ConfigError(
            f"{len(blocked)} ISO volume(s) are missing with no source; nothing was changed: "
            f"{first.volid}: {first.detail}",
            hint="add iso_url and iso_checksum next to iso_file, or upload the ISO by hand",
        )
    todo = [a for a in actions if a.changes]
    if not todo:
        say("ISOs: already as wanted")

    def transfer(action: IsoAction):
        return lambda sc: _transfer(l1, action)

    return [Action(f"{a.action} {a.volid}", a.detail, transfer(a)) for a in todo]


def _transfer(l1: L1Layer, action: IsoAction) -> None:
    pve = l1.pve()
    ref = action.ref
    storage = action.volid.split(":", 1)[0]
    checksum: dict[str, str] = {}
    if ref.checksum:
        algorithm, digest = ref.checksum.split(":", 1)
        checksum = {"checksum": digest, "checksum-algorithm": algorithm}
    base = f"/nodes/{pve.node}/storage/{storage}"
    if action.action == "download":
        say(f"{action.volid}: Proxmox downloads {ref.url}")
        pve.run_task(
            "POST",
            f"{base}/download-url",
            task_timeout=TRANSFER_TIMEOUT,
            url=ref.url,
            filename=ref.filename,
            content="iso",
            **checksum,
        )
    else:
        assert ref.local_path is not None
        if ref.checksum:
            algorithm, digest = ref.checksum.split(":", 1)
            actual = file_digest(ref.local_path, algorithm)
            if actual != digest:
                raise ExternalError(
                    f"{l1.project.rel(ref.local_path)}: {algorithm} is {actual}, but template "
                    f"{ref.template} declares {digest}; nothing was uploaded",
                    hint="fix iso_checksum, or replace the file",
                )
        say(f"{action.volid}: uploading {l1.project.rel(ref.local_path)}")
        with _UploadFile(ref.local_path, ref.filename) as fh:
            pve.run_task(
                "POST",
                f"{base}/upload",
                task_timeout=TRANSFER_TIMEOUT,
                content="iso",
                filename=fh,
                **checksum,
            )
    _record(
        l1,
        action.volid,
        {
            "checksum": ref.checksum,
            "source": ref.url or l1.project.rel(ref.local_path or Path()),
            "staged_at": utc_iso(),
        },
    )
