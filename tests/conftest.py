"""Shared fixtures. Front-door tests run `inv` on a throwaway copy of the sample repo."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import copy_repo
from sshd import dns_standin, installer_standin

_REAL_HOME = os.environ.get("HOME")
_HOME = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Give every test (and every `inv` it starts) a throwaway HOME, so that nothing of the
    machine's own ~/.kube/config, ~/.ssh/config, ~/.doppler or sops keys changes a result, and
    no test writes into the operator's home. Git gets an identity there, as a CI user has."""
    home = Path(tempfile.mkdtemp(prefix="homelab-tests-home-"))
    (home / ".gitconfig").write_text(
        "[user]\n\tname = homelab tests\n\temail = tests@example.invalid\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    config.stash[_HOME] = home
    os.environ["HOME"] = str(home)


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_HOME, None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)
    if _REAL_HOME is not None:
        os.environ["HOME"] = _REAL_HOME


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    """A fresh copy of this checkout, committed in its own git repo."""
    return copy_repo(tmp_path / "repo")


@pytest.fixture
def dns():
    """Cloudflare's API stand-in, zone example.net, token sshd.CF_TOKEN."""
    yield from dns_standin()


@pytest.fixture
def installer():
    """The k3s download stand-in."""
    yield from installer_standin()


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
