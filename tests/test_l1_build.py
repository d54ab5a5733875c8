"""`inv l1.build/promote/history/list` end to end: Debian's real packer 1.6.6 drives the sample
proxmox-clone template against fakepve over HTTPS (its CA verified), with password login."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import pytest
from helpers import run_inv
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401
from run_support import standalone_effects

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not installed"),
]

NAME = "debian12-k3s"
BASE_VMID = 9000


def _env(pve: PveFixture, **extra: str) -> dict[str, str]:
    password = pve.fake.password
    return pve.env(PM_USER="root@pam", PM_PASSWORD=password, **extra)


@pytest.fixture
def lab(pve: PveFixture) -> PveFixture:
    """fakepve with the base template the sample clones, and a random root password."""
    pve.fake.password = "pw-" + secrets.token_hex(12)
    pve.served.add_template(BASE_VMID, "debian12-base")
    return pve


def _artifacts(repo: Path) -> list[Path]:
    """Oldest first, in the store's order (a second artifact within one second is `-2`)."""
    from tasks.l1.artifacts import ArtifactStore

    return [a.path for a in ArtifactStore(repo / "layers/l1/artifacts", NAME).artifacts()]


def _stable(repo: Path) -> dict:
    return json.loads((repo / "layers/l1/artifacts" / NAME / "stable.json").read_text())


def test_build_promotes_skips_unchanged_and_rebuilds_on_a_cloud_init_change(
    sample_repo: Path, lab: PveFixture
) -> None:
    env = _env(lab)
    first = run_inv(sample_repo, "l1.build", NAME, env=env)
    assert first.returncode == 0, first
    assert "Converting VM to template" in first.stdout  # Packer's own output, streamed
    assert lab.fake.password not in first.output
    [artifact] = _artifacts(sample_repo)
    data = json.loads(artifact.read_text())
    vmid = data["vmid"]
    assert vmid != BASE_VMID and lab.fake.vm(vmid).template
    assert data["name"] == NAME and data["node"] == "pve1" and data["storage"] == "local-lvm"
    assert data["packer_version"] == "1.6.6" and data["fingerprint"].startswith("sha256:")
    assert data["created_at"].endswith("Z") and "cloned from debian12-base" in data["description"]
    # The VMID came from Packer's manifest, matched on this run's uuid.
    manifest = json.loads(
        (sample_repo / "layers/l1/templates" / NAME / "packer-manifest.json").read_text()
    )
    assert data["packer_run_uuid"] == manifest["last_run_uuid"]
    assert str(vmid) in [b["artifact_id"] for b in manifest["builds"]]
    stable = _stable(sample_repo)  # UPDATE_STABLE unset: promoted
    assert stable["artifact"] == artifact.name and stable["vmid"] == vmid
    log = sample_repo / data["log"]
    assert "Converting VM to template" in log.read_text()
    assert lab.fake.password not in log.read_text()

    again = run_inv(sample_repo, "l1.build", NAME, env=env)
    assert again.returncode == 0, again
    assert "already as wanted" in again.stdout and "packer build" not in again.stdout
    assert len(_artifacts(sample_repo)) == 1

    listed = run_inv(sample_repo, "l1.list", "--live", env=env)
    assert listed.returncode == 0 and f"vmid {vmid}" in listed.stdout, listed
    user_data = sample_repo / "layers/l1/templates" / NAME / "cloud-init" / "user-data"
    user_data.write_text(user_data.read_text() + "  - echo changed\n")
    listed = run_inv(sample_repo, "l1.list", env=env)
    assert (
        f"stale: inputs changed: changed layers/l1/templates/{NAME}/cloud-init/user-data"
        in listed.stdout
    )

    rebuilt = run_inv(sample_repo, "l1.build", NAME, env=env)
    assert rebuilt.returncode == 0, rebuilt
    assert len(_artifacts(sample_repo)) == 2
    new_vmid = _stable(sample_repo)["vmid"]
    assert new_vmid != vmid
    history = run_inv(sample_repo, "l1.history", NAME, "--json", env=env)
    rows = json.loads(history.stdout)["artifacts"]
    assert [r["stable"] for r in rows] == [False, True] and rows[1]["vmid"] == new_vmid
    plain = run_inv(sample_repo, "l1.history", NAME, env=env)
    assert plain.stdout.splitlines()[-2].startswith("*"), plain


@pytest.mark.parametrize("value", ["no", "false"])
def test_update_stable_other_than_yes_leaves_stable_then_promote_moves_it(
    sample_repo: Path, lab: PveFixture, value: str
) -> None:
    assert run_inv(sample_repo, "l1.build", NAME, env=_env(lab)).returncode == 0
    promoted = _stable(sample_repo)
    held = run_inv(sample_repo, "l1.build", NAME, "--force", env=_env(lab, UPDATE_STABLE=value))
    assert held.returncode == 0, held
    assert f"stable left at {promoted['artifact']}" in held.stdout
    assert len(_artifacts(sample_repo)) == 2 and _stable(sample_repo) == promoted

    dry = run_inv(sample_repo, "l1.promote", NAME, "--dry-run", env=_env(lab))
    assert (
        dry.returncode == 0
        and "would point stable" in dry.stdout
        and _stable(sample_repo) == promoted
    )
    done = run_inv(sample_repo, "l1.promote", NAME, env=_env(lab))
    assert done.returncode == 0, done
    newest = _artifacts(sample_repo)[-1]
    assert _stable(sample_repo)["artifact"] == newest.name
    assert "already as wanted" in run_inv(sample_repo, "l1.promote", NAME, env=_env(lab)).stdout
    back = run_inv(
        sample_repo,
        "l1.promote",
        NAME,
        "--artifact",
        _artifacts(sample_repo)[0].stem,
        env=_env(lab),
    )
    assert (
        back.returncode == 0 and _stable(sample_repo)["artifact"] == _artifacts(sample_repo)[0].name
    )


