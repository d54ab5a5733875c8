"""What is declared: the L1 settings (layer.yaml) and the Packer builds under the templates folder.

Each folder under the templates folder is what `packer build FOLDER` reads: its `*.pkr.hcl` files
(links included) and its `*.auto.pkrvars.hcl` files. A folder with `build` blocks holds one build
per source of each build block, the nested `source "TYPE.NAME" { ... }` overrides merged over the
base source, as Packer sees them; each is a template of its own (`TemplateSpec`) with its own
artifact history. A folder that yields one build is named by the folder (`debian12-k3s`), a folder
of several builds names each `FOLDER/BUILD` (`ubuntu/jammy`). A folder without a build block is
shared HCL (a `common/` folder linked into the templates), not a template.

A folder that cannot be read is a `TemplateProblem`, never a reason to list nothing: discovery
returns every template it could read and one problem per folder it could not. Everything here is
pure apart from reading files; parsed HCL comes from tasks/l1/hcl.py (cached by content hash).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.l1.parsecache import YAML_TAG, cached_parse
from tasks.runtime.errors import ConfigError, HomelabError
from tasks.runtime.records import Record

if TYPE_CHECKING:
    from tasks.l1.hcl import HclFile, VarsFile

HCL_SUFFIX = ".pkr.hcl"
VARS_SUFFIX = ".auto.pkrvars.hcl"
DEFAULT_MANIFEST = "packer-manifest.json"
WORKDIRS = ("folder", "repo")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

_MAPPING = {
    "type": "object",
    "additionalProperties": {"type": ["string", "null"]},
}
_WORKDIR = {"enum": list(WORKDIRS)}
SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "templates": {"type": "string", "minLength": 1},
        "artifacts": {"type": "string", "minLength": 1},
        "packer": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "connection": _MAPPING,
                "variables": _MAPPING,
                "workdir": _WORKDIR,
                "templates": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "connection": _MAPPING,
                            "variables": _MAPPING,
                            "workdir": _WORKDIR,
                        },
                    },
                },
            },
        },
    },
}


# Records are plain classes (see tasks/runtime/records.py): `inv l1.list` imports this module and
# must start nearly as fast as bare Invoke.


class L1Settings(Record):
    """Where L1 keeps its templates and artifacts, and how env values become Packer variables."""

    __slots__ = (
        "layer_dir",
        "templates_dir",
        "artifacts_dir",
        "connection",
        "placement",
        "workdir",
        "overrides",
    )

    def __init__(
        self,
        layer_dir: Path,
        templates_dir: Path,
        artifacts_dir: Path,
        connection: dict[str, str | None],
        placement: dict[str, str | None],
        workdir: str = "folder",
        overrides: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.layer_dir = layer_dir
        self.templates_dir = templates_dir
        self.artifacts_dir = artifacts_dir
        # Packer variable -> "${ENV}" template (None: not mapped). Connection values are how
        # Packer reaches Proxmox and are not part of a template's fingerprint; placement values
        # (node, storage) are.
        self.connection = connection
        self.placement = placement
        self.workdir = workdir
        # Per template (a folder name, or FOLDER/BUILD): its own connection, variables, workdir.
        self.overrides = overrides or {}

    def for_template(self, spec: TemplateSpec) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(connection, placement, workdir) for one build: global < its folder < the build."""
        connection, placement, workdir = dict(self.connection), dict(self.placement), self.workdir
        for key in dict.fromkeys((spec.folder_name, spec.name)):
            override = self.overrides.get(key) or {}
            for var in override.get("connection") or {}:
                placement.pop(var, None)
            for var in override.get("variables") or {}:
                connection.pop(var, None)
            connection.update(override.get("connection") or {})
            placement.update(override.get("variables") or {})
            workdir = override.get("workdir") or workdir
        return connection, placement, workdir


class Variable(Record):
    __slots__ = ("name", "has_default", "default", "sensitive", "type", "where")

    def __init__(
        self,
        name: str,
        has_default: bool,
        default: Any = None,
        sensitive: bool = False,
        type: Any = None,
        where: Any = "",
    ) -> None:
        self.name = name
        self.has_default = has_default
        self.default = default  # as python-hcl2 returned it (a template string, a list...)
        self.sensitive = sensitive
        self.type = type
        self.where = where  # file:line (a Place: worked out when shown)


