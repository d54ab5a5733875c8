"""Local peers for the SSH area, shared by the test suite, the rehearsal and the benchmarks.

- `SshLab`: real OpenSSH servers, one `sshd` per host on its own 127.x.y.z address with its own
  host key, logging in as an unprivileged user with a key the lab generates. Nothing here is a
  stand-in: it is the real server, started on loopback.
- `DnsApiStandin`: a thin stand-in for Cloudflare's DNS records API (v4: zones, dns_records,
  bearer token, `{"success", "errors", "result"}` envelopes), plus `GET /ip` that answers the
  host's "public" address. Used only because the real provider cannot be reached from here.
- `K3sInstallerStandin`: serves a stand-in for the `https://get.k3s.io` install script over
  plain HTTP on loopback. Used only because the real download cannot happen here; the script
  honours the installer's real variables and writes what the real one writes (binary, uninstall
  script, token, kubeconfig) under directories the unprivileged test user owns, and records each
  run (standins/k3s_install_standin.sh).
- `K3sApiStandin`: a thin stand-in for a k3s server's supervisor port (HTTPS `/ping` and
  `/cacerts`, the two calls a joining node makes before it has credentials), answering only while
  the stand-in `k3s` binary is installed on that server. Used only because no k3s can run here.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TEST_USER = os.environ.get("HOMELAB_SSH_TEST_USER", "homelab-test")
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
K3S_INSTALL_SCRIPT = Path(__file__).with_name("standins") / "k3s_install_standin.sh"


def sshd_unavailable_reason(user: str = TEST_USER) -> str | None:
    """Why real sshd hosts cannot run here, or None when they can."""
    if not Path(SSHD).exists():
        return f"no OpenSSH server at {SSHD} (apt-get install openssh-server)"
    if os.geteuid() != 0:
        try:
            import pwd

            pwd.getpwnam(user)
        except KeyError:
            return (
                f"sshd test hosts need root (to log in as the unprivileged user {user!r}), "
                "or that user to exist; CI runs as root"
            )
        return f"sshd test hosts need root to log in as {user!r}; CI runs as root"
    return None


def ensure_test_user(user: str = TEST_USER) -> None:
    """As root: the privilege-separation dir and an unlocked login-only user (setup.sh does it too)."""
    import fcntl
    import pwd

    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with open("/tmp/.homelab-ssh-test-user.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(
                ["useradd", "-m", "-s", "/bin/sh", user], check=True, capture_output=True
            )
            # A locked account ('!') is refused by sshd even with a key; '*' allows key logins only.
            subprocess.run(["usermod", "-p", "*", user], check=True, capture_output=True)


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def keygen(path: Path, comment: str = "homelab-test") -> str:
    """An ed25519 key pair at `path`; returns the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return Path(f"{path}.pub").read_text().strip()


