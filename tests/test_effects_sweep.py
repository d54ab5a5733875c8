"""The effects sweep: for every task in `inv --list`, `inv --dry TASK ...` and `inv TASK --dry-run ...`
against the rehearsal's stand-ins change nothing, seen from every side:

- at the seam: no trace records a mutating effect that was carried out;
- fakepve's own request log holds no write;
- the recording kubectl/flux stand-ins saw no mutating command, the DNS stand-in no write;
- the sshd hosts' files are byte for byte as before;
- `git status` of the checkout stays clean.

A deliberately broken seam (the Run no longer told about Invoke's --dry) makes it fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from gitops_support import RUNTIME_INPUTS, kube_env
from helpers import copy_repo, git, run_inv, task_names

from tasks.rehearsal.gitops import point_cluster_at

# argv before the dry flag; `{cluster}` is the sample cluster. Every task in `inv --list` has a row.
DRY = {
    "clean": [["clean"], ["clean", "--all"]],
    "up": [["up"]],
    "plan": [["plan"], ["plan", "--quiet"]],
    "runs.list": [["runs"]],
    "runs.show": [["runs.show", "last"]],
    "rehearse": [["rehearse"]],
    "env.show": [["env.show"]],
    "env.check": [["env.check", "l0"]],
    "doppler.forget": [["doppler.forget"]],
    "l0.runway": [["l0.runway"]],
    "l1.list": [["l1.list", "--live"]],
    "l1.isos": [["l1.isos"]],
    "l1.build": [["l1.build", "debian12-k3s"]],
    "l1.promote": [["l1.promote", "debian12-k3s"]],
    "l1.history": [["l1.history", "debian12-k3s"]],
    "l1.adopt": [["l1.adopt", "debian12-k3s", "--vmid", "9000"]],
    "l2.plan": [["l2.plan", "--deep"]],
    "l2.apply": [["l2.apply"]],
    "l2.destroy": [["l2.destroy", "--yes"]],
    "l3.hosts": [["l3.hosts"]],
    "l3.exec": [["l3.exec", "touch sweep-was-here", "--hosts", "lab"]],
    "l3.converge": [["l3.converge", "lab"]],
    "l3.reboot": [["l3.reboot", "lab", "--apply", "--yes"]],
    "l4.converge": [["l4.converge", "lab", "--tags", "whoami"]],
    "host.apply": [["host.apply"]],
    "host.delete": [["host.delete", "--yes"]],
    "init": [["init"]],
    "configure": [["configure"]],
    "platform.certs": [["platform.certs", "--prod"]],
    "app.mode": [["app.mode", "staging-le-prod"]],
    "k8s.validate": [["k8s.validate"]],
    "flux.reconcile": [
        ["flux.reconcile", "--force"],
        ["flux.reconcile", "platform-services", "--with-source", "--force"],
    ],
    "flux.diff": [["flux.diff", "platform-services"]],
    "flux.status": [["flux.status"]],
    "cluster.apply": [["cluster.apply"]],
    "cluster.delete": [["cluster.delete", "--yes"]],
    "gitops.bootstrap": [["gitops.bootstrap", "--cluster", "home"]],
    "gitops.layout": [["gitops.layout", "--graph"]],
    # The sample has no .sops.yaml: both stop with exit 2 (tests/test_gitops_sops.py runs them on
    # a tree with rules and keys); here they prove a refused dry run leaves nothing behind either.
    "secrets.edit": [["secrets.edit", "layers/gitops/clusters/home/tenants.yaml"]],
    "secrets.encrypt": [["secrets.encrypt", "layers/gitops/clusters/home/tenants.yaml"]],
}
# kubectl/flux subcommands that change nothing.
KUBE_READS = {
    ("kubectl", "get"),
    ("kubectl", "version"),
    ("kubectl", "auth"),
    ("kubectl", "kustomize"),
    ("kubectl", "config"),
    ("flux", "--version"),
    ("flux", "check"),
    ("flux", "diff"),
    ("flux", "get"),
}


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


class Lab:
    """Every stand-in the rehearsal uses, around one copy of the sample repo."""

    def __init__(self, repo: Path, tmp: Path, stack: contextlib.ExitStack):
        from tasks.rehearsal.proxmox import serve_fakepve
        from tasks.rehearsal.ssh_standins import (
            DnsApiStandin,
            K3sInstallerStandin,
            SshLab,
            sshd_unavailable_reason,
        )

        self.repo, self.tmp = repo, tmp
        self.pve = stack.enter_context(serve_fakepve(tmp / "fakepve"))
        self.pve.add_template(9000, "debian12-k3s")
        self.dns = DnsApiStandin(token="sweep-cloudflare-token").start()
        stack.callback(self.dns.close)
        self.dns.add_zone("example.net")
        installer = K3sInstallerStandin().start()
        stack.callback(installer.close)
        self.ssh = None
        if sshd_unavailable_reason() is None:
            self.ssh = SshLab(["k3s-1", "web1"])
            stack.callback(self.ssh.close)
            self.ssh.write_inventory(repo)
        remote = tmp / "remote.git"
        git(tmp, "init", "-q", "--bare", "-b", "main", str(remote))
        point_cluster_at(repo, remote)
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "lab inventory")
        git(repo, "remote", "add", "origin", str(remote))
        git(repo, "push", "-q", "-u", "origin", "HEAD:main")
        self.env = kube_env(
            tmp,
            **self.pve.env(REQUESTS_CA_BUNDLE=self.pve.cafile),
            **RUNTIME_INPUTS,
            CLOUDFLARE_API_URL=self.dns.url,
            CLOUDFLARE_API_TOKEN="sweep-cloudflare-token",
            DDNS_IP_URL=self.dns.ip_url,
            K3S_INSTALL_URL=installer.url,
            K3S_TOKEN="sweep-k3s-token",
            HOST_NAME="k3s-1",
            L3_WAIT="1",
        )

    def snapshot(self) -> dict:
        return {
            "pve": len(self.pve.pve.requests),
            "dns": len(self.dns.requests),
            "kube": self._kube_calls(),
            "hosts": _tree_digest(self.ssh.state) if self.ssh else {},
            "traces": set(self._traces()),
        }

    def _kube_calls(self) -> int:
        log = self.tmp / "kube.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def _traces(self) -> list[Path]:
        folder = self.repo / ".work" / "traces"
        return sorted(folder.glob("*.json")) if folder.exists() else []

    def new_traces(self, before: dict) -> list[dict]:
        return [json.loads(p.read_text()) for p in self._traces() if p not in before["traces"]]

    def violations(self, before: dict) -> list[str]:
        """Every change the run made, seen from each side."""
        found = []
        for method, path, _body in self.pve.pve.requests[before["pve"] :]:
            if method not in ("GET", "HEAD"):
                found.append(f"fakepve saw {method} {path}")
        for method, path, _body in self.dns.requests[before["dns"] :]:
            if method != "GET":
                found.append(f"the DNS stand-in saw {method} {path}")
        log = self.tmp / "kube.log"
        if log.exists():
            for line in log.read_text().splitlines()[before["kube"] :]:
                entry = json.loads(line)
                argv = entry["argv"]
                if (entry["tool"], argv[0] if argv else "") not in KUBE_READS:
                    found.append(f"{entry['tool']} {' '.join(argv)}")
        if self.ssh and _tree_digest(self.ssh.state) != before["hosts"]:
            found.append("a host's files changed")
        for path in self._traces():
            if path in before["traces"]:
                continue
            for effect in json.loads(path.read_text())["effects"]:
                if effect["mutates"] and effect["outcome"] != "skipped":
                    found.append(f"{path.name}: {effect['kind']} {effect['target']}")
        status = git(self.repo, "status", "--porcelain").stdout.strip()
        if status:
            found.append(f"git status: {status}")
        return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("effects-sweep")
    repo = copy_repo(tmp / "repo")
    with contextlib.ExitStack() as stack:
        yield Lab(repo, tmp, stack)


def _variants(task: str, argv: list[str], takes_dry_run: bool) -> list[list[str]]:
    variants = [["--dry", *argv]]
    if takes_dry_run:
        variants.append([*argv, "--dry-run"])
    return variants


def _takes_dry_run(repo: Path, task: str) -> bool:
    return "--dry-run" in run_inv(repo, task, "--help").stdout


def test_every_task_has_a_dry_case(lab: Lab) -> None:
    assert set(task_names(lab.repo)) - set(DRY) == set(), "add a DRY row for every new task"


@pytest.mark.parametrize("task", sorted(DRY))
def test_a_dry_run_changes_nothing(lab: Lab, task: str) -> None:
    takes = _takes_dry_run(lab.repo, task)
    for argv in DRY[task]:
        for variant in _variants(task, argv, takes):
            before = lab.snapshot()
            result = run_inv(lab.repo, *variant, env=lab.env)
            assert "bug in the runner" not in result.output, str(result)
            assert "Traceback" not in result.output, str(result)
            assert lab.violations(before) == [], str(result)
            if takes:  # a mutating task: its dry run leaves a trace, and it says it was dry
                (trace,) = [t for t in lab.new_traces(before) if t["task"] == task]
                assert trace["dry_run"] is True and trace["argv"][1:] == variant


def test_a_broken_seam_fails_the_sweep(tmp_path: Path) -> None:
    """With the Run no longer told about Invoke's --dry, `inv --dry l2.apply` really applies,
    and the sweep's checks say so: the sweep can fail."""
    repo = copy_repo(tmp_path / "repo")
    executor = repo / "tasks" / "runtime" / "executor.py"
    text = executor.read_text()
    broken = text.replace("dry = bool(config.run.dry) or", "dry = False and", 1)
    assert broken != text, "the executor changed: update this test's patch"
    executor.write_text(broken)
    git(repo, "commit", "-qam", "a broken seam")
    with contextlib.ExitStack() as stack:
        broken_lab = Lab(repo, tmp_path, stack)
        before = broken_lab.snapshot()
        result = run_inv(repo, "--dry", "l2.apply", env=broken_lab.env)
        assert result.returncode == 0, str(result)
        found = broken_lab.violations(before)
        assert "fakepve saw POST /api2/json/nodes/pve1/qemu/9000/clone" in found, (found, result)
        assert any("pve POST" in v for v in found), found  # the seam recorded the mutation
    shutil.rmtree(repo / ".work", ignore_errors=True)
