"""The external tools the runner drives: which binary, which version, good enough or not.

Each tool has a minimum version in `layers/l0/layer.yaml` (`tools:`). A tool is looked for on the
run's PATH and then in the runner's own virtualenv (setup.sh puts a kubectl with kustomize v5
there when the system one is missing or too old), and the first one new enough is the one used:
a Debian 12 `kubectl` 1.20 first on PATH is passed over for the venv's. Versions are read once per
binary (the command goes through the effects seam, a read) and kept in `.work/tools.json`, keyed by
the binary's path, size and modification time.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.runtime.run import Run

VERSION_ARGS = {
    "kubectl": ["version", "--client", "-o", "json"],
    "packer": ["version"],
    "ansible-playbook": ["--version"],
    "ssh": ["-V"],
    "flux": ["--version"],
    "sops": ["--version"],
    "age": ["--version"],
    "git": ["--version"],
    "doppler": ["--version"],
}
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, ...] | None:
    """The first x.y[.z] in a tool's version output (kubectl's JSON: its gitVersion)."""
    try:
        data = json.loads(text)
        text = str(((data.get("clientVersion") or {}).get("gitVersion")) or text)
    except (ValueError, AttributeError):
        pass
    found = _VERSION.search(text)
    if found is None:
        return None
    return tuple(int(part) for part in found.groups() if part is not None)


def shown(version: tuple[int, ...] | None) -> str:
    return ".".join(str(p) for p in version) if version else "unknown"


class Finding:
    """What was found for one tool: `status` is ok, too-old or missing."""

    __slots__ = ("name", "path", "version", "minimum", "status", "passed_over")

    def __init__(
        self,
        name: str,
        path: str | None,
        version: tuple[int, ...] | None,
        minimum: tuple[int, ...] | None,
        status: str,
        passed_over: list[str] | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.version = version
        self.minimum = minimum
        self.status = status
        self.passed_over = passed_over or []  # older binaries found first on PATH

    def describe(self) -> str:
        if self.status == "missing":
            return "not found on PATH or in the runner's virtualenv"
        text = f"{shown(self.version)} at {self.path}"
        if self.status == "too-old":
            return f"{text}: too old, needs {shown(self.minimum)} or newer"
        if self.passed_over:
            text += f" (passed over, too old: {', '.join(self.passed_over)})"
        return text


def minimums(run: Run) -> dict[str, tuple[int, ...]]:
    from tasks.runtime.config import load_layer_manifest

    found = {}
    for tool in load_layer_manifest(run.project, "l0").get("tools") or []:
        if isinstance(tool, dict) and tool.get("min_version"):
            version = parse_version(str(tool["min_version"]))
            if version:
                found[str(tool["name"])] = version
    return found


def candidates(run: Run, name: str) -> list[str]:
    """Every executable called `name`: the run's PATH first, then the runner's virtualenv."""
    dirs = [d for d in (run.env.get("PATH") or "").split(os.pathsep) if d]
    venv = str(Path(sys.executable).parent)
    found: list[str] = []
    for folder in [*dirs, venv]:
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            real = os.path.realpath(path)
            if all(os.path.realpath(p) != real for p in found):
                found.append(path)
    return found


def version_of(run: Run, path: str) -> tuple[int, ...] | None:
    """A binary's version, read once per run and cached across runs by (path, size, mtime)."""
    memo_key = ("tool-version", path)
    if memo_key in run.memo:
        return run.memo[memo_key]
    cache_path = run.project.work / "tools.json"
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = f"{stat.st_size}:{stat.st_mtime_ns}"
    cache: dict[str, Any] = {}
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(path) if isinstance(cache, dict) else None
    if isinstance(entry, dict) and entry.get("key") == key:
        version = tuple(entry["version"]) if entry.get("version") else None
    else:
        name = os.path.basename(path)
        result = run.effects.command(
            [path, *VERSION_ARGS.get(name, ["--version"])],
            mutates=False,
            env={"CHECKPOINT_DISABLE": "1"},
            check=False,
            timeout=30,
            what=f"{name} version",
        )
        version = parse_version(result.stdout + "\n" + result.stderr)
        cache[path] = {"key": key, "version": list(version) if version else None}
        import contextlib

        from tasks.runtime.files import atomic_write

        with contextlib.suppress(OSError):  # only a cache
            atomic_write(cache_path, json.dumps(cache, indent=1) + "\n", mode=0o600)
    run.memo[memo_key] = version
    return version


def find_tool(run: Run, name: str) -> Finding:
    """The first binary of `name` new enough for the runner (see the module docstring)."""
    memo_key = ("tool", name)
    if memo_key in run.memo:
        return run.memo[memo_key]
    minimum = minimums(run).get(name)
    found = candidates(run, name)
    older: list[str] = []
    finding = None
    for path in found:
        version = version_of(run, path) if minimum else None
        if minimum is None or (version is not None and version >= minimum):
            finding = Finding(name, path, version, minimum, "ok", older)
            break
        older.append(f"{shown(version)} at {path}")
    if finding is None:
        if found:
            first = found[0]
            finding = Finding(name, first, version_of(run, first), minimum, "too-old")
        else:
            finding = Finding(name, None, None, minimum, "missing")
    run.memo[memo_key] = finding
    return finding


def install_hint(run: Run, name: str) -> str:
    from tasks.runtime.config import load_layer_manifest

    for tool in load_layer_manifest(run.project, "l0").get("tools") or []:
        if isinstance(tool, dict) and tool.get("name") == name and tool.get("install"):
            return str(tool["install"])
    return "run `bash setup.sh`"


def tool_path(run: Run, name: str) -> str:
    """The binary to run for `name`; ConfigError (exit 2) when none is there or new enough."""
    finding = find_tool(run, name)
    if finding.status == "ok" and finding.path:
        return finding.path
    raise ConfigError(f"{name}: {finding.describe()}", hint=install_hint(run, name))


def main(argv: list[str]) -> int:
    """`TOOL version ... | python -m tasks.runtime.tools NAME PATH`, for setup.sh (no run, so no
    seam: the shell runs the tool): is that version new enough? Exit 0 yes, 1 no."""
    import yaml

    name, path = argv[0], argv[1] if len(argv) > 1 else argv[0]
    manifest = yaml.safe_load(Path("layers/l0/layer.yaml").read_text(encoding="utf-8")) or {}
    wanted: dict[str, object] = next(
        (t for t in manifest.get("tools") or [] if t.get("name") == name), {}
    )
    minimum = parse_version(str(wanted.get("min_version") or "0"))
    version = parse_version(sys.stdin.read())
    if version and (minimum is None or version >= minimum):
        print(f"setup: {name} {shown(version)} at {path}")
        return 0
    print(f"setup: {name} {shown(version)} at {path}: too old (needs {shown(minimum)} or newer)")
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
