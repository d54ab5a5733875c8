"""What is declared: the L1 settings (layer.yaml) and each Packer template folder, parsed from HCL.

A template is a folder under the layer's templates folder holding `*.pkr.hcl` files (and optional
`*.auto.pkrvars.hcl`), the unit `packer build FOLDER` works on; its name is the folder's name.
Everything here is pure apart from reading the files; the parsed HCL is cached by content hash.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from tasks.l1.parsecache import HCL_TAG, YAML_TAG, cached_parse
from tasks.runtime.errors import ConfigError
from tasks.runtime.records import Record

HCL_SUFFIX = ".pkr.hcl"
VARS_SUFFIX = ".auto.pkrvars.hcl"
DEFAULT_MANIFEST = "packer-manifest.json"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HCL_REF = re.compile(r"\$\{\s*(var|local)\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}")
_QUOTED = re.compile(r'\\?"([^"\\]+)\\?"')

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "templates": {"type": "string", "minLength": 1},
        "artifacts": {"type": "string", "minLength": 1},
        "packer": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "connection": {"type": "object", "additionalProperties": {"type": "string"}},
                "variables": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    },
}


# Records are plain classes (see tasks/runtime/records.py): `inv l1.list` imports this module and
# must start nearly as fast as bare Invoke.


class L1Settings(Record):
    """Where L1 keeps its templates and artifacts, and how env values become Packer variables."""

    __slots__ = ("layer_dir", "templates_dir", "artifacts_dir", "connection", "placement")

    def __init__(
        self,
        layer_dir: Path,
        templates_dir: Path,
        artifacts_dir: Path,
        connection: dict[str, str],
        placement: dict[str, str],
    ) -> None:
        self.layer_dir = layer_dir
        self.templates_dir = templates_dir
        self.artifacts_dir = artifacts_dir
        # Packer variable -> "${ENV}" template. Connection values are how Packer reaches Proxmox
        # and are not part of a template's fingerprint; placement values (node, storage) are.
        self.connection = connection
        self.placement = placement


class Variable(Record):
    __slots__ = ("name", "has_default", "default", "sensitive")

    def __init__(
        self, name: str, has_default: bool, default: Any = None, sensitive: bool = False
    ) -> None:
        self.name = name
        self.has_default = has_default
        self.default = default
        self.sensitive = sensitive


class Source(Record):
    __slots__ = ("type", "name", "attrs")

    def __init__(self, type: str, name: str, attrs: dict[str, Any]) -> None:
        self.type = type
        self.name = name
        self.attrs = attrs

    @property
    def label(self) -> str:
        return f"{self.type}.{self.name}"


class IsoRef(Record):
    """One ISO a template boots or attaches: where Proxmox must have it and where it comes from."""

    __slots__ = ("template", "storage", "filename", "url", "local_path", "checksum")

    def __init__(
        self,
        template: str,
        storage: str | None,
        filename: str,
        url: str | None,
        local_path: Path | None,
        checksum: str | None,
    ) -> None:
        self.template = template
        self.storage = storage  # None: unresolved, the env's PVE_STORAGE_ISO is used
        self.filename = filename
        self.url = url  # http(s) URL for download-url
        self.local_path = local_path  # a file in the checkout, uploaded
        self.checksum = checksum  # "sha256:<hex>"; None when not declared or "none"

    def volid(self, default_storage: str) -> str:
        return f"{self.storage or default_storage}:iso/{self.filename}"


class TemplateSpec:
    """One template folder as parsed: its files, variables, locals, sources and references."""

    def __init__(
        self,
        name: str,
        folder: Path,
        files: list[Path],
        var_files: list[Path],
        variables: dict[str, Variable],
        locals: dict[str, Any],
        sources: list[Source],
        plugins: dict[str, Any],
        manifest_output: str | None,
        references: list[Path] | None = None,
        auto_values: dict[str, Any] | None = None,
        digests: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.folder = folder
        self.files = files
        self.var_files = var_files
        self.variables = variables
        self.locals = locals
        self.sources = sources
        self.plugins = plugins
        self.manifest_output = manifest_output
        self.references: list[Path] = references or []
        self.auto_values: dict[str, Any] = auto_values or {}
        # Absolute path -> SHA-256 of the HCL bytes that were parsed (the fingerprint reuses them).
        self.digests: dict[str, str] = digests or {}

    def __repr__(self) -> str:
        return f"TemplateSpec({self.name!r}, {str(self.folder)!r})"

    @property
    def source_label(self) -> str:
        return ", ".join(s.label for s in self.sources) or "-"

    @property
    def builders(self) -> set[str]:
        return {s.type for s in self.sources}


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
    )


def _yaml_load(path: Path):
    def parse(text: str) -> Any:
        from tasks.runtime.config import parse_yaml

        return parse_yaml(text, str(path))

    return parse


def _check_settings(data: dict[str, Any], path: Path) -> None:
    # The cheap checks run on every call; the schema (jsonschema is a slow import) only when they
    # find something off, so a warm `inv l1.list` stays fast and a bad file still gets a full report.
    packer = data.get("packer", {})
    ok = (
        isinstance(data.get("templates", ""), str)
        and isinstance(data.get("artifacts", ""), str)
        and isinstance(packer, dict)
        and set(packer) <= {"connection", "variables"}
        and all(
            isinstance(group, dict) and all(isinstance(v, str) for v in group.values())
            for group in (packer.get("connection") or {}, packer.get("variables") or {})
        )
    )
    if not ok:
        from tasks.runtime.config import validate

        validate(data, SETTINGS_SCHEMA, path)


# ------------------------------------------------------------------ discovery and parsing


def discover(settings: L1Settings, cache_dir: Path | None) -> list[TemplateSpec]:
    """Every template folder under the templates folder, sorted by name."""
    root = settings.templates_dir
    names = _listing(root)
    if names is None:
        return []
    loose = [n for n in _hcl_names(names) if os.path.isfile(root / n)]
    if loose:
        raise ConfigError(
            f"{root}: {', '.join(loose)} sit(s) directly in the templates folder",
            hint="give each template its own folder: templates/NAME/NAME.pkr.hcl",
        )
    checkout = _checkout_root(root)
    found = []
    for name in names:
        entries = _listing(root / name)
        if entries is not None and _hcl_names(entries):
            found.append(load_template(root / name, cache_dir, checkout, entries))
    return found


def _listing(folder: Path) -> list[str] | None:
    """The sorted names in `folder`, or None when it is not a folder."""
    try:
        return sorted(os.listdir(folder))
    except (NotADirectoryError, FileNotFoundError):
        return None
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot list the template folder: {exc.strerror}") from None


def _hcl_names(entries: list[str], suffix: str = HCL_SUFFIX) -> list[str]:
    # Hidden files are skipped, as Packer's own `*.pkr.hcl` glob does.
    return [n for n in entries if n.endswith(suffix) and not n.startswith(".")]


def find_template(settings: L1Settings, name: str, cache_dir: Path | None) -> TemplateSpec:
    folder = settings.templates_dir / name
    if "/" in name or name.startswith(".") or not any(folder.glob(f"*{HCL_SUFFIX}")):
        known = [t.name for t in discover(settings, cache_dir)]
        raise ConfigError(
            f"no Packer template named {name!r} under {settings.templates_dir}",
            hint=f"known templates: {', '.join(known) or '(none)'}",
        )
    return load_template(folder, cache_dir, _checkout_root(settings.templates_dir))


def _parse_file(path: Path, cache_dir: Path | None) -> tuple[dict[str, Any], list[str], str]:
    """One HCL file's document (7.x-shaped dicts), the path-like words of its strings, its SHA-256.

    A syntax error names the file, line and column.

    The words depend only on the file's text, so they are cached with the document and a warm run
    only checks which of them name an entry of the template folder. The hash is the file's
    fingerprint input, taken from the bytes that were parsed.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        parsed = cached_parse(path, data, HCL_TAG, _hcl_entry, cache_dir)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except Exception as exc:  # lark's errors, and hcl2's own ValueErrors on bad constructs
        raise ConfigError(f"{path}{_where(exc)}: invalid HCL: {_first_line(exc)}") from None
    doc = parsed.get("doc") if isinstance(parsed, dict) else None
    words = parsed.get("words") if isinstance(parsed, dict) else None
    if not isinstance(doc, dict) or not isinstance(words, list):
        raise ConfigError(f"{path}: invalid HCL: expected blocks and attributes")
    return doc, words, hashlib.sha256(data).hexdigest()


