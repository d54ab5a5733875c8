"""The Proxmox adapter against fakepve over HTTPS, its certificate verified."""

from __future__ import annotations

import socket
import time

import pytest
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401
from run_support import standalone_effects

from tasks.adapters.proxmox import (
    ProxmoxClient,
    PveApiError,
    PveSettings,
    PveTaskError,
    held_privileges,
    parse_access_host,
    parse_upid,
)
from tasks.runtime.errors import ConfigError


def client(pve: PveFixture, **overrides: str) -> ProxmoxClient:
    return ProxmoxClient.from_env(pve.pve_env(**overrides), standalone_effects())


def test_settings_name_every_missing_variable_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        PveSettings.from_env({"PVE_NODE": "pve1"})
    for name in ("PVE_ACCESS_HOST", "PM_TOKEN_ID", "PM_TOKEN_SECRET", "PVE_STORAGE_VM"):
        assert name in err.value.message
    assert "PVE_NODE" not in err.value.message


def test_settings_check_token_id_and_scheme(tmp_path) -> None:
    env = {
        "PVE_ACCESS_HOST": "http://pve.lan",
        "PM_TOKEN_ID": "homelab-runner",
        "PM_TOKEN_SECRET": "s3cr3t-value",
        "PVE_NODE": "pve1",
        "PVE_STORAGE_VM": "local-lvm",
        "PVE_CA_BUNDLE": str(tmp_path / "nope.pem"),
    }
    with pytest.raises(ConfigError) as err:
        PveSettings.from_env(env)
    message = err.value.message
    assert "https only" in message
    assert "user@realm!tokenid" in message
    assert "PVE_CA_BUNDLE" in message
    assert "s3cr3t-value" not in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("pve.lan", ("pve.lan", 8006)),
        ("pve.lan:8443", ("pve.lan", 8443)),
        ("https://10.0.0.2:8006/", ("10.0.0.2", 8006)),
        ("[fd00::2]:8006", ("fd00::2", 8006)),
    ],
)
def test_access_host_forms(raw: str, expected: tuple[str, int]) -> None:
    assert parse_access_host(raw) == expected


def test_settings_repr_hides_the_secret() -> None:
    settings = PveSettings("h", 8006, "u@pve", "t", "very-secret-token", "pve1", "local-lvm")
    assert "very-secret-token" not in repr(settings)


def test_version_over_verified_tls(pve: PveFixture) -> None:
    api = client(pve)
    assert api.version()["version"].startswith("9.")
    assert api.nodes()[0]["node"] == "pve1"
    names = {s["storage"] for s in api.node_storages()}
    assert {"local", "local-lvm"} <= names


def test_unknown_ca_is_a_tls_error_and_not_retried(pve: PveFixture) -> None:
    import certifi

    api = client(pve, PVE_CA_BUNDLE=certifi.where(), REQUESTS_CA_BUNDLE=certifi.where())
    with pytest.raises(PveApiError) as err:
        api.version()
    assert "TLS verification" in err.value.message
    assert "PVE_CA_BUNDLE" in (err.value.hint or "")
    assert api.request_count == 1


def test_insecure_opt_out_warns(pve: PveFixture, capsys) -> None:
    import tasks.adapters.proxmox as adapter

    adapter._warned_insecure = False
    api = ProxmoxClient.from_env(
        pve.pve_env(PVE_TLS_INSECURE="1", PVE_CA_BUNDLE=""), standalone_effects()
    )
    assert api.version()
    assert "TLS verification" in capsys.readouterr().err


def test_bad_token_is_one_clear_sentence(pve: PveFixture) -> None:
    api = client(pve, PM_TOKEN_SECRET="wrong-secret-value")
    with pytest.raises(PveApiError) as err:
        api.version()
    assert err.value.status == 401
    assert err.value.message == "Proxmox API GET /version failed: HTTP 401 authentication failure"
    assert "PM_TOKEN_SECRET" in (err.value.hint or "")
    assert "wrong-secret-value" not in err.value.render()


def test_reads_retry_5xx_with_backoff(pve: PveFixture) -> None:
    pve.fake.fail("GET", "/version", 503, "service busy", times=2)
    api = client(pve)
    assert api.version()
    assert [p for m, p, _ in pve.fake.requests if p.endswith("/version")] == [
        "/api2/json/version"
    ] * 3


def test_reads_give_up_after_the_last_retry(pve: PveFixture) -> None:
    pve.fake.fail("GET", "/nodes", 500, "internal error")
    api = client(pve, PVE_RETRIES="2")
    with pytest.raises(PveApiError) as err:
        api.nodes()
    assert err.value.message == "Proxmox API GET /nodes failed: HTTP 500 internal error"
    assert api.request_count == 2


