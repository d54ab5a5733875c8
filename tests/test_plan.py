"""`inv plan` through the front door: a copy of the sample repo against fakepve (and a local bare
Git remote for the GitOps part), checked from the seam's trace and from fakepve's request log."""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from helpers import STANDINS, git, run_inv
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401

FAST = ("--layer", "l1,l2,gitops")  # L0's tool probes and L3/L4's SSH need more than fakepve


@pytest.fixture
def lab(sample_repo: Path, pve: PveFixture, tmp_path: Path) -> tuple[Path, PveFixture]:
    pve.served.add_template(9000, "debian12-k3s")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(sample_repo, "remote", "add", "origin", str(remote))
    git(sample_repo, "push", "-q", "-u", "origin", "HEAD:main")
    return sample_repo, pve


def inv(lab, *args: str, **env: str):
    repo, pve = lab
    return run_inv(repo, *args, env=pve.env(**env))


def traces(repo: Path, task: str = "plan") -> list[dict]:
    folder = repo / ".work" / "traces"
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return [t for t in found if t["task"] == task]


def carried_out_mutations(trace: dict) -> list[str]:
    return [
        f"{e['kind']} {e['target']}"
        for e in trace["effects"]
        if e["mutates"] and e["outcome"] != "skipped"
    ]


def layer(report: dict, name: str) -> dict:
    (found,) = [p for p in report["plans"] if p["layer"] == name]
    return found


def test_a_fresh_lab_plans_changes_and_mutates_nothing(lab) -> None:
    repo, pve = lab
    result = inv(lab, "plan", *FAST)
    assert result.returncode == 2, str(result)
    assert "Traceback" not in result.output
    for title in ("L1 templates", "L2 VMs", "GitOps"):
        assert title in result.stdout
    assert "total l2: 3 to change, 0 in error" in result.stdout
    assert "total gitops: 0 to change, 0 in error" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 120
    assert pve.writes() == []
    (trace,) = traces(repo)
    assert trace["dry_run"] is True and trace["exit_code"] == 2
    assert carried_out_mutations(trace) == []
    assert any(e["kind"] == "pve" for e in trace["effects"])  # the reads really ran
    assert trace["plan"]["layers"]["l2"] == {"changes": 3, "errors": 0}


def test_json_and_layer_limit(lab) -> None:
    result = inv(lab, "plan", "--layer", "l2", "--json")
    assert result.returncode == 2, str(result)
    report = json.loads(result.stdout)
    assert [p["layer"] for p in report["plans"]] == ["l2"]
    items = layer(report, "l2")["items"]
    assert {i["name"] for i in items} == {"k3s-server-1", "k3s-agent-1", "k3s-agent-2"}
    assert {i["state"] for i in items} == {"change"}
    assert all(i["detail"].startswith("create: clone debian12-k3s") for i in items)
    assert report["exit_code"] == 2


def test_converged_plans_nothing_then_drift_behind_the_runners_back(lab, tmp_path) -> None:
    repo, pve = lab
    assert inv(lab, "l2.apply").returncode == 0
    clean = inv(lab, "plan", "--layer", "l2,gitops", "--quiet")
    assert clean.returncode == 0, clean
    assert clean.stdout == ""
    writes = len(pve.writes())

    # Drift made through the API: one VM's memory.
    (agent,) = [vm for vm in pve.fake.vms if vm.name == "k3s-agent-1"]
    agent.config["memory"] = "2048"
    received: list[tuple[dict, str]] = []
    with _receiver(received) as url:
        drifted = inv(lab, "plan", "--layer", "l2", "--deep", "--quiet", NOTIFY_URL=url)
    assert drifted.returncode == 2, drifted
    lines = drifted.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("l2: k3s-agent-1: change: update: memory")
    assert "memory: 2048 -> 8192" in lines[0]
    assert len(pve.writes()) == writes, "a plan must not write"
    (message,) = received
    headers, body = message
    assert headers["Title"] == "homelab plan: 1 change(s) pending"
    assert body.splitlines()[1] == lines[0]
    (trace,) = [t for t in traces(repo) if "--deep" in t["argv"]]
    assert [f"{e['kind']} {e['target']}" for e in trace["effects"] if e["mutates"]] == [
        "http POST NOTIFY_URL (plan summary)"
    ]  # the one write of a plan is its report, sent only because something drifted


