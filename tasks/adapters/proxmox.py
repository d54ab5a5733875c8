"""The Proxmox VE adapter: the only code in the runner that talks to the PVE API.

Build a client from the resolved env and call PVE paths with it:

    from tasks.adapters.proxmox import ProxmoxClient

    pve = ProxmoxClient.from_env(c.env)            # ConfigError names every missing variable
    pve.get("/version")                            # -> {"version": "9.1.1", ...}
    upid = pve.post(f"/nodes/{pve.node}/qemu/9000/clone", newid=201, name="web-1", full=1)
    pve.wait_task(upid, timeout=600)               # raises PveTaskError unless it ended "OK"

Environment (all read by `PveSettings.from_env`):

    PVE_ACCESS_HOST    host, host:port or https://host:port (port 8006 by default)
    PM_TOKEN_ID        user@realm!tokenid
    PM_TOKEN_SECRET    the token's secret (never logged, masked everywhere)
    PVE_NODE           the default node
    PVE_STORAGE_VM     the default storage for VM disks
    PVE_STORAGE_ISO    optional storage for ISO images
    PVE_CA_BUNDLE      optional PEM file to trust a private CA (TLS verification stays on)
    PVE_TLS_INSECURE   1 turns verification off; a warning is printed on every run
    PVE_TIMEOUT        seconds to wait for an answer to one request (default 15)
    PVE_RETRIES        attempts for an idempotent read (default 4)
    PVE_CALL_LOG       optional JSONL file: one line {method, path, params} per request sent
                       (the test suite checks these against the official API schema)

Reads (GET) are retried with exponential backoff on connection errors, timeouts and 5xx answers;
writes are never retried blindly, since PVE may have acted on a request whose answer was lost.
Every failure is a `PveApiError` (an ExternalError, exit code 4) whose message is one sentence:
the call, the HTTP status and PVE's own message, with a hint where one helps.

proxmoxer and requests are imported inside `ProxmoxClient`, never at module import.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.runtime.envlayers import truthy
from tasks.runtime.errors import ConfigError, ExternalError
from tasks.runtime.secrets import MASKER, mask

REQUIRED_ENV = ("PVE_ACCESS_HOST", "PM_TOKEN_ID", "PM_TOKEN_SECRET", "PVE_NODE", "PVE_STORAGE_VM")
DEFAULT_PORT = 8006
DEFAULT_TIMEOUT = 15.0
DEFAULT_RETRIES = 4
# PVE's own pattern for a token id: user@realm!tokenid.
TOKEN_ID = re.compile(
    r"^(?P<user>[^\s:/@!]+@[A-Za-z][A-Za-z0-9.\-_]+)!(?P<name>[A-Za-z][A-Za-z0-9.\-_]+)$"
)
UPID = re.compile(
    r"^UPID:(?P<node>[^:]+):(?P<pid>[0-9A-Fa-f]+):(?P<pstart>[0-9A-Fa-f]+):"
    r"(?P<start>[0-9A-Fa-f]+):(?P<type>[^:]*):(?P<id>[^:]*):(?P<user>[^:]*):"
)
# A 501 means the method does not exist; retrying cannot help.
NOT_RETRIED_5XX = {501}

_warned_insecure = False
_log_lock = threading.Lock()


class PveApiError(ExternalError):
    """A PVE API call failed. `status` is the HTTP status (None: no answer), `pve_message` PVE's text."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        pve_message: str = "",
        method: str = "",
        path: str = "",
        hint: str | None = None,
    ):
        super().__init__(message, hint=hint)
        self.status = status
        self.pve_message = pve_message
        self.method = method
        self.path = path


class PveTaskError(PveApiError):
    """A PVE task ended with an exit status other than OK, or did not finish in time."""

    def __init__(self, message: str, *, upid: str, exitstatus: str | None, log_tail: list[str]):
        super().__init__(message, pve_message=exitstatus or "")
        self.upid = upid
        self.exitstatus = exitstatus
        self.log_tail = log_tail


