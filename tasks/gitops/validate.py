"""Offline validation over the whole Kustomization graph (graph.py).

- every rendered object is schema-checked strictly against kubernetes-validate's bundled schemas
  (schemas.py); a SOPS-encrypted file is checked with its `sops:` block dropped; kinds with no
  bundled schema (CRDs: Flux, cert-manager) are reported as not schema-checked;
- every `${VAR}` is checked against the substitution sources of the Kustomization that applies
  it: its `postBuild.substitute`, and the ConfigMaps/Secrets its `substituteFrom` names, found
  anywhere in the graph (a SOPS-encrypted Secret's `data`/`stringData` keys count: nothing is
  decrypted), or made by the runner itself (`cluster-settings` from gitops.bootstrap, the
  runtime-inputs Secret from cluster.apply when the tree does not define it);
- the graph's own problems (cycles, dangling dependsOn, missing paths, renders that fail).
Schema results are cached beside the renders, by the render's key and the schema version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.gitops.graph import Graph, Node, resource_id
from tasks.gitops.layout import mapping
from tasks.gitops.tree import VAR_PATTERN

if TYPE_CHECKING:
    from tasks.adapters.kube import Kube
    from tasks.gitops.settings import GitOpsSettings

CHECKS_VERSION = "checks-1"
SUBSTITUTE_DISABLED = "kustomize.toolkit.fluxcd.io/substitute"
# Made by `inv gitops.bootstrap` in the Flux namespace (tasks/gitops/bootstrap.py).
CLUSTER_SETTINGS = ("cluster-settings", ("CLUSTER", "ENV", "BASE_DOMAIN"))


@dataclass
class Report:
    rendered: list[tuple[str, str, int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    not_schema_checked: dict[str, set[str]] = field(default_factory=dict)  # kind -> Kustomizations
    objects: int = 0
    cached: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k == "sops":
                continue
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _substitution_disabled(doc: dict[str, Any]) -> bool:
    meta = mapping(doc.get("metadata"))
    for where in ("annotations", "labels"):
        values = mapping(meta.get(where))
        if str(values.get(SUBSTITUTE_DISABLED, "")).lower() == "disabled":
            return True
    return False


def validate_tree(settings: GitOpsSettings, kube: Kube, k8s_version: str | None = None) -> Report:
    from tasks.gitops.graph import graph_for

    return validate_graph(settings, graph_for(settings, kube), k8s_version)


def validate_graph(
    settings: GitOpsSettings, graph: Graph, k8s_version: str | None = None
) -> Report:
    from tasks.gitops.schemas import resolve_version

    version = resolve_version(k8s_version)
    report = Report(errors=list(dict.fromkeys(graph.problems)), warnings=list(graph.notes))
    sources = _sources(settings, graph)
    work = settings.project.work / "gitops" / "checks"
    for node in graph.order():
        folder = settings.rel(node.folder)
        if not node.rendered:
            report.rendered.append((_label(settings, node), folder, 0, node.note or "not rendered"))
            continue
        report.objects += len(node.docs)
        report.cached += node.cached
        report.rendered.append(
            (_label(settings, node), folder, len(node.docs), "cached" if node.cached else "")
        )
        _schema(settings, node, version, work, report)
        _substitutions(settings, node, sources, report)
    return report


def _label(settings: GitOpsSettings, node: Node) -> str:
    return node.name if node.namespace == settings["flux_namespace"] else node.key


def _where(settings: GitOpsSettings, node: Node, index: int) -> str:
    origin = node.origins[index] if index < len(node.origins) else ""
    return settings.rel(Path(origin)) if origin else settings.rel(node.folder)


def _schema(settings: GitOpsSettings, node: Node, version: str, work: Path, report: Report) -> None:
    cache = work / f"{node.render_key}-{version}-{CHECKS_VERSION}.json" if node.render_key else None
    results: dict[str, Any] | None = None
    if cache is not None and cache.is_file():
        try:
            results = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            results = None
    if results is None:
        from tasks.gitops.schemas import SchemaNotFound, validator

        check = validator(version)
        results = {"errors": [], "unchecked": []}
        for index, doc in enumerate(node.docs):
            plain = {k: v for k, v in doc.items() if k != "sops"}
            try:
                for path, message in check.errors(plain):
                    results["errors"].append([index, path, message])
            except SchemaNotFound:
                results["unchecked"].append(index)
        if cache is not None:
            from tasks.gitops.graph import _write_cache

            _write_cache(cache, json.dumps(results))
    for index, path, message in results["errors"]:
        doc = node.docs[index]
        report.errors.append(
            f"{_where(settings, node, index)}: {resource_id(doc)} (Flux Kustomization "
            f"{node.name}): {path}: {message}"
        )
    for index in results["unchecked"]:
        doc = node.docs[index]
        kind = f"{doc.get('apiVersion')} {doc.get('kind')}"
        report.not_schema_checked.setdefault(kind, set()).add(_label(settings, node))


def _sources(settings: GitOpsSettings, graph: Graph) -> dict[tuple[str, str, str], set[str]]:
    """Every ConfigMap/Secret a substituteFrom could name: (kind, namespace, name) -> keys."""
    from tasks.gitops.tree import runtime_input_names

    found: dict[tuple[str, str, str], set[str]] = {}
    for node, doc, _origin in graph.all_docs():
        kind = doc.get("kind")
        if kind in ("ConfigMap", "Secret") and str(doc.get("apiVersion")) == "v1":
            meta = mapping(doc.get("metadata"))
            keys = set()
            for part in ("data", "stringData", "binaryData"):
                if isinstance(doc.get(part), dict):
                    keys |= set(map(str, doc[part]))
            found.setdefault(
                (str(kind), str(meta.get("namespace") or node.namespace), str(meta.get("name"))),
                set(),
            ).update(keys)
    flux_ns = settings["flux_namespace"]
    settings_name, settings_keys = CLUSTER_SETTINGS
    found.setdefault(("ConfigMap", flux_ns, settings_name), set(settings_keys))
    runtime = ("Secret", flux_ns, settings["runtime_inputs_secret"])
    if runtime not in found and settings.layout.runtime_inputs_wanted()[0]:
        # Synced from env by `inv cluster.apply`, never in Git: it holds the runtime inputs.
        found[runtime] = set(runtime_input_names(settings))
    return found


def _substitutions(
    settings: GitOpsSettings,
    node: Node,
    sources: dict[tuple[str, str, str], set[str]],
    report: Report,
) -> None:
    defined: set[str] = set(node.substitute)
    for ref in node.substitute_from:
        kind, name = str(ref.get("kind")), str(ref.get("name"))
        key = (kind, node.namespace, name)
        if key in sources:
            defined |= sources[key]
        elif not ref.get("optional"):
            report.errors.append(
                f"{node.label()}: postBuild.substituteFrom {kind} {node.namespace}/{name} is not "
                "defined anywhere in the graph"
            )
    literal: list[str] = []
    for index, doc in enumerate(node.docs):
        if _substitution_disabled(doc):
            continue
        resource = resource_id(doc)
        for text in _strings(doc):
            for match in VAR_PATTERN.finditer(text):
                var, default = match.group(1), match.group(2)
                if not node.post_build:
                    literal.append(f"${{{var}}}")
                    continue
                if default or var in defined:
                    continue
                report.errors.append(
                    f"{_where(settings, node, index)}: {resource}: ${{{var}}} is not defined by "
                    f"Flux Kustomization {node.name}'s postBuild substitute/substituteFrom sources"
                )
    if literal:
        shown = ", ".join(dict.fromkeys(literal))
        report.warnings.append(
            f"{node.label()} has no postBuild, so Flux applies {shown} as written "
            "(add postBuild to substitute them)"
        )
