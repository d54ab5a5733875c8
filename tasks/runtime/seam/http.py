"""HTTP: the only module of the runner that speaks HTTP itself (requests).

Every request that carries a credential passes one URL check first: https, or plain http only to
a loopback IP address (127.0.0.0/8 or ::1, parsed as an address, never guessed from a name).
Network failures become one `HttpUnreachable` with a short reason and a `why` the caller can act on
(refused, dns, timeout, tls, reset), so nobody parses exception text.
"""

from __future__ import annotations

import ipaddress
import json as jsonlib
from typing import Any
from urllib.parse import urlsplit

from tasks.runtime.errors import ConfigError, ExternalError


class HttpUnreachable(ExternalError):
    """No HTTP answer: `why` is refused, dns, timeout, tls, reset or other."""

    def __init__(self, message: str, why: str, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.why = why


class HttpAnswer:
    __slots__ = ("status", "headers", "text", "reason")

    def __init__(self, status: int, headers: dict[str, str], text: str, reason: str):
        self.status = status
        self.headers = headers
        self.text = text
        self.reason = reason

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return jsonlib.loads(self.text)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def loopback_ip(host: str | None) -> bool:
    try:
        return ipaddress.ip_address((host or "").strip("[]")).is_loopback
    except ValueError:
        return False


# What goes to a URL checked under a setting's name, where "a credential" would not say it.
CARRIES = {"NOTIFY_URL": "the drift report (with NOTIFY_TOKEN, when set)"}


def check_credential_url(url: str, what: str) -> str:
    """`url` when a credential may be sent to it; ConfigError otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and loopback_ip(parts.hostname):
        return url
    raise ConfigError(
        f"{what}={url!r}: {CARRIES.get(what, 'a credential')} goes only to an https:// URL "
        "(plain http only to a loopback address such as 127.0.0.1 or ::1)",
        hint="use the service's https address",
    )


def _why(exc: BaseException) -> str:
    import requests

    text = repr(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout"
    if (
        "Name or service not known" in text
        or "NameResolutionError" in text
        or "getaddrinfo" in text
    ):
        return "dns"
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "refused"
    if "reset" in text.lower() or "RemoteDisconnected" in text or "aborted" in text.lower():
        return "reset"
    return "other"


REASONS = {
    "tls": "TLS verification failed",
    "timeout": "no answer in time",
    "dns": "the name does not resolve",
    "refused": "connection refused",
    "reset": "the connection was reset",
    "other": "the request failed",
}


def send(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    json: Any = None,
    data: Any = None,
    files: Any = None,
    timeout: tuple[float, float] = (5.0, 20.0),
    verify: bool | str = True,
) -> HttpAnswer:
    import requests

    try:
        response = requests.request(
            method,
            url,
            headers=headers,
            params=params,
            json=json,
            data=data,
            files=files,
            timeout=timeout,
            verify=verify,
        )
    except requests.RequestException as exc:
        why = _why(exc)
        host = urlsplit(url).netloc
        raise HttpUnreachable(f"{method} {host}: {REASONS[why]}", why) from None
    return HttpAnswer(
        response.status_code, dict(response.headers), response.text, response.reason or ""
    )
