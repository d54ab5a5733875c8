"""k3s on one host of the group: the spec (env + inventory vars), the facts (what the host says)
and the commands the actions run. Pure: nothing here talks to a host (tasks/host/group.py does).

The installer is the official script, fetched by the host itself. A host's role is its
`k3s_role` var (server, the default, or agent). The runner adds two keys to the host's
`k3s_config` when it writes the config file: `cluster-init: true` on the first of several
servers, and `server: <the first server's API>` on every host that joins it. The token never
goes into a file the runner writes, nor onto a command line: it reaches the installer through
the session's stdin (tasks/runtime/seam/ssh.py).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from tasks.runtime.errors import ConfigError

DEFAULT_INSTALL_URL = "https://get.k3s.io"
DEFAULT_BIN_DIR = "/usr/local/bin"
DEFAULT_CONFIG_FILE = "/etc/rancher/k3s/config.yaml"
DEFAULT_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
DEFAULT_DATA_DIR = "/var/lib/rancher/k3s"
DEFAULT_API_PORT = 6443
ROLES = ("server", "agent")
SEPARATOR = "---8<---"
VERSION = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")
# Keys the runner sets itself; a host's k3s_config may not set them.
RUNNER_KEYS = ("cluster-init", "server", "token", "agent-token")


def check_url(name: str, url: str) -> str:
    """https, or plain http only to a loopback address: the installer is piped into a shell."""
    from tasks.runtime.seam.http import check_credential_url

    return check_credential_url(url, name)


def wanted_version(env) -> str:
    version = (env.get("K3S_VERSION") or "").strip()
    if not version:
        raise ConfigError(
            "K3S_VERSION is not set: pin the k3s release to install (e.g. v1.31.4+k3s1)",
            hint="set it in inventory/host/config/homelab.env",
        )
    if not VERSION.match(version):
        raise ConfigError(f"K3S_VERSION={version!r}: expected a release like v1.31.4+k3s1")
    return version


def role_of(host_vars: dict[str, Any], host: str) -> str:
    role = str(host_vars.get("k3s_role") or "server")
    if role not in ROLES:
        raise ConfigError(f"host {host}: inventory var k3s_role={role!r}: expected server or agent")
    return role


@dataclass(frozen=True)
class K3sSpec:
    version: str
    install_url: str
    address: str  # the API address: joining hosts reach it, the local kubeconfig points at it
    config: dict[str, Any] = field(default_factory=dict)  # the host's k3s_config
    role: str = "server"
    bin_dir: str = DEFAULT_BIN_DIR
    config_file: str = DEFAULT_CONFIG_FILE
    become: bool = True
    node_name: str = ""
    join_url: str | None = None  # the first server's API, for every host that joins it
    cluster_init: bool = False  # the first of several servers (embedded etcd)

    @classmethod
    def build(
        cls,
        env,
        host_vars: dict[str, Any],
        host_address: str,
        *,
        node_name: str = "",
        join_url: str | None = None,
        cluster_init: bool = False,
    ) -> K3sSpec:
        config = host_vars.get("k3s_config") or {}
        if not isinstance(config, dict):
            raise ConfigError(
                f"host {node_name or host_address}: inventory var k3s_config: expected a mapping "
                "of k3s options"
            )
        taken = [k for k in RUNNER_KEYS if k in config]
        if taken:
            raise ConfigError(
                f"host {node_name or host_address}: k3s_config sets {', '.join(taken)}: the runner "
                "sets these itself (cluster-init on the first server, server on joining hosts; "
                "the token travels on stdin)",
                hint="remove them from k3s_config in inventory/hosts.yaml",
            )
        return cls(
            version=wanted_version(env),
            install_url=check_url(
                "K3S_INSTALL_URL", env.get("K3S_INSTALL_URL") or DEFAULT_INSTALL_URL
            ),
            address=(env.get("K3S_API_ADDRESS") or "").strip() or host_address,
            config=dict(config),
            role=role_of(host_vars, node_name or host_address),
            bin_dir=str(host_vars.get("k3s_bin_dir") or DEFAULT_BIN_DIR),
            config_file=str(host_vars.get("k3s_config_file") or DEFAULT_CONFIG_FILE),
            become=bool(host_vars.get("k3s_become", True)),
            node_name=str(config.get("node-name") or node_name),
            join_url=join_url,
            cluster_init=cluster_init,
        )

    @property
    def sudo(self) -> str:
        return "sudo -n " if self.become else ""

    @property
    def remote_kubeconfig(self) -> str:
        return str(self.config.get("write-kubeconfig") or DEFAULT_KUBECONFIG)

    @property
    def data_dir(self) -> str:
        return str(self.config.get("data-dir") or DEFAULT_DATA_DIR)

    @property
    def token_file(self) -> str:
        return f"{self.data_dir}/server/token"

    @property
    def api_port(self) -> int:
        raw = self.config.get("https-listen-port") or DEFAULT_API_PORT
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"k3s_config https-listen-port={raw!r}: expected a port") from None

    @property
    def api_url(self) -> str:
        """This server's API as joining hosts and the local kubeconfig reach it."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.api_port}"

    def managed_config(self) -> dict[str, Any]:
        wanted = dict(self.config)
        if self.cluster_init:
            wanted["cluster-init"] = True
        if self.join_url:
            wanted["server"] = self.join_url
        return wanted

    def config_text(self) -> str:
        import yaml

        body = yaml.safe_dump(self.managed_config(), sort_keys=True, default_flow_style=False)
        return (
            "# Managed by the homelab runner (inventory var k3s_config; cluster-init and server "
            "are the runner's).\n" + body
        )

    def installer_env(self, token: str | None) -> dict[str, str]:
        env = {"INSTALL_K3S_VERSION": self.version}
        if self.bin_dir != DEFAULT_BIN_DIR:
            env["INSTALL_K3S_BIN_DIR"] = self.bin_dir
        if self.config_file != DEFAULT_CONFIG_FILE:
            env["K3S_CONFIG_FILE"] = self.config_file
        if self.join_url:
            env["K3S_URL"] = self.join_url
        if token:
            env["K3S_TOKEN"] = token
        return env


