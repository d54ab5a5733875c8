"""Staging the ISOs templates boot from onto the Proxmox ISO storage, through the API.

Proxmox downloads a URL itself (`download-url`, verifying the declared checksum) or receives an
upload of a local file (checksum verified here first, and again by Proxmox). The API lists an
ISO's size but never its checksum, so the runner records the checksum each volume was verified
against in `ARTIFACTS/isos.json`; a present volume with a recorded, matching checksum is skipped.

Each ISO has its own outcome: one a template names through a value the runner cannot evaluate
(a `vault()` local) is reported as "stage this ISO yourself", one that cannot be staged (a changed
checksum, no source) is reported, and every other ISO is staged. `iso_checksum = "file:URL"` is
resolved by fetching the checksum file (an HTTP read through the seam) and picking the ISO's line.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.l1.actions import IsoAction, plan_isos
from tasks.l1.artifacts import utc_iso
from tasks.l1.facts import iso_volumes
from tasks.l1.fingerprint import file_digest
from tasks.l1.inputs import IsoRef
from tasks.l1.layer import L1Layer
from tasks.l1.spec import TemplateSpec
from tasks.runtime.console import say, table, warn
from tasks.runtime.errors import ConfigError, ExternalError, HomelabError
from tasks.runtime.records import Record

if TYPE_CHECKING:
    from tasks.runtime.steps import Action

LEDGER = "isos.json"
TRANSFER_TIMEOUT = 4 * 3600.0
_HEX = {32: "md5", 40: "sha1", 56: "sha224", 64: "sha256", 96: "sha384", 128: "sha512"}


class _UploadFile(io.BufferedReader):
    """A file opened for upload whose multipart file name is the ISO's name on the storage."""

    def __init__(self, path: Path, upload_name: str):
        super().__init__(io.FileIO(str(path), "rb"))
        self._upload_name = upload_name

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._upload_name


class IsoProblem(Record):
    """An ISO that is not staged: `kind` is manual (stage it yourself), conflict, missing, error."""

    __slots__ = ("template", "volid", "kind", "text", "code")

    def __init__(self, template: str, volid: str, kind: str, text: str, code: int = 2) -> None:
        self.template = template
        self.volid = volid
        self.kind = kind
        self.text = text
        self.code = code  # the exit code it stands for


class IsoPlan:
    def __init__(self) -> None:
        self.actions: list[IsoAction] = []
        self.problems: list[IsoProblem] = []
        self.unchecked: list[str] = []  # checks a dry run could not make, and why

    @property
    def blocked(self) -> set[str]:
        """Templates with an ISO that cannot be staged (building them would fail)."""
        return {p.template for p in self.problems if p.kind != "manual"}


def _ledger_path(l1: L1Layer) -> Path:
    return l1.settings.artifacts_dir / LEDGER


def read_ledger(l1: L1Layer) -> dict[str, Any]:
    from tasks.runtime.files import dead_temps

    path = _ledger_path(l1)
    # A run killed at the ledger's rename left its staged copy in the tracked tree; the next
    # write would remove it, but a run that finds nothing to stage never writes the ledger.
    for leftover in dead_temps(path):
        l1.run.effects.remove(leftover, what=f"{leftover.name} (a killed run's temp file)")
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


# ------------------------------------------------------------------ checksum files


def pick_checksum(text: str, filename: str, source: str) -> str:
    """`algorithm:hex` for `filename` from a checksum file (GNU `HEX  NAME`, `HEX *NAME`, BSD
    `SHA256 (NAME) = HEX`, or a file holding one bare digest). ValueError when it is not there."""
    hinted = next(
        (alg for alg in ("sha512", "sha384", "sha256", "sha1", "md5") if alg in source.lower()), ""
    )
    bare: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        bsd = re.fullmatch(r"([A-Za-z0-9-]+)\s*\((.+)\)\s*=\s*([0-9A-Fa-f]+)", line)
        if bsd:
            if _same_file(bsd.group(2), filename):
                return _checksum(bsd.group(3), bsd.group(1).lower().replace("-", ""))
            continue
        gnu = re.fullmatch(r"([0-9A-Fa-f]{32,128})\s+\*?(.+)", line)
        if gnu:
            if _same_file(gnu.group(2), filename):
                return _checksum(gnu.group(1), hinted)
            continue
        if re.fullmatch(r"[0-9A-Fa-f]{32,128}", line):
            bare.append(line)
    if len(bare) == 1:
        return _checksum(bare[0], hinted)
    raise ValueError(f"{source} has no line for {filename}")


def _same_file(listed: str, filename: str) -> bool:
    listed = listed.strip().lstrip("*").removeprefix("./")
    return listed == filename or listed.rsplit("/", 1)[-1] == filename


def _checksum(digest: str, algorithm: str) -> str:
    digest = digest.lower()
    by_length = _HEX.get(len(digest), "")
    if algorithm not in _HEX.values() or by_length != algorithm:
        algorithm = by_length
    if not algorithm:
        raise ValueError(f"{digest[:16]}... is not a digest of a known length")
    return f"{algorithm}:{digest}"


def resolve_checksum_file(l1: L1Layer, ref: IsoRef, fetched: dict[str, str]) -> str:
    """The checksum of `ref`'s ISO from its `file:` checksum file (fetched once per URL)."""
    source = ref.checksum_file or ""
    if source not in fetched:
        if "://" in source:
            answer = l1.run.effects.http(
                "GET", source, mutates=False, timeout=(5.0, 30.0), what=f"GET {source}"
            )
            if answer is None or not answer.ok:
                status = answer.status if answer is not None else "no answer"
                raise ExternalError(f"fetching the checksum file {source}: HTTP {status}")
            fetched[source] = answer.text
        else:
            try:
                fetched[source] = Path(source).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"the checksum file {source}: {exc.strerror}") from None
    try:
        return pick_checksum(fetched[source], ref.filename, source)
    except ValueError as exc:
        raise ConfigError(
            f"template {ref.template}: {exc}",
            hint="check iso_checksum's file: URL and the ISO's file name",
        ) from None


