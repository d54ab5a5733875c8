"""Where the GitOps tree lives and what its fixed files are called, from inventory/runner.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.runtime.project import Project
    from tasks.runtime.run import Run

# The seed's contract names; runner.yaml `gitops.*` may override each of them.
DEFAULTS = {
    "branch": "main",
    "remote": "origin",
    "flux_namespace": "flux-system",
    "platform_settings": "flux-system/sources/configmap-platform-settings.yaml",
    "runtime_inputs_secret": "platform-runtime-inputs",
    "runtime_inputs_path": "platform-services/runtime-inputs",
}
CERT_ISSUERS = {"staging": "letsencrypt-staging", "prod": "letsencrypt-prod"}


@dataclass(frozen=True)
class GitOpsSettings:
    run: Run
    root: Path  # the tree: clusters/, infrastructure/, platform-services/, tenants/
    cluster: str
    options: dict[str, str]

    @classmethod
    def load(cls, run: Run) -> GitOpsSettings:
        project = run.project
        raw = _gitops_section(project)
        where = project.rel(project.inventory / "runner.yaml")
        for key in ("root", "cluster"):
            if not raw.get(key):
                raise ConfigError(
                    f"{where}: gitops.{key} is not set",
                    hint="set gitops.root (the Flux tree) and gitops.cluster (its folder under clusters/)",
                )
        root = (project.root / str(raw["root"])).resolve()
        if not root.is_dir():
            raise ConfigError(f"{where}: gitops.root {raw['root']!r} is not a folder")
        options = {k: str(raw.get(k) or v) for k, v in DEFAULTS.items()}
        return cls(run, root, str(raw["cluster"]), options)

    @property
    def project(self) -> Project:
        return self.run.project

    def __getitem__(self, key: str) -> str:
        return self.options[key]

    @property
    def cluster_dir(self) -> Path:
        return self.root / "clusters" / self.cluster

    @property
    def platform_settings_file(self) -> Path:
        return self.cluster_dir / self["platform_settings"]

    @property
    def tenants_file(self) -> Path:
        return self.cluster_dir / "tenants.yaml"

    @property
    def modes_dir(self) -> Path:
        return self.cluster_dir / "modes"

    @property
    def runtime_inputs_dir(self) -> Path:
        return self.root / self["runtime_inputs_path"]

    def rel(self, path: Path) -> str:
        return self.project.rel(path)

    @cached_property
    def repo_root(self) -> Path:
        """The Git repository holding the tree: Flux `path`s are relative to it."""
        from tasks.adapters.git import Git

        return Git(self.run.effects).toplevel(self.root) or self.project.root

    @property
    def flux_root(self) -> str:
        """The tree's root as Flux sees it (`./layers/gitops`, or `.` in a repo of its own)."""
        rel = self.root.relative_to(self.repo_root).as_posix()
        return "./" + rel if rel != "." else "."

    def resolve_flux_path(self, flux_path: str) -> Path:
        """A Flux Kustomization `spec.path`, as a local folder."""
        return (self.repo_root / flux_path.lstrip("/")).resolve()


def configured_cluster(project: Project) -> str:
    """`gitops.cluster` of runner.yaml (the rehearsal names the cluster it bootstraps)."""
    return str(_gitops_section(project).get("cluster") or "")


def _gitops_section(project: Project) -> dict[str, object]:
    """runner.yaml's `gitops:` mapping, checked by hand.

    Not through project.settings: its JSON Schema check imports jsonschema (~65 ms), a third of a
    mode target's whole run, and this section is a handful of strings.
    """
    from tasks.runtime.config import parse_yaml

    path = project.inventory / "runner.yaml"
    where = project.rel(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: runner settings not found") from None
    data = parse_yaml(text, where) or {}
    section = data.get("gitops") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(
            f"{where}: no `gitops:` mapping", hint="add gitops.root and gitops.cluster"
        )
    for key, value in section.items():
        if not isinstance(value, str):
            raise ConfigError(f"{where}: gitops.{key} must be a string, not {type(value).__name__}")
    return section