def test_the_notification_is_masked_and_only_sent_on_drift(lab, tmp_path) -> None:
    repo, _pve = lab
    secrets = repo / "inventory" / "profiles" / "secrets.env"
    secrets.write_text("PLAN_SAMPLE_SECRET=k3s-agent-2\n")
    received: list[tuple[dict, str]] = []
    with _receiver(received) as url:
        result = inv(lab, "plan", "--layer", "l2", "--quiet", NOTIFY_URL=url)
        assert result.returncode == 2, str(result)
        assert "k3s-agent-2" not in result.stdout and "l2: ***: change" in result.stdout
        (message,) = received
        assert "k3s-agent-2" not in message[1] and "l2: ***: change: create" in message[1]
        secrets.unlink()
        nothing = inv(lab, "plan", "--layer", "gitops", NOTIFY_URL=url)
        assert nothing.returncode == 0, nothing
    assert len(received) == 1, "nothing drifted: no message"


def test_a_local_edit_shows_in_gitops_only(lab) -> None:
    repo, _pve = lab
    tenants = repo / "layers" / "gitops" / "clusters" / "home" / "tenants.yaml"
    tenants.write_text(tenants.read_text() + "# an edit\n")
    result = inv(lab, "plan", *FAST, "--json")
    assert result.returncode == 2, str(result)
    report = json.loads(result.stdout)
    gitops = layer(report, "gitops")["items"]
    assert [i["name"] for i in gitops if i["state"] == "change"] == [
        "layers/gitops/clusters/home/tenants.yaml"
    ]
    assert layer(report, "l2")["changes"] == 3  # the fresh lab's creates, nothing more
    git(repo, "commit", "-qam", "edit")
    unpushed = json.loads(inv(lab, "plan", "--layer", "gitops", "--json").stdout)
    (item,) = [i for i in layer(unpushed, "gitops")["items"] if i["state"] == "change"]
    assert item["detail"] == "committed, not pushed to origin/main"
    git(repo, "push", "-q")
    assert inv(lab, "plan", "--layer", "gitops").returncode == 0


def test_a_vm_declaration_edit_shows_in_l2_only(lab) -> None:
    repo, _pve = lab
    assert inv(lab, "l2.apply").returncode == 0
    vms = repo / "layers" / "l2" / "vms.hcl"
    text = vms.read_text()
    edited = re.sub(r"memory(\s*)= 4096", r"memory\1= 6144", text, count=1)
    assert edited != text, "the sample changed: update this test"
    vms.write_text(edited)
    result = inv(lab, "plan", "--layer", "l1,l2", "--json")
    report = json.loads(result.stdout)
    changed = [i for i in layer(report, "l2")["items"] if i["state"] == "change"]
    assert len(changed) == 1 and "memory" in changed[0]["detail"]
    l1_before = json.loads(inv(lab, "plan", "--layer", "l1", "--json").stdout)
    assert layer(report, "l1")["items"] == layer(l1_before, "l1")["items"]


def test_unreachable_proxmox_is_an_error_not_no_change(lab) -> None:
    result = inv(
        lab, "plan", "--layer", "l2", PVE_ACCESS_HOST="https://127.0.0.1:9", PVE_RETRIES="1"
    )
    assert result.returncode == 1, str(result)
    assert "error" in result.stdout and "could not be read" in result.stderr
    assert "Traceback" not in result.output