class Source(Record):
    """One build's source: the base `source` block with the build's nested overrides merged."""

    __slots__ = ("type", "name", "attrs", "base", "origins")

    def __init__(
        self,
        type: str,
        name: str,
        attrs: dict[str, Any],
        base: str = "",
        origins: dict[str, tuple[Any, tuple[Any, ...]]] | None = None,
    ) -> None:
        self.type = type
        self.name = name  # the build's source name (a nested `name = ...` overrides the base's)
        self.attrs = attrs
        self.base = base or f"{type}.{name}"  # the `source` block it comes from
        # attribute -> (HclFile, block path in it), for messages that name file:line
        self.origins = origins or {}

    @property
    def label(self) -> str:
        return f"{self.type}.{self.name}"


class TemplateFolder:
    """One folder as parsed: everything its builds share."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.abs_path = os.path.abspath(path)
        self.real_path: str | None = None  # links resolved, worked out once (inputcache)
        self.links: dict[str, bool] = {}  # path -> is a link, for this folder's inputs
        self.linked: set[str] | None = None  # names in the folder that are links (None: unknown)
        self.files: list[HclFile] = []
        self.var_files: list[VarsFile] = []
        self.variables: dict[str, Variable] = {}
        self.locals: dict[str, Any] = {}
        self.local_where: dict[str, Any] = {}
        self.auto_values: dict[str, Any] = {}
        self.auto_where: dict[str, str] = {}
        self.plugins: dict[str, Any] = {}
        self.required_version: list[tuple[str, Any]] = []  # (constraint, file:line)
        self._exprs: dict[str, Any] | None = None
        self._words: dict[str, list[str]] | None = None
        self._pathy: set[str] | None = None
        self.static_words: list[str] | None = None  # worked out once (tasks/l1/inputcache.py)
        self.builds: list[TemplateSpec] = []
        self.entries: list[str] = []

    def __repr__(self) -> str:
        return f"TemplateFolder({self.name!r}, builds={[b.name for b in self.builds]})"

    # Needed only to evaluate a build (not when its inputs are remembered): merged on first use.
    @property
    def exprs(self) -> dict[str, Any]:
        if self._exprs is None:
            self._exprs = {k: v for f in self.files for k, v in f.exprs.items()}
        return self._exprs

    @property
    def words(self) -> dict[str, list[str]]:
        if self._words is None:
            self._words = {k: v for f in self.files for k, v in f.words.items()}
        return self._words

    @property
    def pathy(self) -> set[str]:
        if self._pathy is None:
            self._pathy = {p for f in self.files for p in f.pathy}
        return self._pathy


class TemplateSpec:
    """One build as Packer sees it (`BUILD.TYPE.NAME`), the unit L1 lists, builds and records."""

    def __init__(
        self,
        folder: TemplateFolder,
        name: str,
        build_name: str,
        packer_name: str,
        build_label: str,
        source: Source,
        build: dict[str, Any],
        build_file: HclFile,
        build_path: tuple[Any, ...],
    ) -> None:
        self.folder_spec = folder
        self.name = name  # FOLDER, or FOLDER/BUILD in a folder of several builds
        self.build_name = build_name  # the short name within the folder
        self.packer_name = packer_name  # Packer's own: `BUILD.TYPE.NAME` or `TYPE.NAME`
        self.build_label = build_label  # the build block's `name` ("" when none)
        self.source = source
        self.build = build
        self.build_file = build_file
        self.build_path = build_path
        self.manifest_output: str | None = None
        for pp in post_processors(build):
            if "manifest" in pp and applies(pp["manifest"], self):
                body = pp["manifest"] if isinstance(pp["manifest"], dict) else {}
                raw = body.get("output") or DEFAULT_MANIFEST
                self.manifest_output = str(raw)

    def __repr__(self) -> str:
        return f"TemplateSpec({self.name!r}, {self.packer_name!r})"

    # The folder's parts, as every build sees them.
    @property
    def folder(self) -> Path:
        return self.folder_spec.path

    @property
    def folder_name(self) -> str:
        return self.folder_spec.name

    @property
    def files(self) -> list[Path]:
        return [f.path for f in self.folder_spec.files]

    @property
    def var_files(self) -> list[Path]:
        return [f.path for f in self.folder_spec.var_files]

    @property
    def variables(self) -> dict[str, Variable]:
        return self.folder_spec.variables

    @property
    def locals(self) -> dict[str, Any]:
        return self.folder_spec.locals

    @property
    def auto_values(self) -> dict[str, Any]:
        return self.folder_spec.auto_values

    @property
    def plugins(self) -> dict[str, Any]:
        return self.folder_spec.plugins

    @property
    def sources(self) -> list[Source]:
        return [self.source]

    @property
    def source_label(self) -> str:
        if self.source.base != self.source.label:
            return f"{self.source.label} (from {self.source.base})"
        return self.source.label

    @property
    def builders(self) -> set[str]:
        return {self.source.type}

    @property
    def several(self) -> bool:
        """True when the folder holds other builds too (Packer then needs `-only`)."""
        return len(self.folder_spec.builds) > 1


class TemplateProblem(Record):
    """A folder (or build) that could not be read: listed with its error, never dropped."""

    __slots__ = ("name", "folder", "error")

    def __init__(self, name: str, folder: Path, error: HomelabError) -> None:
        self.name = name
        self.folder = folder
        self.error = error


class Discovery(Record):
    __slots__ = ("templates", "problems", "shared")

    def __init__(
        self, templates: list[TemplateSpec], problems: list[TemplateProblem], shared: list[str]
    ) -> None:
        self.templates = templates
        self.problems = problems
        self.shared = shared  # folders of shared HCL (no build block)


# ------------------------------------------------------------------ settings


def load_settings(layer_dir: Path, cache_dir: Path | None) -> L1Settings:
    """`layers/l1/layer.yaml`'s L1 keys, with defaults for a layer.yaml that has none."""
    path = layer_dir / "layer.yaml"
    data: dict[str, Any] = {}
    if path.exists():
        data = cached_parse(path, path.read_bytes(), YAML_TAG, _yaml_load(path), cache_dir) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        _check_settings(data, path)
    packer = data.get("packer") or {}
    return L1Settings(
        layer_dir=layer_dir,
        templates_dir=layer_dir / data.get("templates", "templates"),
        artifacts_dir=layer_dir / data.get("artifacts", "artifacts"),
        connection=dict(packer.get("connection") or {}),
        placement=dict(packer.get("variables") or {}),
        workdir=packer.get("workdir") or "folder",
        overrides=dict(packer.get("templates") or {}),
    )


