"""The Proxmox VE adapter: the only code in the runner that talks to the PVE API.

Build a client from the resolved env and call PVE paths with it:

    from tasks.adapters.proxmox import ProxmoxClient

    pve = ProxmoxClient.from_run(run)              # ConfigError names every missing variable
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
    PVE_TIMEOUT        how long to wait for an answer to one request (default 15s; 90s, 2m...)
    PVE_RETRIES        attempts for an idempotent read (default 4)
    PVE_CALL_LOG       optional JSONL file: one line {method, path, params} per request sent
                       (the test suite checks these against the official API schema)

Reads (GET) are retried with exponential backoff on timeouts and 5xx answers (a refused
connection is not: retrying cannot help); writes are never retried blindly, since PVE may have
acted on a request whose answer was lost. Every failure is a `PveApiError` (an ExternalError, exit
code 4) whose message is one sentence: the call, the HTTP status and PVE's own message, with a
hint where one helps. Every request goes through the run's effects seam (`Effects.pve`), which
records it and withholds writes in a dry run; the wire itself is `tasks/runtime/seam/pve.py`.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError
from tasks.runtime.seam.pve import PveApiError, PveTaskError, PveTransport
from tasks.runtime.secrets import MASKER, mask, where_to_set
from tasks.runtime.settings import bad_value, setting_for

if TYPE_CHECKING:
    from tasks.runtime.run import Run
    from tasks.runtime.seam import Effects

__all__ = ["PveApiError", "PveTaskError", "PveSettings", "ProxmoxClient", "parse_access_host"]

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

_warned_insecure = False


class PveSettingsError(ConfigError):
    """The PVE settings are incomplete (`missing`) or unusable (`problems`, one per setting)."""

    def __init__(self, missing: list[str], problems: list[str], hint: str):
        parts = (["missing " + ", ".join(missing)] if missing else []) + problems
        super().__init__("Proxmox settings: " + "; ".join(parts), hint=hint)
        self.missing = missing
        self.problems = problems


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
        insecure = _typed(env, "PVE_TLS_INSECURE", False, problems)
        if insecure:
            verify = False
        elif (env.get("PVE_CA_BUNDLE") or "").strip():
            bundle = Path(env["PVE_CA_BUNDLE"].strip()).expanduser()
            if not bundle.is_file():
                problems.append(f"PVE_CA_BUNDLE: {bundle} is not a file")
            else:
                verify = str(bundle)
        timeout = float(_typed(env, "PVE_TIMEOUT", DEFAULT_TIMEOUT, problems))
        retries = int(_typed(env, "PVE_RETRIES", DEFAULT_RETRIES, problems))
        backoff = float(_typed(env, "PVE_RETRY_BACKOFF", 0.5, problems))
        call_log = (env.get("PVE_CALL_LOG") or "").strip() or None
        if call_log and not Path(call_log).expanduser().parent.is_dir():
            problems.append(f"PVE_CALL_LOG: the folder of {call_log} does not exist")
        if missing or problems:
            raise PveSettingsError(
                missing,
                problems,
                hint=(where_to_set(missing) + "; " if missing else "")
                + "`inv env.show` shows where each value comes from",
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
            call_log=str(Path(call_log).expanduser()) if call_log else None,
        )


def _typed(env: Mapping[str, str], name: str, default: Any, problems: list[str]) -> Any:
    """A typed setting (tasks/runtime/settings.py); a bad value is added to `problems`."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    setting = setting_for(name)
    assert setting is not None, name
    value = setting.parse(raw)
    if value is None:
        where = env.where(name) if hasattr(env, "where") else "the environment"
        problems.append(bad_value(name, raw, where, setting))
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


class ProxmoxClient:
    """A PVE API client: get/post/put/delete on API paths, task waiting, node and storage helpers.

    Paths are the API's own (`/nodes/pve1/qemu`), with or without the leading slash. Answers are the
    `data` member PVE returns. The client is safe to share between threads: each thread gets its
    own HTTP session.
    """

    def __init__(self, settings: PveSettings, effects: Effects):
        self.settings = settings
        self.effects = effects
        self.transport = PveTransport(
            host=settings.host,
            port=settings.port,
            token_user=settings.token_user,
            token_name=settings.token_name,
            token_secret=settings.token_secret,
            verify=settings.verify,
            timeout=settings.timeout,
            call_log=settings.call_log,
        )

    @classmethod
    def from_run(cls, run: Run, *, quiet: bool = False) -> ProxmoxClient:
        """The client for the run's env. With PVE_TLS_INSECURE on it warns, once a run."""
        return cls.from_env(run.env, run.effects, quiet=quiet)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], effects: Effects, *, quiet: bool = False
    ) -> ProxmoxClient:
        global _warned_insecure
        settings = PveSettings.from_env(env)
        if settings.insecure and not quiet and not _warned_insecure:
            from tasks.runtime.console import warn

            warn(
                f"PVE_TLS_INSECURE=1: TLS verification of {settings.base_url} is OFF; anyone on "
                "the path can read the API token. Set PVE_CA_BUNDLE to your CA's certificate instead."
            )
            _warned_insecure = True
        return cls(settings, effects)

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

    # ------------------------------------------------------------ raw calls

    def get(self, path: str, /, **params: Any) -> Any:
        """GET a path; retried with backoff on timeouts, dropped connections and 5xx (not on a
        refused connection or an unresolvable name: those fail at once)."""
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

    @property
    def request_count(self) -> int:
        return sum(1 for e in self.effects.records if e.kind == "pve")

    def request(self, method: str, path: str, /, **params: Any) -> Any:
        method = method.upper()
        path = "/" + path.strip("/")
        params = {k: _wire(v) for k, v in params.items() if v is not None}
        attempts = self.settings.retries if method == "GET" else 1
        delay = self.settings.backoff
        for attempt in range(1, attempts + 1):
            try:
                return self.effects.pve(self.transport, method, path, params)
            except PveApiError as exc:
                if attempt >= attempts or not exc.retriable:
                    raise
                from tasks.runtime.console import progress

                first = exc.message.splitlines()[0]
                progress(f"  {first}; retry {attempt}/{attempts - 1} in {delay:g}s")
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")  # pragma: no cover

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
