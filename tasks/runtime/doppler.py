"""Fetching Doppler's secrets: the official CLI when installed, else its REST API.

Not doppler-sdk: it drops every real secret from `secrets.download()` and has no timeouts
(docs/decisions.md). Values are kept in memory only. Both ways go through the effects seam (a
read): the CLI as a local command that gets the token in its environment, the REST API over
https (plain http only to a loopback address, for a local stand-in).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tasks.runtime.errors import ExternalError
from tasks.runtime.secrets import MASKER

if TYPE_CHECKING:
    from tasks.runtime.seam import Effects

log = logging.getLogger("homelab.doppler")

DEFAULT_API_HOST = "https://api.doppler.com"
DOWNLOAD_PATH = "/v3/configs/config/secrets/download"
HINT = "check `doppler login` or DOPPLER_TOKEN, DOPPLER_PROJECT and DOPPLER_CONFIG; or run with DOPPLER=0"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
ATTEMPTS = 3


class DopplerError(ExternalError):
    def __init__(self, message: str):
        super().__init__(message, hint=HINT)


def fetch_secrets(effects: Effects, env: Mapping[str, str]) -> dict[str, str]:
    """Download the configured Doppler config as a flat name -> value map."""
    cli = shutil.which("doppler", path=env.get("PATH"))
    values = _via_cli(effects, cli, env) if cli else _via_rest(effects, env)
    MASKER.add_all(v for k, v in values.items() if not k.startswith("DOPPLER_"))
    return values


def _check_payload(data: object, source: str) -> dict[str, str]:
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise DopplerError(
            f"Doppler {source} returned something other than a JSON object of secrets"
        )
    return {k: "" if v is None else str(v) for k, v in data.items()}


def _via_cli(effects: Effects, cli: str, env: Mapping[str, str]) -> dict[str, str]:
    argv = [cli, "secrets", "download", "--no-file", "--format", "json"]
    for flag, name in (("--project", "DOPPLER_PROJECT"), ("--config", "DOPPLER_CONFIG")):
        if env.get(name):
            argv += [flag, env[name]]
    log.debug("doppler: %s", " ".join(argv))
    result = effects.command(
        argv,
        mutates=False,
        env=dict(env),
        inherit_env=False,  # the env is still being resolved: exactly what lies below Doppler
        timeout=READ_TIMEOUT * 2,
        check=False,
        what="doppler secrets download",
    )
    if result.failed:
        # The CLI prints notices and errors on stderr; its last line says what went wrong.
        last = next((ln for ln in reversed(result.stderr.splitlines()) if ln.strip()), "no message")
        raise DopplerError(
            f"the doppler CLI failed (exit {result.exited}): {MASKER.mask(last.strip())}"
        )
    try:
        return _check_payload(json.loads(result.stdout), "CLI")
    except json.JSONDecodeError:
        raise DopplerError("the doppler CLI printed something that is not JSON on stdout") from None


def _via_rest(effects: Effects, env: Mapping[str, str]) -> dict[str, str]:
    from tasks.runtime.seam.http import HttpUnreachable

    token = env.get("DOPPLER_TOKEN", "")
    if not token:
        raise DopplerError(
            "Doppler injection is on, but the doppler CLI is not installed and DOPPLER_TOKEN is not set"
        )
    MASKER.add(token)
    host = (env.get("DOPPLER_API_HOST") or DEFAULT_API_HOST).rstrip("/")
    params = {"format": "json"}
    for key, name in (("project", "DOPPLER_PROJECT"), ("config", "DOPPLER_CONFIG")):
        if env.get(name):
            params[key] = env[name]
    url = host + DOWNLOAD_PATH
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    last_problem = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            resp = effects.http(
                "GET",
                url,
                credential="DOPPLER_API_HOST",
                params=params,
                headers=headers,
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
        except HttpUnreachable as exc:
            if exc.why == "tls":
                raise DopplerError(f"TLS verification failed for {host}") from None
            last_problem = f"cannot reach {host} ({exc.why})"
            if exc.why in ("refused", "dns"):
                break  # retrying cannot help: say so now
        else:
            assert resp is not None  # a read is never withheld
            if resp.status in (401, 403):
                raise DopplerError(
                    f"Doppler rejected the token (HTTP {resp.status}): {_api_message(resp)}"
                )
            if resp.status >= 500:
                last_problem = f"Doppler answered HTTP {resp.status}"
            elif resp.status != 200:
                raise DopplerError(f"Doppler answered HTTP {resp.status}: {_api_message(resp)}")
            else:
                try:
                    return _check_payload(resp.json(), "API")
                except ValueError:
                    raise DopplerError(
                        "the Doppler API answered with something that is not JSON"
                    ) from None
        if attempt < ATTEMPTS:
            time.sleep(0.5 * 2 ** (attempt - 1))
    raise DopplerError(f"{last_problem} after {attempt} attempt{'s' if attempt > 1 else ''}")


def _api_message(resp) -> str:
    try:
        messages = resp.json().get("messages") or []
        text = "; ".join(str(m) for m in messages) or resp.reason
    except (ValueError, AttributeError):
        text = resp.reason or ""
    return MASKER.mask(str(text))[:200]
