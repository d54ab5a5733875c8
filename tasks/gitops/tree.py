"""Specs: what the GitOps tree declares for the mode targets and the runtime inputs.

The Flux Kustomizations themselves are graph.py's (the whole graph, rendered); here: the app
modes (templates of the tenants file) and the runtime-input variables.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.gitops.settings import GitOpsSettings

# Flux post-build substitution: ${VAR}, ${VAR:=default}, ${VAR:-default}; `$${VAR}` is an escape.
VAR_PATTERN = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-=][^}]*)?\}")


def parse_docs(text: str, where: str) -> list[dict[str, Any]]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return [d for d in yaml.load_all(text, Loader=loader) if isinstance(d, dict)]  # noqa: S506
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from None


def runtime_input_names(settings: GitOpsSettings) -> list[str]:
    """The runtime-input variables: every ${VAR} the runtime-inputs target manifests use."""
    folder = settings.runtime_inputs_dir
    if folder is None or not folder.is_dir():
        return []
    names: set[str] = set()
    for path in sorted(folder.rglob("*.y*ml")):
        if path.name in ("kustomization.yaml", "kustomization.yml"):
            continue
        names.update(m.group(1) for m in VAR_PATTERN.finditer(path.read_text(encoding="utf-8")))
    return sorted(names)


def modes(settings: GitOpsSettings) -> dict[str, Path]:
    folder = settings.modes_dir
    found = {p.stem: p for p in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])}
    if not found:
        raise ConfigError(f"{settings.rel(folder)}: no mode templates (*.yaml) in the modes folder")
    return dict(sorted(found.items()))


def resolve_mode(available: dict[str, Path], wanted: str, where: str) -> str:
    """A mode by its file stem, or by a short form the stem ends with or holds between dashes
    (`staging-le-prod` for `tenants-app-staging-le-prod`) when exactly one stem has it."""
    if wanted in available:
        return wanted
    pattern = re.compile(rf"(^|-){re.escape(wanted)}($|-)")
    candidates = [name for name in available if pattern.search(name)]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise ConfigError(
            f"app mode {wanted!r} is ambiguous: it matches {', '.join(candidates)}",
            hint="give the whole name (the file stem)",
        )
    raise ConfigError(
        f"unknown app mode {wanted!r}; valid modes: {', '.join(available)}",
        hint="modes are the templates in " + where,
    )


def current_mode(settings: GitOpsSettings, available: dict[str, Path]) -> str | None:
    """The mode whose template the tenants file equals (line endings aside), if any."""
    target = settings.tenants_file
    if not target.exists():
        return None
    text = target.read_bytes().replace(b"\r\n", b"\n")
    return next(
        (
            name
            for name, path in available.items()
            if path.read_bytes().replace(b"\r\n", b"\n") == text
        ),
        None,
    )
