"""Every input of one build, found by evaluating its HCL; and the ISOs it boots from.

A build's inputs are the files Packer reads for it: the folder's HCL and var files, and every
local file its attributes name, however the name is built: a plain relative path, `${path.root}/x`,
`${abspath(path.root)}/x`, `${path.cwd}/x`, a `var.`/`local.` value (defaults, `*.auto.pkrvars.hcl`,
the mapped env, PKR_VAR_*), a list of scripts in a variable, and the arguments of `file`,
`templatefile` and `fileset` (the files `fileset` matches). Relative paths are read from the
build's working directory, as Packer does. A value that names a file but cannot be evaluated here
(a `vault()` local, a variable without a value) is a warning naming its file and line: it is not
fingerprinted, and the operator is told so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.l1.hcl import REDACTED, path_words
from tasks.l1.hclexpr import (
    Content,
    Evaluator,
    HclSyntaxError,
    Unknown,
    compile_template,
    constant,
    strings_in,
)
from tasks.l1.inputcache import Analysis, existing, static_words
from tasks.l1.spec import applies
from tasks.runtime.records import Record

if TYPE_CHECKING:
    from tasks.l1.hcl import HclFile
    from tasks.l1.spec import PackerVariables, TemplateSpec

# Attributes whose value is a local file or folder (Packer builders and provisioners).
PATH_KEYS = frozenset(
    {
        "script",
        "scripts",
        "source",
        "http_directory",
        "cd_files",
        "floppy_files",
        "floppy_dirs",
        "playbook_file",
        "playbook_dir",
        "galaxy_file",
        "inventory_file",
        "inventory_directory",
        "role_paths",
        "roles_path",
        "collections_path",
        "iso_url",
        "iso_urls",
        "user_data_file",
    }
)
PATH_SUFFIXES = ("_file", "_files", "_dir", "_dirs", "_directory", "_path", "_paths")
NOT_PATHS = frozenset({"destination", "output", "vm_name", "template_name"})
_SKIP_BUILD_KEYS = frozenset({"name", "sources", "source", "description"})
_BLOCK_LISTS = ("provisioner", "error-cleanup-provisioner", "post-processor")
ISO_KEYS = ("iso_file", "iso_url", "iso_urls", "iso_checksum", "iso_storage_pool")


_PATHY_KEYS: dict[str, bool] = {}


def pathy_key(key: str) -> bool:
    found = _PATHY_KEYS.get(key)
    if found is None:
        found = key not in NOT_PATHS and (key in PATH_KEYS or key.endswith(PATH_SUFFIXES))
        _PATHY_KEYS[key] = found
    return found


class IsoRef(Record):
    """One ISO a template boots or attaches: where Proxmox must have it and where it comes from."""

    __slots__ = (
        "template",
        "storage",
        "filename",
        "url",
        "local_path",
        "checksum",
        "checksum_file",
    )

    def __init__(
        self,
        template: str,
        storage: str | None,
        filename: str,
        url: str | None,
        local_path: Path | None,
        checksum: str | None,
        checksum_file: str | None = None,
    ) -> None:
        self.template = template
        self.storage = storage  # None: unresolved, the env's PVE_STORAGE_ISO is used
        self.filename = filename
        self.url = url  # http(s) URL for download-url
        self.local_path = local_path  # a file in the checkout, uploaded
        self.checksum = checksum  # "sha256:<hex>"; None when not declared or "none"
        self.checksum_file = checksum_file  # `file:` checksums: the URL or path of the sums file

    def volid(self, default_storage: str) -> str:
        return f"{self.storage or default_storage}:iso/{self.filename}"


class _Vars:
    def __init__(self, scope: _Scope) -> None:
        self.scope = scope

    def attribute(self, name: str) -> Any:
        return self.scope.var(name)


class _Locals:
    def __init__(self, scope: _Scope) -> None:
        self.scope = scope

    def attribute(self, name: str) -> Any:
        return self.scope.local(name)


class _Scope:
    """What `var.`, `local.`, `path.`, `build.` and `source.` mean for one build."""

    def __init__(self, spec: TemplateSpec, pv: PackerVariables | None, cwd: str) -> None:
        self.spec = spec
        self.pv = pv
        self.folder = os.path.abspath(spec.folder)
        self.cwd = cwd
        self.evaluator: Evaluator | None = None
        self.vars: dict[str, Any] = {}
        self.locals: dict[str, Any] = {}
        self.busy: set[str] = set()
        self.secret = False  # a secret's value was used: the result is never remembered

    def root(self, name: str) -> Any:
        if name == "var":
            return _Vars(self)
        if name == "local":
            return _Locals(self)
        if name == "path":
            return {"root": self.folder, "cwd": self.cwd}
        if name == "build":
            return {"name": self.spec.build_label}
        if name == "source":
            return {"name": self.spec.source.name, "type": self.spec.source.type}
        return Unknown(f"{name}.* is known only while Packer builds")

    def var(self, name: str) -> Any:
        if name not in self.vars:
            self.vars[name] = self._var(name)
        return self.vars[name]

    def _var(self, name: str) -> Any:
        spec = self.spec
        declared = spec.variables.get(name)
        if declared is None:
            return Unknown(f"var.{name} is not declared")
        from tasks.runtime.secrets import is_secret_name

        if declared.sensitive or is_secret_name(name) or (self.pv and name in self.pv.secret_names):
            self.secret = True
        if name in spec.auto_values:
            return spec.auto_values[name]
        supplied = self.pv.value_of(name) if self.pv is not None else None
        if supplied is not None:
            return _typed(supplied, declared.type)
        if declared.has_default:
            if declared.default == REDACTED:
                return Unknown(f"var.{name} is sensitive")
            assert self.evaluator is not None
            return self.evaluator.text(declared.default, spec.folder_spec.exprs)
        return Unknown(f"var.{name} has no value here")

    def local(self, name: str) -> Any:
        if name in self.locals:
            return self.locals[name]
        raw = self.spec.locals.get(name, _MISSING)
        if raw is _MISSING:
            return Unknown(f"local.{name} is not defined")
        if name in self.busy:
            return Unknown(f"local.{name} refers to itself")
        self.busy.add(name)
        try:
            assert self.evaluator is not None
            value = self.evaluator.text(raw, self.spec.folder_spec.exprs)
        finally:
            self.busy.discard(name)
        self.locals[name] = value
        return value


_MISSING = object()


def _typed(text: str, declared_type: Any) -> Any:
    """A PKR_VAR_* string read as the variable's declared type (numbers, lists, maps)."""
    kind = str(declared_type or "").removeprefix("${").removesuffix("}").strip()
    if not kind or kind == "string":
        return text
    if kind == "number":
        try:
            return float(text) if "." in text else int(text)
        except ValueError:
            return text
    if kind == "bool":
        return text.strip() == "true"
    try:
        value = constant(compile_template("${" + text + "}"))
    except HclSyntaxError:
        return text
    return text if isinstance(value, Unknown) else value