def _hcl_entry(text: str) -> dict[str, Any]:
    doc = _hcl_loads(text)
    strings: list[str] = []
    _strings(doc, strings)
    words = dict.fromkeys(word for string in strings for word in _path_candidates(string))
    return {"doc": doc, "words": list(words)}


def _hcl_loads(text: str) -> dict[str, Any]:
    import hcl2
    from hcl2 import SerializationOptions

    options = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    return hcl2.loads(text, serialization_options=options)


def _where(exc: Exception) -> str:
    line, column = getattr(exc, "line", None), getattr(exc, "column", None)
    if isinstance(line, int) and line > 0:
        return f":{line}:{column}" if isinstance(column, int) and column > 0 else f":{line}"
    return ""


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_template(
    folder: Path,
    cache_dir: Path | None,
    checkout: Path | None = None,
    entries: list[str] | None = None,
) -> TemplateSpec:
    """Parse one template folder; `checkout` (its checkout root) and `entries` (its sorted
    listing) are passed when the caller already has them."""
    if entries is None:
        entries = _listing(folder)
        if entries is None:
            raise ConfigError(f"{folder}: not a folder")
    files = [folder / n for n in _hcl_names(entries)]
    var_files = [folder / n for n in _hcl_names(entries, VARS_SUFFIX)]
    variables: dict[str, Variable] = {}
    locals_: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    used: list[str] = []
    plugins: dict[str, Any] = {}
    manifest: str | None = None
    words: list[str] = []
    digests: dict[str, str] = {}
    for path in files:
        doc, found, digests[os.path.abspath(path)] = _parse_file(path, cache_dir)
        words += found
        for block in _blocks(doc, "packer"):
            for req in _blocks(block, "required_plugins"):
                if isinstance(req, dict):
                    plugins.update(req)
        for block in _blocks(doc, "variable"):
            for name, body in _labelled(block, path, "variable"):
                body = body if isinstance(body, dict) else {}
                variables[name] = Variable(
                    name, "default" in body, body.get("default"), bool(body.get("sensitive"))
                )
        for block in _blocks(doc, "locals"):
            if isinstance(block, dict):
                locals_.update(block)
        for block in _blocks(doc, "source"):
            for type_, named in _labelled(block, path, "source"):
                for name, body in _labelled(named, path, f'source "{type_}"'):
                    sources[f"{type_}.{name}"] = Source(
                        type_, name, body if isinstance(body, dict) else {}
                    )
        for build in _blocks(doc, "build"):
            if not isinstance(build, dict):
                continue
            used += [_source_ref(s) for s in build.get("sources") or [] if isinstance(s, str)]
            for nested in _blocks(build, "source"):
                used += [_source_ref(label) for label, _ in _labelled(nested, path, "source")]
            for pp in _post_processors(build):
                if "manifest" in pp:
                    body = pp["manifest"] if isinstance(pp["manifest"], dict) else {}
                    manifest = str(body.get("output") or DEFAULT_MANIFEST)
    auto_values: dict[str, Any] = {}
    for path in var_files:
        doc, found, digests[os.path.abspath(path)] = _parse_file(path, cache_dir)
        words += found
        auto_values.update(doc)
    chosen = [sources[ref] for ref in dict.fromkeys(used) if ref in sources] or list(
        sources.values()
    )
    spec = TemplateSpec(
        name=folder.name,
        folder=folder,
        files=files,
        var_files=var_files,
        variables=variables,
        locals=locals_,
        sources=chosen,
        plugins=plugins,
        manifest_output=manifest,
        auto_values=auto_values,
        digests=digests,
    )
    root = checkout or _checkout_root(folder.parent)
    spec.references = referenced_paths(folder, entries, words, files + var_files, root)
    return spec


