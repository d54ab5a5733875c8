"""Loading the runner's YAML configuration files, validated with JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.runtime.project import Project

RUNNER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "gitops": {
            "type": "object",
            "properties": {
                "root": {"type": "string"},
                "cluster": {"type": "string"},
                "branch": {"type": "string"},
            },
        },
    },
}

LAYER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "description": {"type": "string"},
        "required_env": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        },
        "optional_env": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        },
        "generated": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "tools": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "layer": {"type": "string"},
                    "required": {"type": "boolean"},
                    "min_version": {"type": "string", "pattern": r"^\d+\.\d+(\.\d+)?$"},
                    "install": {"type": "string"},
                },
            },
        },
    },
}


def load_yaml_file(path: Path, schema: dict[str, Any] | None = None, *, what: str = "file") -> Any:
    """Parse a YAML file; errors name the file, the line and what was expected."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(not_utf8(path, exc)) from None
    data = parse_yaml(text, str(path))
    if schema is not None:
        validate(data, schema, path)
    return data


def not_utf8(path: Path, exc: UnicodeDecodeError) -> str:
    """The message for a file that is not UTF-8: where the first bad byte is, and the fix."""
    line = exc.object[: exc.start].count(b"\n") + 1
    return (
        f"{path}:{line}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
        f"{exc.start}); save the file as UTF-8"
    )


def parse_yaml(text: str, where: str) -> Any:
    """YAML text (libyaml's loader when there is one); an error names `where`, line and column.
    A key given twice in one mapping is an error naming both lines (YAML says keys are unique;
    PyYAML would silently keep the last)."""
    return _load(text, where, every=False)


def parse_yaml_documents(text: str, where: str) -> list[Any]:
    """Every document of a multi-document YAML text, with parse_yaml's errors and key check."""
    return _load(text, where, every=True)


def _load(text: str, where: str, *, every: bool) -> Any:
    import yaml

    loader = _unique_key_loader(yaml)(text)
    try:
        if not every:
            return loader.get_single_data()
        docs = []
        while loader.check_data():
            docs.append(loader.get_data())
        return docs
    except _DuplicateKey as exc:
        raise ConfigError(
            f"{where}:{exc.line}: duplicate key {exc.key!r} (first at line {exc.first}); "
            "keep one of them"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark else where
        raise ConfigError(f"{at}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()


class _DuplicateKey(Exception):
    def __init__(self, key: object, line: int, first: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


_LOADERS: dict[str, Any] = {}


def _unique_key_loader(yaml: Any) -> Any:
    """The safe loader (libyaml's when there is one) that refuses a key given twice."""
    if "unique" in _LOADERS:
        return _LOADERS["unique"]
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class UniqueKeyLoader(base):  # type: ignore[misc,valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[object, int] = {}
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<:` merges may repeat keys on purpose
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(key, line, seen[key])
                    seen[key] = line
                except TypeError:
                    continue  # an unhashable key: the base constructor says what is wrong
            return super().construct_mapping(node, deep=deep)

    _LOADERS["unique"] = UniqueKeyLoader
    return UniqueKeyLoader


def validate(data: Any, schema: dict[str, Any], path: Path) -> None:
    """Report the first schema violation with its location inside the document."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors[:10]:
            location = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"{location}: {err.message}")
        raise ConfigError(f"{path}: does not match the expected shape:\n  " + "\n  ".join(lines))


def load_runner_settings(project: Project) -> dict[str, Any]:
    path = project.inventory / "runner.yaml"
    if not path.exists():
        return {}
    data = load_yaml_file(path, RUNNER_SCHEMA, what="runner settings")
    return data or {}


def load_layer_manifest(project: Project, name: str) -> dict[str, Any]:
    """One `layers/<name>/layer.yaml` (empty when the layer has none)."""
    path = project.layers / name / "layer.yaml"
    if not path.exists():
        return {}
    return load_yaml_file(path, LAYER_SCHEMA, what="layer manifest") or {}


def load_layer_manifests(project: Project) -> dict[str, dict[str, Any]]:
    """Every `layers/<name>/layer.yaml`, by folder name."""
    manifests: dict[str, dict[str, Any]] = {}
    for path in sorted(project.layers.glob("*/layer.yaml")):
        manifests[path.parent.name] = (
            load_yaml_file(path, LAYER_SCHEMA, what="layer manifest") or {}
        )
    return manifests
