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


class Masker:
    """Replaces every registered secret value with `***` in any text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
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
            self._pattern = None

    def add_all(self, values: Iterable[str]) -> None:
        for value in values:
            self.add(value)

    def __contains__(self, value: str) -> bool:
        return value.strip() in self._values

    def contains_secret(self, text: str) -> bool:
        pattern = self._compiled()
        return bool(pattern and pattern.search(text))

    def mask(self, text: str) -> str:
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def _compiled(self) -> re.Pattern[str] | None:
        if self._pattern is None and self._values:
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
        return self._pattern


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
