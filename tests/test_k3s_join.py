"""k3s on a group over real SSH: servers first, agents joining with the server's token on stdin,
rolling upgrades, delete in reverse. Stand-ins only for the k3s download and a server's API port
(tasks/rehearsal/ssh_standins.py); the hosts are real sshd servers on loopback."""

from __future__ import annotations

import hashlib
import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import base_env, run_inv
from sshd import installs, k3s_lab, k3s_lab_fixture, k3s_records

from tasks.rehearsal.ssh_standins import K3sInstallerStandin, SshLab

SERVERS = ["k3s-server-1", "k3s-server-2"]
AGENTS = ["k3s-agent-1", "k3s-agent-2"]
TOKEN = "k3s-fixed-token-8c41d07e"


@pytest.fixture
def lab() -> Iterator[SshLab]:
    yield from k3s_lab_fixture(SERVERS, AGENTS)


def _env(installer: K3sInstallerStandin, **extra: str) -> dict[str, str]:
    settings = {"K3S_INSTALL_URL": installer.url, "FEAT_DYNAMIC_DNS": "false", "K3S_API_WAIT": "20"}
    return base_env(**{**settings, **extra})


def _trace(repo: Path, task: str) -> dict:
    paths = sorted(
        (repo / ".work/traces").glob(f"{task}-*.json"), key=lambda p: p.stat().st_mtime_ns
    )
    return json.loads(paths[-1].read_text())


def _carried_out(trace: dict) -> list[dict]:
    return [e for e in trace["effects"] if e["mutates"] and e["outcome"] != "skipped"]


