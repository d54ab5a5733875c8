"""The tree's layout, discovered: the Flux entry and the files the mode targets edit.

Pointing `gitops.root` at a repository in any of the common layouts is all the configuration
needed (NOTES.md describes them):

- `flux bootstrap`: `clusters/<c>/flux-system/gotk-sync.yaml` holds a GitRepository and the
  Kustomization that applies `./clusters/<c>` (the folder holding the file: Flux manages itself);
- any other GitRepository + Kustomization pair in one file, the Kustomization applying a folder
  that holds the file;
- a Flux Operator `FluxInstance`: its `spec.sync` makes the operator create a source and a
  Kustomization, both named after the instance's namespace, applying `spec.sync.path`.

Then, searched in the cluster folder first and in the whole tree after: the platform-settings
ConfigMap (found by kind and name, in any file, multi-document ones included), the modes folder
(`modes/`), the tenants file (the file outside `modes/` declaring the Kustomization the modes
declare; `tenants.yaml` in the cluster folder by default) and the runtime-inputs folder.
Each piece can be pinned in runner.yaml (`gitops.entry`, `gitops.platform_settings`,
`gitops.tenants`, `gitops.modes`, `gitops.runtime_inputs_path`, relative to gitops.root). The
search reads files (text first, YAML only for candidates): it runs no command, so mode targets and
dry runs stay fast and offline.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.gitops.settings import GitOpsSettings

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
FLUX_KUSTOMIZE_API = "kustomize.toolkit.fluxcd.io/"
FLUX_SOURCE_API = "source.toolkit.fluxcd.io/"
FLUX_OPERATOR_API = "fluxcd.controlplane.io/"
SKIP_DIRS = frozenset({"node_modules", "__pycache__"})
# A document's own kind (not a sourceRef's): the line starts with it.
_TOP_KIND_REPO = re.compile(r"^kind:\s*GitRepository\b", re.M)
_TOP_KIND_INSTANCE = re.compile(r"^kind:\s*FluxInstance\b", re.M)

PIECES = {
    # piece: (runner.yaml key, what it is, who needs it)
    "entry": (
        "entry",
        "Flux entry (GitRepository + Kustomization, or a FluxInstance)",
        "every task",
    ),
    "platform_settings": (
        "platform_settings",
        "platform-settings ConfigMap",
        "inv platform.certs",
    ),
    "tenants": ("tenants", "tenants file", "inv app.mode"),
    "modes": ("modes", "modes folder", "inv app.mode"),
}


def kustomization_file(folder: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Entry:
    """The Kustomization Flux starts from, and the source it reads this repository through."""

    layout: str  # "flux bootstrap", "GitRepository + Kustomization", "FluxInstance"
    file: Path  # the file that declares it
    name: str
    namespace: str
    path: str  # spec.path, relative to the repository
    source_kind: str
    source_name: str
    source_namespace: str
    source_url: str = ""
    source_ref: dict[str, Any] = field(default_factory=dict)
    secret_ref: str = ""  # the source's secretRef / pullSecret (Git credentials)
    doc: dict[str, Any] = field(
        default_factory=dict
    )  # the Kustomization (synthetic for a FluxInstance)
    sync_dir: Path | None = (
        None  # folder with a kustomization file holding the declaration (flux-system/)
    )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def source_key(self) -> tuple[str, str, str]:
        return (self.source_kind, self.source_namespace, self.source_name)


class TreeIndex:
    """The tree's YAML files, listed once; texts and parsed documents read on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: list[Path] | None = None
        self._text: dict[Path, str] = {}
        self._docs: dict[Path, list[dict[str, Any]]] = {}
        self.errors: dict[Path, str] = {}

    def files(self) -> list[Path]:
        if self._files is None:
            self._files = _walk(self.root)
        return self._files

    def under(self, folder: Path, exclude: Path | None = None) -> list[Path]:
        """The YAML files below `folder` (walking only it when the whole tree was not listed)."""
        prefix = str(folder.resolve()) + os.sep
        skip = str(exclude.resolve()) + os.sep if exclude else None
        listed = self._files if self._files is not None else _walk(folder.resolve())
        return [
            p
            for p in listed
            if str(p).startswith(prefix) and not (skip and str(p).startswith(skip))
        ]

    def text(self, path: Path) -> str:
        if path not in self._text:
            try:
                raw = path.read_bytes()
            except OSError:
                raw = b""
            if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                self._text[path] = raw.decode("utf-16", "replace")
            else:
                self._text[path] = raw.decode("utf-8-sig", "replace")
        return self._text[path]

    def docs(self, path: Path) -> list[dict[str, Any]]:
        """The file's YAML documents (mappings only); a file that does not parse has none."""
        if path not in self._docs:
            import yaml

            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            try:
                self._docs[path] = [
                    d
                    for d in yaml.load_all(self.text(path), Loader=loader)  # noqa: S506 (safe)
                    if isinstance(d, dict)
                ]
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
                self.errors[path] = f"{at}: invalid YAML: {getattr(exc, 'problem', None) or exc}"
                self._docs[path] = []
        return self._docs[path]