def _yaml_load(path: Path):
    def parse(text: str) -> Any:
        from tasks.runtime.config import parse_yaml

        return parse_yaml(text, str(path))

    return parse


def _mapping_ok(group: Any) -> bool:
    return isinstance(group, dict) and all(isinstance(v, str | None) for v in group.values())


def _check_settings(data: dict[str, Any], path: Path) -> None:
    # The cheap checks run on every call; the schema (jsonschema is a slow import) only when they
    # find something off, so a warm `inv l1.list` stays fast and a bad file still gets a full report.
    packer = data.get("packer", {})
    overrides = packer.get("templates") or {} if isinstance(packer, dict) else None
    ok = (
        isinstance(data.get("templates", ""), str)
        and isinstance(data.get("artifacts", ""), str)
        and isinstance(packer, dict)
        and set(packer) <= {"connection", "variables", "workdir", "templates"}
        and packer.get("workdir", "folder") in WORKDIRS
        and all(_mapping_ok(packer.get(k) or {}) for k in ("connection", "variables"))
        and isinstance(overrides, dict)
        and all(
            isinstance(o, dict)
            and set(o) <= {"connection", "variables", "workdir"}
            and o.get("workdir", "folder") in WORKDIRS
            and all(_mapping_ok(o.get(k) or {}) for k in ("connection", "variables"))
            for o in overrides.values()
        )
    )
    if not ok:
        from tasks.runtime.config import validate

        validate(data, SETTINGS_SCHEMA, path)


