"""l3.exec fan-out against real sshd hosts: the result table, faults, and secrets off argv."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import base_env, run_inv
from sshd import lab_fixture, only_in, table_rows

from tasks.rehearsal.ssh_standins import SshLab


@pytest.fixture
def lab() -> Iterator[SshLab]:
    yield from lab_fixture()


def test_fan_out_reports_every_host(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(
        sample_repo, groups={"web": {"hosts": ["web1", "web2"]}, "db": {"hosts": ["db1"]}}
    )
    result = run_inv(sample_repo, "l3.exec", "id -un", "--hosts", "web", "--parallel", "2")
    assert result.returncode == 0, str(result)
    rows = table_rows(result.stdout, lab)
    assert set(rows) == {"web1", "web2"}
    assert all(r[1] == "ok" and r[2] == "0" for r in rows.values())
    assert "[web1] homelab-test" in result.stdout


def test_one_failing_host_of_many(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    command = only_in(lab, "web2", "echo disk full >&2; exit 3") + "; echo done"
    result = run_inv(sample_repo, "l3.exec", command, "--hosts", "all")
    assert result.returncode == 4, str(result)
    rows = table_rows(result.stdout, lab)
    assert rows["web2"][1:3] == ["failed", "3"] and "disk full" in " ".join(rows["web2"])
    assert rows["web1"][1] == "ok" and rows["db1"][1] == "ok"
    assert "1 of 3 host(s) failed: web2 (failed)" in result.stderr


def test_host_down_is_unreachable_and_others_complete(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    lab.hosts["db1"].stop()
    result = run_inv(sample_repo, "l3.exec", "true", "--hosts", "all")
    assert result.returncode == 4, str(result)
    rows = table_rows(result.stdout, lab)
    assert rows["db1"][1] == "unreachable"
    assert rows["web1"][1] == rows["web2"][1] == "ok"
    assert "connection refused" in result.stdout


def test_host_going_down_mid_run(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    marker = lab.state / "db1-started"
    # db1's command signals it has started; the test then kills db1's sshd and its sessions.
    command = only_in(lab, "db1", f"touch {marker}; sleep 30") + "; echo fine"

    def pull_the_plug() -> None:
        import time

        for _ in range(300):
            if marker.exists():
                break
            time.sleep(0.05)
        lab.hosts["db1"].power_cut()

    killer = threading.Thread(target=pull_the_plug)
    killer.start()
    result = run_inv(sample_repo, "l3.exec", command, "--hosts", "db1,web1", "--timeout", "20")
    killer.join()
    assert result.returncode == 4, str(result)
    rows = table_rows(result.stdout, lab)
    assert rows["web1"][1] == "ok"
    assert rows["db1"][1] in ("unreachable", "failed")
    assert "Traceback" not in result.output


def test_secret_reaches_the_command_but_no_argv_on_the_server(
    sample_repo: Path, lab: SshLab
) -> None:
    lab.write_inventory(sample_repo)
    secret = "exec-secret-" + os.urandom(6).hex()
    out = lab.state / "proof"
    command = (
        f"sleep 1; ps -eww -o args > {out}.ps; "
        f'printf %s "$HOMELAB_EXEC_TOKEN" | sha256sum > {out}.sum'
    )
    seen: list[str] = []
    stop = threading.Event()

    def scan_processes() -> None:
        # sshd runs on this machine: every server-side process's argv is readable here.
        while not stop.is_set():
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                except OSError:
                    continue
                if secret.encode() in cmdline:
                    seen.append(cmdline.decode(errors="replace"))

    scanner = threading.Thread(target=scan_processes)
    scanner.start()
    try:
        result = run_inv(
            sample_repo,
            "l3.exec",
            command,
            "--hosts",
            "web1",
            "--env",
            "HOMELAB_EXEC_TOKEN",
            env=base_env(HOMELAB_EXEC_TOKEN=secret),
        )
    finally:
        stop.set()
        scanner.join()
    assert result.returncode == 0, str(result)
    assert seen == []
    assert secret not in Path(f"{out}.ps").read_text()
    assert Path(f"{out}.sum").read_text().split()[0] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in result.output
    # The 0600 env file is gone (other tests' files may come and go: look for this secret only).
    leftovers = []
    for path in Path("/tmp").glob("tmp.*"):
        with contextlib.suppress(OSError):
            if path.is_file() and secret.encode() in path.read_bytes():
                leftovers.append(path)
    assert leftovers == [], "the 0600 env file was not removed"


def test_secret_on_the_command_line_is_refused(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    result = run_inv(
        sample_repo,
        "l3.exec",
        "echo exec-secret-abcdef",
        "--hosts",
        "all",
        env=base_env(HOMELAB_EXEC_TOKEN="exec-secret-abcdef"),
    )
    assert result.returncode == 3, str(result)
    assert "exec-secret-abcdef" not in result.output
    assert "--env NAME" in result.output


def test_dry_run_connects_to_nothing(sample_repo: Path, lab: SshLab) -> None:
    lab.write_inventory(sample_repo)
    for host in lab.hosts.values():
        host.stop()
    result = run_inv(sample_repo, "l3.exec", "reboot", "--hosts", "all", "--dry-run")
    assert result.returncode == 0, str(result)
    assert "3 host(s), 10 at a time: reboot" in result.stdout
    for number, name in enumerate(("web1", "web2", "db1"), 1):
        assert f"{number}. [run ] host {name}" in result.stdout
    assert "dry run: nothing was changed" in result.stdout


def _with_listener(repo: Path, lab: SshLab, name: str, port: int, **ssh: object) -> None:
    """The lab's inventory plus host NAME at 127.0.0.1:PORT (a listener that is no sshd)."""
    import yaml

    lab.write_inventory(repo)
    path = repo / "inventory/hosts.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["ssh"].update(ssh)
    doc["hosts"][name] = {"address": "127.0.0.1", "port": port}
    path.write_text(yaml.safe_dump(doc))