@dataclass(frozen=True)
class K3sFacts:
    version: str | None
    config_text: str | None
    installed_role: str | None  # which uninstall script the installer left: server, agent, none

    @property
    def installed(self) -> bool:
        return self.version is not None or self.installed_role is not None

    @property
    def uninstall_script(self) -> bool:
        return self.installed_role is not None


def facts_command(spec: K3sSpec) -> str:
    binary = shlex.quote(f"{spec.bin_dir}/k3s")
    server = shlex.quote(f"{spec.bin_dir}/k3s-uninstall.sh")
    agent = shlex.quote(f"{spec.bin_dir}/k3s-agent-uninstall.sh")
    return (
        f"{binary} --version 2>/dev/null | head -1; echo '{SEPARATOR}'; "
        f"{spec.sudo}cat {shlex.quote(spec.config_file)} 2>/dev/null; echo '{SEPARATOR}'; "
        f"if [ -x {server} ]; then echo server; elif [ -x {agent} ]; then echo agent; "
        "else echo none; fi"
    )


def parse_facts(output: str) -> K3sFacts:
    """Pure: the three sections of `facts_command`'s output."""
    parts = output.split(SEPARATOR + "\n")
    if len(parts) != 3:
        parts = (parts + ["", "", ""])[:3]
    match = re.search(r"k3s version (v\S+)", parts[0])
    config = parts[1]
    role = parts[2].strip()
    return K3sFacts(
        version=match.group(1) if match else None,
        config_text=config if config.strip() else None,
        installed_role=role if role in ROLES else None,
    )


def plan(spec: K3sSpec, facts: K3sFacts) -> list[str]:
    """The actions apply needs; empty when the host is already as wanted."""
    actions = []
    if facts.config_text != spec.config_text():
        actions.append("write-config")
    if facts.version != spec.version or actions:
        actions.append("install")
    return actions


