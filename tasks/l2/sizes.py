"""PVE's size spelling, one parser for the whole runner: `20G`, `512M`, `1.5T`, `8` (GiB).

Declarations (`disk "scsi0" { size = "20G" }`), config values (`size=8G`) and the sizes the
runner writes (`resize ... size=64G`) all go through these two functions.
"""

from __future__ import annotations

import re

UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
GiB = UNITS["G"]
SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT])?$")
# The same grammar as a JSON Schema pattern, for the declaration schema.
SIZE_PATTERN = r"^\d+(\.\d+)?\s*[KMGT]?$"


def parse_size(text: object) -> int | None:
    """Bytes of a size (a bare number is GiB, as PVE reads sizes); None when it is not one."""
    found = SIZE.match(str(text).strip())
    if not found:
        return None
    return int(float(found.group(1)) * UNITS[found.group(2) or "G"])


def format_size(size: int) -> str:
    """Bytes as PVE's size spelling: 20G, or 512M when not whole GiB."""
    if size % GiB == 0:
        return f"{size // GiB}G"
    return f"{size // UNITS['M']}M"
