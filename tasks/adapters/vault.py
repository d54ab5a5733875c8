"""Vault: the runner's one call to an external Vault (Kubernetes auth for a cluster), over HTTP
through the effects seam. The token is a credential: https, or plain http only to loopback."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.runtime.errors import ExternalError
from tasks.runtime.secrets import MASKER

if TYPE_CHECKING:
    from tasks.runtime.seam import Effects


def configure_kubernetes_auth(
    effects: Effects,
    *,
    addr: str,
    token: str,
    mount: str,
    kubernetes_host: str,
    kubernetes_ca: str,
    verify: bool | str = True,
) -> None:
    """POST auth/<mount>/config: this cluster's API server and CA."""
    from tasks.runtime.seam.http import HttpUnreachable

    MASKER.add(token)
    url = f"{addr.rstrip('/')}/v1/auth/{mount}/config"
    try:
        answer = effects.http(
            "POST",
            url,
            credential="VAULT_ADDR",
            json={"kubernetes_host": kubernetes_host, "kubernetes_ca_cert": kubernetes_ca},
            headers={"X-Vault-Token": token},
            timeout=(5, 15),
            verify=verify,
        )
    except HttpUnreachable as exc:
        raise ExternalError(
            f"Vault at {addr}: {exc.message}", hint="check VAULT_ADDR and VAULT_CACERT"
        ) from None
    if answer is not None and answer.status >= 300:
        raise ExternalError(f"Vault refused auth/{mount}/config: HTTP {answer.status}")
