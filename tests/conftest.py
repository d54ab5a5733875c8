"""Shared fixtures. Front-door tests run `inv` on a throwaway copy of the sample repo."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import copy_repo


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    """A fresh copy of this checkout, committed in its own git repo."""
    return copy_repo(tmp_path / "repo")
