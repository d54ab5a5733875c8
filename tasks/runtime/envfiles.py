"""Reading one env file with python-dotenv: values, or an error naming file and line."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path

from tasks.runtime.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_env_file(path: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Parse `path`; `${VAR}` references resolve against `base` (lower layers) and earlier lines.

    Single-quoted values are taken literally, as a shell would.
    """
    from dotenv.parser import parse_stream
    from dotenv.variables import parse_variables

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
        if not _NAME.match(binding.key):
            raise ConfigError(
                f"{path}:{line}: {binding.key!r} is not a valid variable name "
                "(letters, digits and '_', not starting with a digit)"
            )
        if binding.value is None:
            raise ConfigError(
                f"{path}:{line}: {binding.key} has no '='; expected {binding.key}=value"
            )
        after_eq = (
            binding.original.string.split("=", 1)[1].lstrip()
            if "=" in binding.original.string
            else ""
        )
        if after_eq.startswith("'"):
            value = binding.value
        else:
            value = "".join(atom.resolve(scope) for atom in parse_variables(binding.value))
        values[binding.key] = value
        scope[binding.key] = value
    return values
