"""Offline validation of the tree: every Flux Kustomization path rendered with `kubectl kustomize`,
each object checked by kubernetes-validate (strict), and every ${VAR} Flux substitution checked
against the substitution sources of the Kustomization that applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.gitops.tree import VAR_PATTERN, FluxKustomization, render_stack

if TYPE_CHECKING:
    from tasks.adapters.kube import Kube
    from tasks.gitops.settings import GitOpsSettings


@dataclass
class Report:
    rendered: list[tuple[str, str, int]] = field(
        default_factory=list
    )  # (kustomization, folder, objects)
    errors: list[str] = field(default_factory=list)
    not_schema_checked: dict[str, set[str]] = field(default_factory=dict)  # kind -> where

    @property
    def ok(self) -> bool:
        return not self.errors


def _resource(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    ns = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    return f"{doc.get('kind')}/{ns}{meta.get('name')}"


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _source_keys(
    settings: GitOpsSettings,
    sources: dict[tuple[str, str, str], set[str]],
    k: FluxKustomization,
    ref: dict[str, Any],
    report: Report,
) -> set[str]:
    kind, name = str(ref.get("kind")), str(ref.get("name"))
    key = (kind, k.namespace, name)
    if key in sources:
        return sources[key]
    if kind == "Secret" and name == settings["runtime_inputs_secret"]:
        # Synced from env by `inv cluster.apply`, never in Git: it holds the runtime-input variables.
        from tasks.gitops.tree import runtime_input_names

        return set(runtime_input_names(settings))
    if not ref.get("optional"):
        report.errors.append(
            f"Flux Kustomization {k.name}: postBuild.substituteFrom {kind} {k.namespace}/{name} "
            "is not defined anywhere in the tree"
        )
    return set()


def validate_tree(settings: GitOpsSettings, kube: Kube, k8s_version: str | None = None) -> Report:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    version = k8s_version or kubernetes_validate.latest_version()
    report = Report()
    rendered, kustomizations = render_stack(settings, kube, report.errors)
    # Every ConfigMap/Secret in the tree is a possible substitution source.
    sources: dict[tuple[str, str, str], set[str]] = {}
    for _, docs in rendered.values():
        for doc in docs:
            if doc.get("kind") in ("ConfigMap", "Secret") and str(doc.get("apiVersion")) == "v1":
                meta = doc.get("metadata") or {}
                keys = set((doc.get("data") or {}).keys()) | set(
                    (doc.get("stringData") or {}).keys()
                )
                sources[
                    (doc["kind"], str(meta.get("namespace") or "default"), str(meta.get("name")))
                ] = keys
    by_name = {k.name: k for k in kustomizations}
    for owner, (folder, docs) in rendered.items():
        report.rendered.append((owner, folder, len(docs)))
        k = by_name.get(owner)
        defined: set[str] = set(k.substitute) if k else set()
        if k:
            for ref in k.substitute_from:
                defined |= _source_keys(settings, sources, k, ref, report)
        for doc in docs:
            resource = _resource(doc)
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except SchemaNotFoundError:
                report.not_schema_checked.setdefault(
                    f"{doc.get('apiVersion')} {doc.get('kind')}", set()
                ).add(folder)
            except ValidationError as exc:
                path = ".".join(str(p) for p in exc.path) or "(top level)"
                report.errors.append(f"{folder}: {resource}: {path}: {exc.message}")
            for text in _strings(doc):
                for match in VAR_PATTERN.finditer(text):
                    var, default = match.group(1), match.group(2)
                    if default or var in defined:
                        continue
                    if k is None:
                        report.errors.append(
                            f"{folder}: {resource}: ${{{var}}} is in the cluster entry, which Flux applies without substitution"
                        )
                    else:
                        report.errors.append(
                            f"{folder}: {resource}: ${{{var}}} is not defined by Flux Kustomization {k.name}'s "
                            "postBuild substitute/substituteFrom sources"
                        )
    return report
