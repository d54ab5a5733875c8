"""The contract checker itself: it must reject what PVE would reject, and accept real calls.

Every test that uses the `pve` fixture (tests/pve_fixtures.py) also checks, at teardown, every
call the adapter sent against the schema; these tests prove the checker can fail.
"""

from __future__ import annotations

import gzip
import json

import pytest
from pve_contract import SHARED, VENDORED, check_call, match_path, schema_paths


def test_vendored_schema_is_the_official_one() -> None:
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is not present on this machine")
    assert json.loads(gzip.decompress(VENDORED.read_bytes())) == json.loads(SHARED.read_text())
    assert len(schema_paths()) == 435


def test_literal_segments_win_over_placeholders() -> None:
    assert match_path("/nodes/pve1/qemu/101/status/current") == (
        "/nodes/{node}/qemu/{vmid}/status/current",
        {"node": "pve1", "vmid": "101"},
    )
    matched = match_path("/nodes/pve1/tasks/UPID%3Apve1%3A00/status")
    assert matched is not None
    template, params = matched
    assert template == "/nodes/{node}/tasks/{upid}/status"
    assert params["upid"] == "UPID:pve1:00"


@pytest.mark.parametrize(
    ("method", "path", "params", "problem"),
    [
        ("GET", "/nodes/pve1/vms", {}, "no such path"),
        ("PATCH", "/version", {}, "has no PATCH"),
        (
            "POST",
            "/nodes/pve1/qemu/9000/clone",
            {"newid": 101, "hostname": "x"},
            "'hostname' is not declared",
        ),
        ("POST", "/nodes/pve1/qemu/9000/clone", {"name": "x"}, "'newid' is missing"),
        ("PUT", "/nodes/pve1/qemu/101/resize", {"disk": "hda0", "size": "20G"}, "not in"),
    ],
)
def test_checker_rejects_calls_pve_would_reject(method, path, params, problem) -> None:
    problems = check_call(method, path, params)
    assert any(problem in p for p in problems), problems


def test_checker_accepts_real_calls() -> None:
    assert (
        check_call(
            "POST", "/nodes/pve1/qemu/9000/clone", {"newid": 101, "name": "web-1", "full": 1}
        )
        == []
    )
    assert check_call("PUT", "/nodes/pve1/qemu/101/resize", {"disk": "scsi0", "size": "20G"}) == []
    assert check_call("GET", "/cluster/resources", {"type": "vm"}) == []
    assert check_call("PUT", "/nodes/pve1/qemu/101/config", {"net0": "virtio,bridge=vmbr0"}) == []
    assert check_call("PUT", "/nodes/pve1/qemu/101/config", {"nett0": "x"}) != []
    assert check_call("DELETE", "/nodes/pve1/qemu/101", {"purge": 1}) == []
