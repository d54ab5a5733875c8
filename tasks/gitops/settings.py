"""Where the GitOps tree lives, from inventory/runner.yaml; its pieces are discovered (layout.py).

`gitops.root` (the tree, usually its Git repository) is the one required key; `gitops.cluster`
picks a cluster where the tree has several. Every piece the runner finds by itself (the Flux entry,
the platform-settings ConfigMap, the tenants file, the modes folder, the runtime-inputs folder) can
be pinned with a key of its own; `inv gitops.layout` shows what was found and from where.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.gitops.layout import Entry, Layout
    from tasks.runtime.project import Project
    from tasks.runtime.run import Run

# Names runner.yaml `gitops.*` may override. Paths are relative to gitops.root.
DEFAULTS = {
    "branch": "main",
    "remote": "origin",
    "flux_namespace": "flux-system",
    "platform_settings_name": "platform-settings",
    "runtime_inputs_secret": "platform-runtime-inputs",
}
# Pieces the runner discovers; each key pins one (a path relative to gitops.root).
PIECE_KEYS = ("entry", "platform_settings", "tenants", "modes", "runtime_inputs_path")
KNOWN_KEYS = frozenset({"root", "cluster", *DEFAULTS, *PIECE_KEYS})
CERT_ISSUERS = {"staging": "letsencrypt-staging", "prod": "letsencrypt-prod"}


@dataclass(frozen=True)
class GitOpsSettings:
    run: Run
    root: Path  # the tree (a folder of a Git repository, or the repository itself)
    configured_cluster: str  # gitops.cluster, or "" (one cluster in the tree)
    options: dict[str, str]
    overrides: dict[str, str]  # the piece keys runner.yaml sets (relative to root)
    where: str = "inventory/runner.yaml"

    @classmethod
    def load(cls, run: Run) -> GitOpsSettings:
        """The run's settings, read once per run (every step of an orchestrator shares them)."""
        cached = _LOADED.get(id(run))
        if cached is not None and cached.run is run:
            return cached
        project = run.project
        raw = _gitops_section(project)
        where = project.rel(project.inventory / "runner.yaml")
        if not raw.get("root"):
            raise ConfigError(
                f"{where}: gitops.root is not set",
                hint="set gitops.root to the Flux tree (its Git repository, or a folder of it)",
            )
        root = (project.root / str(raw["root"])).resolve()
        if not root.is_dir():
            raise ConfigError(f"{where}: gitops.root {raw['root']!r} is not a folder")
        options = {k: str(raw.get(k) or v) for k, v in DEFAULTS.items()}
        overrides = {k: str(raw[k]) for k in PIECE_KEYS if raw.get(k)}
        settings = cls(run, root, str(raw.get("cluster") or ""), options, overrides, where)
        _LOADED[id(run)] = settings
        return settings

    @classmethod
    def for_tree(
        cls, run: Run, root: Path, *, cluster: str = "", entry: str = "", where: str = ""
    ) -> GitOpsSettings:
        """Settings for a tree that is not runner.yaml's (the bootstrap's clone)."""
        return cls(
            run,
            root.resolve(),
            cluster,
            dict(DEFAULTS),
            {"entry": entry} if entry else {},
            where or run.project.rel(root),
        )

    @property
    def project(self) -> Project:
        return self.run.project

    def __getitem__(self, key: str) -> str:
        return self.options[key]

    def key(self, name: str) -> str:
        """How a message names a runner.yaml key."""
        return f"gitops.{name} in {self.where}"

    # ------------------------------------------------------------------ discovered pieces

    @cached_property
    def layout(self) -> Layout:
        from tasks.gitops.layout import Layout

        return Layout(self)

    @property
    def cluster(self) -> str:
        """gitops.cluster, else the entry folder's name."""
        if self.configured_cluster:
            return self.configured_cluster
        entry = self.layout.entry
        return self.resolve_flux_path(entry.path).name if entry else ""

    @property
    def entry(self) -> Entry:
        return self.layout.require("entry")  # type: ignore[return-value]

    @property
    def cluster_dir(self) -> Path:
        return self.layout.cluster_dir

    @property
    def platform_settings_file(self) -> Path:
        return self.layout.require("platform_settings")  # type: ignore[return-value]

    @property
    def tenants_file(self) -> Path:
        return self.layout.require("tenants")  # type: ignore[return-value]

    @property
    def modes_dir(self) -> Path:
        return self.layout.require("modes")  # type: ignore[return-value]

    @property
    def runtime_inputs_dir(self) -> Path | None:
        return self.layout.runtime_inputs_dir

    # ------------------------------------------------------------------ paths

    def rel(self, path: Path) -> str:
        return self.project.rel(path)

    @cached_property
    def repo_root(self) -> Path:
        """The Git repository holding the tree: Flux `path`s are relative to it."""
        from tasks.adapters.git import Git

        return Git(self.run.effects).toplevel(self.root) or self.root

    @property
    def flux_root(self) -> str:
        """The tree's root as Flux sees it (`./layers/gitops`, or `.` in a repo of its own)."""
        rel = self.root.relative_to(self.repo_root).as_posix()
        return "./" + rel if rel != "." else "."

    def resolve_flux_path(self, flux_path: str) -> Path:
        """A Flux Kustomization `spec.path`, as a local folder."""
        return (self.repo_root / flux_path.strip().lstrip("/")).resolve()

    def flux_path(self, folder: Path) -> str:
        """A local folder as a Flux `spec.path` (relative to the repository)."""
        rel = folder.resolve().relative_to(self.repo_root).as_posix()
        return "./" + rel if rel != "." else "./"