def test_failed_build_leaves_stable_and_artifacts_and_says_where_the_log_is(
    sample_repo: Path, lab: PveFixture
) -> None:
    assert run_inv(sample_repo, "l1.build", NAME, env=_env(lab)).returncode == 0
    before = {
        p.name: p.read_bytes() for p in (sample_repo / "layers/l1/artifacts" / NAME).iterdir()
    }
    folder = sample_repo / "layers/l1/templates" / NAME
    (folder / "broken.auto.pkrvars.hcl").write_text('base_template = "no-such-template"\n')
    failed = run_inv(sample_repo, "l1.build", NAME, env=_env(lab))
    assert failed.returncode == 4, failed
    assert "packer build (debian12-k3s)" in failed.stderr and ".work/l1/logs/" in failed.stderr
    assert "untouched" in failed.stderr and "Traceback" not in failed.output
    after = {p.name: p.read_bytes() for p in (sample_repo / "layers/l1/artifacts" / NAME).iterdir()}
    assert after == before
    logs = list((sample_repo / ".work/l1/logs").glob(f"{NAME}-*.log"))
    assert any("no-such-template" in p.read_text() for p in logs)


def test_a_failed_check_script_fails_the_build(sample_repo: Path, lab: PveFixture) -> None:
    user_data = sample_repo / "layers/l1/templates" / NAME / "cloud-init" / "user-data"
    user_data.write_text("packages: [curl]\n")  # no #cloud-config header
    failed = run_inv(sample_repo, "l1.build", NAME, env=_env(lab))
    assert failed.returncode == 4, failed
    assert "does not start with #cloud-config" in failed.output
    assert not (sample_repo / "layers/l1/artifacts" / NAME).exists()


def test_a_template_gone_from_proxmox_is_never_promoted_and_stale_when_stable(
    sample_repo: Path, lab: PveFixture
) -> None:
    from tasks.adapters.proxmox import ProxmoxClient

    client = ProxmoxClient.from_env(lab.pve_env(), standalone_effects())
    assert run_inv(sample_repo, "l1.build", NAME, env=_env(lab)).returncode == 0
    held = run_inv(sample_repo, "l1.build", NAME, "--force", env=_env(lab, UPDATE_STABLE="no"))
    assert held.returncode == 0, held
    first, second = _artifacts(sample_repo)
    second_vmid = json.loads(second.read_text())["vmid"]
    client.run_task("DELETE", f"/nodes/pve1/qemu/{second_vmid}")
    refused = run_inv(sample_repo, "l1.promote", NAME, "--artifact", second.name, env=_env(lab))
    assert refused.returncode == 3 and "gone from Proxmox" in refused.stderr, refused
    assert _stable(sample_repo)["artifact"] == first.name

    stable_vmid = _stable(sample_repo)["vmid"]
    client.run_task("DELETE", f"/nodes/pve1/qemu/{stable_vmid}")
    listed = run_inv(sample_repo, "l1.list", "--live", env=_env(lab))
    assert f"stable template {stable_vmid} is gone from Proxmox" in listed.stdout, listed
    assert "up to date (inputs)" in run_inv(sample_repo, "l1.list", env=_env(lab)).stdout
    rebuilt = run_inv(sample_repo, "l1.build", NAME, env=_env(lab))
    assert rebuilt.returncode == 0 and "gone from Proxmox" in rebuilt.stdout, rebuilt
    assert len(_artifacts(sample_repo)) == 3
    assert _stable(sample_repo)["artifact"] == _artifacts(sample_repo)[-1].name


def test_skip_build_reuses_packers_last_run(sample_repo: Path, lab: PveFixture) -> None:
    assert run_inv(sample_repo, "l1.build", NAME, env=_env(lab)).returncode == 0
    vmid = _stable(sample_repo)["vmid"]
    reused = run_inv(sample_repo, "l1.build", NAME, "--force", env=_env(lab, SKIP_BUILD="1"))
    assert reused.returncode == 0, reused
    assert "SKIP_BUILD=1" in reused.stdout and "packer build" not in reused.stdout
    assert len(_artifacts(sample_repo)) == 2 and _stable(sample_repo)["vmid"] == vmid


def test_build_refuses_without_its_packer_variables(sample_repo: Path, lab: PveFixture) -> None:
    env = lab.env()  # no PM_USER / PM_PASSWORD
    result = run_inv(sample_repo, "l1.build", NAME, env=env)
    assert result.returncode == 2, str(result)
    assert "proxmox_password (set PM_PASSWORD)" in result.stderr
    assert "proxmox_username (set PM_USER)" in result.stderr
    assert lab.writes() == []


def test_plugins_need_packer_init(sample_repo: Path, lab: PveFixture) -> None:
    result = run_inv(sample_repo, "l1.build", "debian12-base", env=_env(lab))
    assert result.returncode == 2 and "needs Packer 1.7 or later" in result.stderr, str(result)
    # The dry run says so too (before any API call), rather than "would build".
    dry = run_inv(sample_repo, "l1.build", "debian12-base", "--dry-run", env=_env(lab))
    assert dry.returncode == 2 and "needs Packer 1.7 or later" in dry.stderr, dry
    assert "would" not in dry.stdout and lab.writes() == []