@dataclass(frozen=True)
class PveSettings:
    """Where and how to reach PVE, read from the env. The token secret never appears in repr."""

    host: str
    port: int
    token_user: str  # user@realm
    token_name: str  # the part after "!"
    token_secret: str
    node: str
    storage_vm: str
    verify: bool | str = True  # True, False or a CA bundle path
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    backoff: float = 0.5
    call_log: str | None = None

    def __repr__(self) -> str:
        return f"PveSettings(url={self.base_url!r}, token={self.token_id!r}, node={self.node!r})"

    @property
    def token_id(self) -> str:
        return f"{self.token_user}!{self.token_name}"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def insecure(self) -> bool:
        return self.verify is False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PveSettings:
        """Read and check every variable; one ConfigError lists all that are missing or malformed."""
        problems: list[str] = []
        missing = [n for n in REQUIRED_ENV if not (env.get(n) or "").strip()]
        if missing:
            problems.append("missing " + ", ".join(missing))
        host, port = "", DEFAULT_PORT
        if (env.get("PVE_ACCESS_HOST") or "").strip():
            try:
                host, port = parse_access_host(env["PVE_ACCESS_HOST"])
            except ValueError as exc:
                problems.append(f"PVE_ACCESS_HOST: {exc}")
        user = name = ""
        token_id = (env.get("PM_TOKEN_ID") or "").strip()
        if token_id:
            match = TOKEN_ID.match(token_id)
            if match is None:
                problems.append(
                    f"PM_TOKEN_ID {token_id!r} is not of the form user@realm!tokenid "
                    "(for example homelab@pve!runner)"
                )
            else:
                user, name = match.group("user"), match.group("name")
        verify: bool | str = True
        if truthy(env.get("PVE_TLS_INSECURE")):
            verify = False
        elif (env.get("PVE_CA_BUNDLE") or "").strip():
            bundle = Path(env["PVE_CA_BUNDLE"].strip()).expanduser()
            if not bundle.is_file():
                problems.append(f"PVE_CA_BUNDLE: {bundle} is not a file")
            else:
                verify = str(bundle)
        timeout = _number(env, "PVE_TIMEOUT", DEFAULT_TIMEOUT, problems)
        retries = int(_number(env, "PVE_RETRIES", DEFAULT_RETRIES, problems))
        backoff = _number(env, "PVE_RETRY_BACKOFF", 0.5, problems)
        if problems:
            raise ConfigError(
                "Proxmox settings: " + "; ".join(problems),
                hint="set them in inventory/config.env, inventory/profiles/*.env, Doppler or the "
                "shell (`inv env.show` shows where each comes from)",
            )
        secret = env["PM_TOKEN_SECRET"].strip()
        MASKER.add(secret)
        return cls(
            host=host,
            port=port,
            token_user=user,
            token_name=name,
            token_secret=secret,
            node=env["PVE_NODE"].strip(),
            storage_vm=env["PVE_STORAGE_VM"].strip(),
            verify=verify,
            timeout=timeout,
            retries=max(1, retries),
            backoff=backoff,
            call_log=(env.get("PVE_CALL_LOG") or "").strip() or None,
        )


def _number(env: Mapping[str, str], name: str, default: float, problems: list[str]) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name} {raw!r} is not a number")
        return default
    if value < 0:
        problems.append(f"{name} must not be negative")
        return default
    return value


def parse_access_host(raw: str) -> tuple[str, int]:
    """`pve.lan`, `pve.lan:8006`, `https://pve.lan:8006/` or `[fd00::1]:8006` -> (host, port)."""
    text = raw.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme != "https":
        raise ValueError(f"{raw!r}: the PVE API is served over https only")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{raw!r}: give the host and port only, without a path")
    if not parts.hostname:
        raise ValueError(f"{raw!r}: no host name")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"{raw!r}: the port is not a number between 1 and 65535") from None
    return parts.hostname, port


def parse_upid(upid: str) -> dict[str, str]:
    """The fields of a task id (node, type, id, user...); ValueError if it is not a UPID."""
    match = UPID.match(upid or "")
    if match is None:
        raise ValueError(f"not a PVE task id: {upid!r}")
    return match.groupdict()


def _short_reason(exc: BaseException) -> str:
    """The useful end of a requests/urllib3 error, which otherwise spans a paragraph."""
    text = str(exc)
    for pattern in (
        r"certificate verify failed: ([^(')\]]+)",
        r"\[Errno -?\d+\] ([^'\")\]]+)",
        r"(Read timed out)",
        r"(Connection aborted)",
        r"(Connection reset by peer)",
        r"(RemoteDisconnected[^'\")]*)",
    ):
        found = re.search(pattern, text)
        if found:
            return found.group(1).strip().rstrip(".")
    return text.splitlines()[0][:200] if text else type(exc).__name__


HINTS = {
    401: "check PM_TOKEN_ID and PM_TOKEN_SECRET: the token is unknown, mistyped or revoked",
    403: "grant the token the privilege named above (Datacenter > Permissions), and check "
    "whether the token has privilege separation",
    595: "the node does not answer inside the cluster: is it online?",
    596: "the node does not answer inside the cluster: is it online?",
}


