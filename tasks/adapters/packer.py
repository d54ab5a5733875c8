"""Packer: the only code in the runner that runs `packer`, through the effects seam.

Variables reach Packer through the environment (`PKR_VAR_name`), never argv, so a token or
password is neither on a command line nor in `ps`. Output is streamed line by line with every
known secret masked, and the same masked lines go to a log file the operator can open after a
failure.

`packer build` runs with `-machine-readable`: the runner prints Packer's `ui` lines as Packer
would and reads each build's artifact (`TIMESTAMP,BUILD,artifact,0,id,VALUE`) from the same
stream, so a template needs no `manifest` post-processor for its VMID to be known. When a
template has one, its file is still read (matched on the run's uuid) for `custom_data`.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import CommandFailed, ConfigError, ExternalError
from tasks.runtime.secrets import mask

if TYPE_CHECKING:
    from tasks.runtime.seam import CommandResult, Effects

# The first Packer with `packer init` and `required_plugins`.
INIT_VERSION = (1, 7, 0)
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
# Subcommands that change nothing (a dry run still runs them).
READ_ONLY = {"version", "validate", "inspect", "fmt-check"}


@dataclass(frozen=True)
class PackerVersion:
    text: str

    @property
    def parts(self) -> tuple[int, int, int]:
        found = _VERSION.search(self.text)
        if not found:
            return (0, 0, 0)
        major, minor, patch = (int(x) for x in found.groups())
        return (major, minor, patch)

    @property
    def has_init(self) -> bool:
        return self.parts >= INIT_VERSION


def packer_env(variables: dict[str, str], ca_bundle: str | None = None) -> dict[str, str]:
    """The environment Packer gets on top of the resolved env: PKR_VAR_* and no phoning home."""
    env = {f"PKR_VAR_{name}": value for name, value in variables.items()}
    env["CHECKPOINT_DISABLE"] = "1"  # no version check against checkpoint.hashicorp.com
    if ca_bundle:
        # Go reads its trusted roots from SSL_CERT_FILE: Packer verifies PVE against that CA.
        env["SSL_CERT_FILE"] = ca_bundle
    return env


def version(effects: Effects) -> PackerVersion:
    """`packer version`; ConfigError when Packer is not installed."""
    result = effects.command(
        ["packer", "version"], mutates=False, env={"CHECKPOINT_DISABLE": "1"}, check=False
    )
    text = (result.stdout or "").strip()
    if result.exited == 127 or not _VERSION.search(text):
        raise ConfigError(
            "packer is not installed (or `packer version` printed no version)",
            hint="install Packer (Debian: apt-get install packer) and make sure it is on PATH",
        )
    found = _VERSION.search(text)
    return PackerVersion(found.group(0) if found else text.splitlines()[0])


# ------------------------------------------------------------------ version constraints


def _parse_version(text: str) -> tuple[int, ...] | None:
    found = re.fullmatch(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?", text.strip())
    if not found:
        return None
    return tuple(int(p) for p in found.groups() if p is not None)


def unmet(constraint: str, have: tuple[int, int, int]) -> str | None:
    """The part of a `required_version` constraint (`>= 1.7.0, < 2.0`, `~> 1.9`) that `have`
    fails, None when it is met; ValueError when the constraint cannot be read."""
    for part in (p.strip() for p in constraint.split(",")):
        if not part:
            continue
        found = re.fullmatch(r"(~>|>=|<=|!=|=|>|<)?\s*(\S+)", part)
        wanted = _parse_version(found.group(2)) if found else None
        if found is None or wanted is None:
            raise ValueError(f"cannot read the version constraint {part!r}")
        op = found.group(1) or "="
        full = tuple(list(wanted) + [0] * (3 - len(wanted)))
        if op == "~>":
            upper = list(wanted[:-1]) if len(wanted) > 1 else list(wanted)
            upper[-1] += 1
            ok = have >= full and have < tuple(upper + [0] * (3 - len(upper)))
        else:
            ok = {
                "=": have == full,
                "!=": have != full,
                ">": have > full,
                ">=": have >= full,
                "<": have < full,
                "<=": have <= full,
            }[op]
        if not ok:
            return part
    return None


# ------------------------------------------------------------------ running it


@dataclass
class MachineOutput:
    """What `-machine-readable` said: each build's artifacts and errors."""

    artifacts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def feed(self, line: str) -> tuple[str, bool] | None:
        """Record one machine-readable line; the text to show the operator and whether it is an
        error (None: nothing to show)."""
        fields = line.rstrip("\n").split(",")
        if len(fields) < 3 or not fields[0].isdigit():
            return (line, False) if line.strip() else None
        target, kind, data = fields[1], fields[2], [_unescape(f) for f in fields[3:]]
        if kind == "ui" and len(data) >= 2:
            text = ",".join(data[1:])
            return (text if text.endswith("\n") else text + "\n", data[0] == "error")
        if kind == "artifact" and len(data) >= 2 and data[0].isdigit():
            items = self.artifacts.setdefault(target, [])
            index = int(data[0])
            while len(items) <= index:
                items.append({"files": []})
            key, value = data[1], ",".join(data[2:])
            if key == "file" and len(data) >= 4:
                items[index]["files"].append(",".join(data[3:]))
            elif key != "end":
                items[index][key] = value
            return None
        if kind == "error" and data:
            self.errors.setdefault(target, []).append(",".join(data))
        return None

    def vmid(self, build: str) -> int | None:
        """The Proxmox VMID build `build` reported (its artifact id: `<vmid>` or `<node>:<vmid>`)."""
        for artifact in self.artifacts.get(build, []):
            text = str(artifact.get("id") or "").strip().rsplit(":", 1)[-1]
            if text.isdigit():
                return int(text)
        return None


