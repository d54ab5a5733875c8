"""The layered environment: every source merged in one ordered function, with provenance.

Lowest to highest precedence (the README's table is the contract):

    cluster chain: config.env < profiles/local.env < profiles/secrets.env < shell < Doppler < --profile
    host chain:    config.env < host/config/homelab.env < host/config/host.env < shell < Doppler < --host-env

`PROFILE_EXCLUSIVE` (a boolean) drops profiles/local.env and profiles/secrets.env. Doppler is on
unless `DOPPLER` is false, or `CI` is true without `FORCE_DOPPLER` true. Each layer's secrets are
registered with the masker the moment the layer is read, so an error raised while a later layer
is being resolved is already masked.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tasks.runtime.envfiles import read_env_file
from tasks.runtime.errors import ConfigError
from tasks.runtime.secrets import DOPPLER_METADATA, MASKER, is_secret_name
from tasks.runtime.settings import lenient_true, switch

log = logging.getLogger("homelab.env")

CHAINS = ("cluster", "host")
OVERRIDE_FLAG = {"cluster": "--profile", "host": "--host-env"}


# Plain classes rather than dataclasses: every task that reads the env imports this module, and a
# dataclass costs about a millisecond to build at import.
class Layer:
    """One source of variables, in its place in the chain."""

    def __init__(
        self,
        name: str,
        values: dict[str, str] | None = None,
        origin: str = "",
        secret: bool = False,
        skipped: str | None = None,
    ) -> None:
        self.name = name
        self.values: dict[str, str] = values if values is not None else {}
        self.origin = origin  # a file path, "process environment" or "doppler"
        self.secret = secret  # every value from this layer is masked
        self.skipped = skipped  # why the layer contributed nothing, if it did not

    def __repr__(self) -> str:
        return f"Layer({self.name!r}, origin={self.origin!r}, skipped={self.skipped!r})"

    @property
    def used(self) -> bool:
        return self.skipped is None

    def register_secrets(self) -> None:
        """Mask every secret this layer holds (shadowed ones too: they are still in a file),
        and any password in a URL's userinfo, whatever the variable is called."""
        from tasks.runtime.secrets import MIN_MASKED_LENGTH, USERINFO

        if not self.used:
            return
        for key, value in self.values.items():
            if key not in DOPPLER_METADATA and (self.secret or is_secret_name(key)):
                if 0 < len(value.strip()) < MIN_MASKED_LENGTH:
                    _warn_short(key, self.name)
                MASKER.add(value)
            for found in USERINFO.finditer(value):
                MASKER.add(found.group(2))


_WARNED_SHORT: set[str] = set()


def _warn_short(name: str, layer: str) -> None:
    """A secret too short to mask would blank ordinary words out of every line: say so, once."""
    if name in _WARNED_SHORT:
        return
    _WARNED_SHORT.add(name)
    from tasks.runtime.console import warn

    warn(
        f"{name} (from {layer}) is a secret shorter than 4 characters: it cannot be masked in "
        "output; use a longer value"
    )


def merge(layers: list[Layer]) -> tuple[dict[str, str], dict[str, str]]:
    """(values, source layer name per variable): later layers win."""
    values: dict[str, str] = {}
    source: dict[str, str] = {}
    for layer in layers:
        if layer.used:
            for key, value in layer.values.items():
                values[key] = value
                source[key] = layer.name
    return values, source


class EnvLayers(Mapping[str, str]):
    """The resolved environment (a read-only mapping) and where each variable came from."""

    def __init__(self, chain: str, layers: list[Layer], root: Path | None = None) -> None:
        self.chain = chain
        self.layers = layers
        self.root = root
        self.merged, self.source = merge(layers)

    def __getitem__(self, name: str) -> str:
        return self.merged[name]

    def __iter__(self):
        return iter(self.merged)

    def __len__(self) -> int:
        return len(self.merged)

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self.merged.get(name, default)

    def layer(self, name: str) -> Layer | None:
        return next((lyr for lyr in self.layers if lyr.name == self.source.get(name)), None)

    def where(self, name: str) -> str:
        """Where a variable's value came from, for messages: a file, the shell, Doppler, a flag."""
        return describe_layer(self.layer(name), self.root)

    def is_secret(self, name: str) -> bool:
        if name in DOPPLER_METADATA:
            return False
        layer = self.layer(name)
        return is_secret_name(name) or bool(layer and layer.secret)

    def layer_names(self) -> list[str]:
        """The layers that contributed, lowest first (for plans and traces)."""
        return [layer.name for layer in self.layers if layer.used]

    def missing(self, names: list[str]) -> list[str]:
        return [n for n in names if not (self.merged.get(n) or "").strip()]


def describe_layer(layer: Layer | None, root: Path | None = None) -> str:
    if layer is None:
        return "the environment"
    if layer.name == "shell":
        return "the shell environment"
    if layer.name == "doppler":
        return "Doppler"
    origin = Path(layer.origin)
    if root is not None:
        with contextlib.suppress(OSError, ValueError):
            origin = origin.resolve().relative_to(root.resolve())
    prefix = f"{layer.name} " if layer.name.startswith("--") else ""
    return f"{prefix}{origin}"


