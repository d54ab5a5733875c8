"""Shared fixtures. Front-door tests run `inv` on a throwaway copy of the sample repo."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import copy_repo


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    """A fresh copy of this checkout, committed in its own git repo."""
    return copy_repo(tmp_path / "repo")


# The longest tests first, so that neither of CI's two workers is left running one alone at the
# end (CI has a 30-minute budget); the rest keep their order.
SLOW_FIRST = (
    "test_secret_sweep.py::test_no_sentinel_escapes[foundation]",
    "test_plan_hosts.py::",
    "test_up.py::",
    "test_layout.py::test_pyright",
    "test_l3_converge.py::test_check_then",
    "test_secret_sweep.py::",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, key in enumerate(SLOW_FIRST) if key in item.nodeid), len(SLOW_FIRST))

    items.sort(key=rank)
