"""File digests remembered by stat, so a warm `inv l1.list` does not read every input again.

`.work/l1/digests.json` (0600) maps an absolute path to (size, mtime_ns, ctime_ns, inode, sha256,
when recorded), and keeps each build's evaluated inputs beside them (tasks/l1/inputcache.py). A digest is reused only while all four stat fields match and the file's last
change is more than two seconds older than the record (so an edit in the same instant as the
record, which a coarse clock could hide, is hashed again), as git's index does. The digests are of
template inputs (scripts, HCL), never of anything secret; secrets never reach files anyway.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tasks.l1.fingerprint import file_digest
from tasks.l1.parsecache import FILE_MODE, private_folder

_SETTLED_NS = 2_000_000_000


class DigestCache:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._data: dict[str, list[Any]] | None = None
        self._inputs: dict[str, Any] = {}
        self._dirty = False

    def _load(self) -> dict[str, list[Any]]:
        if self._data is None:
            data: Any = {}
            if self.path is not None:
                try:
                    with open(self.path, "rb") as fh:
                        data = json.loads(fh.read())
                except (OSError, ValueError):
                    data = {}
            data = data if isinstance(data, dict) else {}
            files, inputs = data.get("files"), data.get("inputs")
            self._data = files if isinstance(files, dict) else {}
            self._inputs = inputs if isinstance(inputs, dict) else {}
        return self._data

    @property
    def inputs(self) -> dict[str, Any]:
        """Remembered build inputs, by key (tasks/l1/inputcache.py)."""
        self._load()
        return self._inputs

    def remember(self, key: str, entry: Any) -> None:
        self._load()
        if self._inputs.get(key) != entry:
            self._inputs[key] = entry
            self._dirty = True

    def digest(self, path: str, st: os.stat_result | None = None) -> str:
        """The SHA-256 of `path`'s bytes (OSError when it cannot be read); `st` when the caller
        has just stat'ed it."""
        if st is None:
            st = os.stat(path)
        data = self._load()
        entry = data.get(path)
        if (
            isinstance(entry, list)
            and len(entry) == 6
            and entry[0] == st.st_size
            and entry[1] == st.st_mtime_ns
            and entry[2] == st.st_ctime_ns
            and entry[3] == st.st_ino
            and max(st.st_mtime_ns, st.st_ctime_ns) < entry[5] - _SETTLED_NS
        ):
            return str(entry[4])
        digest = file_digest(path)
        if entry is None or entry[:5] != [
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_ino,
            digest,
        ]:
            data[path] = [
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_ino,
                digest,
                time.time_ns(),
            ]
            self._dirty = True
        elif max(st.st_mtime_ns, st.st_ctime_ns) >= entry[5] - _SETTLED_NS:
            entry[5] = time.time_ns()  # the same bytes, seen again later: settled sooner
            self._dirty = True
        return digest

    def save(self) -> None:
        if not self._dirty or self.path is None or self._data is None:
            return
        from tasks.runtime.files import atomic_write

        try:
            private_folder(self.path.parent)
            live = {p: e for p, e in self._data.items() if os.path.exists(p)}
            inputs = dict(list(self._inputs.items())[-500:])  # the newest, for a bounded file
            payload = {"files": live, "inputs": inputs}
            atomic_write(self.path, json.dumps(payload, separators=(",", ":")), mode=FILE_MODE)
        except OSError:
            pass  # a read-only checkout still works, just without the cache
        self._dirty = False
