"""Parsed HCL and YAML cached under `.work/` by content hash, so a warm `inv l1.list` imports neither parser.

The key is the SHA-256 of the file's bytes plus the parser's tag, so an edited file is a cache miss
by construction and there is nothing to invalidate. A damaged cache entry is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Bump a tag when the parser or its options change shape: old entries then simply stop matching.
HCL_TAG = "hcl2-8/strip-quotes/no-explicit-blocks/doc+path-words/v2"
YAML_TAG = "pyyaml-safe/v1"


def cached_parse(
    path: Path, data: bytes, tag: str, parse: Callable[[str], Any], cache_dir: Path | None
) -> Any:
    """`parse(text)` for `data` (the bytes of `path`), through the cache when `cache_dir` is set."""
    if cache_dir is None:
        return parse(data.decode("utf-8"))
    key = hashlib.sha256(tag.encode() + b"\0" + data).hexdigest()
    entry = os.path.join(cache_dir, key[:2], f"{key}.json")
    try:
        with open(entry, "rb") as fh:
            return json.loads(fh.read())
    except (OSError, ValueError):
        pass
    parsed = parse(data.decode("utf-8"))
    try:
        from tasks.runtime.files import atomic_write

        atomic_write(Path(entry), json.dumps(parsed, separators=(",", ":")))
    except OSError:
        pass  # a read-only checkout still works, just without the cache
    return parsed
