"""Two runs of one locked area at once: exactly one proceeds, the other refuses with exit 3 naming
the holder (its task and pid), and nothing is half-written; a dry run takes no lock.

Every area a task declares (`@task(area=...)`) is tried against a holder: a second process that
holds the area's lock through the runner's own lock module (tasks/runtime/lock.py, as a run does
from its first read). Two areas are also tried with two real runs started together, each slow
to overlap: `l2.apply` (fakepve; tests/fault_proxy.py holds its answers until the other run has
ended) and `l3.exec` (real sshd; the command waits for a file the test writes once the other run
has ended).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fault_proxy import FaultProxy
from helpers import INV, REPO, base_env, copy_repo, run_inv, task_names
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401
from sshd import lab_fixture

pytestmark = pytest.mark.slow

# One cheap invocation per locked area (the lock is taken before the task's first read).
AREAS = {
    "clean": ["clean"],
    "up": ["up"],
    "operator-config": ["init"],
    "gitops-tree": ["platform.certs", "--staging"],
    "doppler": ["doppler.forget"],
    "l2": ["l2.apply"],
    "l3": ["l3.exec", "true", "--hosts", "all"],
    "l4": ["l4.converge", "all"],
    "cluster": ["cluster.apply"],
    "flux": ["flux.reconcile"],
    "gitops-bootstrap-home": ["gitops.bootstrap", "home"],
    "host": ["host.apply"],
}
HOLDER_TASK = "adversarial holder"
# argv: the locks folder, the holder's task name, then the areas to hold.
HOLD = """
import sys, time
from pathlib import Path
from tasks.runtime.lock import RunLock
folder, task = Path(sys.argv[1]), sys.argv[2]
for area in sys.argv[3:]:
    RunLock(folder / (area + ".lock"), area, holder={"task": task, "run": "holder"}).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_every_locked_area_is_tried() -> None:
    """The table above names every area a task declares (a new one must be added here)."""
    from tasks.namespace import build_namespace

    def walk(coll, prefix=""):
        for name, t in coll.tasks.items():
            yield prefix + name, t
        for sub_name, sub in coll.collections.items():
            yield from walk(sub, prefix + sub_name + ".")

    declared = set()
    for _name, t in walk(build_namespace()):
        area = getattr(t, "area", None)
        if area is not None:
            declared.add(area({"cluster": "home"}) if callable(area) else area)
    assert declared == set(AREAS)


def _snapshot(repo: Path) -> dict[str, str]:
    """Every file of the tree and of `.work/` except locks and traces (each refused run leaves
    its trace), by content hash."""
    seen = {}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo).as_posix()
        if not path.is_file() or rel.startswith((".git/", ".work/locks/", ".work/traces/")):
            continue
        seen[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen]]:
    """A repo copy whose every area lock is held by another process."""
    repo = copy_repo(tmp_path_factory.mktemp("locks") / "repo")
    locks = repo / ".work" / "locks"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(locks), HOLDER_TASK, *AREAS],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    try:
        yield repo, holder
    finally:
        holder.kill()
        holder.wait(10)


@pytest.mark.parametrize("area", sorted(AREAS))
def test_a_second_run_refuses_naming_the_holder(held, area: str) -> None:
    repo, holder = held
    before = _snapshot(repo)
    result = run_inv(repo, *AREAS[area])
    assert result.returncode == 3, str(result)
    assert "Traceback" not in result.output
    message = f"{area} is already in use by another run ({HOLDER_TASK}, pid {holder.pid}, "
    assert message in result.stderr, str(result)
    assert _snapshot(repo) == before, "a refused run changed files"
    # The holder's record is intact: the refused run did not write its own name into it.
    assert f'"pid": {holder.pid}' in (repo / ".work" / "locks" / f"{area}.lock").read_text()


@pytest.mark.parametrize("area", sorted(AREAS))
def test_a_dry_run_takes_no_lock(held, area: str) -> None:
    repo, _holder = held
    result = run_inv(repo, *AREAS[area], "--dry-run")
    assert "already in use" not in result.output, str(result)
    assert "Traceback" not in result.output, str(result)


