"""`inv up --resume` across the k3s and cluster stages, through the front door: real sshd hosts
(a k3s server and an agent, tests/sshd.py `k3s_lab`), the k3s installer stand-in, real Ansible
for L4, and the recording kubectl/flux stand-ins for the cluster side (no API server can run
here). A run that fails at k3s (the agent's sshd stopped) resumes, once it is back, with L4
re-read in check mode and only k3s and cluster run; a run that fails at the cluster stage (a
Kustomization that does not reconcile) resumes with the k3s group re-read and only the cluster
stage run, and is refused, installing nothing, while the k3s group would change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from gitops_support import RUNTIME_INPUTS, commands, kube_env
from helpers import run_inv
from sshd import installs, k3s_lab_fixture

from tasks.rehearsal.ssh_standins import K3sInstallerStandin, SshLab

pytestmark = pytest.mark.slow
SERVER, AGENT = "k3s-server-1", "k3s-agent-1"
STAGE_IDS = ("03_l3_converge", "04_l4_converge", "05_k3s_install", "06_cluster_apply")


@pytest.fixture
def lab() -> Iterator[SshLab]:
    yield from k3s_lab_fixture([SERVER], [AGENT])


def _env(
    tmp: Path, installer: K3sInstallerStandin, cluster: dict | None = None, **extra: str
) -> dict[str, str]:
    """The stand-ins' env (`installer` is tests/conftest.py's k3s download stand-in)."""
    env = kube_env(tmp, cluster, **RUNTIME_INPUTS)
    env.pop("KUBECONFIG")  # the cluster stage takes the kubeconfig the k3s stage hands off
    env.update(
        K3S_INSTALL_URL=installer.url,
        K3S_API_WAIT="5",
        FEAT_DYNAMIC_DNS="false",
        L4_GROUP="k3s_servers",  # L4 on the server only: the agent's state does not touch it
        L4_TAGS="whoami",
        L4_WAIT="2",
        **extra,
    )
    return env


def _up_traces(repo: Path) -> list[dict]:
    paths = sorted((repo / ".work/traces").glob("up-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text()) for p in paths]


def _stages(trace: dict) -> dict[str, str]:
    return {s["id"]: s["outcome"] for s in trace["steps"] if s["id"] in STAGE_IDS}


def _flat(text: str) -> str:
    return " ".join(text.split())


def _carried_out(trace: dict) -> list[str]:
    return [
        f"{e['kind']} {e['target']}"
        for e in trace["effects"]
        if e["mutates"] and e["outcome"] != "skipped"
    ]


def test_a_failure_at_k3s_resumes_with_l4_reread_and_runs_k3s_and_cluster_only(
    sample_repo: Path, lab: SshLab, installer: K3sInstallerStandin, tmp_path: Path
) -> None:
    lab.write_inventory(sample_repo)
    env = _env(tmp_path, installer)

    def inv(*args: str):
        return run_inv(sample_repo, *args, env=env, timeout=300)

    lab.hosts[AGENT].stop()
    failed = inv("up", "--from", "l4", "--to", "cluster")
    assert failed.returncode == 4, failed
    assert "Traceback" not in failed.output
    trace = _up_traces(sample_repo)[-1]
    assert _stages(trace) == {
        "04_l4_converge": "ok",
        "05_k3s_install": "failed",
        "06_cluster_apply": "not-run",
    }
    assert trace["up_chain"] == ["l4", "k3s", "cluster"]
    assert len(installs(lab, SERVER)) == 1 and installs(lab, AGENT) == []
    assert commands(tmp_path) == []  # the cluster side never ran
    assert not (sample_repo / ".work/home/kubeconfig").exists()

    lab.hosts[AGENT].start()
    # A stage before k3s no longer holds (L4's file edited on the host behind the runner's
    # back): refused, naming the host and task; the re-read (check mode) changed nothing.
    compose = lab.state / SERVER / "apps/whoami/compose.yaml"
    original = compose.read_bytes()
    compose.write_bytes(original + b"# edited on the host\n")
    drifted = inv("up", "--resume")
    assert drifted.returncode == 3, drifted
    assert f"cannot resume run {trace['run']} at k3s" in _flat(drifted.stderr)
    assert "l4: k3s-server-1: change: 1 task(s) would change" in drifted.stderr
    assert "compose file is current" in drifted.stderr
    assert compose.read_bytes() == original + b"# edited on the host\n"
    assert installs(lab, AGENT) == [] and commands(tmp_path) == []
    compose.write_bytes(original)

    resumed = inv("up", "--resume")
    assert resumed.returncode == 0, resumed
    out = _flat(resumed.stdout)
    assert f"resume: run {trace['run']}" in out and "failed at k3s" in out
    assert "its chain: l4, k3s, cluster" in out and "re-reading l4" in out
    last = _up_traces(sample_repo)[-1]
    assert _stages(last) == {"05_k3s_install": "ok", "06_cluster_apply": "ok"}
    ids = [s["id"] for s in last["steps"]]
    assert "plan l4" in ids  # L4 was re-read (check mode), not converged again
    assert last["resumed"] == {"run": trace["run"], "failed": "k3s", "rechecked": ["l4"]}
    assert last["up_chain"] == ["l4", "k3s", "cluster"]
    # k3s: the server was already as wanted (not reinstalled), the agent joined it.
    assert len(installs(lab, SERVER)) == 1
    (agent,) = installs(lab, AGENT)
    assert agent["role"] == "agent" and agent["join"] == lab.apis[SERVER].url
    assert (sample_repo / ".work/home/kubeconfig").exists()
    # The cluster stage ran the cluster orchestrator with the handed-off kubeconfig.
    assert "flux install --namespace=flux-system" in commands(tmp_path)
    assert "kubeconfig .work/home/kubeconfig (handed off by the k3s install" in resumed.stdout
    for value in RUNTIME_INPUTS.values():
        assert value not in resumed.output


def test_a_failure_at_the_cluster_stage_resumes_at_the_cluster_stage_only(
    sample_repo: Path, lab: SshLab, installer: K3sInstallerStandin, tmp_path: Path
) -> None:
    lab.write_inventory(sample_repo)
    failing = _env(tmp_path, installer, {"fail_reconcile": ["issuers"]})
    failed = run_inv(sample_repo, "up", "--from", "k3s", "--to", "cluster", env=failing)
    assert failed.returncode == 4, failed
    assert "kustomize build failed" in failed.output and "Traceback" not in failed.output
    trace = _up_traces(sample_repo)[-1]
    assert _stages(trace) == {"05_k3s_install": "ok", "06_cluster_apply": "failed"}
    records = {name: installs(lab, name) for name in (SERVER, AGENT)}
    assert [len(r) for r in records.values()] == [1, 1]

    # The cause is fixed (the stand-in's cluster reconciles issuers now); the state file is the
    # modelled cluster, kept, without the failure.
    state_file = tmp_path / "kube-state.json"
    cluster = json.loads(state_file.read_text())
    cluster["fail_reconcile"] = []
    state_file.write_text(json.dumps(cluster))
    env = _env(tmp_path, installer)  # no state given: the file is kept as it is

    # A stage before the cluster no longer holds (a newer k3s wanted): refused, naming it,
    # with nothing installed and the cluster never called.
    seen = len(commands(tmp_path))
    newer = run_inv(sample_repo, "up", "--resume", env={**env, "K3S_VERSION": "v1.32.1+k3s1"})
    assert newer.returncode == 3, newer
    assert f"cannot resume run {trace['run']} at cluster" in _flat(newer.stderr)
    assert "stages before it no longer hold" in _flat(newer.stderr)
    assert f"k3s: {SERVER}: upgrade k3s v1.31.4+k3s1 -> v1.32.1+k3s1" in newer.stderr
    assert f"k3s: {AGENT}: upgrade k3s v1.31.4+k3s1 -> v1.32.1+k3s1" in newer.stderr
    assert "k3s: kubeconfig: " in newer.stderr and "(after the install)" in newer.stderr
    assert {name: installs(lab, name) for name in records} == records
    assert commands(tmp_path)[seen:] == []
    refused = _up_traces(sample_repo)[-1]
    assert _carried_out(refused) == []

    resumed = run_inv(sample_repo, "up", "--resume", env=env)
    assert resumed.returncode == 0, resumed
    out = _flat(resumed.stdout)
    assert f"resume: run {trace['run']}" in out and "failed at cluster" in out
    assert "re-reading k3s" in out
    last = _up_traces(sample_repo)[-1]
    assert _stages(last) == {"06_cluster_apply": "ok"}
    assert last["resumed"] == {"run": trace["run"], "failed": "cluster", "rechecked": ["k3s"]}
    # The k3s group was re-read over SSH, not installed again.
    assert {name: installs(lab, name) for name in records} == records
    ran = commands(tmp_path)[seen:]
    assert "flux reconcile kustomization issuers --namespace=flux-system" in ran

    again = run_inv(sample_repo, "up", "--resume", env=env)
    assert again.returncode == 3 and "nothing to resume" in again.stderr, again
