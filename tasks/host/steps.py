"""The host orchestrator's steps: 10_dynamic_dns and 20_install_k3s, against HOST_NAME."""

from __future__ import annotations

import ipaddress
import shlex
from typing import TYPE_CHECKING

from tasks.runtime.errors import ConfigError, ExternalError

if TYPE_CHECKING:
    from fabric import Connection

    from tasks.adapters.ssh import SshSettings, SshTarget
    from tasks.l3.inventory import HostSpec, Inventory
    from tasks.runtime.steps import StepContext

DEFAULT_IP_URL = "https://api.ipify.org"


def _host(sc: StepContext) -> tuple[Inventory, HostSpec, SshTarget, SshSettings]:
    from tasks.l3.inventory import load_inventory

    name = (sc.env.get("HOST_NAME") or "").strip()
    if not name:
        raise ConfigError(
            "HOST_NAME is not set: name the inventory host the host orchestrator drives",
            hint="set it in inventory/host/config/homelab.env or pass --host-env FILE",
        )
    inv = load_inventory(sc.run.project)
    if name not in inv.hosts:
        known = ", ".join(sorted(inv.hosts)) or "none"
        raise ConfigError(f"HOST_NAME={name!r}: not in the inventory; hosts: {known}")
    host = inv.hosts[name]
    return inv, host, inv.target(host), inv.settings(sc.run.project, sc.run)


def _connect(sc: StepContext, target: SshTarget, settings: SshSettings) -> Connection:
    from tasks.adapters.ssh import SshFailure

    try:
        return sc.effects.ssh_connect(target, settings)
    except SshFailure as exc:
        raise ExternalError(exc.message, code=3 if exc.status == "refused" else None) from None


def _run(
    sc: StepContext,
    conn: Connection,
    host: str,
    command: str,
    what: str,
    *,
    mutates: bool,
    **kwargs,
) -> str:
    from tasks.adapters.ssh import SshFailure

    try:
        result = sc.effects.ssh_run(conn, host, command, mutates=mutates, what=what, **kwargs)
    except SshFailure as exc:
        raise ExternalError(f"{what}: {exc.message}") from None
    if result.exited != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise ExternalError(f"{what} failed on the host (exit {result.exited}): {tail}")
    return result.stdout


# --- 10_dynamic_dns -------------------------------------------------------------------------


def _public_address(sc: StepContext, target: SshTarget, settings: SshSettings) -> str:
    """DDNS_ADDRESS, or what an echo service tells the host (its egress address)."""
    from tasks.adapters.ssh import close_connection
    from tasks.host.k3s import check_url

    raw = (sc.env.get("DDNS_ADDRESS") or "").strip()
    source = "DDNS_ADDRESS"
    if not raw:
        url = check_url("DDNS_IP_URL", sc.env.get("DDNS_IP_URL") or DEFAULT_IP_URL)
        conn = _connect(sc, target, settings)
        try:
            raw = _run(
                sc,
                conn,
                target.name,
                f"curl -fsS --max-time 10 {shlex.quote(url)} || wget -qO- -T 10 {shlex.quote(url)}",
                f"asking {target.name} for its public address",
                mutates=False,
            )
        finally:
            close_connection(conn)
        raw, source = raw.strip(), f"{url} (asked from {target.name})"
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise ExternalError(f"{source} answered {raw[:60]!r}, not an IP address") from None


def dynamic_dns(sc: StepContext) -> None:
    from tasks.adapters.dns import provider_from_env

    zone = (sc.env.get("DDNS_ZONE") or "").strip()
    record = (sc.env.get("DDNS_RECORD") or "").strip()
    missing = [n for n, v in (("DDNS_ZONE", zone), ("DDNS_RECORD", record)) if not v]
    if missing:
        raise ConfigError(
            f"dynamic DNS needs {' and '.join(missing)}",
            hint="set them in inventory/host/config/homelab.env, or FEAT_DYNAMIC_DNS=false",
        )
    if record != zone and not record.endswith("." + zone):
        raise ConfigError(f"DDNS_RECORD={record!r} is not inside DDNS_ZONE={zone!r}")
    provider = provider_from_env(sc.run)
    if sc.deleting:
        removed = provider.remove(zone, record)
        sc.note(
            f"{record}: removed {removed} record(s)" if removed else f"{record}: already absent"
        )
        return
    _inv, _host_spec, target, settings = _host(sc)
    address = _public_address(sc, target, settings)
    record_type = "AAAA" if ":" in address else "A"
    ttl = sc.run.settings.integer("DDNS_TTL", 300)
    proxied = sc.run.settings.flag("DDNS_PROXIED")
    outcome = provider.ensure(zone, record, record_type, address, ttl, proxied)
    words = {"created": "created", "updated": "updated", "unchanged": "already as wanted"}
    sc.note(f"{record} {record_type} {address}: {words[outcome]}")


