"""DNS providers for dynamic DNS: a provider's API over HTTP, through the effects seam.

Cloudflare's API v4 (`/zones`, `/zones/{id}/dns_records`, bearer token, `{success, errors,
result}` envelopes) is the one provider so far; `PROVIDERS` is where another one plugs in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError, ExternalError

if TYPE_CHECKING:
    from tasks.runtime.run import Run
    from tasks.runtime.seam import Effects

CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"


@dataclass
class Record:
    id: str
    type: str
    name: str
    content: str
    ttl: int
    proxied: bool


class CloudflareDns:
    """Cloudflare DNS records for one zone, by zone name."""

    name = "cloudflare"
    token_variable = "CLOUDFLARE_API_TOKEN"

    def __init__(
        self, effects: Effects, api_url: str, token: str, timeout: tuple[float, float] = (5.0, 20.0)
    ):
        from tasks.runtime.seam.http import check_credential_url

        self.effects = effects
        self.api_url = check_credential_url(api_url, "CLOUDFLARE_API_URL").rstrip("/")
        self.token = token
        self.timeout = timeout
        self._zone_ids: dict[str, str] = {}

    @classmethod
    def from_run(cls, run: Run) -> CloudflareDns:
        env = run.env
        token = env.get(cls.token_variable)
        if not token:
            raise ConfigError(
                f"{cls.token_variable} is not set: the Cloudflare API token (Zone.DNS edit)",
                hint="put it in Doppler or inventory/host/config/host.env (git-ignored)",
            )
        return cls(run.effects, env.get("CLOUDFLARE_API_URL") or CLOUDFLARE_API, token)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        from tasks.runtime.seam.http import HttpUnreachable

        url = f"{self.api_url}{path}"
        try:
            response = self.effects.http(
                method,
                url,
                credential="CLOUDFLARE_API_URL",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=self.timeout,
                what=f"Cloudflare {method} {path}",
                **kwargs,
            )
        except HttpUnreachable as exc:
            raise ExternalError(f"Cloudflare API {method} {path}: {exc.message}") from None
        if response is None:  # a write withheld by a dry run
            return None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status >= 400 or not body.get("success", False):
            errors = (
                "; ".join(f"{e.get('code')}: {e.get('message')}" for e in body.get("errors") or [])
                or f"HTTP {response.status}"
            )
            hint = (
                "check CLOUDFLARE_API_TOKEN and that it may edit DNS in this zone"
                if response.status in (401, 403)
                else None
            )
            raise ExternalError(f"Cloudflare API {method} {path}: {errors}", hint=hint)
        return body.get("result")

    def zone_id(self, zone: str) -> str:
        if zone not in self._zone_ids:
            found = self._call("GET", "/zones", params={"name": zone}) or []
            if not found:
                raise ConfigError(f"DDNS_ZONE={zone!r}: no such zone in this Cloudflare account")
            self._zone_ids[zone] = found[0]["id"]
        return self._zone_ids[zone]

    def records(self, zone: str, name: str, record_type: str | None = None) -> list[Record]:
        params = {"name": name, **({"type": record_type} if record_type else {})}
        found = self._call("GET", f"/zones/{self.zone_id(zone)}/dns_records", params=params)
        return [
            Record(
                r["id"],
                r["type"],
                r["name"],
                r["content"],
                int(r.get("ttl", 1)),
                bool(r.get("proxied", False)),
            )
            for r in found or []
            if record_type is None or r["type"] == record_type
        ]

    def ensure(
        self, zone: str, name: str, record_type: str, content: str, ttl: int, proxied: bool
    ) -> str:
        """created | updated | unchanged."""
        wanted = {
            "type": record_type,
            "name": name,
            "content": content,
            "ttl": ttl,
            "proxied": proxied,
        }
        record, changes = self.pending(zone, name, record_type, content, ttl, proxied)
        if record is None:
            self._call("POST", f"/zones/{self.zone_id(zone)}/dns_records", json=wanted)
            return "created"
        if not changes:
            return "unchanged"
        self._call("PATCH", f"/zones/{self.zone_id(zone)}/dns_records/{record.id}", json=wanted)
        return "updated"

    def pending(
        self, zone: str, name: str, record_type: str, content: str, ttl: int, proxied: bool
    ) -> tuple[Record | None, list[str]]:
        """The record as it is (None: absent) and the fields `ensure` would change (reads only)."""
        existing = self.records(zone, name, record_type)
        if not existing:
            return None, [f"create {record_type} {content}"]
        record = existing[0]
        changes = [
            f"{field}: {old} -> {new}"
            for field, old, new in (
                ("content", record.content, content),
                ("ttl", record.ttl, ttl),
                ("proxied", record.proxied, proxied),
            )
            if old != new
        ]
        return record, changes

    def remove(self, zone: str, name: str) -> int:
        removed = 0
        for record in self.records(zone, name):
            if record.type in ("A", "AAAA"):
                self._call("DELETE", f"/zones/{self.zone_id(zone)}/dns_records/{record.id}")
                removed += 1
        return removed


PROVIDERS = {"cloudflare": CloudflareDns}


def provider_from_env(run: Run) -> CloudflareDns:
    name = (run.env.get("DDNS_PROVIDER") or "cloudflare").strip().lower()
    if name not in PROVIDERS:
        raise ConfigError(f"DDNS_PROVIDER={name!r}: supported providers: {', '.join(PROVIDERS)}")
    return PROVIDERS[name].from_run(run)