class _Walk:
    """Collects candidate paths and warnings over one build's attributes."""

    def __init__(self, spec: TemplateSpec, evaluator: Evaluator, analysis: Analysis) -> None:
        self.spec = spec
        self.ev = evaluator
        self.analysis = analysis
        folder = spec.folder_spec
        self.exprs = folder.exprs
        self.words = folder.words
        self.pathy = folder.pathy
        self.candidates: dict[str, None] = {}

    def value(self, key: str, raw: Any, where: tuple[HclFile, tuple[Any, ...]] | None) -> None:
        """One attribute (or block list) `key`; `where` is (file, block path) for messages."""
        if isinstance(raw, str):
            self.string(key, raw, where)
        elif isinstance(raw, list):
            for index, item in enumerate(raw):
                if isinstance(item, dict):
                    inner = (where[0], (*where[1], key, index)) if where else None
                    for k, v in item.items():
                        self.nested(key, k, v, inner)
                else:
                    self.value(key, item, where)
        elif isinstance(raw, dict):
            for k, v in raw.items():
                self.nested(key, k, v, where)

    def nested(self, parent: str, key: str, raw: Any, where) -> None:
        if parent == "dynamic" and isinstance(raw, dict):
            self.dynamic(key, raw, where)
            return
        self.value(key, raw, where)

    def dynamic(self, label: str, body: dict[str, Any], where) -> None:
        iterator = str(body.get("iterator") or label)
        collection = self.ev.text(body.get("for_each"), self.exprs)
        if isinstance(collection, dict):
            items: list[Any] = list(collection.items())
        elif isinstance(collection, list):
            items = list(enumerate(collection))
        else:
            items = [(Unknown("the dynamic block's key"), Unknown("the dynamic block's value"))]
        for key, value in items:
            self.ev.frames.append({iterator: {"key": key, "value": value}})
            try:
                for content in body.get("content") or []:
                    if isinstance(content, dict):
                        for k, v in content.items():
                            self.value(k, v, where)
            finally:
                self.ev.frames.pop()

    def add(self, key: str, words: list[str]) -> None:
        for word in words:
            self.candidates[word] = None
            if key == "playbook_file" and "/" in word:
                # An Ansible playbook's folder (its roles, group_vars, templates) counts whole.
                self.candidates[word.rsplit("/", 1)[0]] = None

    def string(self, key: str, raw: str, where) -> None:
        # Every string of a parsed file is either compiled (exprs) or has its words listed.
        tree = self.exprs.get(raw)
        if tree is None:
            found = self.words.get(raw)
            if found:
                self.add(key, found)
            return
        if raw not in self.pathy and not pathy_key(key):
            return  # cannot name a file: not evaluated at all
        value = self.ev.value(tree)
        if isinstance(value, Content):
            return
        if isinstance(value, Unknown):
            self.warn(key, raw, value.reason, where)
            return
        for text in strings_in(value):
            self.add(key, path_words(text))

    def warn(self, key: str, raw: str, reason: str, where) -> None:
        place = self.spec.build_file.shown
        if where is not None:
            hcl, path = where
            place = hcl.where(*path, key)
        shown = raw if len(raw) <= 80 else raw[:77] + "..."
        self.analysis.warnings.append(
            f"{place}: {key} = {shown!r} cannot be evaluated here ({reason}); "
            "the files it names are not fingerprinted"
        )