def mapping(value: Any) -> dict[str, Any]:
    """`value` when it is a mapping, else an empty one (YAML documents are untyped)."""
    return value if isinstance(value, dict) else {}


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for top, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        found.extend(Path(top, n) for n in sorted(names) if n.endswith((".yaml", ".yml")))
    return found


def meta_of(doc: dict[str, Any]) -> dict[str, Any]:
    """A document's `metadata`, or {} when it is missing or not a mapping."""
    meta = doc.get("metadata")
    return meta if isinstance(meta, dict) else {}


def spec_of(doc: dict[str, Any]) -> dict[str, Any]:
    """A document's `spec`, or {} when it is missing or not a mapping."""
    spec = doc.get("spec")
    return spec if isinstance(spec, dict) else {}


def is_flux_kustomization(doc: dict[str, Any]) -> bool:
    return doc.get("kind") == "Kustomization" and str(doc.get("apiVersion", "")).startswith(
        FLUX_KUSTOMIZE_API
    )


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


class Layout:
    """The discovered pieces of one tree (see the module docstring); each found once, lazily."""

    def __init__(self, settings: GitOpsSettings) -> None:
        self.settings = settings
        self.index = TreeIndex(settings.root)
        self._found: dict[str, tuple[object | None, str, list[str]]] = {}

    # ------------------------------------------------------------------ the API

    def get(self, piece: str) -> object | None:
        return self._piece(piece)[0]

    def origin(self, piece: str) -> str:
        """`discovered`, `runner.yaml gitops.KEY`, or why it is missing."""
        return self._piece(piece)[1]

    def candidates(self, piece: str) -> list[str]:
        return self._piece(piece)[2]

    def require(self, piece: str) -> object:
        value, origin, candidates = self._piece(piece)
        if value is not None:
            return value
        key, what, _ = PIECES[piece]
        if candidates:
            problem = f"{what} is ambiguous: {origin}: {', '.join(candidates)}"
        else:
            problem = f"{what} not found ({origin})"
        raise ConfigError(
            problem,
            hint=f"set {self.settings.key(key)} (a path relative to gitops.root), "
            "or check gitops.root/gitops.cluster; `inv gitops.layout` shows what was found",
        )

    def missing(self) -> list[tuple[str, str]]:
        """(piece, runner.yaml key) for every piece not found."""
        return [(p, PIECES[p][0]) for p in PIECES if self.get(p) is None]

    @property
    def entry(self) -> Entry | None:
        return self.get("entry")  # type: ignore[return-value]

    @property
    def cluster_dir(self) -> Path:
        """Where this cluster's own files are: clusters/<cluster>, else the entry folder."""
        settings = self.settings
        if settings.configured_cluster:
            folder = settings.root / "clusters" / settings.configured_cluster
            if folder.is_dir():
                return folder.resolve()
            # A clusters/ folder that holds other clusters only, and no entry path naming it:
            # gitops.cluster is misspelt (a tree without clusters/ may use the name for its
            # kubeconfig alone, or as a segment of its entry's path).
            others = (
                sorted(p.name for p in folder.parent.glob("*/")) if folder.parent.is_dir() else []
            )
            entry = self.entry
            named = entry is not None and settings.configured_cluster in Path(entry.path).parts
            if others and not named:
                raise ConfigError(
                    f"inventory/runner.yaml: gitops.cluster {settings.configured_cluster!r} has no "
                    f"folder {settings.rel(folder)}; clusters there: {', '.join(others)}",
                    hint="fix gitops.cluster in inventory/runner.yaml (`inv gitops.layout` shows "
                    "what was found)",
                )
        entry = self.entry
        if entry is not None:
            folder = settings.resolve_flux_path(entry.path)
            if folder.is_dir():
                return folder
        return settings.root

    @property
    def runtime_inputs_dir(self) -> Path | None:
        return self.get("runtime_inputs")  # type: ignore[return-value]

    # ------------------------------------------------------------------ discovery

    def _piece(self, piece: str) -> tuple[object | None, str, list[str]]:
        if piece not in self._found:
            finder = getattr(self, f"_find_{piece}")
            self._found[piece] = finder()
        return self._found[piece]

    def _override(self, key: str) -> Path | None:
        raw = self.settings.overrides.get(key)
        return (self.settings.root / raw).resolve() if raw else None

    def _pinned(self, key: str, path: Path, *, folder: bool) -> str:
        if not (path.is_dir() if folder else path.is_file()):
            kind = "folder" if folder else "file"
            raise ConfigError(
                f"{self.settings.key(key)}: {self.settings.rel(path)} is not a {kind}",
                hint="paths in runner.yaml's gitops section are relative to gitops.root",
            )
        return f"runner.yaml gitops.{key}"

    def _find_entry(self) -> tuple[Entry | None, str, list[str]]:
        settings = self.settings
        pinned = self._override("entry")
        files = [pinned] if pinned else self.index.files()
        origin = self._pinned("entry", pinned, folder=False) if pinned else "discovered"
        found: list[Entry] = []
        for path in files:
            found.extend(self._entries_in(path))
        if pinned:
            if not found:
                raise ConfigError(
                    f"{settings.key('entry')}: {settings.rel(pinned)} declares no Flux entry "
                    "(a GitRepository with a Kustomization applying the folder that holds it, "
                    "or a FluxInstance with spec.sync)"
                )
            return found[0], origin, []
        names = [f"{e.key} ({settings.rel(e.file)})" for e in found]
        if len(found) > 1 and settings.configured_cluster:
            cluster = settings.configured_cluster
            matching = [
                e
                for e in found
                if cluster in Path(e.path).parts
                or cluster in e.file.relative_to(settings.root).parts
            ]
            if len(matching) == 1:
                return matching[0], origin, []
            found = matching or found
        if len(found) == 1:
            return found[0], origin, []
        if not found:
            return None, f"none found under {settings.rel(settings.root)}", []
        return None, "several found (set gitops.cluster or gitops.entry)", names

    def _entries_in(self, path: Path) -> list[Entry]:
        text = self.index.text(path)
        entries: list[Entry] = []
        if "FluxInstance" in text and FLUX_OPERATOR_API in text and _TOP_KIND_INSTANCE.search(text):
            for doc in self.index.docs(path):
                if doc.get("kind") == "FluxInstance" and isinstance(spec_of(doc).get("sync"), dict):
                    entries.append(self._instance_entry(path, doc))
        if "GitRepository" in text and FLUX_KUSTOMIZE_API in text and _TOP_KIND_REPO.search(text):
            entries.extend(self._pair_entries(path))
        return entries

    def entries_for(self, folder: Path) -> list[Entry]:
        """The entries declared in the tree whose Kustomization applies `folder`."""
        folder = folder.resolve()
        return [
            e
            for p in self.index.files()
            for e in self._entries_in(p)
            if self.settings.resolve_flux_path(e.path) == folder
        ]

    def _instance_entry(self, path: Path, doc: dict[str, Any]) -> Entry:
        sync = spec_of(doc)["sync"]
        namespace = str(meta_of(doc).get("namespace") or self.settings["flux_namespace"])
        name = str(sync.get("name") or namespace)
        kind = str(sync.get("kind") or "GitRepository")
        flux_path = str(sync.get("path") or "./")
        ks = {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "path": flux_path,
                "prune": True,
                "sourceRef": {"kind": kind, "name": name},
            },
        }
        ref = sync.get("ref")
        return Entry(
            layout="FluxInstance",
            file=path,
            name=name,
            namespace=namespace,
            path=flux_path,
            source_kind=kind,
            source_name=name,
            source_namespace=namespace,
            source_url=str(sync.get("url") or ""),
            source_ref={"ref": ref} if ref else {},
            secret_ref=str(sync.get("pullSecret") or ""),
            doc=ks,
        )

    def _pair_entries(self, path: Path) -> list[Entry]:
        settings = self.settings
        docs = self.index.docs(path)
        flux_ns = settings["flux_namespace"]
        repos = {
            (str(meta_of(d).get("namespace") or flux_ns), str(meta_of(d).get("name"))): d
            for d in docs
            if d.get("kind") == "GitRepository"
            and str(d.get("apiVersion", "")).startswith(FLUX_SOURCE_API)
        }
        entries = []
        for doc in docs:
            if not is_flux_kustomization(doc):
                continue
            meta, spec = meta_of(doc), spec_of(doc)
            namespace = str(meta.get("namespace") or flux_ns)
            ref = mapping(spec.get("sourceRef"))
            source_ns = str(ref.get("namespace") or namespace)
            repo = repos.get((source_ns, str(ref.get("name"))))
            if repo is None or ref.get("kind") != "GitRepository":
                continue
            flux_path = str(spec.get("path") or "./")
            if not _is_within(path, settings.resolve_flux_path(flux_path)):
                continue  # not self-managing: a child of some other entry
            folder = path.parent
            sync_dir = folder if kustomization_file(folder) else None
            repo_spec = spec_of(repo)
            secret = mapping(repo_spec.get("secretRef"))
            entries.append(
                Entry(
                    layout="flux bootstrap"
                    if path.name == "gotk-sync.yaml"
                    else "GitRepository + Kustomization",
                    file=path,
                    name=str(meta.get("name")),
                    namespace=namespace,
                    path=flux_path,
                    source_kind="GitRepository",
                    source_name=str(ref.get("name")),
                    source_namespace=source_ns,
                    source_url=str(repo_spec.get("url") or ""),
                    source_ref=dict(repo_spec.get("ref") or {}),
                    secret_ref=str(secret.get("name") or ""),
                    doc=doc,
                    sync_dir=sync_dir,
                )
            )
        return entries

    def _search_folders(self) -> list[Path]:
        cluster = self.cluster_dir
        return (
            [cluster] if cluster == self.settings.root.resolve() else [cluster, self.settings.root]
        )

    def _find_modes(self) -> tuple[Path | None, str, list[str]]:
        pinned = self._override("modes")
        if pinned:
            return pinned, self._pinned("modes", pinned, folder=True), []
        own = self.cluster_dir / "modes"
        if own.is_dir():
            return own, "discovered", []
        folders = sorted(
            {p.parent for p in self.index.files() if p.parent.name == "modes"},
            key=lambda p: (len(p.parts), str(p)),
        )
        if len(folders) == 1:
            return folders[0], "discovered", []
        if not folders:
            return None, f"no modes/ folder under {self.settings.rel(self.settings.root)}", []
        return None, "several modes/ folders", [self.settings.rel(f) for f in folders]

    def _find_tenants(self) -> tuple[Path | None, str, list[str]]:
        pinned = self._override("tenants")
        if pinned:
            return pinned, self._pinned("tenants", pinned, folder=False), []
        default = self.cluster_dir / "tenants.yaml"
        if default.is_file():
            return default, "discovered", []
        modes = self.get("modes")
        if not isinstance(modes, Path):
            return None, f"no tenants.yaml in {self.settings.rel(self.cluster_dir)}", []
        wanted = {
            str(meta_of(d).get("name"))
            for p in sorted(modes.glob("*.y*ml"))[:1]
            for d in self.index.docs(p)
            if is_flux_kustomization(d)
        }
        found = []
        for path in self.index.under(self.cluster_dir, exclude=modes):
            text = self.index.text(path)
            if not any(name in text for name in wanted):
                continue
            if any(
                is_flux_kustomization(d) and str(meta_of(d).get("name")) in wanted
                for d in self.index.docs(path)
            ):
                found.append(path)
        if len(found) == 1:
            return found[0], "discovered", []
        if not found:
            names = ", ".join(sorted(wanted)) or "?"
            return (
                None,
                f"no file in {self.settings.rel(self.cluster_dir)} declares the Kustomization "
                f"the modes declare ({names})",
                [],
            )
        return None, "several files declare it", [self.settings.rel(p) for p in found]

    def _find_platform_settings(self) -> tuple[Path | None, str, list[str]]:
        """The ConfigMap by kind and name; else the one ConfigMap holding CERT_ISSUER."""
        name = self.settings["platform_settings_name"]
        pinned = self._override("platform_settings")
        if pinned:
            return pinned, self._pinned("platform_settings", pinned, folder=False), []
        modes = self.get("modes") if "modes" in self._found else None
        skip = modes if isinstance(modes, Path) else None
        for folder in self._search_folders():
            files = self.index.under(folder, exclude=skip)
            for what, found in (
                (f"ConfigMap {name}", [p for p in files if self.defines(p, "ConfigMap", name)]),
                ("a ConfigMap with data.CERT_ISSUER", [p for p in files if self._holds_issuer(p)]),
            ):
                if len(found) == 1:
                    return found[0], "discovered", []
                if found:
                    return None, f"several files hold {what}", [self.settings.rel(p) for p in found]
        for path in self.index.files():
            if path in self.index.errors and (
                name in self.index.text(path) or "CERT_ISSUER" in self.index.text(path)
            ):
                raise ConfigError(f"{self.settings.rel(path)}{self.index.errors[path]}")
        return (
            None,
            f"no ConfigMap {name} under {self.settings.rel(self.settings.root)} "
            "(gitops.platform_settings_name names it)",
            [],
        )

    def _holds_issuer(self, path: Path) -> bool:
        if "CERT_ISSUER" not in self.index.text(path):
            return False
        return any(
            d.get("kind") == "ConfigMap"
            and isinstance(d.get("data"), dict)
            and "CERT_ISSUER" in d["data"]
            for d in self.index.docs(path)
        )

    def _find_runtime_inputs(self) -> tuple[Path | None, str, list[str]]:
        pinned = self._override("runtime_inputs_path")
        if pinned:
            return pinned, self._pinned("runtime_inputs_path", pinned, folder=True), []
        default = self.settings.root / "platform-services" / "runtime-inputs"
        if default.is_dir():
            return default.resolve(), "discovered", []
        folders = sorted(
            {p.parent for p in self.index.files() if p.parent.name == "runtime-inputs"}
        )
        if len(folders) == 1:
            return folders[0], "discovered", []
        if not folders:
            return (
                None,
                f"no runtime-inputs folder under {self.settings.rel(self.settings.root)}",
                [],
            )
        return None, "several runtime-inputs folders", [self.settings.rel(f) for f in folders]

    # ------------------------------------------------------------------ searches

    def defines(self, path: Path, kind: str, name: str, namespace: str | None = None) -> bool:
        """Whether `path` holds an object of `kind` named `name` (in `namespace`, when given)."""
        text = self.index.text(path)
        if kind not in text or name not in text:
            return False
        for doc in self.index.docs(path):
            meta = meta_of(doc)
            if (
                doc.get("kind") == kind
                and str(meta.get("name")) == name
                and (namespace is None or str(meta.get("namespace") or namespace) == namespace)
            ):
                return True
        return False

    def files_defining(self, kind: str, name: str, namespace: str | None = None) -> list[Path]:
        return [p for p in self.index.files() if self.defines(p, kind, name, namespace)]

    def runtime_inputs_wanted(self) -> tuple[bool, str]:
        """Whether the runner must build the runtime-inputs Secret, and why (not)."""
        settings = self.settings
        secret, ns = settings["runtime_inputs_secret"], settings["flux_namespace"]
        own = self.files_defining("Secret", secret, ns)
        if own:
            sops = any("\nsops:" in self.index.text(p) for p in own)
            return (
                False,
                f"the tree defines {ns}/{secret} itself"
                + (" (SOPS-encrypted)" if sops else "")
                + f": {', '.join(settings.rel(p) for p in own)}",
            )
        if self.runtime_inputs_dir is None:
            return False, self.origin("runtime_inputs")
        return True, ""

    def describe(self) -> list[tuple[str, str, str]]:
        """(piece, value, from) rows for `inv gitops.layout`."""
        settings = self.settings
        rows: list[tuple[str, str, str]] = []
        rows.append(("tree (gitops.root)", settings.rel(settings.root), "runner.yaml gitops.root"))
        rows.append(("repository", str(settings.repo_root), "git rev-parse --show-toplevel"))
        entry = self.entry
        if entry is None:
            listed = self.candidates("entry")
            rows.append(
                (
                    "entry",
                    "MISSING",
                    self.origin("entry") + (": " + ", ".join(listed) if listed else ""),
                )
            )
        else:
            rows.append(("layout", entry.layout, settings.rel(entry.file)))
            rows.append(
                (
                    "entry",
                    f"Kustomization {entry.key}, path {entry.path}",
                    f"{self.origin('entry')} ({settings.rel(entry.file)})",
                )
            )
            source = f"{entry.source_kind} {entry.source_namespace}/{entry.source_name}"
            rows.append(
                ("source", source + (f" {entry.source_url}" if entry.source_url else ""), "")
            )
            rows.append(("cluster folder", settings.rel(self.cluster_dir), settings.cluster or ""))
        for piece, label in (
            ("platform_settings", "platform settings"),
            ("tenants", "tenants file"),
            ("modes", "modes folder"),
            ("runtime_inputs", "runtime inputs"),
        ):
            value = self.get(piece)
            listed = self.candidates(piece)
            if isinstance(value, Path):
                shown = settings.rel(value)
                if piece == "platform_settings":
                    shown = f"ConfigMap {settings['platform_settings_name']} in {shown}"
                rows.append((label, shown, self.origin(piece)))
            else:
                rows.append(
                    (
                        label,
                        "none" if piece == "runtime_inputs" else "MISSING",
                        self.origin(piece) + (": " + ", ".join(listed) if listed else ""),
                    )
                )
        wanted, why = self.runtime_inputs_wanted()
        rows.append(
            (
                "runtime-inputs Secret",
                f"{settings['flux_namespace']}/{settings['runtime_inputs_secret']}",
                "built from env by cluster.apply" if wanted else f"not built: {why}",
            )
        )
        return rows
