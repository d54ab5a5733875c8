"""`inv l0.runway` through the front door against fakepve over verified HTTPS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_inv
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401


@pytest.fixture
def repo(sample_repo: Path) -> Path:
    return sample_repo


def rows(result) -> dict[str, dict]:
    data = json.loads(result.stdout)
    return {r["check"]: r for r in data["checks"]}


def test_runway_passes_and_only_reads(repo: Path, pve: PveFixture) -> None:
    result = run_inv(repo, "l0.runway", env=pve.env())
    assert result.returncode == 0, str(result)
    for check in (
        "api: credentials",
        "node: pve1",
        "storage: pve1/local-lvm (VM disks)",
        "token: privileges on /vms",
        "tool: packer (l1)",
    ):
        assert check in result.stdout
    assert "nothing was changed" in result.stdout
    assert pve.fake.requests, "runway sent no request"
    assert pve.writes() == []


def test_json_output_and_every_required_check_ok(repo: Path, pve: PveFixture) -> None:
    result = run_inv(repo, "l0.runway", "--json", env=pve.env())
    assert result.returncode == 0, str(result)
    checks = rows(result)
    assert all(r["status"] in ("ok", "warn") for r in checks.values())
    assert checks["storage: pve1/local (ISO images)"]["status"] == "ok"


def test_every_missing_variable_at_once(repo: Path, pve: PveFixture) -> None:
    env = pve.env(PVE_NODE="")  # an empty value in the shell beats inventory/config.env
    del env["PM_TOKEN_SECRET"]
    result = run_inv(repo, "l0.runway", env=env)
    assert result.returncode == 2, str(result)
    assert "missing: PM_TOKEN_SECRET, PVE_NODE" in result.stdout
    assert "Traceback" not in result.output
    assert pve.fake.requests == []


def test_an_unusable_setting_stops_the_run_before_anything_runs(
    repo: Path, pve: PveFixture
) -> None:
    """A typed setting that is set but does not parse (a non-numeric timeout) is exit 2, named
    with the layer it came from, before any check or request."""
    result = run_inv(repo, "l0.runway", "--json", env=pve.env(PVE_TIMEOUT="soon"))
    assert result.returncode == 2, str(result)
    assert "PVE_TIMEOUT='soon' (from the shell environment): expected seconds" in result.stderr
    assert "Traceback" not in result.output and pve.fake.requests == []


def test_token_id_format(repo: Path, pve: PveFixture) -> None:
    result = run_inv(repo, "l0.runway", env=pve.env(PM_TOKEN_ID="runner-token"))
    assert result.returncode == 2, str(result)
    assert "is not user@realm!tokenid" in result.stdout


def test_bad_token_fails_credentials_and_skips_the_rest(repo: Path, pve: PveFixture) -> None:
    result = run_inv(repo, "l0.runway", "--json", env=pve.env(PM_TOKEN_SECRET="not-the-secret"))
    assert result.returncode == 4, str(result)
    checks = rows(result)
    assert checks["api: endpoint and TLS"]["status"] == "ok"
    assert checks["api: credentials"]["status"] == "fail"
    assert "HTTP 401" in checks["api: credentials"]["detail"]
    assert checks["privileges"]["status"] == "skip"
    assert "not-the-secret" not in result.output


def test_untrusted_certificate_is_a_tls_failure(repo: Path, pve: PveFixture) -> None:
    import certifi

    env = pve.env(PVE_CA_BUNDLE=certifi.where(), REQUESTS_CA_BUNDLE=certifi.where())
    result = run_inv(repo, "l0.runway", "--json", env=env)
    assert result.returncode == 4, str(result)
    endpoint = rows(result)["api: endpoint and TLS"]
    assert endpoint["status"] == "fail"
    assert "TLS verification" in endpoint["detail"] and "PVE_CA_BUNDLE" in endpoint["fix"]


def test_missing_privileges_are_named(repo: Path, pve: PveFixture) -> None:
    token = pve.served.token_id
    pve.fake.grant(token, "/vms", "VM.Audit", "VM.Allocate")
    pve.fake.grant(
        token,
        "/",
        "Sys.Audit",
        "Datastore.Audit",
        "Datastore.AllocateSpace",
        "Datastore.AllocateTemplate",
    )
    result = run_inv(repo, "l0.runway", "--json", env=pve.env())
    assert result.returncode == 4, str(result)
    vms = rows(result)["token: privileges on /vms"]
    assert vms["status"] == "fail"
    assert "VM.Clone" in vms["detail"] and "VM.PowerMgmt" in vms["detail"]
    assert "VM.Allocate" not in vms["detail"]
    assert rows(result)["token: privileges on /nodes/pve1"]["status"] == "ok"


def test_unknown_node_and_storage(repo: Path, pve: PveFixture) -> None:
    result = run_inv(
        repo, "l0.runway", "--json", env=pve.env(PVE_NODE="pve9", PVE_STORAGE_VM="fast-nvme")
    )
    assert result.returncode == 4, str(result)
    checks = rows(result)
    assert checks["node: pve9"]["status"] == "fail"
    assert "not in the cluster (nodes: pve1)" in checks["node: pve9"]["detail"]


def test_storage_must_accept_vm_images(repo: Path, pve: PveFixture) -> None:
    result = run_inv(repo, "l0.runway", "--json", env=pve.env(PVE_STORAGE_VM="local"))
    assert result.returncode == 4, str(result)
    storage = rows(result)["storage: pve1/local (VM disks)"]
    assert "does not accept images" in storage["detail"]


def test_every_node_the_declared_vms_use(repo: Path, pve: PveFixture) -> None:
    pve.fake.add_node("pve2", online=False)
    hcl = repo / "layers" / "l2" / "vms.hcl"
    hcl.write_text(
        hcl.read_text().replace('vm "k3s-agent-2" {', 'vm "k3s-agent-2" {\n  node = "pve2"')
    )
    result = run_inv(repo, "l0.runway", "--json", env=pve.env())
    assert result.returncode == 4, str(result)
    checks = rows(result)
    assert checks["node: pve1"]["status"] == "ok"
    assert checks["node: pve2"]["status"] == "fail"
    assert checks["storage: pve2"]["status"] == "fail"
    assert "595" in checks["storage: pve2"]["detail"]


def test_server_errors_on_reads_are_retried(repo: Path, pve: PveFixture) -> None:
    pve.fake.fail("GET", "/version", 503, "proxy: upstream busy", times=1)
    result = run_inv(repo, "l0.runway", env=pve.env())
    assert result.returncode == 0, str(result)


def test_insecure_opt_out_warns_every_run(repo: Path, pve: PveFixture) -> None:
    env = pve.env(PVE_TLS_INSECURE="1")
    for _ in range(2):
        result = run_inv(repo, "l0.runway", env=env)
        assert result.returncode == 0, str(result)
        assert "PVE_TLS_INSECURE=1: TLS verification" in result.stderr


@pytest.mark.parametrize(
    "display",
    [
        {"COLUMNS": "80"},  # off a terminal: plain aligned text
        {"COLUMNS": "80", "FORCE_COLOR": "1"},  # rich, as on an 80-column terminal
        {"COLUMNS": "200", "FORCE_COLOR": "1"},
        {"COLUMNS": "80", "FORCE_COLOR": "1", "NO_COLOR": "1"},
    ],
)
def test_runway_reads_at_a_glance(repo: Path, pve: PveFixture, display: dict[str, str]) -> None:
    """One row per problem, no value cut, every fix whole (a URL can be copied), colour only on a
    terminal and never with NO_COLOR."""
    env = pve.env(PM_TOKEN_SECRET="", **display)
    if "NO_COLOR" not in display:
        env.pop("NO_COLOR", None)  # the test helpers set it by default
    result = run_inv(repo, "l0.runway", env=env)
    assert result.returncode == 2, str(result)
    out = result.stdout
    assert "…" not in out and "..." not in out
    assert out.count("env: required variables") == 1 and "env: Proxmox settings" not in out
    assert "put PM_TOKEN_SECRET in Doppler or inventory/profiles/secrets.env" in out
    assert "config.env" not in out.replace("never in config.env", "")
    assert "curl -s https://fluxcd.io/install.sh | bash" in out or "flux (cluster)" not in out
    coloured = "\x1b[" in out
    assert coloured == (display.get("FORCE_COLOR") == "1" and "NO_COLOR" not in display)
    width = int(display["COLUMNS"])
    table_lines = [ln for ln in out.splitlines() if not ln.startswith(("  [", "to fix", "error"))]
    # Only a path or URL that must stay whole may run past the width.
    over = [_visible(ln) for ln in table_lines if len(_visible(ln)) > width]
    assert all("/" in ln.split()[-1] or "/" in ln.strip("│ ").split()[-1] for ln in over), out


def _visible(line: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", line)