# ------------------------------------------------------------------ discovery


def discover(settings: L1Settings, cache_dir: Path | None, digests: Any = None) -> Discovery:
    """Every build under the templates folder (sorted by name), one problem per unreadable folder.

    `digests` (a tasks/l1/digests.py DigestCache) spares reading HCL files that did not change."""
    root = settings.templates_dir
    names = _listing(root)
    if names is None:
        return Discovery([], [], [])
    templates: list[TemplateSpec] = []
    problems: list[TemplateProblem] = []
    shared: list[str] = []
    checkout = checkout_root(root)
    for name in _hcl_names(names):
        if os.path.isfile(root / name):
            problems.append(
                TemplateProblem(
                    name,
                    root,
                    ConfigError(
                        f"{_shown(root / name, checkout)} sits directly in the templates folder",
                        hint="give each template its own folder: templates/NAME/NAME.pkr.hcl",
                    ),
                )
            )
    for name in names:
        if name.startswith("."):
            continue
        entries = _listing(root / name)
        if entries is None or not _hcl_names(entries):
            continue
        try:
            folder = load_folder(root / name, cache_dir, checkout, entries, settings, digests)
        except HomelabError as exc:
            problems.append(TemplateProblem(name, root / name, exc))
            continue
        if not folder.builds:
            shared.append(name)
        templates += folder.builds
    return Discovery(templates, problems, shared)


def _listing(folder: Path) -> list[str] | None:
    """The sorted names in `folder`, or None when it is not a folder. The names that are links
    are remembered (`_LINKED`): the directory entry says so without another system call."""
    try:
        with os.scandir(folder) as scan:
            found = list(scan)
    except (NotADirectoryError, FileNotFoundError):
        return None
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot list the template folder: {exc.strerror}") from None
    _LINKED[os.fspath(folder)] = {e.name for e in found if e.is_symlink()}
    return sorted(e.name for e in found)


# folder -> the names in it that are links, from the last listing of it.
_LINKED: dict[str, set[str]] = {}


def _hcl_names(entries: list[str], suffix: str = HCL_SUFFIX) -> list[str]:
    # Hidden files are skipped, as Packer's own `*.pkr.hcl` glob does.
    return [n for n in entries if n.endswith(suffix) and not n.startswith(".")]


def select(
    settings: L1Settings,
    name: str,
    cache_dir: Path | None,
    *,
    several: bool = False,
    digests: Any = None,
) -> list[TemplateSpec]:
    """The builds `name` names: `FOLDER` (every build of the folder when `several`), `FOLDER/BUILD`,
    or a build's short name when only one folder has it. ConfigError lists the known names."""
    folder_name, _, build = name.partition("/")
    folder_path = settings.templates_dir / folder_name
    found: list[TemplateSpec] | None = None
    if folder_name and not folder_name.startswith(".") and "/" not in build:
        entries = _listing(folder_path)
        if entries is not None and _hcl_names(entries):
            folder = load_folder(
                folder_path,
                cache_dir,
                checkout_root(settings.templates_dir),
                entries,
                settings,
                digests,
            )
            if not build:
                found = folder.builds
            else:
                found = [b for b in folder.builds if build in (b.build_name, b.packer_name)]
            if not folder.builds:
                raise ConfigError(
                    f"{folder_name} has no build block: it is shared HCL, not a template",
                    hint="templates link or reference its files; build those templates instead",
                )
    if not found:
        everything = discover(settings, cache_dir, digests)
        if found is None and "/" not in name:
            found = [b for b in everything.templates if b.build_name == name]
        if not found:
            known = [t.name for t in everything.templates]
            raise ConfigError(
                f"no Packer template named {name!r} under {settings.templates_dir}",
                hint=f"known templates: {', '.join(known) or '(none)'}",
            )
    if len(found) > 1 and not several:
        raise ConfigError(
            f"{name} holds {len(found)} builds; name one of them",
            hint="one of: " + ", ".join(b.name for b in found),
        )
    return found


