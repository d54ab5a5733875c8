"""The Proxmox VE API on the wire: the only module of the runner that uses proxmoxer.

One `PveTransport` per client sends one request and turns every failure into a `PveApiError`
(status, PVE's own message, a hint). Policy (retries, task waiting, paths) is the adapter's
(`tasks/adapters/proxmox.py`); recording, dry-run and masking are the seam's.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any

from tasks.runtime.errors import ExternalError
from tasks.runtime.secrets import mask

HINTS = {
    401: "check PM_TOKEN_ID and PM_TOKEN_SECRET: the token is unknown, mistyped or revoked",
    403: "grant the token the privilege named above (Datacenter > Permissions), and check "
    "whether the token has privilege separation",
    595: "the node does not answer inside the cluster: is it online?",
    596: "the node does not answer inside the cluster: is it online?",
}
# A 501 means the method does not exist; retrying cannot help.
NOT_RETRIED_5XX = {501}
_log_lock = threading.Lock()


class PveApiError(ExternalError):
    """A PVE API call failed. `status` is the HTTP status (None: no answer), `pve_message` PVE's text.

    `answered` is False when the request may or may not have reached PVE (timeout, reset):
    a write that ends so must be re-read before it is reported or retried. `retriable` says
    whether sending the same read again may help (a timeout, a reset, a 5xx; never a refused
    connection, a name that does not resolve, TLS or a 4xx).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        pve_message: str = "",
        method: str = "",
        path: str = "",
        hint: str | None = None,
        tls: bool = False,
        answered: bool = True,
        retriable: bool | None = None,
    ):
        super().__init__(message, hint=hint)
        self.status = status
        self.pve_message = pve_message
        self.method = method
        self.path = path
        self.tls = tls
        self.answered = answered
        if retriable is None:
            retriable = status is not None and status >= 500 and status not in NOT_RETRIED_5XX
        self.retriable = retriable


class PveTaskError(PveApiError):
    """A PVE task ended with an exit status other than OK, or did not finish in time."""

    def __init__(self, message: str, *, upid: str, exitstatus: str | None, log_tail: list[str]):
        super().__init__(message, pve_message=exitstatus or "")
        self.upid = upid
        self.exitstatus = exitstatus
        self.log_tail = log_tail


def short_reason(exc: BaseException) -> str:
    """The useful end of a requests/urllib3 error, which otherwise spans a paragraph."""
    text = str(exc)
    for pattern in (
        r"certificate verify failed: ([^(')\]]+)",
        r"\[Errno -?\d+\] ([^'\")\]]+)",
        r"(Read timed out)",
        # requests words a reset after the handshake "Connection aborted." with the reset inside:
        # the reset is the cause the operator can act on.
        r"(Connection reset by peer)",
        r"(Connection aborted)",
        r"(RemoteDisconnected[^'\")]*)",
    ):
        found = re.search(pattern, text)
        if found:
            return found.group(1).strip().rstrip(".")
    return text.splitlines()[0][:200] if text else type(exc).__name__


class PveTransport:
    """proxmoxer, one HTTP session per thread; `send` is one request, never retried here."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        token_user: str,
        token_name: str,
        token_secret: str,
        verify: bool | str,
        timeout: float,
        call_log: str | None = None,
    ) -> None:
        # Imported here, once, so threads that share the client do not queue on the import lock.
        import proxmoxer  # noqa: F401

        self.host = host
        self.port = port
        self._auth = (token_user, token_name, token_secret)
        self.verify = verify
        self.timeout = timeout
        self.call_log = call_log
        self._local = threading.local()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def _api(self):
        api = getattr(self._local, "api", None)
        if api is None:
            from proxmoxer import ProxmoxAPI

            user, name, secret = self._auth
            api = ProxmoxAPI(
                self.host,
                port=self.port,
                user=user,
                token_name=name,
                token_value=secret,
                verify_ssl=self.verify,
                # (connect, read): an unreachable host fails fast, a slow answer gets the full time.
                timeout=(min(5.0, self.timeout), self.timeout),
            )
            self._local.api = api
        return api

    def send(self, method: str, path: str, params: dict[str, Any]) -> Any:
        import requests
        from proxmoxer import ResourceException

        self._log(method, path, params)
        resource = self._api()(path.lstrip("/"))
        call = f"{method} {path}"
        try:
            if method in ("GET", "DELETE"):
                return resource._request(method, params=dict(params))
            return resource._request(method, data=dict(params))
        except ResourceException as exc:
            raise self._api_error(call, method, path, exc) from None
        except requests.exceptions.SSLError as exc:
            raise PveApiError(
                f"TLS verification of {self.base_url} failed: {short_reason(exc)}",
                method=method,
                path=path,
                tls=True,
                hint="set PVE_CA_BUNDLE to the PEM file of the CA that signed the PVE certificate "
                "(PVE_TLS_INSECURE=1 skips verification; not recommended)",
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise PveApiError(
                f"Proxmox API at {self.base_url} did not accept a connection for {call} within "
                f"{min(5.0, self.timeout):g}s",
                method=method,
                path=path,
                retriable=True,
                hint="check PVE_ACCESS_HOST and that the node's port is reachable from here",
            ) from None
        except requests.exceptions.Timeout:
            raise PveApiError(
                f"Proxmox API at {self.base_url} did not answer {call} within {self.timeout:g}s",
                method=method,
                path=path,
                answered=False,
                retriable=True,
                hint="raise PVE_TIMEOUT if the node is busy"
                + ("" if method == "GET" else "; the change may or may not have been applied"),
            ) from None
        except requests.exceptions.RequestException as exc:
            reason = short_reason(exc)
            # Refused or unresolvable: nothing was sent, and sending again will not help.
            final = any(
                word in reason.lower()
                for word in ("refused", "name or service", "no address", "name resolution")
            )
            lost = not final and method != "GET"  # sent, then the connection went: unknown
            raise PveApiError(
                (
                    f"the connection to the Proxmox API at {self.base_url} broke during {call}"
                    if lost
                    else f"cannot reach the Proxmox API at {self.base_url} ({call})"
                )
                + f": {reason}",
                method=method,
                path=path,
                answered=final,
                retriable=not final,
                hint="the change may or may not have been applied; run it again: the runner "
                "reads before it writes"
                if lost
                else "check PVE_ACCESS_HOST and that the node's port is reachable from here",
            ) from None

    def _api_error(self, call: str, method: str, path: str, exc: Any) -> PveApiError:
        status = int(exc.status_code)
        message = str(exc.content or exc.status_message or "").strip()
        if status == 401:
            message = "authentication failure"
        errors = exc.errors if isinstance(exc.errors, dict) else None
        if errors:
            fields = "; ".join(f"{k}: {str(v).strip()}" for k, v in sorted(errors.items()))
            message = f"{message} ({fields})" if message else fields
        message = " ".join(message.split())
        return PveApiError(
            mask(f"Proxmox API {call} failed: HTTP {status} {message}".rstrip()),
            status=status,
            pve_message=message,
            method=method,
            path=path,
            hint=HINTS.get(status),
        )

    def _log(self, method: str, path: str, params: dict[str, Any]) -> None:
        """PVE_CALL_LOG: one JSON line per request (the test suite checks them against the schema)."""
        if not self.call_log:
            return
        line = json.dumps(
            {
                "method": method,
                "path": path,
                "params": {k: mask(str(v)) for k, v in sorted(params.items())},
            }
        )
        with _log_lock:
            fd = os.open(self.call_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
