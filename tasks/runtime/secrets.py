"""Which values are secret, and masking them out of every string the runner emits."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
# Name segments (split on "_") that mark a variable as secret.
SECRET_WORDS = frozenset(
    {
        "TOKEN",
        "SECRET",
        "SECRETS",
        "PASSWORD",
        "PASSWD",
        "PASS",
        "KEY",
        "PAT",
        "PASSPHRASE",
        "CREDENTIALS",
    }
)
# A last segment that names a reference to a secret rather than the secret itself
# (PM_TOKEN_ID, SSH_KEY_FILE, GITOPS_REPO_USERNAME).
REFERENCE_SUFFIXES = frozenset(
    {
        "ID",
        "PATH",
        "FILE",
        "USER",
        "USERNAME",
        "NAME",
        "URL",
        "HOST",
        "ADDR",
        "MOUNT",
        "DIR",
        "TYPE",
    }
)
# Doppler adds these to every download; they are coordinates, not secrets.
DOPPLER_METADATA = frozenset({"DOPPLER_PROJECT", "DOPPLER_CONFIG", "DOPPLER_ENVIRONMENT"})
# Shorter values would mask ordinary words and numbers all over the output.
MIN_MASKED_LENGTH = 4


def where_to_set(names: list[str] | tuple[str, ...], chain: str = "cluster") -> str:
    """Where a missing variable belongs: secrets in Doppler or the chain's git-ignored secrets
    file, never in a committed env file; the rest in the chain's committed file (shared) or
    (cluster chain) profiles/local.env (this machine)."""
    secret = [n for n in names if is_secret_name(n)]
    plain = [n for n in names if n not in secret]
    host = chain == "host"
    secrets_file = "inventory/host/config/host.env" if host else "inventory/profiles/secrets.env"
    committed = "inventory/host/config/homelab.env" if host else "inventory/config.env"
    parts = []
    if secret:
        parts.append(
            f"put {', '.join(secret)} in Doppler or {secrets_file} "
            f"(git-ignored; never in {committed.rsplit('/', 1)[-1]})"
        )
    if plain:
        parts.append(
            f"set {', '.join(plain)} in {committed} (shared)"
            + ("" if host else " or inventory/profiles/local.env (this machine)")
        )
    return "; ".join(parts)


def is_secret_name(name: str) -> bool:
    """True when the variable's name says it holds a secret (PM_TOKEN_SECRET, GITOPS_REPO_PAT)."""
    parts = [p for p in name.upper().split("_") if p]
    if not parts or name.upper() in DOPPLER_METADATA:
        return False
    from tasks.runtime.settings import SETTINGS

    if name.upper() in SETTINGS:  # the runner's typed switches and numbers hold no secrets
        return False
    if len(parts) > 1 and parts[-1] in REFERENCE_SUFFIXES:
        return False
    return any(p in SECRET_WORDS for p in parts)


# `scheme://user:PASSWORD@host`: a password in a URL's userinfo, whatever the variable is called.
USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)(@)")
# A secret folded across two lines is caught when at least this much of it is on each line.
SPLIT_PART = 4


def encoded_forms(value: str) -> set[str]:
    """How a child may print a secret: as is, base64 (also of `value\n`, as `echo | base64`
    prints it), URL-encoded, or JSON-escaped."""
    import base64
    import json
    from urllib.parse import quote, quote_plus

    raw = value.encode()
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    for data in (raw, raw + b"\n"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(data).decode()
            forms |= {text, text.rstrip("=")}
    return forms


class Masker:
    """Replaces every registered secret value (and its encoded forms) with `***` in any text."""

    def __init__(self) -> None:
        self._values: set[str] = set()  # the secrets as given (for split-line detection)
        self._forms: set[str] = set()  # every form that is masked
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str | None) -> None:
        if not value:
            return
        candidates = {value.strip()}
        # A multi-line secret (a private key) is masked line by line as well, since tools
        # print such values one line at a time.
        candidates.update(line.strip() for line in value.splitlines())
        fresh = {v for v in candidates if len(v) >= MIN_MASKED_LENGTH} - self._values
        if fresh:
            self._values |= fresh
            for v in fresh:
                self._forms |= {f for f in encoded_forms(v) if len(f) >= MIN_MASKED_LENGTH}
            self._pattern = None

    def add_all(self, values: Iterable[str]) -> None:
        for value in values:
            self.add(value)

    def __contains__(self, value: str) -> bool:
        return value.strip() in self._values

    def contains_secret(self, text: str) -> bool:
        pattern = self._compiled()
        return bool((pattern and pattern.search(text)) or USERINFO.search(text))

    def mask(self, text: str) -> str:
        if not text:
            return text
        pattern = self._compiled()
        if pattern is not None:
            text = pattern.sub(MASK, text)
        if "://" in text:
            text = USERINFO.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
        return text

    def mask_split(self, first: str, second: str) -> tuple[str, str]:
        """Mask a secret folded across two consecutive lines (its parts at the end of `first`
        and the start of `second`); each line should already be masked whole."""
        head, tail = first.rstrip("\r\n"), second.lstrip()
        ending = first[len(head) :]
        for secret in sorted(self._values, key=len, reverse=True):
            if len(secret) < 2 * SPLIT_PART:
                continue
            for cut in range(SPLIT_PART, len(secret) - SPLIT_PART + 1):
                left, right = secret[:cut], secret[cut:]
                if head.endswith(left) and tail.startswith(right):
                    head = head[: -len(left)] + MASK
                    lead = second[: len(second) - len(tail)]
                    second = lead + MASK + tail[len(right) :]
                    tail = second.lstrip()
                    break
        return head + ending, second

    def _compiled(self) -> re.Pattern[str] | None:
        if self._pattern is None and self._forms:
            ordered = sorted(self._forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
        return self._pattern


class LineMasker:
    """Masks a stream line by line, one line behind, so a secret folded across two lines is
    caught in both parts. `feed` returns the lines ready to show; `close` the last one."""

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self._held: str | None = None

    def feed(self, line: str) -> list[str]:
        line = self.masker.mask(line)
        if self._held is None:
            self._held = line
            return []
        ready, self._held = self.masker.mask_split(self._held, line)
        return [ready]

    def close(self) -> list[str]:
        held, self._held = self._held, None
        return [held] if held is not None else []


# One masker per process: secrets are process-wide, and every output path consults it.
MASKER = Masker()


def mask(text: str) -> str:
    """Mask every known secret in `text`."""
    return MASKER.mask(text)


def mask_data(value: Any) -> Any:
    """`value` with every string inside it masked, however deep in dicts, lists and tuples."""
    if isinstance(value, str):
        return MASKER.mask(value)
    if isinstance(value, dict):
        return {k: mask_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_data(v) for v in value]
    return value


def release_held_logs() -> None:
    """The runner's `inv --debug` holds log records until the secrets are known (homelab_cli.py):
    now they are, so the held records go out, masked."""
    import logging

    for handler in logging.getLogger().handlers:
        release = getattr(handler, "release_held", None)
        if callable(release):
            release()