def _unescape(text: str) -> str:
    return text.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "\r")


def run(
    effects: Effects,
    args: list[str],
    folder: Path,
    env: dict[str, str],
    log_path: Path,
    *,
    quiet: bool = False,
    machine: MachineOutput | None = None,
) -> CommandResult:
    """Run `packer ARGS` in `folder`, streaming masked output to the terminal and to `log_path`.

    With `machine`, `-machine-readable` output is read into it and shown as plain text.
    Never raises on a non-zero exit (the caller words the failure).
    """
    from tasks.runtime.files import make_dirs

    make_dirs(log_path.parent)
    with log_path.open("a", encoding="utf-8") as log:
        log.write(mask(f"$ packer {' '.join(args)}") + "\n")
        log.flush()

        def show(text: str, stream) -> None:
            log.write(text)
            if not quiet:
                stream.write(text)
                stream.flush()

        def out(line: str) -> None:
            if machine is None:
                show(line, sys.stdout)
                return
            if ",artifact," in line:
                log.write(line)
            shown = machine.feed(line)
            if shown is not None:
                show(mask(shown[0]), sys.stderr if shown[1] else sys.stdout)

        def err(line: str) -> None:
            show(line, sys.stderr)

        return effects.command(
            ["packer", *args],
            mutates=args[0] not in READ_ONLY,
            env=env,
            cwd=folder,
            check=False,
            echo=False,
            on_stdout=out,
            on_stderr=err,
        )


def check(result, what: str, log_path: Path, hint: str) -> None:
    """Turn a failed Packer run into one clear error that says where the log is."""
    if result.exited != 0:
        raise CommandFailed(what, result.exited, f"Packer's output: {log_path}", hint=hint)


# ------------------------------------------------------------------ the manifest post-processor


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest post-processor's file, or None when Packer has not written one."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExternalError(f"{path}: Packer's manifest is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ExternalError(f"{path}: Packer's manifest is not a JSON object")
    return data


def last_run_uuid(manifest: dict[str, Any] | None) -> str | None:
    return str(manifest.get("last_run_uuid") or "") or None if manifest else None


def builds_of_run(manifest: dict[str, Any], run_uuid: str) -> list[dict[str, Any]]:
    """The builds the run `run_uuid` recorded (a manifest accumulates every earlier run too)."""
    return [
        b
        for b in manifest.get("builds") or []
        if isinstance(b, dict) and b.get("packer_run_uuid") == run_uuid
    ]


def vmid_of(build: dict[str, Any]) -> int | None:
    """The Proxmox VMID a manifest build names: proxmox builders report it as the artifact id;
    other builders (a `null` builder preparing a VM over SSH) put it in custom_data.vmid."""
    candidates = [build.get("artifact_id"), (build.get("custom_data") or {}).get("vmid")]
    for raw in candidates:
        text = str(raw or "").strip()
        # proxmox builders before 1.7 report "<vmid>", newer ones may report "<node>:<vmid>".
        text = text.rsplit(":", 1)[-1]
        if text.isdigit():
            return int(text)
    return None