def find_template(settings: L1Settings, name: str, cache_dir: Path | None) -> TemplateSpec:
    return select(settings, name, cache_dir)[0]


# ------------------------------------------------------------------ one folder


def load_folder(
    path: Path,
    cache_dir: Path | None,
    checkout: Path | None = None,
    entries: list[str] | None = None,
    settings: L1Settings | None = None,
    digests: Any = None,
) -> TemplateFolder:
    """Parse one folder into its builds. Errors name the file and line."""
    from tasks.l1.hcl import load_hcl, load_vars_file

    if entries is None:
        entries = _listing(path)
        if entries is None:
            raise ConfigError(f"{path}: not a folder")
    if checkout is None:
        checkout = checkout_root(path.parent)
    folder = TemplateFolder(path.name, path)
    folder.entries = entries
    folder.linked = _LINKED.get(os.fspath(path))
    sources: dict[str, tuple[Source, HclFile, tuple[Any, ...]]] = {}
    builds: list[tuple[dict[str, Any], HclFile, tuple[Any, ...]]] = []
    for name in _hcl_names(entries):
        file_path = path / name
        digest = None
        if digests is not None:
            try:
                digest = digests.digest(os.fspath(file_path))
            except OSError:
                digest = None  # load_hcl names the error
        hcl = load_hcl(file_path, cache_dir, _shown(file_path, checkout), digest)
        folder.files.append(hcl)
        doc = hcl.doc
        for i, block in enumerate(_blocks(doc, "packer")):
            if not isinstance(block, dict):
                continue
            if block.get("required_version") is not None:
                where = hcl.place("packer", i, "required_version")
                folder.required_version.append((str(block["required_version"]), where))
            for req in _blocks(block, "required_plugins"):
                if isinstance(req, dict):
                    folder.plugins.update(req)
        for i, block in enumerate(_blocks(doc, "variable")):
            for var, body in _labelled(block, hcl, ("variable", i), "variable"):
                body = body if isinstance(body, dict) else {}
                where = hcl.place("variable", i)
                if var in folder.variables:
                    raise ConfigError(
                        f"{where}: variable {var!r} is also declared at {folder.variables[var].where}",
                        hint="declare each variable once per folder",
                    )
                sensitive = body.get("sensitive") in (True, "true")
                folder.variables[var] = Variable(
                    var, "default" in body, body.get("default"), sensitive, body.get("type"), where
                )
        for i, block in enumerate(_blocks(doc, "locals")):
            if not isinstance(block, dict):
                continue
            for key, value in block.items():
                where = hcl.place("locals", i, key)
                if key in folder.locals:
                    raise ConfigError(
                        f"{where}: local {key!r} is also defined at {folder.local_where[key]}",
                        hint="define each local once per folder",
                    )
                folder.locals[key] = value
                folder.local_where[key] = where
        for i, block in enumerate(_blocks(doc, "source")):
            for type_, named in _labelled(block, hcl, ("source", i), "source"):
                for sname, body in _labelled(named, hcl, ("source", i), f'source "{type_}"'):
                    label = f"{type_}.{sname}"
                    if label in sources:
                        raise ConfigError(
                            f"{hcl.where('source', i)}: source {label} is also defined at "
                            f"{sources[label][1].where(*sources[label][2])}",
                            hint="define each source once per folder",
                        )
                    attrs = body if isinstance(body, dict) else {}
                    origins = {k: (hcl, ("source", i)) for k in attrs}
                    sources[label] = (
                        Source(type_, sname, attrs, label, origins),
                        hcl,
                        ("source", i),
                    )
        for i, block in enumerate(_blocks(doc, "build")):
            if isinstance(block, dict):
                builds.append((block, hcl, ("build", i)))
    for var_name in _hcl_names(entries, VARS_SUFFIX):
        vars_file = load_vars_file(path / var_name, _shown(path / var_name, checkout))
        folder.var_files.append(vars_file)
        for key, value in vars_file.values.items():
            folder.auto_values[key] = value  # later files win, as in Packer (lexical order)
            folder.auto_where[key] = f"{vars_file.shown}:{vars_file.lines.get(key, 0)}"
    _register_sensitive(folder)
    folder.builds = _builds(folder, sources, builds)
    return folder


