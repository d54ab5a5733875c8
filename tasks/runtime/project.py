"""Where things live in a runner checkout: the root, `.work/`, inventory, layers, templates."""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path
from typing import Any


def project_root() -> Path:
    """The folder holding the root `tasks.py` that `inv` (or pytest) loaded."""
    module = sys.modules.get("tasks")
    if module is not None and getattr(module, "__file__", None):
        return Path(module.__file__).resolve().parent  # type: ignore[arg-type]
    return Path(__file__).resolve().parents[2]


class Project:
    """A runner checkout (a plain class: a dataclass would cost a millisecond on every start)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Project) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    @classmethod
    def current(cls) -> Project:
        return cls(project_root())

    @property
    def work(self) -> Path:
        """Generated state, all of it safe to delete (`inv clean`)."""
        return self.root / ".work"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory"

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    def rel(self, path: Path) -> str:
        """`path` relative to the root when inside it, for messages."""
        path = Path(path)
        if path.is_absolute() and ".." not in path.parts:
            try:  # lexically inside: no need to ask the file system (rel runs once per row)
                return str(path.relative_to(self.root))
            except ValueError:
                pass
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    @cached_property
    def settings(self) -> dict[str, Any]:
        """`inventory/runner.yaml`: where this homelab keeps its trees and names."""
        from tasks.runtime.config import load_runner_settings

        return load_runner_settings(self)
