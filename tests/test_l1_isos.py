"""`inv l1.isos` against fakepve over HTTPS: download-url with checksum, upload, skip, refuse."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helpers import run_inv
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401
from run_support import standalone_effects

BASE_ISO = "local:iso/debian-12.7.0-amd64-netinst.iso"


def _tiny_template(repo: Path, checksum: str, iso_file: str = "local:iso/tiny.iso") -> Path:
    folder = repo / "layers/l1/templates/tiny"
    (folder / "isos").mkdir(parents=True)
    (folder / "isos" / "tiny-local.iso").write_bytes(b"not really an ISO\n" * 64)
    (folder / "tiny.pkr.hcl").write_text(
        f"""
source "proxmox-iso" "tiny" {{
  iso_file     = "{iso_file}"
  iso_url      = "isos/tiny-local.iso"
  iso_checksum = "{checksum}"
}}
build {{
  sources = ["source.proxmox-iso.tiny"]
}}
"""
    )
    return folder


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_is_planned_then_done_once_with_the_checksum(
    sample_repo: Path, pve: PveFixture
) -> None:
    dry = run_inv(sample_repo, "l1.isos", "--dry-run", env=pve.env())
    assert dry.returncode == 0, dry
    assert "would download" in dry.stdout and BASE_ISO in dry.stdout
    assert pve.writes() == []
    done = run_inv(sample_repo, "l1.isos", env=pve.env())
    assert done.returncode == 0, done
    calls = [c for c in pve.calls() if c["path"].endswith("/download-url")]
    assert len(calls) == 1
    params = calls[0]["params"]
    assert params["filename"] == "debian-12.7.0-amd64-netinst.iso" and params["content"] == "iso"
    assert params["checksum-algorithm"] == "sha256" and len(params["checksum"]) == 64
    ledger = json.loads((sample_repo / "layers/l1/artifacts/isos.json").read_text())
    assert ledger[BASE_ISO]["checksum"] == "sha256:" + params["checksum"]
    writes = len(pve.writes())
    again = run_inv(sample_repo, "l1.isos", env=pve.env())
    assert again.returncode == 0 and "already as wanted" in again.stdout, again
    assert "matches" in again.stdout and len(pve.writes()) == writes


def test_a_local_iso_is_verified_and_uploaded_under_its_volume_name(
    sample_repo: Path, pve: PveFixture
) -> None:
    data = b"not really an ISO\n" * 64
    _tiny_template(sample_repo, "sha256:" + _sha256(data))
    done = run_inv(sample_repo, "l1.isos", "--template", "tiny", env=pve.env())
    assert done.returncode == 0, done
    assert pve.fake.uploaded["filename"] == "tiny.iso" and pve.fake.uploaded["data"] == data
    assert pve.fake.uploaded["checksum"] == _sha256(data)
    from tasks.adapters.proxmox import ProxmoxClient

    listed = ProxmoxClient.from_env(pve.pve_env(), standalone_effects()).storage_content(
        "local", content="iso"
    )
    assert {v["volid"]: v["size"] for v in listed}["local:iso/tiny.iso"] == len(data)
    again = run_inv(sample_repo, "l1.isos", "--template", "tiny", env=pve.env())
    assert again.returncode == 0 and "already as wanted" in again.stdout, again


def test_a_local_iso_with_the_wrong_checksum_is_not_uploaded(
    sample_repo: Path, pve: PveFixture
) -> None:
    _tiny_template(sample_repo, "sha256:" + "0" * 64)
    failed = run_inv(sample_repo, "l1.isos", "--template", "tiny", env=pve.env())
    assert failed.returncode == 4, failed
    assert "nothing was uploaded" in failed.stderr and pve.writes() == []


def test_a_changed_checksum_for_a_present_volume_is_refused(
    sample_repo: Path, pve: PveFixture
) -> None:
    assert run_inv(sample_repo, "l1.isos", env=pve.env()).returncode == 0
    writes = len(pve.writes())
    hcl = sample_repo / "layers/l1/templates/debian12-base/variables.pkr.hcl"
    old = "8fde79cfc6b20a696200fc5c15219cf6d721e8feb367e9e0e33a79d1cb68fa83"
    assert old in hcl.read_text()
    hcl.write_text(hcl.read_text().replace(old, "1" * 64))
    refused = run_inv(sample_repo, "l1.isos", env=pve.env())
    assert refused.returncode == 3, refused
    assert "conflict" in refused.stdout and "nothing was changed" in refused.stderr
    assert len(pve.writes()) == writes


def test_an_iso_with_no_source_that_is_missing_is_an_error(
    sample_repo: Path, pve: PveFixture
) -> None:
    folder = sample_repo / "layers/l1/templates/nosource"
    folder.mkdir()
    (folder / "n.pkr.hcl").write_text(
        'source "proxmox-iso" "n" {\n  iso_file = "local:iso/absent.iso"\n}\n'
        'build {\n  sources = ["source.proxmox-iso.n"]\n}\n'
    )
    failed = run_inv(sample_repo, "l1.isos", "--template", "nosource", env=pve.env())
    assert failed.returncode == 2 and "iso_url" in failed.stderr, failed
    assert pve.writes() == []