def _register_sensitive(folder: TemplateFolder) -> None:
    """Values of sensitive variables from var files are secrets: masked in everything printed."""
    from tasks.runtime.secrets import MASKER, is_secret_name

    for key, value in folder.auto_values.items():
        var = folder.variables.get(key)
        if isinstance(value, str) and ((var is not None and var.sensitive) or is_secret_name(key)):
            MASKER.add(value)


def _builds(
    folder: TemplateFolder,
    sources: dict[str, tuple[Source, HclFile, tuple[Any, ...]]],
    builds: list[tuple[dict[str, Any], HclFile, tuple[Any, ...]]],
) -> list[TemplateSpec]:
    found: list[tuple[str, str, str, Source, dict[str, Any], HclFile, tuple[Any, ...]]] = []
    for body, hcl, where in builds:
        label = str(body.get("name") or "")
        refs: list[tuple[str, dict[str, Any] | None, tuple[Any, ...]]] = []
        for ref in body.get("sources") or []:
            if isinstance(ref, str):
                refs.append((ref, None, (*where, "sources")))
        for j, nested in enumerate(_blocks(body, "source")):
            for ref, override in _labelled(nested, hcl, (*where, "source", j), "source"):
                refs.append(
                    (ref, override if isinstance(override, dict) else {}, (*where, "source", j))
                )
        units: list[tuple[str, Source, bool]] = []
        for ref, override, ref_where in refs:
            key = ref.removeprefix("source.")
            if key not in sources:
                known = ", ".join(sorted(sources)) or "none"
                raise ConfigError(
                    f"{hcl.where(*ref_where)}: the build uses source {key}, which no file of "
                    f"{folder.name} defines (sources: {known})",
                    hint="define the source block, or link the file that defines it into the folder",
                )
            base = sources[key][0]
            if override is None:
                units.append((base.name, base, False))
                continue
            attrs = {**base.attrs, **{k: v for k, v in override.items() if k != "name"}}
            origins = dict(base.origins)
            origins.update({k: (hcl, ref_where) for k in override if k != "name"})
            name = str(override.get("name") or base.name)
            units.append((name, Source(base.type, name, attrs, key, origins), "name" in override))
        for sname, source, renamed in units:
            packer_name = f"{label}.{source.type}.{sname}" if label else f"{source.type}.{sname}"
            short = label if (label and len(units) == 1 and not renamed) else sname
            found.append((short, packer_name, label, source, body, hcl, where))
    shorts = [f[0] for f in found]
    specs: list[TemplateSpec] = []
    for short, packer_name, label, source, body, hcl, where in found:
        if shorts.count(short) > 1:
            short = packer_name
        name = folder.name if len(found) == 1 else f"{folder.name}/{short}"
        specs.append(
            TemplateSpec(folder, name, short, packer_name, label, source, body, hcl, where)
        )
    return sorted(specs, key=lambda s: s.name)


def _blocks(doc: Any, key: str) -> list[Any]:
    value = doc.get(key) if isinstance(doc, dict) else None
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _labelled(block: Any, hcl: HclFile, path: tuple[Any, ...], what: str) -> list[tuple[str, Any]]:
    if not isinstance(block, dict):
        raise ConfigError(f"{hcl.where(*path)}: {what} block without a label")
    return list(block.items())


def post_processors(build: dict[str, Any]) -> list[dict[str, Any]]:
    found = [pp for pp in _blocks(build, "post-processor") if isinstance(pp, dict)]
    for chain in _blocks(build, "post-processors"):
        found += [pp for pp in _blocks(chain, "post-processor") if isinstance(pp, dict)]
    return found