def analyse(
    spec: TemplateSpec,
    pv: PackerVariables | None,
    cwd: str,
    workdir: str,
    checkout: str | None,
    listing: list[str] | None = None,
    env: dict[str, str] | None = None,
    *,
    isos: bool = False,
) -> Analysis:
    """The inputs (and, with `isos`, the ISO references) of one build."""
    analysis = Analysis(cwd, workdir)
    scope = _Scope(spec, pv, cwd)
    evaluator = Evaluator(scope, cwd=cwd, env=env)
    scope.evaluator = evaluator
    walk = _Walk(spec, evaluator, analysis)
    source = spec.source
    for key, raw in source.attrs.items():
        walk.value(key, raw, source.origins.get(key))
    build_where = (spec.build_file, spec.build_path)
    for key, raw in spec.build.items():
        if key in _SKIP_BUILD_KEYS:
            continue
        if key in _BLOCK_LISTS or key == "post-processors":
            for kind, body, path in _plugin_blocks(key, raw, spec.build_path):
                if applies(body, spec):
                    walk.value(kind, body, (spec.build_file, path))
            continue
        walk.value(key, raw, build_where)
    analysis.words = list(walk.candidates)
    analysis.reads = list(evaluator.reads)
    analysis.cacheable = not (scope.secret or evaluator.volatile or analysis.warnings)
    for word in static_words(spec.folder_spec):
        walk.candidates[word] = None
    analysis.references = existing(spec, walk.candidates, evaluator.reads, cwd, checkout, listing)
    if isos:
        _iso_refs(spec, evaluator, analysis)
    return analysis


def _plugin_blocks(
    key: str, raw: Any, path: tuple[Any, ...]
) -> list[tuple[str, Any, tuple[Any, ...]]]:
    """(type, body, block path) of each provisioner / post-processor, chains included."""
    out: list[tuple[str, Any, tuple[Any, ...]]] = []
    items = raw if isinstance(raw, list) else [raw]
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        if key == "post-processors":
            inner = item.get("post-processor") or []
            out += _plugin_blocks("post-processor", inner, (*path, key, index))
            continue
        out += [(kind, body, (*path, key, index)) for kind, body in item.items()]
    return out


# ------------------------------------------------------------------ ISOs


