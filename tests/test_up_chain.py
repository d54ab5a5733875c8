"""`inv up`'s chain through the front door, without Packer or fakepve: the dry run prints every
stage with what it reads and hands on, `--profile` reaches every stage (the k3s stage's host
chain too), an explicit KUBECONFIG wins over the k3s hand-off, and the chain stops at the first
failing stage (a real sshd lab whose server API does not answer)."""

from __future__ import annotations

import json
from pathlib import Path

from gitops_support import calls, kube_env
from helpers import base_env, run_inv
from run_support import make_run
from sshd import installs, k3s_lab

from tasks.rehearsal.ssh_standins import K3sInstallerStandin

STAGES = [
    "00_l0_runway",
    "01_l1_templates",
    "02_l2_apply",
    "03_l3_converge",
    "04_l4_converge",
    "05_k3s_install",
    "06_cluster_apply",
]


def _flat(text: str) -> str:
    """The output with wrapped lines joined again (plan details wrap at 120 characters)."""
    return " ".join(text.split())


def _up_trace(repo: Path) -> dict:
    paths = sorted((repo / ".work/traces").glob("up-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(paths[-1].read_text())


def test_dry_run_prints_the_whole_chain_with_each_stages_inputs(sample_repo: Path) -> None:
    result = run_inv(sample_repo, "up", "--dry-run", env=base_env())
    assert result.returncode == 0, str(result)
    out = _flat(result.stdout)
    numbered = [
        line.split()[3].rstrip(":") for line in result.stdout.splitlines() if "[run ]" in line
    ]
    assert numbered == STAGES
    for expected in (
        "reads: VMs k3s-server-1 (pve1), k3s-agent-1 (pve1), k3s-agent-2 (pve1) (layers/l2/)",
        "hands off: .work/inventory/vms.json",
        # L2's VMs are not made yet: the hosts are the ones its declared VMs will be.
        "hosts L3_GROUP=all: edge1, k3s-server-1, k3s-agent-1, k3s-agent-2 (layers/l3)",
        "reads: hosts HOST_NAME=k3s (host chain): servers k3s-server-1 (the first initialises the "
        "cluster); agents k3s-agent-1, k3s-agent-2",
        "reads: k3s v1.31.4+k3s1 from https://get.k3s.io",
        "hands off: .work/home/kubeconfig (0600, server rewritten to the API address)",
        "reads: kubeconfig .work/home/kubeconfig (from the k3s stage)",
        "reads: Flux source GitRepository flux-system/flux-system "
        "ssh://git@git.home.example.net/homelab/homelab.git (branch main), "
        "path ./layers/gitops/clusters/home",
        "dry run: nothing was changed",
    ):
        assert expected in out, expected
    assert max(len(line) for line in result.stdout.splitlines()) <= 120
    trace = _up_trace(sample_repo)
    assert [e for e in trace["effects"] if e["mutates"] and e["outcome"] != "skipped"] == []
    assert not (sample_repo / ".work/home").exists()
    assert not (sample_repo / ".work/inventory/vms.json").exists()
    # The sample has no token secret, so the real run would stop at L0: said per stage.
    for layer in ("l0", "l1", "l2"):
        assert (
            "missing: PM_TOKEN_SECRET: this stage stops here until they are set "
            f"(`inv env.check {layer}`)"
        ) in out, out
    assert out.count("missing:") == 3, out
    full = run_inv(sample_repo, "up", "--dry-run", env=base_env(PM_TOKEN_SECRET="s3cr3t-value"))
    assert full.returncode == 0 and "missing:" not in full.stdout, full


def test_the_profile_reaches_every_stage_and_an_explicit_kubeconfig_wins(
    sample_repo: Path, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "elsewhere.yaml"
    profile = tmp_path / "lab.env"
    profile.write_text(
        f"L3_GROUP=edge\nHOST_NAME=k3s_servers\nK3S_VERSION=v1.32.1+k3s1\nKUBECONFIG={kubeconfig}\n"
    )
    result = run_inv(sample_repo, "up", "--dry-run", "--profile", str(profile), env=base_env())
    assert result.returncode == 0, str(result)
    out = _flat(result.stdout)
    assert "hosts L3_GROUP=edge: edge1 (layers/l3)" in out
    assert "servers k3s-server-1 (the first initialises the cluster); agents none" in out
    assert "reads: k3s v1.32.1+k3s1 from" in out
    assert f"reads: kubeconfig {kubeconfig} (KUBECONFIG from --profile {profile})" in out
    trace = _up_trace(sample_repo)
    assert "--profile" in trace["env_layers"] and "--profile" in trace["host_env_layers"]


def test_kubeconfig_default_is_the_hand_off_unless_kubeconfig_is_set(sample_repo: Path) -> None:
    from tasks.gitops.settings import handoff_kubeconfig, kubeconfig_env, kubeconfig_source

    run = make_run(sample_repo)
    handed = handoff_kubeconfig(run.project)
    assert handed == sample_repo / ".work/home/kubeconfig"
    assert kubeconfig_env(run) == {}  # nothing handed off yet: kubectl's own default
    assert "kubectl's default" in kubeconfig_source(run)[1]
    handed.parent.mkdir(parents=True)
    handed.write_text("apiVersion: v1\nkind: Config\n")
    assert kubeconfig_env(run) == {"KUBECONFIG": str(handed)}
    assert kubeconfig_source(run) == (
        [handed],
        "handed off by the k3s install (inv host.apply / inv up)",
    )
    explicit = make_run(sample_repo, shell={"KUBECONFIG": "/srv/kube/config"})
    assert kubeconfig_env(explicit) == {}
    assert kubeconfig_source(explicit) == (
        [Path("/srv/kube/config")],
        "KUBECONFIG from the shell environment",
    )


def test_the_chain_stops_at_the_first_failing_stage(
    sample_repo: Path, installer: K3sInstallerStandin, tmp_path: Path
) -> None:
    lab = k3s_lab(["k3s-server-1"], ["k3s-agent-1"])
    try:
        lab.apis["k3s-server-1"].close()  # the agent's join waits for an API that never answers
        lab.write_inventory(sample_repo)
        kube = kube_env(tmp_path)
        kube.pop("KUBECONFIG")
        env = {
            **kube,
            "K3S_INSTALL_URL": installer.url,
            "K3S_API_WAIT": "2",
            "FEAT_DYNAMIC_DNS": "false",
        }
        result = run_inv(sample_repo, "up", "--from", "k3s", env=env)
        assert result.returncode == 4, str(result)
        assert "k3s-agent-1: waiting for the server's API failed" in result.stderr
        assert "Traceback" not in result.output
        assert len(installs(lab, "k3s-server-1")) == 1 and installs(lab, "k3s-agent-1") == []
        steps = {s["id"]: s["outcome"] for s in _up_trace(sample_repo)["steps"]}
        assert steps["05_k3s_install"] == "failed"
        assert steps["06_cluster_apply"] == "not-run"
        assert "[2/2] 06_cluster_apply" not in result.stdout
        assert calls(tmp_path) == []  # the cluster side never ran
    finally:
        lab.close()


def test_the_sample_names_line_up_across_vms_hosts_host_env_cluster_and_kubeconfig(
    sample_repo: Path,
) -> None:
    import re

    import yaml

    from tasks.gitops.settings import configured_cluster, handoff_kubeconfig
    from tasks.host.chain import host_run
    from tasks.l2.spec import load_specs
    from tasks.upchain import prospective_inventory

    run = make_run(sample_repo)
    vms = [vm.name for vm in load_specs(sample_repo / "layers/l2", sample_repo, "pve1")]
    assert vms == ["k3s-server-1", "k3s-agent-1", "k3s-agent-2"]
    host_name = host_run(run).env["HOST_NAME"]
    inv = prospective_inventory(run)
    assert [h.name for h in inv.select(host_name)] == vms  # HOST_NAME is exactly L2's VMs
    roles = {h.name: inv.host_vars(h)["k3s_role"] for h in inv.select(host_name)}
    assert roles == {"k3s-server-1": "server", "k3s-agent-1": "agent", "k3s-agent-2": "agent"}
    cluster = configured_cluster(run.project)
    doc = yaml.safe_load((sample_repo / f"inventory/clusters/{cluster}/cluster.yaml").read_text())
    assert cluster == doc["name"] == "home"
    assert (sample_repo / "layers/gitops/clusters" / cluster).is_dir()
    assert handoff_kubeconfig(run.project) == sample_repo / ".work" / cluster / "kubeconfig"
    # One domain: every host name the sample's files mention is under home.example.net.
    names: set[str] = set()
    for folder in ("inventory", "layers"):
        for path in (sample_repo / folder).rglob("*"):
            if path.is_file() and path.suffix in {".yaml", ".yml", ".env", ".hcl", ".example"}:
                names |= set(
                    re.findall(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.example\.\w+", path.read_text())
                )
    assert names and all(n.endswith("home.example.net") for n in names), sorted(names)