def applies(body: Any, spec: TemplateSpec) -> bool:
    """A provisioner or post-processor's `only`/`except` (source names, Packer's globs)."""
    if not isinstance(body, dict):
        return True
    only, skip = body.get("only"), body.get("except")
    if not only and not skip:
        return True
    from fnmatch import fnmatchcase

    names = {spec.source.label, f"source.{spec.source.label}", spec.packer_name}
    if (
        isinstance(only, list)
        and only
        and not any(fnmatchcase(n, str(p)) for n in names for p in only)
    ):
        return False
    return not (
        isinstance(skip, list) and skip and any(fnmatchcase(n, str(p)) for n in names for p in skip)
    )


@functools.lru_cache(maxsize=32)
def real_folder(path: str) -> str:
    """`os.path.realpath`, once per folder per run: every template shares its parent folder and
    the checkout root."""
    return os.path.realpath(path)


def checkout_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding `tasks.py` or `.git`."""
    here = Path(real_folder(os.fspath(start)))
    for folder in (here, *here.parents):
        if (folder / "tasks.py").exists() or (folder / ".git").exists():
            return folder
    return None


def _shown(path: Path, checkout: Path | None) -> str:
    text = os.path.abspath(path)
    root = str(checkout) if checkout else ""
    return text[len(root) + 1 :] if root and text.startswith(root + os.sep) else text


# ------------------------------------------------------------------ variables


def api_url(env: dict[str, str]) -> str | None:
    """`https://HOST:PORT/api2/json` from PVE_ACCESS_HOST, read by the Proxmox adapter's own parser
    (so Packer and the runner accept exactly the same values). ConfigError when it is malformed."""
    raw = (env.get("PVE_ACCESS_HOST") or "").strip()
    if not raw:
        return None
    from tasks.adapters.proxmox import parse_access_host

    try:
        host, port = parse_access_host(raw)
    except ValueError as exc:
        raise ConfigError(
            f"PVE_ACCESS_HOST: {exc}",
            hint="give host, host:port or https://host:port (the port defaults to 8006)",
        ) from None
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}/api2/json"


def _lookup(env: dict[str, str], name: str) -> str:
    value = env.get(name) or ""
    if name == "PVE_API_URL" and not value.strip():
        value = api_url(env) or ""
    return value


def _is_set(env: dict[str, str], name: str) -> bool:
    if (env.get(name) or "").strip():
        return True
    return name == "PVE_API_URL" and bool((env.get("PVE_ACCESS_HOST") or "").strip())


def expand(template: str, env: dict[str, str]) -> tuple[str | None, list[str]]:
    """Expand `${NAME}` from `env` (plus the derived PVE_API_URL); (None, missing) when any is unset."""
    names = _ENV_REF.findall(template)
    missing = [n for n in names if not _is_set(env, n)]
    if missing:
        return None, missing
    return _ENV_REF.sub(lambda m: _lookup(env, m.group(1)), template), names


class PackerVariables:
    """The values the runner hands Packer (as PKR_VAR_*), where each declared variable's value
    comes from, and every declared variable that will have none.

    Values are expanded on first use: listing templates needs only the placement values, and a
    connection value such as the API URL is derived (and checked) only when a build needs it.
    """

    def __init__(self, env: dict[str, str], secret: Any = None) -> None:
        self._env = env
        self._secret = secret or (lambda name: False)
        self.mapped: dict[
            str, tuple[str, list[str], str]
        ] = {}  # var -> (template, env names, group)
        self._values: dict[str, str] | None = None
        # Non-secret values that decide where the template lands.
        self.placement: dict[str, str] = {}
        self.secret_names: set[str] = set()
        # Packer variable -> env variables that are unset (empty: no source at all).
        self.missing: dict[str, list[str]] = {}
        # Packer variable -> where its value comes from, for the operator.
        self.sources: dict[str, str] = {}
        # PKR_VAR_* set in the env by the operator (they win over the mapping).
        self.from_env: dict[str, str] = {}

    @property
    def values(self) -> dict[str, str]:
        """Every mapped value (expanded now; ConfigError for a malformed PVE_ACCESS_HOST)."""
        if self._values is None:
            from tasks.runtime.secrets import MASKER

            values = {}
            for var, (template, _names, _group) in self.mapped.items():
                value, _ = expand(template, self._env)
                if value is not None:
                    values[var] = value
                    if var in self.secret_names:
                        MASKER.add(value)
            self._values = values
        return self._values

    def supplied(self) -> dict[str, str]:
        """What Packer will read from PKR_VAR_*: the operator's own, then the mapping's."""
        return {**self.values, **self.from_env}

    def value_of(self, var: str) -> str | None:
        if var in self.from_env:
            return self.from_env[var]
        mapped = self.mapped.get(var)
        if mapped is None:
            return None
        if self._values is not None:
            return self._values.get(var)
        value, _ = expand(mapped[0], self._env)
        return value


def packer_variables(
    spec: TemplateSpec,
    settings: L1Settings,
    env_layers,
    expanded: dict[str, tuple[str | None, list[str]]] | None = None,
) -> PackerVariables:
    """Fill the build's declared variables from the env through the layer's mapping (with the
    template's own overrides), and name every declared variable that will have no value.

    Packer's order, highest first: `*.auto.pkrvars.hcl`, PKR_VAR_* (the operator's own beat the
    mapping's), the variable's default. `expanded` memoises expansion per mapping value.
    """
    env = env_layers.merged
    result = PackerVariables(env)
    memo: dict[str, Any] = {} if expanded is None else expanded  # type: ignore[assignment]
    connection, placement, _workdir = settings.for_template(spec)
    variables = spec.variables
    for group, mapping in (("connection", connection), ("placement", placement)):
        for var_name, template in mapping.items():
            declared = variables.get(var_name)
            if declared is None or template is None:
                continue
            if f"PKR_VAR_{var_name}" in env:
                continue
            known = memo.get(template)
            if known is None:
                names = _ENV_REF.findall(template)
                unset = [n for n in names if not _is_set(env, n)]
                secret_env = any(env_layers.is_secret(n) for n in names)
                value = None
                if not unset and "PVE_API_URL" not in names:
                    value = expand(template, env)[0]
                known = memo[template] = (unset, names, secret_env, value)
            unset, names, secret_env, value = known
            if unset:
                result.missing[var_name] = list(unset)
                continue
            result.mapped[var_name] = (template, names, group)
            result.sources[var_name] = ", ".join(names) if names else "layer.yaml"
            if declared.sensitive or secret_env:
                result.secret_names.add(var_name)
            elif group == "placement":
                if value is None:
                    value = expand(template, env)[0]
                if value is not None:
                    result.placement[var_name] = value
    for var_name, declared in variables.items():
        env_name = f"PKR_VAR_{var_name}"
        if env_name in env:
            result.from_env[var_name] = env[env_name]
            result.sources[var_name] = env_name
            result.missing.pop(var_name, None)
        if var_name in spec.auto_values:
            result.sources[var_name] = spec.folder_spec.auto_where.get(var_name, "pkrvars")
            result.missing.pop(var_name, None)
            continue
        if var_name in result.sources:
            continue
        if declared.has_default:
            result.missing.pop(var_name, None)
            result.sources[var_name] = "default"
            continue
        result.missing.setdefault(var_name, [])
    return result


def missing_hint(missing: dict[str, list[str]]) -> str:
    """Where the env values behind the missing variables belong (secrets never in config.env)."""
    from tasks.runtime.secrets import where_to_set

    names = sorted({n for names in missing.values() for n in names})
    where = where_to_set(names) + "; " if names else ""
    return (
        f"{where}`inv env.show` shows what is set (mapping: layers/l1/layer.yaml packer:, "
        "per template packer.templates.NAME)"
    )


def describe_missing(spec: TemplateSpec, missing: dict[str, list[str]]) -> list[str]:
    """One phrase per variable without a value, saying what would give it one."""
    parts = []
    for var, names in sorted(missing.items()):
        where = spec.variables[var].where if var in spec.variables else ""
        if names:
            parts.append(f"{var} (set {' and '.join(names)})")
        else:
            parts.append(
                f"{var} (declared at {where} without a default: map it in layers/l1/layer.yaml, "
                f"set it in a *.auto.pkrvars.hcl file, or set PKR_VAR_{var})"
            )
    return parts
