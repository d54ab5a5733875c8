"""Offline, strict schema checks with kubernetes-validate's bundled schemas, loaded once.

`kubernetes_validate.validate()` reads and wraps the 1.8 MB `_definitions.json` on every call
(about 20 ms an object: 20 s for a 1,000-object tree). This module picks the same schema file the
same way (the newest bundled version not newer than the one asked for, the `-strict` variant, the
API group's domain dropped: `rbac.authorization.k8s.io/v1` -> `rbac-v1`) and validates with the
same Draft 2020-12 validator and registry, but builds the registry once per version and one
validator per kind: about 0.2-0.6 ms an object. A kind with no bundled schema (a CRD: Flux,
cert-manager) is `SchemaNotFound`, reported as not schema-checked, never as an error.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

_API = re.compile(r"^([^./]*)(?:\.[^/]*)?/")
_LOCK = threading.Lock()


class SchemaNotFound(Exception):
    pass


def _schema_root() -> Path:
    """kubernetes-validate's schema folder, found without importing the package (it imports
    jsonschema: a warm run whose checks are all cached needs neither)."""
    import importlib.util

    from tasks.runtime.errors import ExternalError

    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise ExternalError(
            "kubernetes-validate is not installed", hint="pip install kubernetes-validate"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "kubernetes-json-schema"


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def bundled_versions() -> list[str]:
    found = []
    for entry in _schema_root().iterdir():
        m = re.match(r"^v([^-]*)-local-strict$", entry.name)
        if m:
            found.append(m.group(1))
    return sorted(found, key=_numbers)


def _major_minor(version: str) -> tuple[int, ...]:
    parts = version.lstrip("v").split(".")
    return tuple(int(p) for p in parts[:2] if p.isdigit())


def resolve_version(wanted: str | None) -> str:
    """The bundled schema version to use for `wanted` (None: the newest)."""
    from tasks.runtime.errors import ConfigError

    versions = bundled_versions()
    if not wanted:
        return versions[-1]
    target = _major_minor(wanted)
    usable = [v for v in versions if _major_minor(v) <= target]
    if not usable or target > _major_minor(versions[-1]):
        raise ConfigError(
            f"--k8s-version {wanted}: no bundled schemas (kubernetes-validate has "
            f"{versions[0]} to {versions[-1]})"
        )
    return usable[-1]


class Validator:
    """Strict validators for one schema version; thread-safe, built lazily per kind."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.folder = _schema_root() / f"v{version}-local-strict"
        self._registry: Any = None
        self._validators: dict[tuple[str, str], Any] = {}

    def _for(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        with _LOCK:
            if key in self._validators:
                found = self._validators[key]
                if found is None:
                    raise SchemaNotFound(key)
                return found
            import jsonschema
            from referencing import Registry, Resource

            group = _API.sub(r"\1-", api_version)
            path = self.folder / f"{kind.lower()}-{group}.json"
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                self._validators[key] = None
                raise SchemaNotFound(key) from None
            if self._registry is None:
                definitions = json.loads(
                    (self.folder / "_definitions.json").read_text(encoding="utf-8")
                )
                self._registry = Resource.from_contents(definitions) @ Registry()
            registry = Resource.from_contents(schema) @ self._registry
            validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
            self._validators[key] = validator
            return validator

    def errors(self, doc: dict[str, Any]) -> list[tuple[str, str]]:
        """(field path, message) for every violation; SchemaNotFound for a kind with no schema."""
        validator = self._for(str(doc.get("apiVersion")), str(doc.get("kind")))
        found = []
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path))):
            path = ".".join(str(p) for p in error.path) or "(top level)"
            found.append((path, error.message))
        return found


_VALIDATORS: dict[str, Validator] = {}


def validator(version: str) -> Validator:
    with _LOCK:
        if version not in _VALIDATORS:
            _VALIDATORS[version] = Validator(version)
        return _VALIDATORS[version]