@dataclass
class SshHost:
    name: str
    address: str
    port: int
    config: Path
    host_key_pub: str  # "ssh-ed25519 AAAA... comment"
    process: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def known_hosts_line(self) -> str:
        key_type, key_data = self.host_key_pub.split()[:2]
        return f"[{self.address}]:{self.port} {key_type} {key_data}"

    def start(self, timeout: float = 5.0) -> None:
        assert self.log is not None
        logfile = self.log.open("ab")
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=logfile,
            stderr=logfile,
            stdin=subprocess.DEVNULL,
        )
        logfile.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd for {self.name} exited: {self.log.read_text()[-400:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.address, self.port), timeout=0.5) as sock,
            ):
                banner = sock.recv(64)
                # A busy port answers with someone else's server: check ours is still alive.
                if banner.startswith(b"SSH-") and self.process.poll() is None:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"sshd for {self.name} did not start on {self.address}:{self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def power_cut(self) -> None:
        """Kill this sshd and every session it started (a crash, not a shutdown)."""
        import signal

        if self.process is None:
            return
        doomed = [self.process.pid]
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        for pid in doomed:
            doomed += children.get(pid, [])
        # Freeze them all first, so no session gets to finish its command between two kills.
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in doomed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class SshLab:
    """Several real sshd hosts on loopback; `client_key` logs in as `user` on every one."""

    def __init__(self, names: list[str], user: str = TEST_USER):
        if os.geteuid() == 0:
            ensure_test_user(user)
        self.user = user
        self.hosts: dict[str, SshHost] = {}
        # sshd reads authorized_keys as the user: the lab lives in a world-readable folder.
        self.root = Path(tempfile.mkdtemp(prefix="homelab-sshlab-"))
        self.root.chmod(0o755)
        self.client_key = self.root / "client_ed25519"
        self.client_pub = keygen(self.client_key)
        (self.root / "authorized_keys").write_text(self.client_pub + "\n")
        (self.root / "authorized_keys").chmod(0o644)
        # A folder the login user owns, for whatever the hosts write (playbook targets, k3s).
        self.state = self.root / "state"
        self.state.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.state, user=user, group=user)
        self.subnet = random.randint(2, 250)
        self.roles: dict[str, str] = {}  # host -> k3s role, once `k3s_roles` gave them
        self.apis: dict[str, K3sApiStandin] = {}  # server -> its API stand-in
        try:
            for name in names:
                self.add(name)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> SshLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, name: str) -> SshHost:
        index = len(self.hosts) + 10
        address = f"127.{self.subnet}.{index // 250}.{index % 250 + 1}"
        folder = self.root / name
        folder.mkdir()
        host_key = folder / "ssh_host_ed25519_key"
        host_pub = keygen(host_key, comment=f"{name}-hostkey")
        port = free_port(address)
        config = folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {address}",
                    f"Port {port}",
                    f"HostKey {host_key}",
                    f"PidFile {folder / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    f"AllowUsers {self.user}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin no",
                    "MaxStartups 100:30:200",
                    "MaxSessions 50",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        host = SshHost(name, address, port, config, host_pub, log=folder / "sshd.log")
        host.start()
        self.hosts[name] = host
        return host

    def known_hosts(self) -> str:
        return "".join(h.known_hosts_line + "\n" for h in self.hosts.values())

    def host_vars(self) -> dict[str, Any]:
        """Vars that keep the sample playbooks and k3s inside folders the login user owns."""
        root = f"{self.state}/{{{{ inventory_hostname }}}}"
        return {
            "ansible_python_interpreter": "/usr/bin/python3",
            "l3_become": False,
            "l3_root": root,
            "l3_packages": ["openssh-server", "coreutils"],
            "l4_become": False,
            "l4_deploy": False,
            "l4_apps_dir": f"{root}/apps",
        }

    def k3s_vars(self, name: str, role: str = "server") -> dict[str, Any]:
        """k3s inside the host's own folder: binary, config, data dir (token), kubeconfig; a
        server with an API stand-in listens where the stand-in does (`https-listen-port`)."""
        base = f"{self.state}/{name}/k3s"
        config: dict[str, Any] = {"data-dir": f"{base}/data"}
        if role == "server":
            config["write-kubeconfig"] = f"{base}/etc/k3s.yaml"
            if name in self.apis:
                config["https-listen-port"] = self.apis[name].port
            config["disable"] = ["traefik"]
        config["node-label"] = [f"homelab/role={role}"]
        return {
            "k3s_become": False,
            "k3s_bin_dir": f"{base}/bin",
            "k3s_config_file": f"{base}/etc/config.yaml",
            "k3s_config": config,
        }

    def k3s_roles(self, servers: list[str], agents: list[str]) -> None:
        """Make these hosts a k3s cluster: each server gets an API stand-in on its address (so a
        joining node can wait for it), and `inventory` puts them in k3s groups."""
        for name in servers:
            self.roles[name] = "server"
            if name not in self.apis:
                host = self.hosts[name]
                api = K3sApiStandin(host.address, self.state / name / "k3s" / "bin" / "k3s")
                self.apis[name] = api.start(self.root / f"{name}-api")
        for name in agents:
            self.roles[name] = "agent"

    def k3s_groups(self, *, members: bool = True) -> dict[str, Any]:
        """The sample's k3s groups (inventory/hosts.yaml): roles as group vars, `k3s` over both.
        Without `members` the groups list no hosts: L2's VMs join them by their `groups`."""
        servers = [n for n, r in self.roles.items() if r == "server"]
        agents = [n for n, r in self.roles.items() if r == "agent"]
        return {
            "k3s_servers": {"hosts": servers if members else [], "vars": {"k3s_role": "server"}},
            "k3s_agents": {"hosts": agents if members else [], "vars": {"k3s_role": "agent"}},
            "k3s": {"children": ["k3s_servers", "k3s_agents"]},
        }

    def inventory(
        self, groups: dict[str, Any] | None = None, *, members: bool = True, **extra_vars: Any
    ) -> dict:
        """A `hosts.yaml` document for these hosts (the runner's own inventory format)."""
        chosen = groups or {"lab": {"hosts": list(self.hosts)}}
        if self.roles:
            chosen = {**chosen, **self.k3s_groups(members=members)}
        return {
            "ssh": {
                "user": self.user,
                "key_file": str(self.client_key),
                "known_hosts": "ssh/known_hosts",
                "use_user_known_hosts": False,
                "connect_timeout": 5,
            },
            "vars": {**self.host_vars(), **extra_vars},
            "hosts": {
                h.name: {
                    "address": h.address,
                    "port": h.port,
                    "vars": self.k3s_vars(h.name, self.roles.get(h.name, "server")),
                }
                for h in self.hosts.values()
            },
            "groups": chosen,
        }

    def write_inventory(self, repo: Path, *, pinned: bool = True, **kwargs: Any) -> None:
        """`inventory/hosts.yaml` (and, when `pinned`, the hosts' keys in known_hosts) in `repo`."""
        import yaml

        (repo / "inventory" / "hosts.yaml").write_text(
            yaml.safe_dump(self.inventory(**kwargs), sort_keys=False)
        )
        known = repo / "inventory" / "ssh" / "known_hosts"
        known.parent.mkdir(parents=True, exist_ok=True)
        known.write_text(self.known_hosts() if pinned else "")

    def close(self) -> None:
        for api in self.apis.values():
            api.close()
        for host in self.hosts.values():
            host.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# --- Cloudflare DNS API stand-in -------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class DnsApiStandin:
    """Cloudflare API v4 (the subset the runner uses), on http://127.0.0.1:PORT/client/v4."""

    token: str
    zones: dict[str, str] = field(default_factory=dict)  # zone name -> zone id
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record
    public_ip: str = "203.0.113.10"
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    server: _Server | None = None

    def add_zone(self, name: str) -> str:
        zone_id = uuid.uuid4().hex
        self.zones[name] = zone_id
        return zone_id

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/client/v4"

    @property
    def ip_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/ip"

    def start(self) -> DnsApiStandin:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                from urllib.parse import parse_qs, urlsplit

                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                standin.requests.append((method, parts.path, body))
                if parts.path == "/ip" and method == "GET":
                    data = (standin.public_ip + "\n").encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if self.headers.get("Authorization") != f"Bearer {standin.token}":
                    self._send(
                        403,
                        {
                            "success": False,
                            "errors": [{"code": 10000, "message": "Authentication error"}],
                            "messages": [],
                            "result": None,
                        },
                    )
                    return
                status, result = standin.route(method, parts.path, parse_qs(parts.query), body)
                ok = status < 400
                self._send(
                    status,
                    {
                        "success": ok,
                        "errors": [] if ok else [{"code": 81044, "message": result}],
                        "messages": [],
                        "result": result if ok else None,
                    },
                )

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any):
        segments = [s for s in path.split("/") if s][2:]  # drop client/v4
        if segments == ["zones"] and method == "GET":
            name = query["name"][0] if query.get("name") else None
            return 200, [
                {"id": zid, "name": zname, "status": "active"}
                for zname, zid in self.zones.items()
                if name in (None, zname)
            ]
        if len(segments) >= 3 and segments[0] == "zones" and segments[2] == "dns_records":
            zone_id = segments[1]
            if zone_id not in self.zones.values():
                return 404, "Invalid zone identifier"
            if len(segments) == 3 and method == "GET":
                wanted = {k: v[0] for k, v in query.items() if k in ("type", "name")}
                return 200, [
                    r
                    for r in self.records.values()
                    if r["zone_id"] == zone_id and all(r.get(k) == v for k, v in wanted.items())
                ]
            if len(segments) == 3 and method == "POST":
                record = {
                    "id": uuid.uuid4().hex,
                    "zone_id": zone_id,
                    "type": body["type"],
                    "name": body["name"],
                    "content": body["content"],
                    "ttl": body.get("ttl", 1),
                    "proxied": body.get("proxied", False),
                }
                self.records[record["id"]] = record
                return 200, record
            record_id = segments[3] if len(segments) == 4 else ""
            if record_id not in self.records:
                return 404, "Record does not exist."
            if method in ("PATCH", "PUT"):
                self.records[record_id].update(
                    {
                        k: v
                        for k, v in body.items()
                        if k in ("type", "name", "content", "ttl", "proxied")
                    }
                )
                return 200, self.records[record_id]
            if method == "DELETE":
                del self.records[record_id]
                return 200, {"id": record_id}
        return 404, f"no route for {method} {path}"

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class K3sInstallerStandin:
    """Serves the stand-in install script at http://127.0.0.1:PORT/ (as get.k3s.io serves one)."""

    server: _Server | None = None
    downloads: int = 0

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def start(self) -> K3sInstallerStandin:
        standin = self
        script = K3S_INSTALL_SCRIPT.read_bytes()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin.downloads += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(script)))
                self.end_headers()
                self.wfile.write(script)

        self.server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class K3sApiStandin:
    """A k3s server's supervisor port on `address`: HTTPS (a self-signed certificate, as k3s's own
    CA is to a joining node), `GET /ping` -> `pong` and `GET /cacerts` -> the certificate, the two
    unauthenticated calls of k3s's router. It answers 503 unless `binary` (the stand-in
    installer's `k3s`) exists, as a real server answers only once k3s runs; `down` makes it refuse
    every call (an unreachable server). `calls` counts what it was asked."""

    address: str
    binary: Path
    port: int = 0
    down: bool = False
    calls: list[str] = field(default_factory=list)
    server: _Server | None = None

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    def start(self, folder: Path) -> K3sApiStandin:
        import ssl

        folder.mkdir(parents=True, exist_ok=True)
        cert, key = _self_signed(folder, self.address)
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin.calls.append(self.path)
                up = standin.binary.exists() and not standin.down
                body = b"pong" if self.path == "/ping" else cert.read_bytes()
                if not up or self.path not in ("/ping", "/cacerts"):
                    body = b"k3s is not running" if not up else b"404 page not found"
                self.send_response(200 if up and self.path in ("/ping", "/cacerts") else 503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _Server((self.address, self.port or free_port(self.address)), Handler)
        self.port = int(self.server.server_address[1])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _self_signed(folder: Path, address: str) -> tuple[Path, Path]:
    """A self-signed certificate for `address` (cryptography comes with paramiko)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k3s-standin")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "api.crt", folder / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
