"""The host orchestrator's steps: 10_dynamic_dns and 20_install_k3s, against HOST_NAME (a host
or a group: k3s goes on every host of it, tasks/host/group.py; DNS asks its first server)."""

from __future__ import annotations

import ipaddress
import shlex
from typing import TYPE_CHECKING

from tasks.runtime.errors import ConfigError, ExternalError

if TYPE_CHECKING:
    from tasks.adapters.ssh import SshSettings, SshTarget
    from tasks.runtime.run import Run
    from tasks.runtime.steps import StepContext

DEFAULT_IP_URL = "https://api.ipify.org"


# --- 10_dynamic_dns -------------------------------------------------------------------------


def _dns_host(run: Run) -> tuple[SshTarget, SshSettings]:
    """The host dynamic DNS asks for its public address: HOST_NAME's first k3s server."""
    from tasks.host.group import select_members

    inv, members = select_members(run)
    return inv.target(members[0].host), inv.settings(run.project, run)


def public_address(run: Run) -> str:
    """DDNS_ADDRESS, or what an echo service tells the host (its egress address): a read."""
    from tasks.host.group import read_on
    from tasks.host.k3s import check_url

    raw = (run.env.get("DDNS_ADDRESS") or "").strip()
    source = "DDNS_ADDRESS"
    if not raw:
        url = check_url("DDNS_IP_URL", run.env.get("DDNS_IP_URL") or DEFAULT_IP_URL)
        target, settings = _dns_host(run)
        quoted = shlex.quote(url)
        command = f"curl -fsS --max-time 10 {quoted} || wget -qO- -T 10 {quoted}"
        raw = read_on(run, target, settings, command, "asking for its public address")
        raw, source = raw.strip(), f"{url} (asked from {target.name})"
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise ExternalError(f"{source} answered {raw[:60]!r}, not an IP address") from None


def dns_names(env) -> tuple[str, str]:
    """DDNS_ZONE and DDNS_RECORD, checked: the record must be inside the zone."""
    zone = (env.get("DDNS_ZONE") or "").strip()
    record = (env.get("DDNS_RECORD") or "").strip()
    missing = [n for n, v in (("DDNS_ZONE", zone), ("DDNS_RECORD", record)) if not v]
    if missing:
        raise ConfigError(
            f"dynamic DNS needs {' and '.join(missing)}",
            hint="set them in inventory/host/config/homelab.env, or FEAT_DYNAMIC_DNS=false",
        )
    if record != zone and not record.endswith("." + zone):
        raise ConfigError(f"DDNS_RECORD={record!r} is not inside DDNS_ZONE={zone!r}")
    return zone, record


def wanted_record(run: Run) -> tuple[str, str, str, str, int, bool]:
    """(zone, record, type, address, ttl, proxied): what 10_dynamic_dns keeps the record at."""
    zone, record = dns_names(run.env)
    address = public_address(run)
    record_type = "AAAA" if ":" in address else "A"
    ttl = run.settings.integer("DDNS_TTL", 300)
    return zone, record, record_type, address, ttl, run.settings.flag("DDNS_PROXIED")


def dynamic_dns(sc: StepContext) -> None:
    from tasks.adapters.dns import provider_from_env

    zone, record = dns_names(sc.env)
    provider = provider_from_env(sc.run)
    if sc.deleting:
        removed = provider.remove(zone, record)
        sc.note(
            f"{record}: removed {removed} record(s)" if removed else f"{record}: already absent"
        )
        return
    zone, record, record_type, address, ttl, proxied = wanted_record(sc.run)
    outcome = provider.ensure(zone, record, record_type, address, ttl, proxied)
    words = {"created": "created", "updated": "updated", "unchanged": "already as wanted"}
    sc.note(f"{record} {record_type} {address}: {words[outcome]}")


# --- 20_install_k3s -------------------------------------------------------------------------


def install_k3s(sc: StepContext) -> None:
    """k3s on every host of HOST_NAME (servers, then agents), then the kubeconfig hand-off;
    delete: agents drained and removed first, then the servers."""
    from tasks.host.group import run_k3s

    run_k3s(sc.run, sc.mode)