def test_the_table_covers_real_task_names(held) -> None:
    repo, _holder = held
    names = set(task_names(repo))
    assert {argv[0] for argv in AREAS.values()} <= names


def _start(repo: Path, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [INV, *argv],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _pair(
    repo: Path, argv: list[str], env: dict[str, str], release: Callable[[], None]
) -> list[tuple[int, int, str, str]]:
    """Two runs started together; the one that holds the lock waits for `release()`, called once
    the other has ended. (pid, exit code, stdout, stderr) of each."""
    procs = [_start(repo, argv, env), _start(repo, argv, env)]
    deadline = time.monotonic() + 90
    while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    release()
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append((proc.pid, proc.returncode, out, err))
    return done


def _one_proceeds(area: str, done: list[tuple[int, int, str, str]]) -> None:
    codes = sorted(code for _pid, code, _o, _e in done)
    assert codes == [0, 3], "\n".join(f"{d[0]} -> {d[1]}\n{d[2]}\n{d[3]}" for d in done)
    (winner,) = [d for d in done if d[1] == 0]
    (loser,) = [d for d in done if d[1] == 3]
    assert re.search(
        rf"{re.escape(area)} is already in use by another run \(.*pid {winner[0]},", loser[3]
    )
    assert "Traceback" not in winner[2] + winner[3] + loser[2] + loser[3]


def test_two_l2_applies_at_once(sample_repo: Path, pve: PveFixture) -> None:
    pve.served.add_template(9000, "debian12-k3s")
    with FaultProxy(pve.served.host, pve.fake.port) as proxy:
        proxy.attach(pve.fake)
        proxy.pause()  # the first answer waits until the other run has ended
        env = pve.env(PVE_ACCESS_HOST=proxy.access_host, PVE_TIMEOUT="120")
        done = _pair(sample_repo, ["l2.apply"], env, proxy.resume)
    _one_proceeds("l2", done)
    names = [vm.name for vm in pve.fake.vms if not vm.template]
    assert sorted(names) == ["k3s-agent-1", "k3s-agent-2", "k3s-server-1"]
    clones = [p for m, p, _b in pve.fake.requests if m == "POST" and p.endswith("/clone")]
    assert len(clones) == 3
    # The refused run sent nothing: every request is the winner's (one listing, not two).
    listings = [p for m, p, _b in pve.fake.requests if p.endswith("/cluster/resources")]
    assert len(listings) == 1, listings


@pytest.fixture
def ssh_lab():
    yield from lab_fixture(("web1",))


def test_two_l3_execs_at_once(sample_repo: Path, ssh_lab) -> None:
    ssh_lab.write_inventory(sample_repo)
    gate = Path(tempfile.mkdtemp())  # readable by the hosts' login user
    gate.chmod(0o755)
    wait = f"for i in $(seq 900); do [ -e {gate}/go ] && break; sleep 0.1; done"
    argv = ["l3.exec", f"{wait}; echo ran-$((40 + 2))", "--hosts", "lab"]
    try:
        done = _pair(sample_repo, argv, base_env(), (gate / "go").touch)
    finally:
        shutil.rmtree(gate)
    _one_proceeds("l3", done)
    ran = [pid for pid, _code, out, err in done if "ran-42" in out + err]
    assert ran == [d[0] for d in done if d[1] == 0], done  # the command ran once, by the winner


# The moment between a run's flock and its holder record (RunLock.acquire), by hand.
HALF_TAKEN = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
print("locked", flush=True)
time.sleep(0.3)
os.write(fd, json.dumps({"pid": os.getpid(), "task": "l2.apply"}).encode())
time.sleep(30)
"""


def test_a_run_arriving_as_the_holder_takes_the_lock_names_it(tmp_path: Path) -> None:
    from tasks.runtime.errors import RefusedError
    from tasks.runtime.lock import RunLock

    path = tmp_path / "locks" / "l2.lock"
    path.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HALF_TAKEN, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RefusedError) as refused:
            RunLock(path, "l2", holder={"task": "l2.apply"}).acquire()
        assert f"(l2.apply, pid {holder.pid}, " in refused.value.message
    finally:
        holder.kill()
        holder.wait(10)
