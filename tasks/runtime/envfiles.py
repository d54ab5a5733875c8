"""Reading one env file with python-dotenv: values, or an error naming file and line."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path

from tasks.runtime.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_env_file(
    path: Path, base: Mapping[str, str] | None = None, secret: bool = False
) -> dict[str, str]:
    """Parse `path`; `${VAR}` references resolve against `base` (lower layers) and earlier lines.

    Single-quoted values are taken literally, as a shell would. In a `secret` file a malformed
    line may be a pasted value, so errors name its line but never quote it.
    """
    parse_stream, parse_variables = _dotenv_parsers()

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None

    values: dict[str, str] = {}
    scope: dict[str, str | None] = dict(base or {})
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            raise ConfigError(
                f"{path}:{line}: cannot parse this line; expected NAME=value "
                "(quote values that contain spaces or '#')",
                hint="fix or comment out the line; `inv env.show` re-checks every layer",
            )
        if binding.key is None:
            continue  # blank line or comment
        shown = "this line's name" if secret else repr(binding.key)
        if not _NAME.match(binding.key):
            raise ConfigError(
                f"{path}:{line}: {shown} is not a valid variable name "
                "(letters, digits and '_', not starting with a digit)"
            )
        if binding.value is None:
            raise ConfigError(f"{path}:{line}: {shown} has no '='; expected NAME=value")
        after_eq = (
            binding.original.string.split("=", 1)[1].lstrip()
            if "=" in binding.original.string
            else ""
        )
        if after_eq.startswith("'"):
            value = binding.value
        else:
            value = "".join(atom.resolve(scope) for atom in parse_variables(binding.value))
        if "\x00" in value:
            raise ConfigError(
                f"{path}:{line}: {shown} holds a NUL byte, which no process environment can carry",
                hint="remove it (a binary value belongs base64-encoded)",
            )
        values[binding.key] = value
        scope[binding.key] = value
    return values


def _dotenv_parsers():
    """python-dotenv's `parse_stream` and `parse_variables`, without running `dotenv/__init__`.

    The package's `__init__` imports `dotenv.main`, which imports tempfile and shutil (with bz2 and
    lzma) for features the runner never calls. That costs about 5 ms on every task that reads the
    env, a large share of the start-up budget (1.3x bare Invoke). `parser.py` and `variables.py`
    import only the standard library, so they are loaded from the installed package under their
    own names, where a later `import dotenv` finds and reuses them. When that is not possible (a
    release that changes this layout), the plain import is used.
    """
    import sys

    if "dotenv.main" not in sys.modules:
        try:
            _load_dotenv_module("parser")
            _load_dotenv_module("variables")
        except Exception:  # any surprise in the layout: fall back to the ordinary import below
            sys.modules.pop("dotenv.parser", None)
            sys.modules.pop("dotenv.variables", None)
    from dotenv.parser import parse_stream
    from dotenv.variables import parse_variables

    return parse_stream, parse_variables


def _load_dotenv_module(name: str) -> None:
    import importlib.util
    import sys

    full = f"dotenv.{name}"
    if full in sys.modules:
        return
    package = importlib.util.find_spec("dotenv")
    if package is None or not package.submodule_search_locations:
        raise ImportError("python-dotenv is not installed as a package")
    location = Path(next(iter(package.submodule_search_locations))) / f"{name}.py"
    spec = importlib.util.spec_from_file_location(full, location)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {location}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[full]
        raise
