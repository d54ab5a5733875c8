"""`inv plan --layer host`: the host orchestrator's reads (k3s version and config per host, the
kubeconfig hand-off, the dynamic DNS record) over real SSH, with nothing changed. Stand-ins only
for the k3s download, a server's API port and Cloudflare's API (tasks/rehearsal/ssh_standins.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import base_env, run_inv
from sshd import CF_TOKEN, host_settings, installs, k3s_lab_fixture

from tasks.rehearsal.ssh_standins import DnsApiStandin, K3sInstallerStandin, SshLab

SERVER, AGENT = "k3s-server-1", "k3s-agent-1"
RECORD = "home.example.net A"


@pytest.fixture
def lab() -> Iterator[SshLab]:
    yield from k3s_lab_fixture([SERVER], [AGENT])


def _env(dns: DnsApiStandin, installer: K3sInstallerStandin, **extra: str) -> dict[str, str]:
    return base_env(**{**host_settings(dns, installer), "K3S_API_WAIT": "20", **extra})


def _dns_writes(dns: DnsApiStandin) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in dns.requests if m in ("POST", "PATCH", "PUT", "DELETE")]


def _items(result) -> dict[str, tuple[str, str]]:
    (host,) = json.loads(result.stdout)["plans"]
    assert host["layer"] == "host"
    return {i["name"]: (i["state"], i["detail"]) for i in host["items"]}


def _carried_out(repo: Path) -> list[str]:
    found = []
    for path in (repo / ".work/traces").glob("plan-*.json"):
        trace = json.loads(path.read_text())
        found += [
            f"{e['kind']} {e['target']}"
            for e in trace["effects"]
            if e["mutates"] and e["outcome"] != "skipped"
        ]
    return found


def test_host_plan_reads_k3s_and_dns_and_names_each_drift(
    sample_repo: Path, lab: SshLab, dns: DnsApiStandin, installer: K3sInstallerStandin
) -> None:
    lab.write_inventory(sample_repo)
    env = _env(dns, installer)
    fresh = run_inv(sample_repo, "plan", "--layer", "host", "--json", env=env)
    assert fresh.returncode == 2, str(fresh)
    items = _items(fresh)
    assert items[SERVER][0] == "change" and "install k3s v1.31.4+k3s1" in items[SERVER][1]
    assert items[AGENT][0] == "change" and "install k3s v1.31.4+k3s1" in items[AGENT][1]
    assert items["kubeconfig"][0] == "change"
    assert items[RECORD] == ("change", "create A 203.0.113.10")
    assert installs(lab, SERVER) == [] and installs(lab, AGENT) == []
    assert _dns_writes(dns) == [] and installer.downloads == 0
    assert _carried_out(sample_repo) == []
    assert CF_TOKEN not in fresh.output

    applied = run_inv(sample_repo, "host.apply", env=env)
    assert applied.returncode == 0, str(applied)
    converged = run_inv(sample_repo, "plan", "--layer", "host", "--quiet", env=env)
    assert converged.returncode == 0 and converged.stdout == "", str(converged)

    # Behind the runner's back: the public address moved; and the inventory pins a newer k3s.
    dns.public_ip = "203.0.113.77"
    dns.requests.clear()
    newer = _env(dns, installer, K3S_VERSION="v1.32.1+k3s1")
    drifted = run_inv(sample_repo, "plan", "--layer", "host", "--quiet", env=newer)
    assert drifted.returncode == 2, str(drifted)
    lines = sorted(drifted.stdout.splitlines())
    assert lines == [
        "host: home.example.net A: change: update content: 203.0.113.10 -> 203.0.113.77 "
        "(`inv host.apply --only 10` updates it (`inv up` does not run dynamic DNS))",
        f"host: {AGENT}: change: upgrade k3s v1.31.4+k3s1 -> v1.32.1+k3s1",
        f"host: {SERVER}: change: upgrade k3s v1.31.4+k3s1 -> v1.32.1+k3s1",
        "host: kubeconfig: change: after the install: "
        f"{SERVER} -> .work/home/kubeconfig, server {lab.apis[SERVER].url}",
    ], lines
    assert _dns_writes(dns) == [] and len(installs(lab, SERVER)) == 1
    assert _carried_out(sample_repo) == []

    lab.hosts[AGENT].stop()
    down = run_inv(sample_repo, "plan", "--layer", "host", "--quiet", env=env)
    assert down.returncode == 1, str(down)
    assert any(
        ln.startswith(f"host: {AGENT}: error: unreachable") for ln in down.stdout.splitlines()
    )
    assert "Traceback" not in down.output


def test_a_lab_whose_vms_do_not_exist_yet_plans_the_install(sample_repo: Path) -> None:
    """The sample as cloned: HOST_NAME's group fills from L2's VMs, none made yet."""
    result = run_inv(sample_repo, "plan", "--layer", "host", "--json")
    assert result.returncode == 2, str(result)
    items = _items(result)
    assert {n for n, (state, _d) in items.items() if state == "change"} == {
        "k3s-server-1",
        "k3s-agent-1",
        "k3s-agent-2",
    }
    assert items["dynamic DNS"] == ("not checked", "its server does not exist yet")


def test_a_dns_only_difference_runs_no_up_stage() -> None:
    """`inv up --plan` runs the stages a saved plan had changes for; `inv up` has no DNS stage."""
    from tasks.plan.readers import CHANGE, OK, Item, LayerPlan
    from tasks.plan.saved import pending_stages

    dns_only = LayerPlan("host", "host", [Item(SERVER, OK), Item(RECORD, CHANGE, stage="")])
    assert pending_stages([dns_only]) == []
    upgrade = LayerPlan("host", "host", [Item(SERVER, CHANGE), Item(RECORD, CHANGE, stage="")])
    l2 = LayerPlan("l2", "l2", [Item("k3s-agent-1", CHANGE)])
    assert pending_stages([upgrade, l2]) == ["l2", "k3s"]