def _iso_refs(spec: TemplateSpec, evaluator: Evaluator, analysis: Analysis) -> None:
    if spec.source.type not in ("proxmox-iso", "proxmox"):
        return
    attrs = spec.source.attrs
    groups: list[tuple[str, dict[str, Any]]] = [("", attrs)]
    for key in ("boot_iso", "additional_iso_files"):
        value = attrs.get(key)
        for group in value if isinstance(value, list) else [value] if value else []:
            if isinstance(group, dict):
                groups.append((key, group))
    for label, group in groups:
        if not any(k in group for k in ISO_KEYS):
            continue
        try:
            ref = _iso_ref(spec, evaluator, label, group)
        except _IsoProblem as problem:
            analysis.iso_problems.append(problem.text)
            continue
        if ref is not None:
            analysis.isos.append(ref)


class _IsoProblem(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _iso_ref(
    spec: TemplateSpec, evaluator: Evaluator, label: str, group: dict[str, Any]
) -> IsoRef | None:
    from tasks.runtime.errors import ConfigError

    where = f"template {spec.name} ({spec.source.label}{' ' + label if label else ''})"
    exprs = spec.folder_spec.exprs

    def get(key: str) -> str | None:
        raw = group.get(key)
        if raw is None:
            return None
        value = evaluator.text(raw, exprs)
        if isinstance(value, list):
            value = value[0] if value else None
            if value is None:
                return None
        if isinstance(value, Unknown | Content):
            reason = value.reason if isinstance(value, Unknown) else "it is file content"
            raise _IsoProblem(
                f"{where}: stage this ISO yourself: {key} = {raw!r} cannot be evaluated here "
                f"({reason})"
            )
        return str(value)

    iso_file = get("iso_file")
    url = get("iso_url") or get("iso_urls")
    if not iso_file and not url:
        return None
    storage = get("iso_storage_pool")
    filename: str | None = None
    if iso_file:
        if ":" not in iso_file or not iso_file.split(":", 1)[1].startswith("iso/"):
            raise ConfigError(
                f"{where}: iso_file {iso_file!r} is not a volume id",
                hint="expected STORAGE:iso/FILE.iso",
            )
        storage, volname = iso_file.split(":", 1)
        filename = volname.removeprefix("iso/")
    local_path: Path | None = None
    if url and ("://" not in url or url.startswith("file://")):
        text = url.removeprefix("file://")
        local_path = Path(os.path.normpath(os.path.join(evaluator.cwd, text)))
        url = None
    if filename is None:
        filename = local_path.name if local_path else (url or "").rstrip("/").rsplit("/", 1)[-1]
    checksum, checksum_file = parse_checksum(get("iso_checksum"), where, evaluator.cwd)
    return IsoRef(spec.name, storage, filename, url, local_path, checksum, checksum_file)


_HEX_ALGORITHMS = {32: "md5", 40: "sha1", 56: "sha224", 64: "sha256", 96: "sha384", 128: "sha512"}


def parse_checksum(raw: str | None, where: str, cwd: str = ".") -> tuple[str | None, str | None]:
    """(checksum, checksum file) from Packer's forms: `sha256:<hex>`, bare hex, `none`, or
    `file:<url or path of a SHA256SUMS file>` (the second item; resolved by tasks/l1/isos.py)."""
    if raw is None or raw.strip().lower() in ("", "none"):
        return None, None
    text = raw.strip()
    if text.lower().startswith("file:"):
        target = text[5:]
        if "://" in target and not target.startswith("file://"):
            return None, target
        path = target.removeprefix("file://")
        return None, os.path.normpath(os.path.join(cwd, path))
    return normalise_checksum(text, where), None


def normalise_checksum(raw: str | None, where: str) -> str | None:
    """`sha256:<hex>` from Packer's digest forms (`sha256:..`, `SHA256:..`, bare hex, `none`)."""
    from tasks.runtime.errors import ConfigError

    if raw is None or raw.strip().lower() in ("", "none"):
        return None
    text = raw.strip()
    algorithm, _, digest = text.rpartition(":")
    if algorithm.lower() == "file":
        raise ConfigError(f"{where}: iso_checksum {raw!r} points at a checksum file")
    digest = digest.lower()
    import re

    if not re.fullmatch(r"[0-9a-f]+", digest):
        raise ConfigError(f"{where}: iso_checksum {raw!r} is not a hex digest")
    algorithm = algorithm.lower() or _HEX_ALGORITHMS.get(len(digest), "")
    if _HEX_ALGORITHMS.get(len(digest)) != algorithm:
        raise ConfigError(
            f"{where}: iso_checksum {raw!r}: a {algorithm or '?'} digest has a different length"
        )
    return f"{algorithm}:{digest}"
