"""The whole Kustomization graph: built once per run, used by every GitOps task.

From the entry (layout.py) down: each Flux Kustomization is rendered as kustomize-controller
renders it, and every Flux Kustomization in its output is a node of the next level, recursively.
A node keeps its `sourceRef`, `dependsOn` (any level), `postBuild.substitute`/`substituteFrom`,
`decryption`, the file that declares it and the Kustomization that applies it.

Rendering, as kustomize-controller does:
- a folder with a kustomization file is used as it is; a folder without one gets what Flux
  generates: every manifest below it and every sub-folder with a kustomization file of its own;
- the Kustomization's own `targetNamespace`, `namePrefix`/`nameSuffix`, `patches`, `images` and
  `components` are applied on top;
- files outside the folder may be loaded (Flux builds with kustomize's load restrictor off).
That wrapper kustomization is written to a temporary folder under `.work/gitops/tmp/`, never in
the tree, and rendered with `kubectl kustomize` and `buildMetadata: [originAnnotations]`, so every
object names the file it came from. kubectl's own start-up is most of a small render, so the
wrappers of one level are rendered in batches (up to BATCH side by side in one kubectl call, each
object marked with its node), the batches in parallel through the bounded fan-out; a batch that
fails is rendered again node by node, so every error names its own Kustomization. Renders are
cached under `.work/gitops/renders/` by the content hash of their inputs (inputs.py): nothing
changed, nothing is rendered again.

Cycles (in `dependsOn`, or a Kustomization depending on one it applies), dangling `dependsOn`,
sources that are not defined, paths that do not exist and folders that do not render are
`problems`, each naming the Kustomization and the file declaring it. Operations refuse a graph
with problems (`check()`); `k8s.validate` lists them with everything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.gitops.layout import (
    FLUX_SOURCE_API,
    Entry,
    is_flux_kustomization,
    kustomization_file,
    mapping,
    meta_of,
    spec_of,
)
from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.adapters.kube import Kube
    from tasks.gitops.settings import GitOpsSettings

CACHE_VERSION = "graph-render-1"
ORIGIN = "config.kubernetes.io/origin"
MARK = "homelab-runner.invalid/render"  # which node of a batch an object came from
BATCH = 16  # nodes per `kubectl kustomize` at most
SOURCE_KINDS = {
    "GitRepository": "git",
    "OCIRepository": "oci",
    "Bucket": "bucket",
    "HelmRepository": "helm",
}
_GRAPHS_LOCK = threading.Lock()


def resource_id(doc: dict[str, Any]) -> str:
    meta = meta_of(doc)
    ns = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    return f"{doc.get('kind')}/{ns}{meta.get('name')}"


@dataclass
class Node:
    """One Flux Kustomization of the graph."""

    name: str
    namespace: str
    path: str
    folder: Path
    source: tuple[str, str, str]  # (kind, namespace, name)
    depends_on: tuple[tuple[str, str], ...] = ()  # (namespace, name)
    substitute: dict[str, str] = field(default_factory=dict)
    substitute_from: tuple[dict[str, Any], ...] = ()
    post_build: bool = False
    decryption: str = ""  # the provider (sops), or ""
    declared_in: str = ""  # the file that declares it
    parent: str | None = None  # the key of the Kustomization that applies it
    level: int = 0
    doc: dict[str, Any] = field(default_factory=dict)
    docs: list[dict[str, Any]] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)  # per doc: the file it came from
    rendered: bool = False
    cached: bool = False
    render_key: str | None = None
    wrapper: dict[str, Any] = field(default_factory=dict)
    local: bool = True
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_doc(
        cls,
        doc: dict[str, Any],
        settings: GitOpsSettings,
        *,
        declared_in: str,
        parent: Node | None,
        default_namespace: str,
    ) -> Node:
        meta, spec = meta_of(doc), spec_of(doc)
        namespace = str(meta.get("namespace") or default_namespace)
        post = spec["postBuild"] if isinstance(spec.get("postBuild"), dict) else None
        ref = mapping(spec.get("sourceRef"))
        decryption = mapping(spec.get("decryption"))
        flux_path = str(spec.get("path") or "./")
        return cls(
            name=str(meta.get("name")),
            namespace=namespace,
            path=flux_path,
            folder=settings.resolve_flux_path(flux_path),
            source=(
                str(ref.get("kind") or "GitRepository"),
                str(ref.get("namespace") or namespace),
                str(ref.get("name") or ""),
            ),
            depends_on=tuple(
                (str(d.get("namespace") or namespace), str(d.get("name")))
                for d in spec.get("dependsOn") or []
                if isinstance(d, dict)
            ),
            substitute={str(k): str(v) for k, v in ((post or {}).get("substitute") or {}).items()},
            substitute_from=tuple(
                r for r in (post or {}).get("substituteFrom") or () if isinstance(r, dict)
            ),
            post_build=post is not None,
            decryption=str(decryption.get("provider") or ""),
            declared_in=declared_in,
            parent=parent.key if parent else None,
            level=parent.level + 1 if parent else 0,
            doc=doc,
        )

    def label(self) -> str:
        return f"Flux Kustomization {self.name} ({self.declared_in})"


class Graph:
    def __init__(self, settings: GitOpsSettings, entry: Entry) -> None:
        self.settings = settings
        self.entry_decl = entry
        self.nodes: dict[str, Node] = {}
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.source_docs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.local_sources: set[tuple[str, str, str]] = {entry.source_key}
        self._order: list[Node] | None = None

    @property
    def entry(self) -> Node:
        return next(iter(self.nodes.values()))

    def add(self, node: Node) -> None:
        self.nodes[node.key] = node
        self._order = None

    # ------------------------------------------------------------------ structure

    def order(self) -> list[Node]:
        """Dependency order: a Kustomization after the one applying it and after its dependsOn."""
        if self._order is not None:
            return self._order
        done: set[str] = set()
        visiting: list[str] = []
        result: list[Node] = []
        cycles: list[str] = []

        def visit(node: Node) -> None:
            if node.key in done:
                return
            if node.key in visiting:
                loop = visiting[visiting.index(node.key) :] + [node.key]
                cycles.append(" -> ".join(loop))
                return
            visiting.append(node.key)
            edges = [d for d in node.depends_on if f"{d[0]}/{d[1]}" in self.nodes]
            for ns, name in edges:
                visit(self.nodes[f"{ns}/{name}"])
            if node.parent and node.parent in self.nodes:
                visit(self.nodes[node.parent])
            visiting.pop()
            done.add(node.key)
            result.append(node)

        for node in list(self.nodes.values()):
            visit(node)
        self._cycles = cycles
        self._order = result
        return result

    def cycles(self) -> list[str]:
        self.order()
        return self._cycles

    def _check_structure(self) -> None:
        for node in self.nodes.values():
            for ns, name in node.depends_on:
                if f"{ns}/{name}" not in self.nodes:
                    self.problems.append(
                        f"{node.label()}: dependsOn {ns}/{name}, which is not in the graph"
                    )
            if node.source not in self.local_sources and node.source not in self.source_docs:
                kind, ns, name = node.source
                self.problems.append(
                    f"{node.label()}: sourceRef {kind} {ns}/{name} is not defined in the graph"
                )
        for cycle in self.cycles():
            keys = cycle.split(" -> ")
            steps = []
            for a, b in zip(keys, keys[1:], strict=False):
                node = self.nodes[a]
                how = "is applied by" if node.parent == b else "dependsOn"
                steps.append(f"{node.name} ({node.declared_in}) {how} {self.nodes[b].name}")
            self.problems.append("Kustomization cycle: " + "; ".join(steps))

    def check(self) -> None:
        """Operations need a sound graph: every problem at once, as one error."""
        if self.problems:
            problems = list(dict.fromkeys(self.problems))
            raise ConfigError(
                f"the Kustomization graph has {len(problems)} problem(s):\n  "
                + "\n  ".join(problems),
                hint="`inv k8s.validate` shows the whole report",
            )

    # ------------------------------------------------------------------ queries

    def sources(self) -> list[tuple[str, str, str]]:
        """Every source the stack uses, in the order its first user is reconciled."""
        seen: dict[tuple[str, str, str], None] = {}
        for node in self.order():
            seen.setdefault(node.source)
        return list(seen)

    def find(self, wanted: str) -> Node:
        """A Kustomization by `name` or `namespace/name`; unknown or ambiguous: exit 2."""
        if wanted in self.nodes:
            return self.nodes[wanted]
        matches = [n for n in self.nodes.values() if n.name == wanted]
        if len(matches) == 1:
            return matches[0]
        names = ", ".join(self.names())
        if matches:
            raise ConfigError(
                f"{wanted!r} names several Kustomizations: "
                + ", ".join(n.key for n in matches)
                + "; give NAMESPACE/NAME"
            )
        raise ConfigError(
            f"unknown Kustomization {wanted!r}; Flux Kustomizations of the graph: {names}"
        )

    def names(self) -> list[str]:
        counts: dict[str, int] = {}
        for n in self.nodes.values():
            counts[n.name] = counts.get(n.name, 0) + 1
        return [n.name if counts[n.name] == 1 else n.key for n in self.order()]

    def all_docs(self) -> list[tuple[Node, dict[str, Any], str]]:
        return [
            (node, doc, origin)
            for node in self.nodes.values()
            for doc, origin in zip(node.docs, node.origins, strict=False)
        ]

    def namespaces(self) -> list[str]:
        """Every Namespace the graph declares."""
        return sorted(
            {
                str(meta_of(d).get("name"))
                for _, d, _ in self.all_docs()
                if d.get("kind") == "Namespace" and d.get("apiVersion") == "v1"
            }
        )


# ---------------------------------------------------------------------- building


def graph_for(settings: GitOpsSettings, kube: Kube) -> Graph:
    """The run's graph of this tree (built on first use)."""
    entry = settings.entry
    key = (id(settings.run), str(settings.root), entry.key, str(entry.file))
    with _GRAPHS_LOCK:
        found = _GRAPHS.get(key)
    if found is not None and found[0] is settings.run:
        return found[1]
    graph = Builder(settings, kube, entry).build()
    with _GRAPHS_LOCK:
        _GRAPHS[key] = (settings.run, graph)
    return graph


