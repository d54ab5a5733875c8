"""Proxmox API faults on the wire: a fault-injecting TCP proxy (tests/fault_proxy.py) between the
runner and fakepve. The runner verifies fakepve's CA through the proxy (TLS passes untouched).

Faults: HTTP 500s (fakepve's own `fail()`), hangs past PVE_TIMEOUT (before and after PVE acted),
connections reset before a request reaches PVE, answers lost after PVE served the request, bytes
trickled, and `inv` killed (SIGKILL) while a clone is in flight. Every case checks:

- the exit code (4 for an unreachable or failing API, 0 where a retried read or a re-read saves
  the run), with one clear error and no traceback;
- no duplicate VM (no two VMs of one name in fakepve);
- no write retried (fakepve's request log: each mutating request at most once per run);
- the untagged VM `handmade` untouched (no write to it, its config as it was);
- a re-run without faults converges: `l2.apply` exit 0 with each declared VM there once, then
  `l2.plan` with nothing to change.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fault_proxy import FaultProxy
from helpers import INV, InvResult, copy_repo, run_inv
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401

pytestmark = pytest.mark.slow

DECLARED = ("k3s-server-1", "k3s-agent-1", "k3s-agent-2")
OWNER = "homelab-runner"
HANDMADE = {"cores": 16, "memory": 65536, "tags": "prod", "description": "an operator's VM"}
# Short timings: a hang costs PVE_TIMEOUT per attempt, reads are tried twice.
NOTHING_TO_DO = "plan: 0 to create, 0 to update, 3 already as wanted, 0 orphaned, 0 in error"
FAST = {"PVE_TIMEOUT": "1", "PVE_RETRIES": "2", "PVE_RETRY_BACKOFF": "0.05"}


@pytest.fixture(scope="module")
def module_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the sample repo for the module; each case starts with an empty `.work/`."""
    return copy_repo(tmp_path_factory.mktemp("faults") / "repo")


@dataclass
class Lab:
    repo: Path
    pve: PveFixture
    proxy: FaultProxy

    def env(self, **extra: str) -> dict[str, str]:
        return self.pve.env(**{"PVE_ACCESS_HOST": self.proxy.access_host, **FAST, **extra})

    def inv(self, *args: str, **extra: str) -> InvResult:
        return run_inv(self.repo, *args, env=self.env(**extra), timeout=120)

    def vm_names(self) -> Counter[str]:
        return Counter(vm.name for vm in self.pve.fake.vms if not vm.template)

    def add_managed(self, vmid: int, name: str, status: str = "running") -> None:
        vm = self.pve.fake.add_vm(vmid, name, node="pve1", config={"tags": OWNER})
        vm.status = status


@pytest.fixture
def lab(module_repo: Path, pve: PveFixture) -> Iterator[Lab]:
    import shutil

    shutil.rmtree(module_repo / ".work", ignore_errors=True)
    pve.served.add_template(9000, "debian12-k3s")
    pve.fake.add_vm(300, "handmade", node="pve1", config=dict(HANDMADE))
    with FaultProxy(pve.served.host, pve.fake.port) as proxy:
        proxy.attach(pve.fake)
        yield Lab(module_repo, pve, proxy)


def _writes(requests: list) -> list[tuple[str, str, str]]:
    return [(m, p, repr(b)) for m, p, b in requests if m not in ("GET", "HEAD")]


def check_run(lab: Lab, result: InvResult, code: int, since: int, *needles: str) -> None:
    """The invariants of one faulted run."""
    assert result.returncode == code, str(result)
    assert "Traceback" not in result.output, str(result)
    assert "bug in the runner" not in result.output, str(result)
    for needle in needles:
        assert needle in result.output, (needle, result)
    if code:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result  # one clear error
    duplicates = {n: c for n, c in lab.vm_names().items() if c > 1}
    assert not duplicates, f"duplicate VMs {duplicates}"
    writes = _writes(lab.pve.fake.requests[since:])
    retried = {w: c for w, c in Counter(writes).items() if c > 1}
    assert not retried, f"writes sent more than once in one run: {retried}"
    check_handmade(lab)


def check_handmade(lab: Lab) -> None:
    touched = [(m, p) for m, p, _b in _writes(lab.pve.fake.requests) if "/qemu/300" in p]
    assert touched == [], touched
    (vm,) = [vm for vm in lab.pve.fake.vms if vm.vmid == 300]
    assert vm.name == "handmade"
    assert {k: str(vm.config[k]) for k in HANDMADE} == {k: str(v) for k, v in HANDMADE.items()}