def _blocks(doc: Any, key: str) -> list[Any]:
    value = doc.get(key) if isinstance(doc, dict) else None
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _labelled(block: Any, path: Path, what: str) -> list[tuple[str, Any]]:
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: {what} block without a label")
    return list(block.items())


def _source_ref(text: str) -> str:
    return text.removeprefix("source.")


def _post_processors(build: dict[str, Any]) -> list[dict[str, Any]]:
    found = [pp for pp in _blocks(build, "post-processor") if isinstance(pp, dict)]
    for chain in _blocks(build, "post-processors"):
        found += [pp for pp in _blocks(chain, "post-processor") if isinstance(pp, dict)]
    return found


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, out)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out)


def referenced_paths(
    folder: Path, entries: list[str], words: list[str], own: list[Path], root: Path | None
) -> list[Path]:
    """Files and folders the template's path-like words point at: scripts, http/, cloud-init files.

    A word counts when, read as a path relative to the template folder, it names something that
    exists inside the checkout `root`. The words come from `_path_candidates`; `entries` is the
    folder's listing.
    """
    # Only words whose first segment names an entry of the folder (or its parent) can be inputs:
    # checking that against the listing spares a filesystem call for every word.
    names = {*entries, ".."}
    parent = real_folder(os.path.abspath(folder.parent))
    base = _real_under(parent, os.path.join(parent, folder.name))
    skip = {base, *(os.path.join(base, p.name) for p in own)}
    found: dict[str, None] = {}
    for word in words:
        if word.split("/", 1)[0] not in names:
            continue
        path = os.path.normpath(os.path.join(base, word))
        if path in skip or path in found or not os.path.exists(path):
            continue
        found[path] = None
    # Links are resolved only for the few paths found, and what they lead to must be inside the
    # checkout.
    inside = str(root) + os.sep if root is not None else ""
    resolved = {_real_under(base, path) for path in found}
    return [Path(p) for p in sorted(resolved) if p.startswith(inside)]


