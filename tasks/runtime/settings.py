"""Typed settings: every switch and number the runner reads from the env, parsed one way.

Booleans accept 1/0, true/false, yes/no, on/off in any case; durations are seconds (`90`, `1.5`)
or a number with a unit (`90s`, `2m`, `1h30m`); integers are whole numbers. A value that does not
parse is an error naming the variable, the layer it came from and what is accepted, and every bad
value is reported at once, before anything runs (`Settings.check`). Reading a setting never
guesses: `FEAT_VERIFY=ture` is an error, not "off".

`UPDATE_STABLE` keeps the seed's own rule (only `yes` promotes); `CI` is set by CI systems and is
read leniently (a true word means true, anything else false).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.runtime.envlayers import EnvLayers

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
BOOL_ACCEPTED = "1/0, true/false, yes/no or on/off"
DURATION_ACCEPTED = "seconds: a number like 15 or 1.5, or with a unit like 90s, 2m, 1h30m"
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


class Setting:
    """One typed variable: `kind` is bool, int, duration or choice."""

    __slots__ = ("name", "kind", "minimum", "maximum", "choices")

    def __init__(
        self,
        name: str,
        kind: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        choices: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.kind = kind
        self.minimum = minimum
        self.maximum = maximum
        self.choices = choices

    def accepted(self) -> str:
        if self.kind == "bool":
            return BOOL_ACCEPTED
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        text = DURATION_ACCEPTED if self.kind == "duration" else "a whole number"
        bounds = []
        if self.minimum is not None:
            bounds.append(f"at least {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"at most {self.maximum:g}")
        return text + (f" ({' and '.join(bounds)})" if bounds else "")

    def parse(self, raw: str) -> object | None:
        """The typed value of `raw`, or None when it does not parse or is out of bounds."""
        text = raw.strip()
        value: object | None
        if self.kind == "bool":
            return parse_bool(text)
        if self.kind == "choice":
            lowered = text.lower()
            return lowered if lowered in self.choices else None
        value = parse_duration(text) if self.kind == "duration" else parse_int(text)
        if value is None:
            return None
        number = float(value)  # type: ignore[arg-type]
        if self.minimum is not None and number < self.minimum:
            return None
        if self.maximum is not None and number > self.maximum:
            return None
        return value


def _s(name: str, kind: str, **bounds: float) -> tuple[str, Setting]:
    return name, Setting(name, kind, **bounds)  # type: ignore[arg-type]


# Every switch and number the runner reads. FEAT_* are all booleans (see SETTING_PREFIXES).
SETTINGS: dict[str, Setting] = dict(
    [
        _s("DOPPLER", "bool"),
        _s("FORCE_DOPPLER", "bool"),
        _s("DOPPLER_FALLBACK", "bool"),
        _s("DOPPLER_FALLBACK_MAX_AGE", "duration", minimum=0),
        _s("PROFILE_EXCLUSIVE", "bool"),
        _s("PVE_TLS_INSECURE", "bool"),
        _s("PVE_TIMEOUT", "duration", minimum=0.1, maximum=3600),
        _s("PVE_RETRIES", "int", minimum=1, maximum=100),
        _s("PVE_RETRY_BACKOFF", "duration", minimum=0, maximum=60),
        _s("SKIP_BUILD", "bool"),
        _s("L3_WAIT", "duration", minimum=0, maximum=86400),
        _s("L4_WAIT", "duration", minimum=0, maximum=86400),
        _s("SSH_CONNECT_TIMEOUT", "duration", minimum=0.1, maximum=3600),
        _s("DDNS_TTL", "int", minimum=1, maximum=86400),
        _s("DDNS_PROXIED", "bool"),
        _s("RUNS_KEEP", "int", minimum=1, maximum=100000),  # the run history kept (inv runs)
        _s("PLAN_MAX_AGE", "duration", minimum=0),  # a saved plan older is refused (up --plan)
    ]
)
SETTINGS["SSH_HOST_KEY_CHECKING"] = Setting(
    "SSH_HOST_KEY_CHECKING", "choice", choices=("strict", "accept-new")
)
SETTING_PREFIXES = {"FEAT_": "bool"}


def parse_bool(raw: str | None) -> bool | None:
    text = (raw or "").strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    return None


def parse_int(raw: str) -> int | None:
    text = raw.strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        return None
    return int(text)


def parse_duration(raw: str) -> float | None:
    """Seconds from `15`, `1.5`, `90s`, `2m`, `1h30m`; None for anything else (nan, inf, 1e400)."""
    text = raw.strip().lower()
    if not text:
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        value = float(text)
    else:
        found = _DURATION.match(text)
        if found is None or not any(found.groups()):
            return None
        hours, minutes, seconds = (float(g) if g else 0.0 for g in found.groups())
        value = hours * 3600 + minutes * 60 + seconds
    return value if math.isfinite(value) else None


def setting_for(name: str) -> Setting | None:
    found = SETTINGS.get(name)
    if found is not None:
        return found
    for prefix, kind in SETTING_PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return Setting(name, kind)
    return None


def lenient_true(raw: str | None) -> bool:
    """For variables other tools set (CI): a true word is true, anything else is false."""
    return parse_bool(raw) is True


def bad_value(name: str, raw: str, where: str, setting: Setting) -> str:
    shown = raw if len(raw) <= 40 else raw[:37] + "..."
    return f"{name}={shown!r} (from {where}): expected {setting.accepted()}"


class Settings:
    """Typed reads of the resolved env; `check()` reports every bad value at once."""

    def __init__(self, env: EnvLayers) -> None:
        self.env = env

    def problems(self) -> list[str]:
        found = []
        for name, raw in sorted(self.env.merged.items()):
            setting = setting_for(name)
            if setting is None or not raw.strip():
                continue
            if setting.parse(raw) is None:
                found.append(bad_value(name, raw, self.env.where(name), setting))
        return found

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(
                f"{len(problems)} setting(s) have values the runner cannot use:\n  "
                + "\n  ".join(problems),
                hint="fix them where they are set (`inv env.show` shows every layer); "
                "nothing was run",
            )

    def _typed(self, name: str, kind: str, default: object) -> object:
        raw = self.env.get(name)
        if raw is None or not raw.strip():
            return default
        setting = setting_for(name) or Setting(name, kind)
        value = setting.parse(raw)
        if value is None:
            raise ConfigError(bad_value(name, raw, self.env.where(name), setting))
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        return bool(self._typed(name, "bool", default))

    def integer(self, name: str, default: int) -> int:
        return int(self._typed(name, "int", default))  # type: ignore[call-overload]

    def seconds(self, name: str, default: float) -> float:
        return float(self._typed(name, "duration", default))  # type: ignore[arg-type]

    def choice(self, name: str, default: str) -> str:
        return str(self._typed(name, "choice", default))


def switch(values: Mapping[str, str], name: str, where: Mapping[str, str], default: bool) -> bool:
    """A control switch read while the env is still being resolved (DOPPLER, PROFILE_EXCLUSIVE)."""
    raw = values.get(name)
    if raw is None or not raw.strip():
        return default
    value = parse_bool(raw)
    if value is None:
        setting = setting_for(name) or Setting(name, "bool")
        raise ConfigError(
            bad_value(name, raw, where.get(name, "the environment"), setting),
            hint="fix it where it is set; nothing was run",
        )
    return value


def flag_seconds(flag: str, raw: object, default: float) -> float:
    """A duration given on the command line (`--wait 90`, `--timeout 2m`); None: `default`."""
    if raw is None or raw == "":
        return default
    value = parse_duration(str(raw))
    if value is None:
        raise ConfigError(f"{flag} {raw!r}: expected {DURATION_ACCEPTED}")
    return value