def converges(lab: Lab) -> None:
    """Faults off: apply (each declared VM there once), then a plan with nothing to do. One
    `inv l2.apply l2.plan`: the plan reads the cluster afresh, after the apply has ended."""
    lab.proxy.clear()
    since = len(lab.pve.fake.requests)
    result = lab.inv("l2.apply", "l2.plan")
    check_run(lab, result, 0, since)
    names = lab.vm_names()
    assert all(names[n] == 1 for n in DECLARED), names
    for name in DECLARED:
        (vm,) = [vm for vm in lab.pve.fake.vms if vm.name == name]
        assert OWNER in str(vm.config.get("tags", "")).split(";"), (name, vm.config)
        assert vm.status == "running", name
    summaries = [line for line in result.stdout.splitlines() if line.startswith("plan: ")]
    assert len(summaries) == 2, result  # the apply's plan, then l2.plan's
    assert summaries[-1] == NOTHING_TO_DO, str(result)
    clones = lab.repo / ".work" / "l2" / "clones.json"
    assert not clones.exists() or json.loads(clones.read_text())["clones"] == []


def faulted(lab: Lab, *args: str, code: int, needles: tuple[str, ...] = (), **env: str):
    since = len(lab.pve.fake.requests)
    result = lab.inv(*args, **env)
    check_run(lab, result, code, since, *needles)
    proxy = lab.proxy
    assert proxy.fired or proxy.hanging or proxy.trickle or not lab.pve.fake.failures, (
        "the fault never fired"
    )
    return result, lab.pve.fake.requests[since:]


def served(requests: list, method: str, suffix: str) -> int:
    return sum(1 for m, p, _b in requests if m == method and p.endswith(suffix))


CLONE = "/qemu/9000/clone"
SERVER = "/nodes/pve1/qemu/211"


# ------------------------------------------------------------------ l2.apply


def test_500_on_a_clone(lab: Lab) -> None:
    lab.pve.fake.fail("POST", CLONE, 500, "clone failed: storage busy", times=1)
    faulted(lab, "l2.apply", "--parallel", "1", code=4, needles=("storage busy",))
    converges(lab)


def test_500_on_start_then_a_500_on_a_task_status_read(lab: Lab) -> None:
    lab.pve.fake.fail("POST", f"{SERVER}/status/start", 500, "start refused", times=1)
    faulted(lab, "l2.apply", code=4, needles=("start refused", "1 of 3 VM(s) failed"))
    # A read answered 500 once is retried, the run goes on.
    lab.pve.fake.fail("GET", "/status", 500, "busy", times=1)
    converges(lab)
    assert lab.pve.fake.failures == {}  # the 500 was answered (and the read sent again)


def test_lost_answer_to_a_clone_is_adopted_not_cloned_again(lab: Lab) -> None:
    lab.proxy.lose_answer("POST", CLONE)
    _result, requests = faulted(lab, "l2.apply", "--parallel", "1", code=4)
    assert lab.proxy.fired[0].startswith("lose_answer POST")
    assert served(requests, "POST", CLONE) == 3  # PVE cloned all three; one answer was lost
    (server,) = [vm for vm in lab.pve.fake.vms if vm.name == "k3s-server-1"]
    assert OWNER not in str(server.config.get("tags", ""))  # the clone the runner never heard of
    converges(lab)


def test_lost_answer_to_the_first_config_write(lab: Lab) -> None:
    lab.proxy.lose_answer("PUT", f"{SERVER}/config")
    faulted(
        lab,
        "l2.apply",
        code=4,
        needles=("k3s-server-1", "broke during PUT"),
    )
    converges(lab)


def test_lost_answer_to_a_start(lab: Lab) -> None:
    lab.proxy.lose_answer("POST", "/status/start")
    faulted(lab, "l2.apply", code=4)
    converges(lab)


def test_lost_answer_to_a_read_is_read_again(lab: Lab) -> None:
    lab.proxy.lose_answer("GET", "/cluster/resources")
    lab.proxy.lose_answer("GET", f"{SERVER}/config")
    faulted(lab, "l2.apply", code=0, needles=("retry 1/1",))
    assert len(lab.proxy.fired) == 2
    converges(lab)


def test_a_clone_whose_answer_hangs_past_the_timeout(lab: Lab) -> None:
    lab.proxy.hold_answer("POST", CLONE)
    result, _requests = faulted(
        lab, "l2.apply", "--parallel", "1", code=4, needles=("did not answer",)
    )

    converges(lab)


def test_a_config_write_reset_before_it_reaches_pve(lab: Lab) -> None:
    # The VM's config is read after its clone; the write after that read never arrives.
    lab.proxy.reset_next("GET", f"{SERVER}/config")
    _result, requests = faulted(lab, "l2.apply", code=4)
    assert served(requests, "PUT", f"{SERVER}/config") == 0
    assert served(requests, "POST", CLONE) == 3
    converges(lab)


def test_a_config_write_held_before_it_reaches_pve(lab: Lab) -> None:
    lab.proxy.hold_next("GET", f"{SERVER}/config")
    _result, requests = faulted(lab, "l2.apply", code=4, needles=("did not answer",))
    assert served(requests, "PUT", f"{SERVER}/config") == 0
    converges(lab)


def test_trickled_bytes_still_converge(lab: Lab) -> None:
    lab.proxy.slow(chunk=256, delay=0.001)
    faulted(lab, "l2.apply", code=0)
    converges(lab)