def describe(spec: K3sSpec, facts: K3sFacts) -> str:
    """What apply does on this host, in words, for the plan."""
    steps = plan(spec, facts)
    if not steps:
        return f"already as wanted: k3s {spec.version}, config unchanged"
    if facts.version is None:
        what = f"install k3s {spec.version}"
    elif facts.version != spec.version:
        what = f"upgrade k3s {facts.version} -> {spec.version}"
    else:
        what = f"reinstall k3s {spec.version} for its config"
    if "write-config" in steps:
        what += f"; write {spec.config_file}"
    return what


def write_config_command(spec: K3sSpec) -> str:
    folder = shlex.quote(spec.config_file.rsplit("/", 1)[0] or "/")
    inner = f"mkdir -p {folder} && umask 077 && cat > {shlex.quote(spec.config_file)}"
    return f"{spec.sudo}sh -c {shlex.quote(inner)}"


def install_command(spec: K3sSpec, exec_args: str = "") -> str:
    # The official script re-runs itself with sudo where it needs root; it reads its settings
    # from the environment, which arrives through stdin (secrets never on argv).
    args = f" {exec_args}" if exec_args else ""
    return f"curl -sfL --max-time 120 {shlex.quote(spec.install_url)} | sh -s - {spec.role}{args}"


def wait_command(url: str, seconds: float) -> str:
    """On a joining host: until the server's `/ping` answers (k3s's unauthenticated probe)."""
    ping = shlex.quote(url.rstrip("/") + "/ping")
    limit = max(1, int(seconds))
    return (
        f"_s=$(date +%s); until _e=$(curl -ksfS --max-time 5 -o /dev/null {ping} 2>&1); do "
        f"if [ $(($(date +%s) - _s)) -ge {limit} ]; then "
        f'echo "no answer from {url}/ping within {limit}s: $_e" >&2; exit 1; fi; sleep 1; done'
    )


def token_command(spec: K3sSpec) -> str:
    return f"{spec.sudo}cat {shlex.quote(spec.token_file)}"


def kubectl_command(server: K3sSpec, *args: str) -> str:
    """`k3s kubectl` on a server, with that server's admin kubeconfig."""
    return (
        f"{server.sudo}{shlex.quote(server.bin_dir + '/k3s')} kubectl "
        f"--kubeconfig {shlex.quote(server.remote_kubeconfig)} "
        + " ".join(shlex.quote(a) for a in args)
    )


def drain_command(server: K3sSpec, node: str, timeout: int = 300) -> str:
    return kubectl_command(
        server,
        "drain",
        node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        f"--timeout={timeout}s",
    )


def delete_node_command(server: K3sSpec, node: str) -> str:
    return kubectl_command(server, "delete", "node", node, "--ignore-not-found")


def uninstall_command(spec: K3sSpec, role: str | None = None) -> str:
    name = "k3s-uninstall.sh" if (role or spec.role) == "server" else "k3s-agent-uninstall.sh"
    return shlex.quote(f"{spec.bin_dir}/{name}")


def rewrite_kubeconfig(text: str, api_url: str, cluster: str) -> tuple[str, list[str]]:
    """Point every cluster's server at `api_url` and name the cluster, user and context after
    `cluster` (k3s calls them all `default`); returns (text, the secrets it holds)."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the server's kubeconfig is not YAML: {exc}") from None
    if not isinstance(doc, dict) or not doc.get("clusters"):
        raise ConfigError("the server's kubeconfig has no clusters")
    for entry in doc["clusters"]:
        if not isinstance(entry.get("cluster"), dict):
            entry["cluster"] = {}
        entry["cluster"]["server"] = api_url
    users, contexts = doc.get("users") or [], doc.get("contexts") or []
    if len(doc["clusters"]) == 1 and len(users) <= 1 and len(contexts) <= 1:
        doc["clusters"][0]["name"] = cluster
        for entry in users:
            entry["name"] = cluster
        for entry in contexts:
            entry["name"] = cluster
            entry["context"] = {**(entry.get("context") or {}), "cluster": cluster}
            if users:
                entry["context"]["user"] = cluster
        if contexts:
            doc["current-context"] = cluster
    secrets = []
    for entry in doc.get("users") or []:
        user = entry.get("user") or {}
        secrets += [str(user[k]) for k in ("client-key-data", "token", "password") if user.get(k)]
    return yaml.safe_dump(doc, sort_keys=False), secrets