def doppler_switch(values: Mapping[str, str], where: Mapping[str, str]) -> tuple[bool, str]:
    """Whether Doppler injection is on for these values, and the rule that decided."""
    if not switch(values, "DOPPLER", where, True):
        return False, f"off: DOPPLER={values.get('DOPPLER', '').strip()}"
    if lenient_true(values.get("CI")) and not switch(values, "FORCE_DOPPLER", where, False):
        return False, f"off: CI={values.get('CI', '').strip()} without FORCE_DOPPLER=1"
    return True, "on"


def _file_layer(
    name: str, path: Path, below: Mapping[str, str], *, secret: bool = False, required: bool = False
) -> Layer:
    if not path.exists():
        if required:
            raise ConfigError(
                f"{path}: env file not found", hint="check the path given to the flag"
            )
        return Layer(name, origin=str(path), secret=secret, skipped="file not present")
    values = read_env_file(path, below, secret=secret)
    return Layer(name, values, origin=str(path), secret=secret)


def resolve_env(
    inventory: Path,
    *,
    chain: str = "cluster",
    override_file: Path | None = None,
    shell: Mapping[str, str] | None = None,
    doppler: bool = True,
    fetch_doppler: Callable[[dict[str, str]], Any] | None = None,
    root: Path | None = None,
) -> EnvLayers:
    """Merge every layer of `chain` in order; `fetch_doppler(env)` returns Doppler's secrets.

    Control variables (PROFILE_EXCLUSIVE, DOPPLER, CI, FORCE_DOPPLER, DOPPLER_PROJECT/CONFIG)
    are read from the layers below Doppler, so they may live in an env file or the shell.
    """
    if chain not in CHAINS:
        raise ConfigError(f"unknown env chain {chain!r}; expected one of {', '.join(CHAINS)}")
    shell = dict(os.environ if shell is None else shell)
    layers: list[Layer] = []

    def add(layer: Layer) -> None:
        layer.register_secrets()
        layers.append(layer)
        log.debug(
            "env layer %-22s %s (%d vars)",
            layer.name,
            layer.skipped or layer.origin,
            len(layer.values),
        )

    def below() -> dict[str, str]:
        return merge(layers)[0]

    def where() -> dict[str, str]:
        sources = merge(layers)[1]
        named = {layer.name: layer for layer in layers}
        return {k: describe_layer(named[v], root) for k, v in sources.items()}

    add(_file_layer("config.env", inventory / "config.env", {}))
    if chain == "cluster":
        controls = {**below(), **shell}
        control_where = {**where(), **{k: "the shell environment" for k in shell}}
        if override_file is not None and override_file.is_file():
            # `--profile F` is the highest layer: its PROFILE_EXCLUSIVE=true makes it exclusive,
            # so it is read (for that one switch) before the files it would skip.
            early = read_env_file(override_file, controls)
            if "PROFILE_EXCLUSIVE" in early:
                controls["PROFILE_EXCLUSIVE"] = early["PROFILE_EXCLUSIVE"]
                control_where["PROFILE_EXCLUSIVE"] = f"--profile {override_file}"
        exclusive = switch(controls, "PROFILE_EXCLUSIVE", control_where, False)
        for name, secret in (("profiles/local.env", False), ("profiles/secrets.env", True)):
            if exclusive:
                skipped = "PROFILE_EXCLUSIVE=" + controls["PROFILE_EXCLUSIVE"].strip()
                add(Layer(name, origin=str(inventory / name), secret=secret, skipped=skipped))
            else:
                add(_file_layer(name, inventory / name, below(), secret=secret))
    else:
        for name in ("host/config/homelab.env", "host/config/host.env"):
            add(_file_layer(name, inventory / name, below()))
    add(Layer("shell", dict(shell), origin="process environment"))
    override_name = OVERRIDE_FLAG[chain]
    override = (
        _file_layer(override_name, override_file, below(), required=True)
        if override_file is not None
        else Layer(override_name, skipped="flag not given")
    )
    override.register_secrets()

    # Doppler's switch and coordinates may be set anywhere below it, or in the override file.
    control = {**below(), **override.values}
    control_where = {
        **where(),
        **{k: describe_layer(override, root) for k in override.values},
    }
    enabled, reason = doppler_switch(control, control_where)
    if not doppler:
        # The env's own switch, when it is off too: a task that wants Doppler can share this env.
        skipped = reason if not enabled else "off: --no-doppler"
        add(Layer("doppler", origin="doppler", secret=True, skipped=skipped))
    elif not enabled:
        add(Layer("doppler", origin="doppler", secret=True, skipped=reason))
    else:
        # A dict of secrets, or the fetcher's Fetched (values and where they came from).
        fetched = fetch_doppler(control) if fetch_doppler else {}
        values = getattr(fetched, "values", fetched)
        origin = getattr(fetched, "origin", "doppler")
        add(Layer("doppler", dict(values), origin=origin, secret=True))
    layers.append(override)
    return EnvLayers(chain, layers, root)