@functools.lru_cache(maxsize=32)
def real_folder(path: str) -> str:
    """`os.path.realpath`, once per folder per run: every template shares its parent folder and
    the checkout root."""
    return os.path.realpath(path)


def _real_under(real_base: str, path: str) -> str:
    """`path` (absolute, normalised) with links resolved, given `real_base` that has none.

    Below `real_base` each part costs one lstat, where `os.path.realpath` re-checks every part of
    the whole path; anywhere else, or past a link, realpath does the work.
    """
    if not path.startswith(real_base + os.sep):
        return os.path.realpath(path)
    current = real_base
    for part in path[len(real_base) + 1 :].split(os.sep):
        current = os.path.join(current, part)
        if os.path.islink(current):
            return os.path.realpath(path)
    return path


def _path_candidates(text: str) -> list[str]:
    cleaned = (
        text.replace("${path.root}/", "")
        .replace("${path.cwd}/", "")
        .replace("{{template_dir}}/", "")
    )
    words = [cleaned, *_QUOTED.findall(cleaned)]
    for word in re.split(r"[\s,]+", cleaned):
        words.append(word.split("=", 1)[1] if "=" in word else word)
    out = []
    for word in words:
        word = word.strip().removeprefix("./")
        if not word or "${" in word or "{{" in word or "://" in word or len(word) > 255:
            continue
        if word.startswith("/"):
            continue  # absolute paths are the builder machine's, not the template's inputs
        out.append(word)
    return out


def _checkout_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding `tasks.py` or `.git`."""
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / "tasks.py").exists() or (folder / ".git").exists():
            return folder
    return None


# ------------------------------------------------------------------ variables


def api_url(env: dict[str, str]) -> str | None:
    """`https://HOST:PORT/api2/json` from PVE_ACCESS_HOST (port 8006 unless it names one)."""
    host = (env.get("PVE_ACCESS_HOST") or "").strip()
    if not host:
        return None
    host = re.sub(r"^https?://", "", host).rstrip("/").removesuffix("/api2/json")
    if not re.search(r":\d+$", host):
        host += ":8006"
    return f"https://{host}/api2/json"


def expand(template: str, env: dict[str, str]) -> tuple[str | None, list[str]]:
    """Expand `${NAME}` from `env` (plus the derived PVE_API_URL); (None, missing) when any is unset."""

    def lookup(name: str) -> str:
        value = env.get(name) or ""
        if name == "PVE_API_URL" and not value.strip():
            value = api_url(env) or ""
        return value

    names = _ENV_REF.findall(template)
    missing = [n for n in names if not lookup(n).strip()]
    if missing:
        return None, missing
    return _ENV_REF.sub(lambda m: lookup(m.group(1)), template), names


class PackerVariables:
    """The values the runner hands Packer (as PKR_VAR_*), and what it could not fill."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        # Non-secret values that decide where the template lands.
        self.placement: dict[str, str] = {}
        self.secret_names: set[str] = set()
        # Packer variable -> env variables that are unset.
        self.missing: dict[str, list[str]] = {}


def packer_variables(
    spec: TemplateSpec,
    settings: L1Settings,
    env_layers,
    expanded: dict[str, tuple[str | None, list[str]]] | None = None,
) -> PackerVariables:
    """Fill the template's declared variables from the env through the layer's mapping.

    `expanded` memoises `expand` per mapping value across the templates of one run.
    """
    result = PackerVariables()
    env = env_layers.merged
    expanded = {} if expanded is None else expanded
    for group, mapping in (("connection", settings.connection), ("placement", settings.placement)):
        for var_name, template in mapping.items():
            declared = spec.variables.get(var_name)
            if declared is None:
                continue
            if template not in expanded:
                expanded[template] = expand(template, env)
            value, names = expanded[template]
            if value is None:
                if not declared.has_default and var_name not in spec.auto_values:
                    result.missing[var_name] = names
                continue
            result.values[var_name] = value
            secret = declared.sensitive or any(env_layers.is_secret(n) for n in names)
            if secret:
                result.secret_names.add(var_name)
            elif group == "placement":
                result.placement[var_name] = value
    return result