_LOADED: dict[int, GitOpsSettings] = {}


# ------------------------------------------------------------------ the kubeconfig hand-off


def handoff_kubeconfig(project: Project) -> Path:
    """Where the host orchestrator's k3s install leaves the cluster's kubeconfig:
    `.work/<gitops.cluster, else home>/kubeconfig` (0600, server rewritten)."""
    return project.work / (configured_cluster(project) or "home") / "kubeconfig"


def kubeconfig_env(run: Run) -> dict[str, str]:
    """What every cluster task adds to kubectl's and flux's env: the handed-off kubeconfig when it
    exists, unless the env names a KUBECONFIG itself (which always wins)."""
    if (run.env.get("KUBECONFIG") or "").strip():
        return {}
    path = handoff_kubeconfig(run.project)
    return {"KUBECONFIG": str(path)} if path.is_file() else {}


def kubeconfig_source(run: Run) -> tuple[list[Path], str]:
    """The kubeconfig file(s) cluster tasks use, and why (for plans, notes and errors)."""
    import os

    raw = (run.env.get("KUBECONFIG") or "").strip()
    if raw:
        paths = [Path(p).expanduser() for p in raw.split(os.pathsep) if p]
        return paths, f"KUBECONFIG from {run.env.where('KUBECONFIG')}"
    handed = handoff_kubeconfig(run.project)
    if handed.is_file():
        return [handed], "handed off by the k3s install (inv host.apply / inv up)"
    return [Path("~/.kube/config").expanduser()], (
        f"kubectl's default: no KUBECONFIG and no {run.project.rel(handed)} "
        "(the k3s install writes it)"
    )


def kube_for(run: Run):
    """The kube adapter with the kubeconfig every cluster task uses by default (flux.*,
    cluster.*, gitops.bootstrap): `Kube(run)` plus `kubeconfig_env`."""
    from tasks.adapters.kube import Kube

    return Kube(run, env=kubeconfig_env(run))


def require_kubeconfig(run: Run) -> tuple[list[Path], str]:
    """Refuse a cluster task early when no kubeconfig exists (kubectl would otherwise fall back to
    localhost:8080 and print its own connection errors); else `kubeconfig_source`'s answer."""
    from tasks.runtime.errors import ConfigError

    paths, why = kubeconfig_source(run)
    if not any(p.is_file() for p in paths):
        raise ConfigError(
            "no kubeconfig: " + ", ".join(str(p) for p in paths) + f" not found ({why})",
            hint="install k3s with `inv host.apply` (it hands the kubeconfig off), or set "
            "KUBECONFIG (env file, Doppler or shell) to the cluster's kubeconfig",
        )
    return paths, why


def cluster_kube(run: Run):
    """`kube_for(run)` once a kubeconfig exists (`require_kubeconfig`)."""
    require_kubeconfig(run)
    return kube_for(run)


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
    except UnicodeDecodeError as exc:
        from tasks.runtime.config import not_utf8

        raise ConfigError(not_utf8(Path(where), exc)) from None
    data = parse_yaml(text, where) or {}
    section = data.get("gitops") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: no `gitops:` mapping", hint="add gitops.root")
    for key, value in section.items():
        if not isinstance(value, str):
            raise ConfigError(f"{where}: gitops.{key} must be a string, not {type(value).__name__}")
        if key not in KNOWN_KEYS:
            import difflib

            close = difflib.get_close_matches(str(key), sorted(KNOWN_KEYS), n=1)
            raise ConfigError(
                f"{where}: unknown key gitops.{key}"
                + (f" (did you mean gitops.{close[0]}?)" if close else ""),
                hint="known keys: " + ", ".join(sorted(KNOWN_KEYS)),
            )
    return section