_GRAPHS: dict[tuple[Any, ...], tuple[Any, Graph]] = {}


def render_parallel() -> int:
    return max(2, min(8, (os.cpu_count() or 2) * 2))


class Builder:
    def __init__(self, settings: GitOpsSettings, kube: Kube, entry: Entry) -> None:
        self.settings = settings
        self.kube = kube
        self.entry = entry
        self.work = settings.project.work / "gitops"
        self.digests: dict[Path, str] = {}
        self.tool = _tool_identity(settings)

    def build(self) -> Graph:
        settings = self.settings
        graph = Graph(settings, self.entry)
        root = Node.from_doc(
            self.entry.doc,
            settings,
            declared_in=settings.rel(self.entry.file),
            parent=None,
            default_namespace=self.entry.namespace,
        )
        graph.add(root)
        level = [root]
        while level:
            for node in level:
                if node.source not in graph.local_sources:
                    kind, ns, name = node.source
                    node.local = False
                    node.note = f"not rendered: its source {kind} {ns}/{name} is another repository"
                    graph.notes.append(f"{node.label()}: {node.note}")
            todo = [n for n in level if n.local]
            for node, problem in self.render_level(todo):
                graph.problems.append(f"{node.label()}: {problem}")
            next_level: list[Node] = []
            for node in level:
                if node.rendered:
                    next_level.extend(self._children(graph, node))
            level = next_level
        graph._check_structure()
        self._check_decryption(graph)
        return graph

    def _children(self, graph: Graph, node: Node) -> list[Node]:
        settings = self.settings
        found = []
        entry_url = _normal_url(self.entry.source_url)
        for doc, origin in zip(node.docs, node.origins, strict=True):
            kind = str(doc.get("kind"))
            if kind in SOURCE_KINDS and str(doc.get("apiVersion", "")).startswith(FLUX_SOURCE_API):
                meta = meta_of(doc)
                key = (kind, str(meta.get("namespace") or node.namespace), str(meta.get("name")))
                graph.source_docs[key] = doc
                url = _normal_url(str(spec_of(doc).get("url") or ""))
                if kind == "GitRepository" and entry_url and url == entry_url:
                    graph.local_sources.add(key)
            if not is_flux_kustomization(doc):
                continue
            child = Node.from_doc(
                doc,
                settings,
                declared_in=settings.rel(Path(origin)) if origin else node.declared_in,
                parent=node,
                default_namespace=node.namespace,
            )
            if child.key == graph.entry.key:
                continue  # the entry declares itself (flux-system/gotk-sync.yaml)
            if child.key in graph.nodes:
                other = graph.nodes[child.key]
                graph.problems.append(
                    f"Flux Kustomization {child.key} is declared twice: in {other.declared_in} "
                    f"and in {child.declared_in}"
                )
                continue
            found.append(child)
        found.sort(key=lambda n: (n.namespace, n.name))
        for child in found:
            graph.add(child)
        return found

    def _check_decryption(self, graph: Graph) -> None:
        for node, doc, origin in graph.all_docs():
            if "sops" in doc and node.decryption != "sops":
                graph.problems.append(
                    f"{node.label()}: {resource_id(doc)} ({self.settings.rel(Path(origin))}) is "
                    "SOPS-encrypted, but this Kustomization has no spec.decryption.provider: sops"
                )

    # ------------------------------------------------------------------ one render

    def wrapper(self, node: Node, base: Path) -> dict[str, Any]:
        """The kustomization Flux would build for `node`, with paths relative to `base`."""
        folder = node.folder

        def rel(path: Path) -> str:
            return os.path.relpath(path, base)

        k: dict[str, Any] = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
        }
        if kustomization_file(folder):
            k["resources"] = [rel(folder)]
        else:
            k["resources"] = [rel(p) for p in generated_resources(folder)]
        spec = spec_of(node.doc)
        if spec.get("targetNamespace"):
            k["namespace"] = str(spec["targetNamespace"])
        for key in ("namePrefix", "nameSuffix"):
            if spec.get(key):
                k[key] = str(spec[key])
        patches = [p for p in spec.get("patches") or [] if isinstance(p, dict)]
        if patches:
            k["patches"] = [
                {key: p[key] for key in ("patch", "target") if p.get(key) is not None}
                for p in patches
            ]
        if spec.get("images"):
            k["images"] = spec["images"]
        if spec.get("components"):
            k["components"] = [rel(folder / str(c)) for c in spec["components"]]
        return k

    def prepare(self, node: Node) -> str | None:
        """The node's wrapper and cache key; its render from the cache when there is one.
        Returns a problem (the folder is missing), else None."""
        from tasks.gitops.inputs import Inputs, Uncacheable

        folder = node.folder
        if not folder.is_dir():
            return f"folder {self.settings.rel(folder)} does not exist (spec.path {node.path})"
        wrapper = self.wrapper(node, self.work / "tmp" / "_" / "_")
        node.wrapper = wrapper
        text = json.dumps(wrapper, indent=1, sort_keys=True)
        try:
            inputs = Inputs(self.digests)
            inputs.add_folder(folder)
            for component in spec_of(node.doc).get("components") or []:
                inputs.add_folder(folder / str(component))
            node.render_key = inputs.key(CACHE_VERSION, text, self.tool)
        except Uncacheable:
            node.render_key = None
        cache = self._cache(node)
        if cache is not None and cache.is_file():
            try:
                data = json.loads(cache.read_text(encoding="utf-8"))
                node.docs, node.origins = data["docs"], data["origins"]
                node.rendered = node.cached = True
            except (ValueError, KeyError, OSError):
                pass  # a damaged entry: render again
        return None

    def _cache(self, node: Node) -> Path | None:
        return self.work / "renders" / f"{node.render_key}.json" if node.render_key else None

    def render_level(self, nodes: list[Node]) -> list[tuple[Node, str]]:
        """Render one level: cached nodes from the cache, the rest in batches through the
        fan-out. A batch is one `kubectl kustomize` of several nodes' wrappers side by side
        (each object marked with its node), since kubectl's own start-up is most of a small
        render; a batch that fails (one broken folder, or two nodes rendering the same object)
        is rendered again node by node, so each error names its own Kustomization."""
        from tasks.runtime.fanout import fan_out

        problems: list[tuple[Node, str]] = []
        misses: list[Node] = []
        for node in nodes:
            problem = self.prepare(node)
            if problem:
                problems.append((node, problem))
            elif not node.rendered:
                misses.append(node)
        parallel = render_parallel()
        size = max(1, min(BATCH, -(-len(misses) // parallel)))
        batches = [misses[i : i + size] for i in range(0, len(misses), size)]
        retry: list[list[Node]] = []
        for batch, outcome in zip(
            batches,
            fan_out(batches, self.render_batch, name=lambda b: b[0].key, parallel=parallel),
            strict=True,
        ):
            if outcome.ok:
                continue
            if len(batch) > 1:
                retry.extend([n] for n in batch)
            else:
                problems.append((batch[0], getattr(outcome.error, "message", outcome.detail)))
        for batch, outcome in zip(
            retry,
            fan_out(retry, self.render_batch, name=lambda b: b[0].key, parallel=parallel),
            strict=True,
        ):
            if not outcome.ok:
                problems.append((batch[0], getattr(outcome.error, "message", outcome.detail)))
        return problems

    def render_batch(self, batch: list[Node]) -> None:
        import shutil
        import tempfile

        tmp_root = self.work / "tmp"
        from tasks.runtime.files import make_dirs

        make_dirs(tmp_root)
        scratch = Path(tempfile.mkdtemp(prefix="render-", dir=tmp_root))
        try:
            for index, node in enumerate(batch):
                sub = scratch / f"n{index}"
                sub.mkdir()
                wrapper = {**node.wrapper, "transformers": ["mark.yaml"]}
                (sub / "kustomization.yaml").write_text(json.dumps(wrapper), encoding="utf-8")
                (sub / "mark.yaml").write_text(
                    json.dumps(
                        {
                            "apiVersion": "builtin",
                            "kind": "AnnotationsTransformer",
                            "metadata": {"name": "homelab-runner-mark"},
                            "annotations": {MARK: str(index)},
                            "fieldSpecs": [{"path": "metadata/annotations", "create": True}],
                        }
                    ),
                    encoding="utf-8",
                )
            top = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "buildMetadata": ["originAnnotations"],
                "resources": [f"n{i}" for i in range(len(batch))],
            }
            (scratch / "kustomization.yaml").write_text(json.dumps(top), encoding="utf-8")
            result = self.kube.kustomize_raw(scratch)
            if result.failed:
                from tasks.adapters.kube import kubectl_error

                message = kubectl_error(result.stderr).replace(str(scratch), "(render)")
                what = f"path {batch[0].path}: " if len(batch) == 1 else ""
                raise ConfigError(f"{what}kubectl kustomize failed: {message}")
            docs, origins, marks = _parse_render(result.stdout, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for index, node in enumerate(batch):
            mine = [i for i, m in enumerate(marks) if m == str(index)]
            node.docs = [docs[i] for i in mine]
            node.origins = [origins[i] for i in mine]
            node.rendered = True
            cache = self._cache(node)
            if cache is not None:
                _write_cache(cache, json.dumps({"docs": node.docs, "origins": node.origins}))


def _write_cache(path: Path, text: str) -> None:
    """A cache entry, atomically but without fsync: a lost or torn entry is re-rendered (its JSON
    fails to load), and a hundred fsyncs would cost more than the renders they keep."""
    import tempfile

    from tasks.runtime.files import make_dirs

    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def generated_resources(folder: Path) -> list[Path]:
    """What Flux's generated kustomization lists: every manifest below `folder`, and each
    sub-folder with a kustomization file of its own (not descended into)."""
    found: list[Path] = []
    for top, dirs, names in os.walk(folder):
        here = Path(top)
        kept = []
        for d in sorted(dirs):
            if kustomization_file(here / d):
                found.append(here / d)
            else:
                kept.append(d)
        dirs[:] = kept
        found.extend(here / n for n in sorted(names) if n.endswith((".yaml", ".yml")))
    return sorted(found)


def _parse_render(text: str, base: Path) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The rendered objects, each one's origin file and render mark (both annotations dropped)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs, origins, marks = [], [], []
    for doc in yaml.load_all(text, Loader=loader):  # noqa: S506 (a safe loader)
        if not isinstance(doc, dict):
            continue
        meta = mapping(doc.get("metadata"))
        annotations = mapping(meta.get("annotations"))
        origin = str(annotations.pop(ORIGIN, "") or "")
        marks.append(str(annotations.pop(MARK, "")))
        if "annotations" in meta and not annotations:
            del meta["annotations"]
        where = ""
        for line in origin.splitlines():
            label, _, value = line.partition(":")
            if label.strip() in ("path", "configuredIn") and value.strip():
                where = os.path.normpath(os.path.join(base, value.strip()))
                break
        docs.append(doc)
        origins.append(where)
    return docs, origins, marks


def _normal_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url[:-4] if url.endswith(".git") else url


def _tool_identity(settings: GitOpsSettings) -> str:
    """The kubectl that renders (part of every cache key). No new enough kubectl is one clear
    error (exit 2, with the fix) before any render, not one per Kustomization."""
    from tasks.runtime.tools import tool_path

    env = settings.run.env
    path = tool_path(settings.run, "kubectl")
    try:
        st = os.stat(path)
    except OSError:
        return f"kubectl:{path}"
    real = env.get("REAL_KUBECTL") or ""
    return f"kubectl:{path}:{st.st_size}:{int(st.st_mtime)}:{real}"


def render_entry(settings: GitOpsSettings, kube: Kube, entry: Entry) -> Node:
    """The entry's own folder only (what bootstrap checks before it touches the cluster)."""
    builder = Builder(settings, kube, entry)
    node = Node.from_doc(
        entry.doc,
        settings,
        declared_in=settings.rel(entry.file),
        parent=None,
        default_namespace=entry.namespace,
    )
    problems = builder.render_level([node])
    if problems:
        raise ConfigError(problems[0][1])
    return node