def resolve(value: Any, spec: TemplateSpec, supplied: dict[str, str]) -> Any:
    """Substitute `${var.X}` and `${local.X}` in a string when their values are known scalars."""
    if not isinstance(value, str):
        return value

    def lookup(kind: str, name: str) -> Any:
        if kind == "var":
            if name in supplied:
                return supplied[name]
            if name in spec.auto_values:
                return spec.auto_values[name]
            var = spec.variables.get(name)
            return var.default if var and var.has_default else None
        return spec.locals.get(name)

    for _ in range(5):  # locals may refer to variables, a few levels deep
        changed = False

        def sub(m: re.Match[str]) -> str:
            nonlocal changed
            found = lookup(m.group(1), m.group(2))
            if isinstance(found, str | int | float) and not isinstance(found, bool):
                changed = True
                return str(found)
            return m.group(0)

        value = _HCL_REF.sub(sub, value)
        if not changed:
            break
    return value


# ------------------------------------------------------------------ ISOs


def iso_refs(spec: TemplateSpec, supplied: dict[str, str]) -> list[IsoRef]:
    """Every ISO the template's proxmox-iso sources boot or attach."""
    refs: list[IsoRef] = []
    for source in spec.sources:
        if source.type not in ("proxmox-iso", "proxmox"):
            continue
        groups = [source.attrs]
        groups += [g for g in _blocks(source.attrs, "boot_iso") if isinstance(g, dict)]
        groups += [g for g in _blocks(source.attrs, "additional_iso_files") if isinstance(g, dict)]
        for group in groups:
            ref = _iso_ref(spec, source, group, supplied)
            if ref is not None:
                refs.append(ref)
    return refs


def _iso_ref(
    spec: TemplateSpec, source: Source, group: dict[str, Any], supplied: dict[str, str]
) -> IsoRef | None:
    where = f"template {spec.name} ({source.label})"

    def get(key: str) -> str | None:
        raw = group.get(key)
        if isinstance(raw, list):
            raw = raw[0] if raw else None
        if raw is None:
            return None
        value = str(resolve(raw, spec, supplied))
        if "${" in value:
            raise ConfigError(
                f"{where}: cannot resolve {key} = {raw!r}",
                hint="use plain strings or var./local. references with known values for ISO settings",
            )
        return value

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
    if url and not re.match(r"^(https?|ftp)://", url):
        local_path = (spec.folder / url.removeprefix("file://")).resolve()
        url = None
    if filename is None:
        filename = local_path.name if local_path else (url or "").rstrip("/").rsplit("/", 1)[-1]
    return IsoRef(
        template=spec.name,
        storage=storage,
        filename=filename,
        url=url,
        local_path=local_path,
        checksum=normalise_checksum(get("iso_checksum"), where),
    )


_HEX_ALGORITHMS = {32: "md5", 40: "sha1", 56: "sha224", 64: "sha256", 96: "sha384", 128: "sha512"}


def normalise_checksum(raw: str | None, where: str) -> str | None:
    """`sha256:<hex>` from Packer's forms (`sha256:..`, bare hex, `none`); `file:` is not supported."""
    if raw is None or raw.strip().lower() in ("", "none"):
        return None
    text = raw.strip()
    algorithm, _, digest = text.rpartition(":")
    if algorithm == "file" or text.startswith("file:"):
        raise ConfigError(
            f"{where}: iso_checksum {raw!r} points at a checksum file",
            hint="give the checksum itself (sha256:<hex>) so it can be verified by Proxmox",
        )
    digest = digest.lower()
    if not re.fullmatch(r"[0-9a-f]+", digest):
        raise ConfigError(f"{where}: iso_checksum {raw!r} is not a hex digest")
    algorithm = algorithm.lower() or _HEX_ALGORITHMS.get(len(digest), "")
    if _HEX_ALGORITHMS.get(len(digest)) != algorithm:
        raise ConfigError(
            f"{where}: iso_checksum {raw!r}: a {algorithm or '?'} digest has a different length"
        )
    return f"{algorithm}:{digest}"