def test_bad_input_is_exit_1_and_says_so(lab) -> None:
    repo, _pve = lab
    result = inv(lab, "plan", "--layer", "l9")
    assert result.returncode == 1, str(result)
    assert "bad input to plan" in result.stderr and "--layer l9" in result.stderr
    both = inv(lab, "plan", "--layer", "l2", "--json", "--quiet")
    assert both.returncode == 1 and "--json and --quiet: give one" in both.stderr, both
    for unset in ("", ","):  # `--layer "$L"` with L unset: never every layer
        nothing = inv(lab, "plan", "--layer", unset)
        assert nothing.returncode == 1 and "no layer named" in nothing.stderr, nothing
    received: list[tuple[dict, str]] = []
    with _receiver(received) as url:
        setting = inv(lab, "plan", "--layer", "l2", PVE_TIMEOUT="soon", NOTIFY_URL=url)
    assert setting.returncode == 1 and "PVE_TIMEOUT" in setting.stderr, setting
    # A cron'd drift check that cannot even start must be heard, not look like a quiet homelab.
    ((headers, body),) = received
    assert headers["Title"] == "homelab plan: failed" and "PVE_TIMEOUT" in body, body
    insecure = inv(lab, "plan", "--layer", "l2", NOTIFY_URL="http://example.net/hook")
    assert insecure.returncode == 1 and "NOTIFY_URL" in insecure.stderr, insecure
    assert "the drift report (with NOTIFY_TOKEN, when set) goes only to an https" in " ".join(
        insecure.stderr.split()
    ), insecure
    # Doppler failing (an external failure, exit 4 elsewhere) is exit 1 here: cron reads any
    # code but 0 and 2 as "the plan itself failed".
    secrets = repo / "inventory" / "profiles" / "secrets.env"
    secrets.write_text("NOTIFY_TOKEN=notify-sample-token\n")  # from a file: Doppler is down
    with _receiver(received) as url:
        doppler = inv(
            lab,
            "plan",
            "--layer",
            "l1",
            DOPPLER="1",
            PATH=f"{STANDINS}:{os.environ['PATH']}",
            DOPPLER_STANDIN_FAIL="Invalid auth token",
            NOTIFY_URL=url,
        )
    assert doppler.returncode == 1, str(doppler)
    assert "plan failed" in doppler.stderr and "Invalid auth token" in doppler.stderr, doppler
    headers, body = received[1]
    assert headers["Authorization"] == "Bearer notify-sample-token" and "Invalid auth" in body


class _Handler(BaseHTTPRequestHandler):
    received: list[tuple[dict, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length") or 0)
        self.received.append((dict(self.headers), self.rfile.read(length).decode()))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class _receiver:
    """A loopback HTTP receiver for NOTIFY_URL (ntfy takes a POSTed text body the same way)."""

    def __init__(self, received: list[tuple[dict, str]]):
        handler = type("Handler", (_Handler,), {"received": received})
        self.server = HTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}/homelab-drift"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_packer_input_edit_shows_in_l1_only_and_a_gone_template_too(lab) -> None:
    repo, pve = lab
    adopted = inv(lab, "l1.adopt", "debian12-k3s", "--vmid", "9000", "--node", "pve1")
    assert adopted.returncode == 0, adopted
    before = json.loads(inv(lab, "plan", "--layer", "l1,l2", "--json").stdout)
    states = {i["name"]: i["state"] for i in layer(before, "l1")["items"]}
    assert states == {"debian12-base": "change", "debian12-k3s": "ok"}, states

    script = repo / "layers/l1/templates/debian12-k3s/scripts/check-user-data.sh"
    script.write_text(script.read_text() + "\n# an edit\n")
    after = json.loads(inv(lab, "plan", "--layer", "l1,l2", "--json").stdout)
    (k3s,) = [i for i in layer(after, "l1")["items"] if i["name"] == "debian12-k3s"]
    assert k3s["state"] == "change" and "inputs changed" in k3s["detail"], k3s
    assert "check-user-data.sh" in k3s["detail"]
    assert layer(after, "l2")["items"] == layer(before, "l2")["items"]

    pve.fake.vms[:] = [vm for vm in pve.fake.vms if vm.vmid != 9000]
    gone = json.loads(inv(lab, "plan", "--layer", "l1", "--json").stdout)
    (k3s,) = [i for i in layer(gone, "l1")["items"] if i["name"] == "debian12-k3s"]
    assert "stable template 9000 is gone from Proxmox" in k3s["detail"], k3s


def test_a_missing_proxmox_secret_is_one_l0_error_not_two(lab) -> None:
    """As `inv l0.runway`: the env row names the missing value; no second "settings" row."""
    result = inv(lab, "plan", "--layer", "l0", "--json", PM_TOKEN_SECRET="")
    assert result.returncode == 1, str(result)
    items = layer(json.loads(result.stdout), "l0")["items"]
    named = [i["name"] for i in items if "PM_TOKEN_SECRET" in i["detail"]]
    assert named == ["env: required variables"], items