def test_silent_host_times_out(sample_repo: Path, lab: SshLab) -> None:
    """A host that accepts TCP but never speaks SSH (a hung sshd) fails within connect_timeout."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        _with_listener(sample_repo, lab, "hung", silent.getsockname()[1], connect_timeout=1)
        result = run_inv(sample_repo, "l3.exec", "true", "--hosts", "hung,web1")
    finally:
        silent.close()
    assert result.returncode == 4, str(result)
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.split()}
    assert rows["hung"][1] == "unreachable" and rows["web1"][1] == "ok"
    assert "no SSH answer within 1s" in result.stdout


def test_l3_converge_waits_as_long_as_l3_wait_says(sample_repo: Path, lab: SshLab) -> None:
    """The task's --wait defaults to L3_WAIT (as `inv up`'s L3 stage), and it says it waits."""
    import socket

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens: refused at once, retried until L3_WAIT is over
    _with_listener(sample_repo, lab, "gone", port)
    result = run_inv(sample_repo, "l3.converge", "gone", "--check", env=base_env(L3_WAIT="3s"))
    assert result.returncode == 4, str(result)
    waits = [ln for ln in result.stderr.splitlines() if ln.startswith("waiting for SSH")]
    assert waits, str(result)
    more = re.search(r"\(up to (\d+)s more\)", waits[0])
    assert more and int(more.group(1)) <= 3, str(result)  # L3_WAIT, not the default 120s


def test_a_port_that_drops_the_connection_is_not_called_a_timeout(
    sample_repo: Path, lab: SshLab
) -> None:
    """A port that takes TCP and closes it at once (no sshd there, or one turning clients away)
    is said to be that, not "no answer within 10s" after a fraction of a second."""
    import socket

    dropper = socket.socket()
    dropper.bind(("127.0.0.1", 0))
    dropper.listen(8)

    def drop() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = dropper.accept()
                conn.close()

    threading.Thread(target=drop, daemon=True).start()
    try:
        _with_listener(sample_repo, lab, "dropper", dropper.getsockname()[1])
        result = run_inv(sample_repo, "l3.exec", "true", "--hosts", "dropper")
    finally:
        dropper.close()
    assert result.returncode == 4, str(result)
    assert "dropped it before any SSH greeting" in result.stdout, str(result)
    assert "no SSH answer within" not in result.stdout, str(result)