class ArgvSampler:
    """Reads every process's command line (/proc/*/cmdline) in a loop while a run goes on."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for path in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = path.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                except OSError:
                    continue
                if text:
                    self.seen.add(text)
            time.sleep(0.002)

    def __enter__(self) -> ArgvSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _config(lab: SshLab, name: str) -> dict:
    return yaml.safe_load((lab.state / name / "k3s/etc/config.yaml").read_text())


def _server_token(lab: SshLab) -> str:
    return (lab.state / SERVERS[0] / "k3s/data/server/token").read_text().strip()


def test_servers_then_agents_join_with_the_token_on_stdin_only(
    sample_repo: Path, lab: SshLab, installer: K3sInstallerStandin
) -> None:
    lab.write_inventory(sample_repo)
    env = _env(installer, K3S_TOKEN=TOKEN)
    with ArgvSampler() as argv:
        first = run_inv(sample_repo, "host.apply", env=env)
    assert first.returncode == 0, first

    records = {name: installs(lab, name) for name in [*SERVERS, *AGENTS]}
    assert all(len(r) == 1 for r in records.values()), records
    # One host at a time, in order: the first server, the joining server, then the agents.
    order = [records[n][0] for n in [*SERVERS, *AGENTS]]
    for before, after in zip(order, order[1:], strict=False):
        assert float(before["ended"]) <= float(after["started"]), (before, after)
    assert [r["role"] for r in order] == ["server", "server", "agent", "agent"]
    api = lab.apis[SERVERS[0]].url
    assert order[0]["join"] == "none" and all(r["join"] == api for r in order[1:])
    assert _config(lab, SERVERS[0])["cluster-init"] is True
    assert _config(lab, SERVERS[1])["server"] == api and "cluster-init" not in _config(
        lab, SERVERS[1]
    )
    assert _config(lab, AGENTS[0])["server"] == api
    # Every joining host got the first server's token (seen as its hash), through stdin only.
    joined = hashlib.sha256(_server_token(lab).encode()).hexdigest()
    assert {r["token-sha256"] for r in order[1:]} == {joined}
    assert {r["token-on-argv"] for r in order} == {"no"}
    assert any("sh -s - agent" in line for line in argv.seen), "the sampler saw no install"
    token_parts = [TOKEN, _server_token(lab)]
    assert [line for line in argv.seen if any(t in line for t in token_parts)] == []
    for secret in token_parts:
        assert secret not in first.output
        for trace in (sample_repo / ".work/traces").glob("*.json"):
            assert secret not in trace.read_text()
    # The hand-off: the first server's kubeconfig, rewritten, named after the cluster, 0600.
    kubeconfig = sample_repo / ".work/home/kubeconfig"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    doc = yaml.safe_load(kubeconfig.read_text())
    assert doc["clusters"][0]["cluster"]["server"] == api
    assert doc["clusters"][0]["name"] == "home" and doc["current-context"] == "home"
    assert "client-key-data" not in first.output

    # Again: every host already as wanted; nothing mutating, nothing installed.
    second = run_inv(sample_repo, "host.apply", env=env)
    assert second.returncode == 0, second
    assert "every host already as wanted; kubeconfig current" in second.stdout
    assert _carried_out(_trace(sample_repo, "host-apply")) == []
    assert {name: installs(lab, name) for name in records} == records
    assert installer.downloads == 4


def test_an_agent_whose_server_is_unreachable_fails_clearly_and_the_others_are_reported(
    sample_repo: Path, installer: K3sInstallerStandin
) -> None:
    lab = k3s_lab(["k3s-server-1"], AGENTS)
    try:
        lab.apis["k3s-server-1"].close()  # the server's API port: nothing listens
        lab.write_inventory(sample_repo)
        result = run_inv(sample_repo, "host.apply", env=_env(installer, K3S_API_WAIT="2"))
        assert result.returncode == 4, str(result)
        url = f"https://{lab.hosts['k3s-server-1'].address}:{lab.apis['k3s-server-1'].port}"
        assert f"no answer from {url}/ping within 2s" in result.output
        assert "2 of 2 host(s) failed: k3s-agent-1 (failed), k3s-agent-2 (failed)" in result.stderr
        rows = {
            line.split()[0]: line.split()[2]
            for line in result.stdout.splitlines()
            if line.startswith("k3s-")
        }
        assert rows == {"k3s-server-1": "ok", "k3s-agent-1": "failed", "k3s-agent-2": "failed"}
        assert len(installs(lab, "k3s-server-1")) == 1
        assert installs(lab, AGENTS[0]) == [] and installs(lab, AGENTS[1]) == []
        assert not (sample_repo / ".work/home/kubeconfig").exists()  # the run stopped there
        assert "Traceback" not in result.output
    finally:
        lab.close()


def test_a_new_version_upgrades_servers_before_agents_one_at_a_time_and_delete_reverses(
    sample_repo: Path, lab: SshLab, installer: K3sInstallerStandin
) -> None:
    lab.write_inventory(sample_repo)
    assert run_inv(sample_repo, "host.apply", env=_env(installer)).returncode == 0
    newer = run_inv(sample_repo, "host.apply", env=_env(installer, K3S_VERSION="v1.32.1+k3s1"))
    assert newer.returncode == 0, newer
    assert "upgrade k3s v1.31.4+k3s1 -> v1.32.1+k3s1" in newer.stdout
    upgrades = [installs(lab, n)[-1] for n in [*SERVERS, *AGENTS]]
    assert {r["version"] for r in upgrades} == {"v1.32.1+k3s1"}
    for before, after in zip(upgrades, upgrades[1:], strict=False):
        assert float(before["ended"]) <= float(after["started"]), (before, after)

    delete = run_inv(sample_repo, "host.delete", "--yes", env=_env(installer))
    assert delete.returncode == 0, delete
    server_log = [r["line"] for r in k3s_records(lab, SERVERS[0]) if r["event"] == "kubectl"]
    drained = [line.split()[4] for line in server_log if " drain " in line]
    assert drained == [*AGENTS, SERVERS[1]]  # agents first, then the joined server
    assert all(f"delete node {n}" in " ".join(server_log) for n in drained)
    gone = {
        n: next(r for r in k3s_records(lab, n) if r["event"] == "uninstalled")
        for n in [*AGENTS, SERVERS[1], SERVERS[0]]
    }
    times = [float(gone[n]["started"]) for n in [*AGENTS, SERVERS[1], SERVERS[0]]]
    assert times == sorted(times)
    assert [gone[n]["role"] for n in AGENTS] == ["agent", "agent"]
    assert not (sample_repo / ".work/home/kubeconfig").exists()
    again = run_inv(sample_repo, "host.delete", "--yes", env=_env(installer))
    assert again.returncode == 0 and "not installed anywhere" in again.stdout, again


def test_a_changed_config_touches_only_that_host(
    sample_repo: Path, lab: SshLab, installer: K3sInstallerStandin
) -> None:
    lab.write_inventory(sample_repo)
    assert run_inv(sample_repo, "host.apply", env=_env(installer)).returncode == 0
    doc = yaml.safe_load((sample_repo / "inventory/hosts.yaml").read_text())
    doc["hosts"][AGENTS[1]]["vars"]["k3s_config"]["node-label"] = ["homelab/role=agent", "x=y"]
    (sample_repo / "inventory/hosts.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run_inv(sample_repo, "host.apply", env=_env(installer))
    assert result.returncode == 0, str(result)
    assert [len(installs(lab, n)) for n in [*SERVERS, *AGENTS]] == [1, 1, 1, 2]
    assert "reinstall k3s v1.31.4+k3s1 for its config" in result.stdout
    assert "x=y" in (lab.state / AGENTS[1] / "k3s/etc/config.yaml").read_text()


def test_dry_run_shows_each_hosts_plan_and_changes_nothing(
    sample_repo: Path, lab: SshLab, installer: K3sInstallerStandin
) -> None:
    lab.write_inventory(sample_repo)
    result = run_inv(sample_repo, "host.apply", "--dry-run", env=_env(installer))
    assert result.returncode == 0, str(result)
    for name in SERVERS[1:] + AGENTS:
        assert f"{name} ({'server' if 'server' in name else 'agent'}, joins k3s-server-1)" in (
            result.stdout
        )
    assert "k3s-server-1 (server, initialises the cluster): install k3s v1.31.4+k3s1" in (
        result.stdout
    )
    assert installer.downloads == 0 and _carried_out(_trace(sample_repo, "host-apply")) == []
    assert all(k3s_records(lab, n) == [] for n in lab.hosts)


def test_bad_group_settings_are_config_errors(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    missing = run_inv(sample_repo, "host.apply", "--only", "20", env=base_env(HOST_NAME="nope"))
    assert missing.returncode == 2 and "HOST_NAME='nope'" in missing.stderr, missing
    agents_only = run_inv(
        sample_repo, "host.apply", "--only", "20", env=base_env(HOST_NAME="k3s_agents")
    )
    assert agents_only.returncode == 2, agents_only
    assert "no host with k3s_role server" in agents_only.stderr
    doc = yaml.safe_load((sample_repo / "inventory/hosts.yaml").read_text())
    doc["hosts"][AGENTS[0]]["vars"]["k3s_config"]["server"] = "https://elsewhere:6443"
    (sample_repo / "inventory/hosts.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    taken = run_inv(sample_repo, "host.apply", "--only", "20", env=base_env())
    assert taken.returncode == 2 and "k3s_config sets server" in taken.stderr, taken
    assert "Traceback" not in missing.output + agents_only.output + taken.output
