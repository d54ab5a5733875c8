"""The runner's own record of clones in flight (`.work/l2/clones.json`).

A clone whose owner tag was never written (the run was interrupted between the clone and its
first config write) is adopted by the next run only when this record names it: VMID, node and
name, with the run that cloned it. A VM's description alone never makes it the runner's: an
operator who removes the owner tag to detach a VM keeps it detached.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tasks.runtime.files import atomic_write_json


class CloneJournal:
    def __init__(self, work: Path, run_id: str) -> None:
        self.path = work / "l2" / "clones.json"
        self.run_id = run_id
        self._lock = threading.Lock()  # parallel clones share the one file

    def entries(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []  # no record (or an unreadable one): nothing is adopted
        found = data.get("clones") if isinstance(data, dict) else None
        return [e for e in found or [] if isinstance(e, dict)]

    def names(self, vmid: int, node: str, name: str) -> dict[str, Any] | None:
        """The record of an interrupted clone of exactly this VM, if there is one."""
        for entry in self.entries():
            if (entry.get("vmid"), entry.get("node"), entry.get("name")) == (vmid, node, name):
                return entry
        return None

    def begin(self, vmid: int, node: str, name: str) -> None:
        """Recorded before the clone request is sent: a lost answer leaves the record behind."""
        with self._lock:
            kept = [e for e in self.entries() if e.get("vmid") != vmid]
            kept.append({"vmid": vmid, "node": node, "name": name, "run": self.run_id})
            self._save(kept)

    def end(self, vmid: int) -> None:
        """The VM carries the owner tag now: it is recognised by that from here on."""
        with self._lock:
            entries = self.entries()
            kept = [e for e in entries if e.get("vmid") != vmid]
            if len(kept) != len(entries):
                self._save(kept)

    def _save(self, entries: list[dict[str, Any]]) -> None:
        atomic_write_json(self.path, {"clones": entries})