# --- 20_install_k3s -------------------------------------------------------------------------


def _cluster_name(sc: StepContext) -> str:
    name = (sc.env.get("K3S_CLUSTER") or "").strip()
    if not name:
        name = str((sc.run.project.settings.get("gitops") or {}).get("cluster") or "home")
    if "/" in name or name.startswith("."):
        raise ConfigError(f"K3S_CLUSTER={name!r}: expected a plain name")
    return name


def install_k3s(sc: StepContext) -> None:
    from tasks.adapters.ssh import close_connection
    from tasks.host import k3s
    from tasks.runtime.files import atomic_write
    from tasks.runtime.secrets import MASKER

    inv, host, target, settings = _host(sc)
    spec = k3s.K3sSpec.build(sc.env, inv.host_vars(host), host.address)
    project = sc.run.project
    local_kubeconfig = project.work / _cluster_name(sc) / "kubeconfig"
    conn = _connect(sc, target, settings)
    name = host.name

    def facts_now() -> k3s.K3sFacts:
        output = _run(sc, conn, name, k3s.facts_command(spec), "reading k3s facts", mutates=False)
        return k3s.parse_facts(output)

    try:
        facts = facts_now()
        if sc.deleting:
            if facts.uninstall_script:
                _run(
                    sc,
                    conn,
                    name,
                    k3s.uninstall_command(spec),
                    "k3s uninstall",
                    mutates=True,
                    timeout=600,
                )
                sc.note(f"k3s uninstalled from {host.name}")
            else:
                sc.note(f"k3s is not installed on {host.name}: already as wanted")
            if local_kubeconfig.exists():
                local_kubeconfig.unlink()
                sc.note(f"removed {project.rel(local_kubeconfig)}")
            return
        actions = k3s.plan(spec, facts)
        if "write-config" in actions:
            _run(
                sc,
                conn,
                name,
                k3s.write_config_command(spec),
                "writing the k3s config",
                mutates=True,
                stdin=spec.config_text().encode(),
            )
            sc.note(f"wrote {spec.config_file}")
        if "install" in actions:
            was = facts.version or "not installed"
            _run(
                sc,
                conn,
                name,
                k3s.install_command(spec, sc.env.get("K3S_EXEC_ARGS") or ""),
                "the k3s installer",
                mutates=True,
                env=spec.installer_env(sc.env.get("K3S_TOKEN")),
                timeout=900,
            )
            after = facts_now()
            if after.version != spec.version:
                raise ExternalError(
                    f"after installing, {host.name} reports k3s {after.version or 'missing'}, "
                    f"not {spec.version}"
                )
            sc.note(f"k3s {spec.version} installed on {host.name} (was {was})")
        else:
            sc.note(f"k3s {spec.version} on {host.name}: already as wanted")
        raw = _run(
            sc,
            conn,
            name,
            f"{spec.sudo}cat '{spec.remote_kubeconfig}'",
            "fetching the kubeconfig",
            mutates=False,
        )
    finally:
        close_connection(conn)
    text, secrets = k3s.rewrite_kubeconfig(raw, spec.address)
    MASKER.add_all(secrets)
    if local_kubeconfig.exists() and local_kubeconfig.read_text() == text:
        sc.note(f"{project.rel(local_kubeconfig)}: already current")
    else:
        atomic_write(local_kubeconfig, text, mode=0o600)
        sc.note(f"kubeconfig written to {project.rel(local_kubeconfig)} (server {spec.address})")