# ------------------------------------------------------------------ the plan


def plan(l1: L1Layer, specs: list[TemplateSpec]) -> IsoPlan:
    result = IsoPlan()
    refs: list[IsoRef] = []
    for spec in specs:
        try:
            analysis = l1.analysis(spec, isos=True)
        except HomelabError as exc:
            result.problems.append(IsoProblem(spec.name, "-", "error", exc.message, exc.exit_code))
            continue
        refs += analysis.isos
        result.problems += [IsoProblem(spec.name, "-", "manual", p) for p in analysis.iso_problems]
    fetched: dict[str, str] = {}
    usable: list[IsoRef] = []
    local_sizes: dict[str, int] = {}
    for ref in refs:
        volid = ref.volid(l1.iso_storage)
        if ref.checksum_file:
            try:
                ref.checksum = resolve_checksum_file(l1, ref, fetched)
            except HomelabError as exc:
                if l1.run.dry_run and isinstance(exc, ExternalError):
                    result.unchecked.append(f"{volid}: the checksum ({exc.message})")
                else:
                    result.problems.append(
                        IsoProblem(ref.template, volid, "error", exc.message, exc.exit_code)
                    )
                    continue
        if ref.local_path is not None:
            if not ref.local_path.is_file():
                result.problems.append(
                    IsoProblem(
                        ref.template,
                        volid,
                        "missing",
                        f"ISO file {l1.project.rel(ref.local_path)} does not exist "
                        "(fix iso_url, or put the file there)",
                    )
                )
                continue
            local_sizes[volid] = ref.local_path.stat().st_size
        usable.append(ref)
    if not usable:
        return result
    storages = sorted({ref.volid(l1.iso_storage).split(":", 1)[0] for ref in usable})
    try:
        pve = l1.pve()
        volumes = {s: iso_volumes(pve, pve.node, s) for s in storages}
    except HomelabError as exc:
        if not l1.run.dry_run:
            raise
        reason = exc.message.splitlines()[0]
        result.unchecked.append(
            f"whether each ISO is on the storage (needs the Proxmox API: {reason})"
        )
        seen: set[str] = set()
        for ref in usable:
            volid = ref.volid(l1.iso_storage)
            if volid not in seen:
                seen.add(volid)
                if ref.url or ref.local_path:
                    detail = f"from {ref.url or l1.project.rel(ref.local_path or Path())}"
                else:
                    detail = "no iso_url: it must be on the storage already"
                result.actions.append(IsoAction(ref, volid, "unchecked", detail))
        return result
    result.actions = plan_isos(usable, volumes, read_ledger(l1), l1.iso_storage, local_sizes)
    for action in result.actions:
        if action.action in ("conflict", "missing"):
            result.problems.append(
                IsoProblem(
                    action.ref.template,
                    action.volid,
                    action.action,
                    action.detail,
                    3 if action.action == "conflict" else 2,
                )
            )
    return result


def iso_actions(l1: L1Layer, specs: list[TemplateSpec]) -> tuple[list[Action], IsoPlan]:
    """Plan the staging, print a table of what each ISO needs, and the actions that do it."""
    from tasks.runtime.steps import Action

    planned = plan(l1, specs)
    if not planned.actions and not planned.problems:
        say("no template references an ISO; nothing to do")
        return [], planned
    verbs = {
        "download": "would download" if l1.run.dry_run else "download",
        "upload": "would upload" if l1.run.dry_run else "upload",
        "unchecked": "not checked",
    }
    rows = [
        [a.ref.template, a.volid, verbs.get(a.action, a.action), a.detail] for a in planned.actions
    ]
    rows += [
        [p.template, p.volid, "stage yourself" if p.kind == "manual" else p.kind, p.text]
        for p in planned.problems
        if p.kind in ("manual", "error")
    ]
    table(["template", "volume", "action", "detail"], rows)
    for text in planned.unchecked:
        say(f"not checked in this dry run: {text}")
    todo = [a for a in planned.actions if a.changes]
    if not todo and not planned.problems and not planned.unchecked:
        say("ISOs: already as wanted")

    def transfer(action: IsoAction):
        return lambda sc: _transfer(l1, action)

    actions = [
        Action(f"{a.action} {a.volid}", a.detail, transfer(a), group="isos", item=a.volid)
        for a in todo
    ]
    return actions, planned


def problems_error(planned: IsoPlan, staged: int) -> HomelabError | None:
    """One error for every ISO that was not staged (None when all were)."""
    problems = planned.problems
    if not problems:
        return None
    first = next((p for p in problems if p.kind != "manual"), problems[0])
    rest = "nothing was changed" if staged == 0 else f"the other {staged} were staged"
    text = (
        f"{len(problems)} ISO volume(s) were not staged ({rest}): "
        f"{first.volid if first.volid != '-' else first.template}: {first.text}"
    )
    hints = {
        "conflict": "remove the old ISO on Proxmox, or give the new one another file name (iso_file)",
        "missing": "add iso_url and iso_checksum next to iso_file, or upload the ISO by hand",
        "manual": "upload those ISOs to the ISO storage yourself (the templates then find them)",
    }
    return HomelabError(text, hint=hints.get(first.kind), code=first.code)


def warn_manual(planned: IsoPlan) -> None:
    for problem in planned.problems:
        if problem.kind == "manual":
            warn(problem.text)


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
