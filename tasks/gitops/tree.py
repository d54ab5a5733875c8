"""Specs: what the GitOps tree declares (Flux Kustomizations, app modes, runtime inputs)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.adapters.kube import Kube
    from tasks.gitops.settings import GitOpsSettings

FLUX_KUSTOMIZATION_API = "kustomize.toolkit.fluxcd.io/"
# Flux post-build substitution: ${VAR}, ${VAR:=default}, ${VAR:-default}; `$${VAR}` is an escape.
VAR_PATTERN = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-=][^}]*)?\}")


@dataclass(frozen=True)
class FluxKustomization:
    name: str
    namespace: str
    path: str
    depends_on: tuple[str, ...] = ()
    substitute: dict[str, str] = field(default_factory=dict)
    substitute_from: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> FluxKustomization:
        meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
        post = spec.get("postBuild") or {}
        return cls(
            name=str(meta.get("name")),
            namespace=str(meta.get("namespace") or "flux-system"),
            path=str(spec.get("path") or "./"),
            depends_on=tuple(str(d.get("name")) for d in spec.get("dependsOn") or []),
            substitute={str(k): str(v) for k, v in (post.get("substitute") or {}).items()},
            substitute_from=tuple(post.get("substituteFrom") or ()),
        )


def parse_docs(text: str, where: str) -> list[dict[str, Any]]:
    import yaml

    try:
        return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from None


def is_flux_kustomization(doc: dict[str, Any]) -> bool:
    return doc.get("kind") == "Kustomization" and str(doc.get("apiVersion", "")).startswith(
        FLUX_KUSTOMIZATION_API
    )


def cluster_docs(settings: GitOpsSettings, kube: Kube) -> list[dict[str, Any]]:
    if not settings.cluster_dir.is_dir():
        raise ConfigError(
            f"{settings.rel(settings.cluster_dir)}: cluster folder not found",
            hint="check gitops.root and gitops.cluster in inventory/runner.yaml",
        )
    return parse_docs(kube.kustomize(settings.cluster_dir), settings.rel(settings.cluster_dir))


def flux_kustomizations(settings: GitOpsSettings, kube: Kube) -> list[FluxKustomization]:
    return [
        FluxKustomization.from_doc(d)
        for d in cluster_docs(settings, kube)
        if is_flux_kustomization(d)
    ]


def stack_order(
    settings: GitOpsSettings, items: list[FluxKustomization]
) -> list[FluxKustomization]:
    """The entry Kustomization (the one applying the cluster folder) first, then by dependsOn."""
    by_name = {k.name: k for k in items}
    ordered: list[FluxKustomization] = []
    visiting: set[str] = set()

    def visit(k: FluxKustomization) -> None:
        if k in ordered:
            return
        if k.name in visiting:
            raise ConfigError(f"Flux Kustomization {k.name}: dependsOn forms a cycle")
        visiting.add(k.name)
        for dep in k.depends_on:
            if dep in by_name:
                visit(by_name[dep])
        visiting.discard(k.name)
        ordered.append(k)

    entry = [
        k for k in items if settings.resolve_flux_path(k.path) == settings.cluster_dir.resolve()
    ]
    for k in entry + items:
        visit(k)
    return ordered


def runtime_input_names(settings: GitOpsSettings) -> list[str]:
    """The runtime-input variables: every ${VAR} the runtime-inputs target manifests use."""
    folder = settings.runtime_inputs_dir
    if not folder.is_dir():
        raise ConfigError(f"{settings.rel(folder)}: runtime-inputs folder not found")
    names: set[str] = set()
    for path in sorted(folder.rglob("*.y*ml")):
        if path.name in ("kustomization.yaml", "kustomization.yml"):
            continue
        names.update(m.group(1) for m in VAR_PATTERN.finditer(path.read_text(encoding="utf-8")))
    return sorted(names)


def modes(settings: GitOpsSettings) -> dict[str, Path]:
    folder = settings.modes_dir
    if not folder.is_dir():
        raise ConfigError(
            f"{settings.rel(folder)}: modes folder not found",
            hint="app modes are tenants.yaml templates in clusters/<cluster>/modes/ (`inv configure` renders them)",
        )
    found = {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    if not found:
        raise ConfigError(f"{settings.rel(folder)}: no mode templates (*.yaml) in the modes folder")
    return found


def current_mode(settings: GitOpsSettings, available: dict[str, Path]) -> str | None:
    """The mode whose template tenants.yaml equals, if any."""
    if not settings.tenants_file.exists():
        return None
    text = settings.tenants_file.read_bytes()
    return next((name for name, path in available.items() if path.read_bytes() == text), None)


def render_stack(settings: GitOpsSettings, kube: Kube, errors: list[str] | None = None):
    """Render the cluster entry and every Flux Kustomization path it declares.

    Returns ({owner: (folder, docs)}, kustomizations); owner is a Flux Kustomization name, or
    "(cluster entry)". With `errors`, a folder that fails is recorded there and skipped.
    """
    entry_rel = settings.rel(settings.cluster_dir)
    entry_docs = cluster_docs(settings, kube)
    rendered: dict[str, tuple[str, list[dict[str, Any]]]] = {
        "(cluster entry)": (entry_rel, entry_docs)
    }
    kustomizations = [FluxKustomization.from_doc(d) for d in entry_docs if is_flux_kustomization(d)]
    for k in kustomizations:
        folder = settings.resolve_flux_path(k.path)
        where = f"Flux Kustomization {k.name} (path {k.path})"
        if folder == settings.cluster_dir.resolve():
            continue
        try:
            if not folder.is_dir():
                raise ConfigError(f"folder {settings.rel(folder)} does not exist")
            docs = parse_docs(kube.kustomize(folder), settings.rel(folder))
        except ConfigError as exc:
            if errors is None:
                raise ConfigError(f"{where}: {exc.message}") from None
            errors.append(f"{where}: {exc.message}")
            continue
        rendered[k.name] = (settings.rel(folder), docs)
    return rendered, kustomizations


def namespaces(rendered) -> list[str]:
    """Every Namespace the tree declares."""
    return sorted(
        {
            str((d.get("metadata") or {}).get("name"))
            for _, docs in rendered.values()
            for d in docs
            if d.get("kind") == "Namespace" and d.get("apiVersion") == "v1"
        }
    )