def test_inv_killed_while_a_clone_is_in_flight(lab: Lab) -> None:
    lab.proxy.hold_answer("POST", CLONE)
    proc = subprocess.Popen(
        [INV, "l2.apply", "--parallel", "1"],
        cwd=lab.repo,
        env=lab.env(PVE_TIMEOUT="30"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not lab.proxy.fired and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lab.proxy.fired, "the clone was never sent"
    os.kill(proc.pid, 9)
    proc.wait(30)
    record = json.loads((lab.repo / ".work" / "l2" / "clones.json").read_text())
    assert len(record["clones"]) == 1  # written before the clone was sent
    check_handmade(lab)
    converges(lab)


# ---------------------------------------------------------------- l2.destroy


def _seeded(lab: Lab) -> None:
    """Two managed VMs, one running, one stopped: what an earlier apply left."""
    lab.add_managed(210, "k3s-agent-1", status="running")
    lab.add_managed(212, "k3s-agent-2", status="stopped")


def test_destroy_lost_answer_to_a_delete_is_read_again(lab: Lab) -> None:
    _seeded(lab)
    lab.proxy.lose_answer("DELETE", "/qemu/212")
    faulted(
        lab,
        "l2.destroy",
        "--name",
        "k3s-agent-2",
        "--yes",
        code=0,
        needles=("reading the cluster again shows it gone",),
    )
    assert "k3s-agent-2" not in lab.vm_names()
    converges(lab)


def test_destroy_a_delete_reset_before_it_reaches_pve(lab: Lab) -> None:
    _seeded(lab)
    # The stop task's status is read; the DELETE after it never arrives.
    lab.proxy.reset_next("GET", "/status")
    _result, requests = faulted(lab, "l2.destroy", "--name", "k3s-agent-1", "--yes", code=4)
    assert served(requests, "DELETE", "/qemu/210") == 0
    assert "k3s-agent-1" in lab.vm_names()
    again = lab.inv("l2.destroy", "--name", "k3s-agent-1", "--yes")
    assert again.returncode == 0, again
    converges(lab)


def test_destroy_a_delete_whose_answer_hangs(lab: Lab) -> None:
    _seeded(lab)
    lab.proxy.hold_answer("DELETE", "/qemu/212")
    faulted(lab, "l2.destroy", "--name", "k3s-agent-2", "--yes", code=0, needles=("gone",))
    converges(lab)


def test_destroy_lost_answer_to_a_stop(lab: Lab) -> None:
    _seeded(lab)
    lab.proxy.lose_answer("POST", "/qemu/210/status/stop")
    _result, requests = faulted(lab, "l2.destroy", "--name", "k3s-agent-1", "--yes", code=4)
    assert served(requests, "DELETE", "/qemu/210") == 0  # never deleted on a lost answer
    again = lab.inv("l2.destroy", "--name", "k3s-agent-1", "--yes")
    assert again.returncode == 0 and "k3s-agent-1" not in lab.vm_names(), again
    converges(lab)


def test_destroy_500_on_a_delete(lab: Lab) -> None:
    _seeded(lab)
    lab.pve.fake.fail("DELETE", "/qemu/212", 500, "unable to remove disk", times=1)
    faulted(
        lab,
        "l2.destroy",
        "--name",
        "k3s-agent-2",
        "--yes",
        code=4,
        needles=("unable to remove disk",),
    )
    assert "k3s-agent-2" in lab.vm_names()
    converges(lab)


# ------------------------------------------------------------------ l2.plan


def test_plan_first_connection_reset_is_retried(lab: Lab) -> None:
    lab.proxy.reset_connections(1)
    faulted(lab, "l2.plan", code=0, needles=("retry 1/1",))
    converges(lab)


def test_plan_api_resetting_every_connection(lab: Lab) -> None:
    lab.proxy.reset_connections(100)
    faulted(lab, "l2.plan", code=4, needles=("cannot reach the Proxmox API",))
    converges(lab)


def test_plan_api_that_never_answers(lab: Lab) -> None:
    lab.proxy.hang_all()
    started = time.monotonic()
    faulted(lab, "l2.plan", code=4)
    assert time.monotonic() - started < 30
    converges(lab)


def test_plan_resources_read_hangs_every_time(lab: Lab) -> None:
    lab.proxy.hold_answer("GET", "/cluster/resources", times=None)
    faulted(lab, "l2.plan", code=4, needles=("did not answer GET /cluster/resources",))
    converges(lab)


# ----------------------------------------------------------------- l0.runway


def test_runway_api_resetting_every_connection(lab: Lab) -> None:
    lab.proxy.reset_connections(100)
    result, _requests = faulted(lab, "l0.runway", code=4, needles=("Connection reset",))
    assert "runway: 1 required check(s) failed: api: endpoint and TLS" in result.stderr
    converges(lab)


def test_runway_api_that_never_answers(lab: Lab) -> None:
    lab.proxy.hang_all()
    faulted(lab, "l0.runway", code=4, needles=("did not answer GET /version within 1s",))
    converges(lab)
