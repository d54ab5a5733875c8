"""The contract between the runner and the official PVE API schema.

Every request the Proxmox adapter sends can be recorded (PVE_CALL_LOG: one JSON line
`{method, path, params}` per request). `check_call` proves one such call is a real PVE call: the
path exists in the schema, the method exists on it, every parameter is declared and every
required one is present (path parameters count as present).

The schema is the official Proxmox VE 9.1 API schema (`pve-api-schema.json`, converted from
Proxmox's api-viewer data). A gzipped copy lives in tests/data/ so the suite runs on a clean
clone; tests/test_proxmox_contract.py checks it matches `../shared/pve-api-schema.json` when that
file is present.
"""

from __future__ import annotations

import gzip
import json
import re
import urllib.parse
from functools import cache
from pathlib import Path
from typing import Any

VENDORED = Path(__file__).resolve().parent / "data" / "pve-api-schema.json.gz"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "pve-api-schema.json"


@cache
def schema_nodes() -> list[dict[str, Any]]:
    return json.loads(gzip.decompress(VENDORED.read_bytes()))


@cache
def schema_paths() -> dict[str, dict[str, Any]]:
    """{path template: {METHOD: info}} for every node of the schema tree."""
    found: dict[str, dict[str, Any]] = {}

    def walk(nodes: list[dict[str, Any]]) -> None:
        for node in nodes:
            found[node["path"]] = node.get("info") or {}
            walk(node.get("children") or [])

    walk(schema_nodes())
    return found


@cache
def _matchers() -> list[tuple[re.Pattern[str], str, list[str]]]:
    out = []
    for template in schema_paths():
        names = re.findall(r"\{([^}]+)\}", template)
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$"
        out.append((re.compile(pattern), template, names))
    # Literal segments beat placeholders: /nodes/{node}/qemu/{vmid}/status/current has a
    # placeholder-free sibling for every action.
    out.sort(key=lambda m: (m[1].count("{"), -len(m[1])))
    return out


def match_path(path: str) -> tuple[str, dict[str, str]] | None:
    """(schema template, path parameters) for a concrete API path, or None."""
    path = "/" + path.strip("/")
    for pattern, template, names in _matchers():
        found = pattern.match(path)
        if found:
            values = [urllib.parse.unquote(v) for v in found.groups()]
            return template, dict(zip(names, values, strict=True))
    return None


def check_call(method: str, path: str, params: dict[str, Any]) -> list[str]:
    """Every way this call breaks the schema (empty when it is a real PVE call)."""
    matched = match_path(path)
    if matched is None:
        return [f"{method} {path}: no such path in the PVE API schema"]
    template, path_params = matched
    info = schema_paths()[template].get(method.upper())
    if info is None:
        methods = ", ".join(sorted(schema_paths()[template])) or "none"
        return [f"{method} {path}: {template} has no {method} (it has: {methods})"]
    declared = (info.get("parameters") or {}).get("properties") or {}
    problems = []
    for name in sorted(params):
        if _declared_as(name, declared) is None:
            problems.append(f"{method} {template}: parameter {name!r} is not declared")
    given = set(params) | set(path_params)
    for name, spec in sorted(declared.items()):
        if not spec.get("optional") and name not in given:
            problems.append(f"{method} {template}: required parameter {name!r} is missing")
        if "[n]" in name:
            continue  # numbered families (net[n], scsi[n]) are never required
        if name in params and "enum" in spec and str(params[name]) not in map(str, spec["enum"]):
            problems.append(f"{method} {template}: {name}={params[name]!r} not in {spec['enum']}")
    return problems


def _declared_as(name: str, declared: dict[str, Any]) -> str | None:
    """The schema's name for a parameter: itself, or its numbered family (`net0` -> `net[n]`)."""
    if name in declared:
        return name
    family = re.fullmatch(r"([a-z]+)(\d+)", name)
    if family and f"{family.group(1)}[n]" in declared:
        return f"{family.group(1)}[n]"
    return None


def read_call_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_call_log(path: Path) -> list[str]:
    """Every schema violation among the calls recorded in a PVE_CALL_LOG file."""
    problems: list[str] = []
    for call in read_call_log(path):
        problems += check_call(call["method"], call["path"], call.get("params") or {})
    return sorted(set(problems))
