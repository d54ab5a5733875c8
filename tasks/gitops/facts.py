"""Facts: what the cluster says, parsed from `kubectl get ... -o json` output (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReadyState:
    kind: str
    namespace: str
    name: str
    ready: bool
    reason: str
    message: str
    suspended: bool = False

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def ready_states(listing: dict[str, Any]) -> list[ReadyState]:
    """Flux objects (Kustomizations, HelmReleases) and their Ready condition."""
    states = []
    for item in listing.get("items") or []:
        meta, spec, status = (
            item.get("metadata") or {},
            item.get("spec") or {},
            item.get("status") or {},
        )
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        states.append(
            ReadyState(
                kind=str(item.get("kind") or ""),
                namespace=str(meta.get("namespace") or ""),
                name=str(meta.get("name") or ""),
                ready=bool(ready and ready.get("status") == "True"),
                reason=str((ready or {}).get("reason") or ("NoStatus" if ready is None else "")),
                message=str((ready or {}).get("message") or ""),
                suspended=bool(spec.get("suspend")),
            )
        )
    return states


def names(listing: dict[str, Any]) -> list[str]:
    return sorted(str((i.get("metadata") or {}).get("name")) for i in listing.get("items") or [])


def server_version(version_json: dict[str, Any]) -> str:
    return str((version_json.get("serverVersion") or {}).get("gitVersion") or "unknown")
