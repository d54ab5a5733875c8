"""Parsed HCL and YAML cached under `.work/` by content hash, so a warm `inv l1.list` imports neither parser.

The key is the SHA-256 of the file's bytes plus the parser's tag, so an edited file is a cache miss
by construction and there is nothing to invalidate. A damaged cache entry is ignored and rewritten.
Entries are private (files 0600, folders 0700): a template's HCL may hold values its owner would
not show to every local user. Variable-definitions files (`*.auto.pkrvars.hcl`), where secrets
usually live, are never cached at all (tasks/l1/hcl.py reads them on every run), and the defaults
of variables marked `sensitive` are blanked before an entry is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:  # the builtin SHA-256: `import hashlib` loads OpenSSL, about 1.5 ms of every `inv l1.list`
    from _sha256 import sha256
except ImportError:  # a Python built without it
    from hashlib import sha256

# Bump a tag when the parser or its options change shape: old entries then simply stop matching.
HCL_TAG = "hcl2-8/strip-quotes/no-explicit-blocks/doc+static/v4"
# What only evaluating a build or naming a line needs: kept apart, read when asked for.
EXTRA_TAG = "hcl2-8/strip-quotes/no-explicit-blocks/tree+exprs+pathy+words/v4"
YAML_TAG = "pyyaml-safe/v1"
FILE_MODE = 0o600
FOLDER_MODE = 0o700


def cache_key(digest: str, tag: str) -> str:
    """The entry name for a file whose bytes have SHA-256 `digest`, parsed as `tag` says."""
    return sha256(f"{tag}\0{digest}".encode()).hexdigest()


def lookup(cache_dir: Path | None, key: str) -> Any:
    """The cached result under `key`, or None (absent, damaged, no cache)."""
    if cache_dir is None:
        return None
    try:
        with open(os.path.join(cache_dir, key[:2], f"{key}.json"), "rb") as fh:
            return json.loads(fh.read())
    except (OSError, ValueError):
        return None


def store(cache_dir: Path | None, key: str, parsed: Any) -> None:
    if cache_dir is None:
        return
    folder = os.path.join(cache_dir, key[:2])
    try:
        from tasks.runtime.files import atomic_write

        private_folder(Path(cache_dir))
        private_folder(Path(folder))
        text = json.dumps(parsed, separators=(",", ":"))
        atomic_write(Path(folder) / f"{key}.json", text, mode=FILE_MODE)
    except OSError:
        pass  # a read-only checkout still works, just without the cache


def cached_parse(
    path: Path, data: bytes, tag: str, parse: Callable[[str], Any], cache_dir: Path | None
) -> Any:
    """`parse(text)` for `data` (the bytes of `path`), through the cache when `cache_dir` is set."""
    if cache_dir is None:
        return parse(_text(path, data))
    key = cache_key(sha256(data).hexdigest(), tag)
    found = lookup(cache_dir, key)
    if found is not None:
        return found
    parsed = parse(_text(path, data))
    store(cache_dir, key, parsed)
    return parsed


def _text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        from tasks.runtime.config import not_utf8
        from tasks.runtime.errors import ConfigError

        raise ConfigError(not_utf8(path, exc)) from None


def private_folder(folder: Path) -> None:
    """Create `folder` (and missing parents) and make it 0700."""
    from tasks.runtime.files import make_dirs

    make_dirs(folder)
    if (folder.stat().st_mode & 0o777) != FOLDER_MODE:
        os.chmod(folder, FOLDER_MODE)