def test_writes_are_never_retried(pve: PveFixture) -> None:
    pve.served.add_template(9000, "tpl")
    pve.fake.fail("POST", "/qemu/9000/clone", 503, "proxy timeout", times=1)
    api = client(pve)
    with pytest.raises(PveApiError) as err:
        api.post("/nodes/pve1/qemu/9000/clone", newid=120, name="x")
    assert err.value.status == 503
    assert len([w for w in pve.writes() if w[1].endswith("/clone")]) == 1


def test_a_hung_read_times_out_with_the_call_named(pve: PveFixture) -> None:
    pve.fake.flaky_network(hang_rate=1.0, hang_secs=5)
    api = client(pve, PVE_TIMEOUT="0.3", PVE_RETRIES="2")
    started = time.monotonic()
    with pytest.raises(PveApiError) as err:
        api.version()
    assert "did not answer GET /version within 0.3s" in err.value.message
    assert time.monotonic() - started < 4


def test_unreachable_endpoint(pve: PveFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = client(pve, PVE_ACCESS_HOST=f"127.0.0.1:{port}", PVE_RETRIES="1")
    with pytest.raises(PveApiError) as err:
        api.version()
    assert err.value.message.startswith("cannot reach the Proxmox API at https://127.0.0.1:")
    assert "refused" in err.value.message.lower()


def test_wait_task_ok_and_failed_with_log_tail(pve: PveFixture) -> None:
    vm = pve.fake.add_vm(130, "broken", node="pve1")
    vm.start_error = "unable to find volume local-lvm:vm-130-disk-0"
    api = client(pve)
    with pytest.raises(PveTaskError) as err:
        api.run_task("POST", "/nodes/pve1/qemu/130/status/start")
    message = err.value.message
    assert message.startswith("Proxmox task qmstart 130 on pve1 failed: unable to find volume")
    assert "task: UPID:pve1:" in message
    assert err.value.log_tail[-1].startswith("TASK ERROR")
    pve.fake.add_vm(131, "fine", node="pve1")
    status = api.run_task("POST", "/nodes/pve1/qemu/131/status/start")
    assert status["exitstatus"] == "OK"


def test_wait_task_timeout_names_the_upid(pve: PveFixture) -> None:
    pve.fake.time_scale = 1.0
    vm = pve.fake.add_vm(132, "slow", node="pve1")
    vm.start_secs = 30
    api = client(pve)
    upid = api.post("/nodes/pve1/qemu/132/status/start")
    with pytest.raises(PveTaskError) as err:
        api.wait_task(upid, timeout=0.3)
    assert upid in err.value.message
    assert "did not finish within 0.3s" in err.value.message
    pve.fake.time_scale = 0


def test_call_log_records_calls_without_the_secret(pve: PveFixture) -> None:
    api = client(pve)
    api.resources("vm")
    api.permissions(path="/vms")
    calls = pve.calls()
    assert {"method": "GET", "path": "/cluster/resources", "params": {"type": "vm"}} in calls
    assert pve.served.token_secret not in pve.call_log.read_text()


def test_upid_and_privileges_helpers() -> None:
    fields = parse_upid("UPID:pve1:00001234:00005678:65A0B1C2:qmclone:9000:root@pam!ci:")
    assert (fields["node"], fields["type"], fields["id"]) == ("pve1", "qmclone", "9000")
    with pytest.raises(ValueError):
        parse_upid("not-a-upid")
    perms = {
        "/": {"Sys.Audit": 1},
        "/vms": {"VM.Audit": 1},
        "/storage/local": {"Datastore.Audit": 0},
    }
    assert held_privileges(perms, "/vms/101") == {"Sys.Audit", "VM.Audit"}
    assert held_privileges(perms, "/storage/local") == {"Sys.Audit", "Datastore.Audit"}
    assert held_privileges(perms, "/storage/local/x") == {"Sys.Audit"}


def test_a_reset_after_the_handshake_is_said_as_a_reset() -> None:
    """requests wraps it as "Connection aborted." with the reset inside: the reset is the cause."""
    import requests

    from tasks.runtime.seam.pve import short_reason

    reset = ConnectionResetError(104, "Connection reset by peer")
    wrapped = requests.exceptions.ConnectionError(("Connection aborted.", reset))
    assert short_reason(wrapped) == "Connection reset by peer"
    gone = requests.exceptions.ConnectionError(("Connection aborted.", "RemoteDisconnected"))
    assert short_reason(gone) == "Connection aborted"
