"""fakepve for the test suite: one HTTPS fake PVE per test, on its own 127.0.0.N and certificate.

Use it from a test module with `from pve_fixtures import pve_fixture  # noqa: F401` and a
test parameter named `pve`. The fixture:

- serves fakepve (tasks/rehearsal/proxmox.py, shared with `inv rehearse`) with a token whose
  secret is random, the node `pve1`, storages `local-lvm` (images) and `local` (ISOs);
- gives `pve.env()`: base_env() plus the PVE variables, PVE_CA_BUNDLE set to the fake's
  certificate, REQUESTS_CA_BUNDLE pointing at the same file (the machine sets its own), fast
  retries, and PVE_CALL_LOG pointing at a per-test file;
- at teardown checks every call recorded in that file against the official PVE API schema
  (tests/pve_contract.py), so any test that drives the adapter is a contract test too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import base_env
from pve_contract import check_call_log, read_call_log

from tasks.rehearsal.proxmox import ServedPve, serve_fakepve


@dataclass
class PveFixture:
    served: ServedPve
    call_log: Path

    @property
    def fake(self) -> Any:
        """The FakePve object: add VMs, inject faults, read `.requests`."""
        return self.served.pve

    def env(self, **overrides: str) -> dict[str, str]:
        """A complete environment for `inv` reaching this fake."""
        return base_env(**{**self.pve_env(), **overrides})

    def pve_env(self, **overrides: str) -> dict[str, str]:
        """Only the PVE variables (for in-process clients)."""
        defaults = {
            "REQUESTS_CA_BUNDLE": self.served.cafile,
            "PVE_RETRY_BACKOFF": "0.05",
            "PVE_TIMEOUT": "10",
            "PVE_CALL_LOG": str(self.call_log),
        }
        return self.served.env(**{**defaults, **overrides})

    def writes(self) -> list[tuple[str, str]]:
        """Every request fakepve saw that was not a read."""
        return [(m, p) for m, p, _b in self.fake.requests if m not in ("GET", "HEAD")]

    def calls(self) -> list[dict[str, Any]]:
        return read_call_log(self.call_log)


@pytest.fixture(name="pve")
def pve_fixture(tmp_path: Path) -> Iterator[PveFixture]:
    call_log = tmp_path / "pve-calls.jsonl"
    with serve_fakepve(tmp_path / "fakepve") as served:
        fixture = PveFixture(served, call_log)
        yield fixture
    problems = check_call_log(call_log)
    assert not problems, "calls outside the PVE API schema:\n" + "\n".join(problems)