class ProxmoxClient:
    """A PVE API client: get/post/put/delete on API paths, task waiting, node and storage helpers.

    Paths are the API's own (`/nodes/pve1/qemu`), with or without the leading slash. Answers are the
    `data` member PVE returns. The client is safe to share between threads: each thread gets its
    own HTTP session.
    """

    def __init__(self, settings: PveSettings):
        # Imported here, once, so threads that share the client do not queue on the import lock.
        import proxmoxer  # noqa: F401

        self.settings = settings
        self._local = threading.local()
        self._count_lock = threading.Lock()
        self.request_count = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, quiet: bool = False) -> ProxmoxClient:
        """The client for the resolved env (`c.env`). With PVE_TLS_INSECURE=1 it warns, once a run."""
        global _warned_insecure
        settings = PveSettings.from_env(env)
        if settings.insecure and not quiet and not _warned_insecure:
            from tasks.runtime.console import warn

            warn(
                f"PVE_TLS_INSECURE=1: TLS verification of {settings.base_url} is OFF; anyone on "
                "the path can read the API token. Set PVE_CA_BUNDLE to your CA's certificate instead."
            )
            _warned_insecure = True
        return cls(settings)

    # -------------------------------------------------------------- attributes

    @property
    def node(self) -> str:
        """The default node (PVE_NODE)."""
        return self.settings.node

    @property
    def storage(self) -> str:
        """The default VM disk storage (PVE_STORAGE_VM)."""
        return self.settings.storage_vm

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def _api(self):
        api = getattr(self._local, "api", None)
        if api is None:
            from proxmoxer import ProxmoxAPI

            s = self.settings
            api = ProxmoxAPI(
                s.host,
                port=s.port,
                user=s.token_user,
                token_name=s.token_name,
                token_value=s.token_secret,
                verify_ssl=s.verify,
                # (connect, read): an unreachable host fails fast, a slow answer gets the full time.
                timeout=(min(5.0, s.timeout), s.timeout),
            )
            self._local.api = api
        return api

    # ------------------------------------------------------------ raw calls

    def get(self, path: str, /, **params: Any) -> Any:
        """GET a path; retried with backoff on connection errors, timeouts and 5xx."""
        return self.request("GET", path, **params)

    def post(self, path: str, /, **data: Any) -> Any:
        """POST (create, or start a task: the answer is then a UPID for `wait_task`). Not retried."""
        return self.request("POST", path, **data)

    def put(self, path: str, /, **data: Any) -> Any:
        """PUT (update). Not retried."""
        return self.request("PUT", path, **data)

    def delete(self, path: str, /, **params: Any) -> Any:
        """DELETE (often a task: the answer is then a UPID). Not retried."""
        return self.request("DELETE", path, **params)

    def request(self, method: str, path: str, /, **params: Any) -> Any:
        method = method.upper()
        path = "/" + path.strip("/")
        params = {k: _wire(v) for k, v in params.items() if v is not None}
        attempts = self.settings.retries if method == "GET" else 1
        delay = self.settings.backoff
        for attempt in range(1, attempts + 1):
            try:
                return self._send(method, path, params)
            except PveApiError as exc:
                retriable = exc.status is None or (
                    exc.status >= 500 and exc.status not in NOT_RETRIED_5XX
                )
                if attempt >= attempts or not retriable or getattr(exc, "tls", False):
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, path: str, params: dict[str, Any]) -> Any:
        import requests
        from proxmoxer import ResourceException

        self._record(method, path, params)
        resource = self._api()(path.lstrip("/"))
        call = f"{method} {path}"
        try:
            if method in ("GET", "DELETE"):
                return resource._request(method, params=dict(params))
            return resource._request(method, data=dict(params))
        except ResourceException as exc:
            raise self._api_error(call, method, path, exc) from None
        except requests.exceptions.SSLError as exc:
            error = PveApiError(
                f"TLS verification of {self.base_url} failed: {_short_reason(exc)}",
                method=method,
                path=path,
                hint="set PVE_CA_BUNDLE to the PEM file of the CA that signed the PVE certificate "
                "(PVE_TLS_INSECURE=1 skips verification; not recommended)",
            )
            error.tls = True  # type: ignore[attr-defined]
            raise error from None
        except requests.exceptions.Timeout:
            raise PveApiError(
                f"Proxmox API at {self.base_url} did not answer {call} within "
                f"{self.settings.timeout:g}s",
                method=method,
                path=path,
                hint="raise PVE_TIMEOUT if the node is busy"
                + ("" if method == "GET" else "; the change may or may not have been applied"),
            ) from None
        except requests.exceptions.RequestException as exc:
            raise PveApiError(
                f"cannot reach the Proxmox API at {self.base_url} ({call}): {_short_reason(exc)}",
                method=method,
                path=path,
                hint="check PVE_ACCESS_HOST and that the node's port is reachable from here",
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

    def _record(self, method: str, path: str, params: dict[str, Any]) -> None:
        with self._count_lock:
            self.request_count += 1
        if not self.settings.call_log:
            return
        line = json.dumps(
            {
                "method": method,
                "path": path,
                "params": {k: mask(str(v)) for k, v in sorted(params.items())},
            }
        )
        with _log_lock:
            fd = os.open(self.settings.call_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)

    # ---------------------------------------------------------------- tasks

    def wait_task(self, upid: str, timeout: float = 600.0, *, poll: float = 0.05) -> dict[str, Any]:
        """Wait for a task; return its status. Raises PveTaskError unless it ended with OK.

        The error carries the task's exit status and the tail of its log; a timeout names the UPID.
        """
        fields = parse_upid(upid)
        node = fields["node"]
        quoted = urllib.parse.quote(upid, safe="")
        deadline = time.monotonic() + timeout
        interval = poll
        while True:
            status = self.get(f"/nodes/{node}/tasks/{quoted}/status")
            if status.get("status") == "stopped":
                break
            if time.monotonic() >= deadline:
                raise PveTaskError(
                    f"Proxmox task {upid} did not finish within {timeout:g}s",
                    upid=upid,
                    exitstatus=None,
                    log_tail=[],
                )
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 1.5, 1.0)
        exitstatus = str(status.get("exitstatus", ""))
        if exitstatus == "OK":
            return status
        tail = self.task_log_tail(upid)
        what = f"{fields['type']} {fields['id']}".strip()
        message = f"Proxmox task {what} on {node} failed: {exitstatus or 'no exit status'}"
        shown = [line for line in tail if line and line != f"TASK ERROR: {exitstatus}"]
        if shown:
            message += "\n  log: " + " | ".join(shown[-5:])
        message += f"\n  task: {upid}"
        raise PveTaskError(mask(message), upid=upid, exitstatus=exitstatus, log_tail=tail)

    def task_log_tail(self, upid: str, lines: int = 10) -> list[str]:
        """The last lines of a task's log (empty if the log cannot be read)."""
        node = parse_upid(upid)["node"]
        quoted = urllib.parse.quote(upid, safe="")
        try:
            entries = self.get(f"/nodes/{node}/tasks/{quoted}/log", start=0, limit=5000)
        except PveApiError:
            return []
        return [str(e.get("t", "")) for e in entries or []][-lines:]

    def run_task(
        self, method: str, path: str, /, *, task_timeout: float = 600.0, **data: Any
    ) -> Any:
        """Send a request that starts a task and wait for it; returns the task status.

        (`task_timeout`, not `timeout`: some PVE calls take a `timeout` parameter of their own.)
        """
        upid = self.request(method, path, **data)
        if isinstance(upid, str) and upid.startswith("UPID:"):
            return self.wait_task(upid, task_timeout)
        return upid

    # ------------------------------------------------------- read helpers

    def version(self) -> dict[str, Any]:
        """GET /version: proves the endpoint, TLS and credentials in one call."""
        return self.get("/version") or {}

    def nodes(self) -> list[dict[str, Any]]:
        """GET /nodes: every node with its status (online/offline)."""
        return self.get("/nodes") or []

    def node_storages(self, node: str | None = None) -> list[dict[str, Any]]:
        """GET /nodes/{node}/storage: storages available on a node (enabled, active, content)."""
        return self.get(f"/nodes/{node or self.node}/storage") or []

    def storage_content(
        self, storage: str | None = None, node: str | None = None, content: str | None = None
    ) -> list[dict[str, Any]]:
        """GET /nodes/{node}/storage/{storage}/content (optionally one content type)."""
        return (
            self.get(
                f"/nodes/{node or self.node}/storage/{storage or self.storage}/content",
                content=content,
            )
            or []
        )

    def permissions(self, path: str | None = None) -> dict[str, dict[str, int]]:
        """GET /access/permissions: {acl path: {privilege: propagate}} the token holds."""
        return self.get("/access/permissions", path=path) or {}

    def resources(self, kind: str | None = None) -> list[dict[str, Any]]:
        """GET /cluster/resources[?type=vm|node|storage]: one call for the whole cluster."""
        return self.get("/cluster/resources", type=kind) or []

    def vm_config(self, vmid: int | str, node: str | None = None) -> dict[str, Any]:
        """GET /nodes/{node}/qemu/{vmid}/config."""
        return self.get(f"/nodes/{node or self.node}/qemu/{vmid}/config") or {}


def _wire(value: Any) -> Any:
    """PVE's booleans are 0/1 on the wire."""
    if isinstance(value, bool):
        return 1 if value else 0
    return value


def held_privileges(permissions: Mapping[str, Mapping[str, Any]], path: str) -> set[str]:
    """The privileges effective on `path` from a /access/permissions answer (inherited from parents)."""
    held: set[str] = set()
    for acl_path, privs in permissions.items():
        base = acl_path.rstrip("/") or "/"
        if path == base:
            held.update(privs)
        elif base == "/" or path.startswith(base + "/"):
            # A privilege granted without "propagate" holds on that path only.
            held.update(p for p, propagate in privs.items() if propagate not in (0, "0", False))
    return held
