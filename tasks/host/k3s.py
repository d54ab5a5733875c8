"""k3s on one host: the spec (env + inventory vars), the facts (what the host says) and the
actions (what to change). The installer is the official script, fetched by the host itself."""

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
SEPARATOR = "---8<---"
VERSION = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")


def check_url(name: str, url: str) -> str:
    """https, or plain http only to a loopback address: the installer is piped into a shell."""
    from tasks.runtime.seam.http import check_credential_url

    return check_credential_url(url, name)


@dataclass(frozen=True)
class K3sSpec:
    version: str
    install_url: str
    address: str  # the API server address written into the local kubeconfig
    config: dict[str, Any] = field(default_factory=dict)
    role: str = "server"
    bin_dir: str = DEFAULT_BIN_DIR
    config_file: str = DEFAULT_CONFIG_FILE
    become: bool = True

    @classmethod
    def build(cls, env, host_vars: dict[str, Any], host_address: str) -> K3sSpec:
        version = (env.get("K3S_VERSION") or "").strip()
        if not version:
            raise ConfigError(
                "K3S_VERSION is not set: pin the k3s release to install (e.g. v1.31.4+k3s1)",
                hint="set it in inventory/host/config/homelab.env",
            )
        if not VERSION.match(version):
            raise ConfigError(f"K3S_VERSION={version!r}: expected a release like v1.31.4+k3s1")
        config = host_vars.get("k3s_config") or {}
        if not isinstance(config, dict):
            raise ConfigError("inventory var k3s_config: expected a mapping of k3s options")
        role = str(host_vars.get("k3s_role") or "server")
        if role not in ("server", "agent"):
            raise ConfigError(f"inventory var k3s_role={role!r}: expected server or agent")
        return cls(
            version=version,
            install_url=check_url(
                "K3S_INSTALL_URL", env.get("K3S_INSTALL_URL") or DEFAULT_INSTALL_URL
            ),
            address=env.get("K3S_API_ADDRESS") or host_address,
            config=dict(config),
            role=role,
            bin_dir=str(host_vars.get("k3s_bin_dir") or DEFAULT_BIN_DIR),
            config_file=str(host_vars.get("k3s_config_file") or DEFAULT_CONFIG_FILE),
            become=bool(host_vars.get("k3s_become", True)),
        )

    @property
    def sudo(self) -> str:
        return "sudo -n " if self.become else ""

    @property
    def remote_kubeconfig(self) -> str:
        return str(self.config.get("write-kubeconfig") or DEFAULT_KUBECONFIG)

    def config_text(self) -> str:
        import yaml

        body = yaml.safe_dump(self.config, sort_keys=True, default_flow_style=False)
        return "# Managed by the homelab runner (inventory var k3s_config).\n" + body

    def installer_env(self, token: str | None) -> dict[str, str]:
        env = {"INSTALL_K3S_VERSION": self.version}
        if self.bin_dir != DEFAULT_BIN_DIR:
            env["INSTALL_K3S_BIN_DIR"] = self.bin_dir
        if self.config_file != DEFAULT_CONFIG_FILE:
            env["K3S_CONFIG_FILE"] = self.config_file
        if token:
            env["K3S_TOKEN"] = token
        return env


@dataclass(frozen=True)
class K3sFacts:
    version: str | None
    config_text: str | None
    uninstall_script: bool


def facts_command(spec: K3sSpec) -> str:
    binary = shlex.quote(f"{spec.bin_dir}/k3s")
    uninstall = shlex.quote(f"{spec.bin_dir}/k3s-uninstall.sh")
    return (
        f"{binary} --version 2>/dev/null | head -1; echo '{SEPARATOR}'; "
        f"{spec.sudo}cat {shlex.quote(spec.config_file)} 2>/dev/null; echo '{SEPARATOR}'; "
        f"[ -x {uninstall} ] && echo yes || echo no"
    )


def parse_facts(output: str) -> K3sFacts:
    """Pure: the three sections of `facts_command`'s output."""
    parts = output.split(SEPARATOR + "\n")
    if len(parts) != 3:
        parts = (parts + ["", "", ""])[:3]
    match = re.search(r"k3s version (v\S+)", parts[0])
    config = parts[1]
    return K3sFacts(
        version=match.group(1) if match else None,
        config_text=config if config.strip() else None,
        uninstall_script=parts[2].strip() == "yes",
    )


def plan(spec: K3sSpec, facts: K3sFacts) -> list[str]:
    """The actions apply needs; empty when the host is already as wanted."""
    actions = []
    if facts.config_text != spec.config_text():
        actions.append("write-config")
    if facts.version != spec.version or actions:
        actions.append("install")
    return actions


def write_config_command(spec: K3sSpec) -> str:
    folder = shlex.quote(spec.config_file.rsplit("/", 1)[0] or "/")
    inner = f"mkdir -p {folder} && umask 077 && cat > {shlex.quote(spec.config_file)}"
    return f"{spec.sudo}sh -c {shlex.quote(inner)}"


def install_command(spec: K3sSpec, exec_args: str = "") -> str:
    # The official script re-runs itself with sudo where it needs root; it reads its settings
    # from the environment, which arrives through stdin (secrets never on argv).
    args = f" {exec_args}" if exec_args else ""
    return f"curl -sfL --max-time 120 {shlex.quote(spec.install_url)} | sh -s - {spec.role}{args}"


def uninstall_command(spec: K3sSpec) -> str:
    name = "k3s-uninstall.sh" if spec.role == "server" else "k3s-agent-uninstall.sh"
    return shlex.quote(f"{spec.bin_dir}/{name}")


def rewrite_kubeconfig(text: str, address: str) -> tuple[str, list[str]]:
    """Point every cluster's server at `address` (keeping the port); returns (text, secrets)."""
    from urllib.parse import urlsplit, urlunsplit

    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the host's kubeconfig is not YAML: {exc}") from None
    if not isinstance(doc, dict) or not doc.get("clusters"):
        raise ConfigError("the host's kubeconfig has no clusters")
    host = f"[{address}]" if ":" in address else address
    for entry in doc["clusters"]:
        cluster = entry.get("cluster") or {}
        parts = urlsplit(str(cluster.get("server", "https://127.0.0.1:6443")))
        cluster["server"] = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or 6443}"))
    secrets = []
    for entry in doc.get("users") or []:
        user = entry.get("user") or {}
        secrets += [str(user[k]) for k in ("client-key-data", "token", "password") if user.get(k)]
    return yaml.safe_dump(doc, sort_keys=False), secrets
