"""The layered environment: every source merged in one ordered function, with provenance.

Lowest to highest precedence (the README's table is the contract):

    cluster chain: config.env < profiles/local.env < profiles/secrets.env < shell < Doppler < --profile
    host chain:    config.env < host/config/homelab.env < host/config/host.env < shell < Doppler < --host-env

`PROFILE_EXCLUSIVE=true` drops profiles/local.env and profiles/secrets.env. Doppler is on unless
`DOPPLER=0`, or `CI=true` without `FORCE_DOPPLER=1`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from tasks.runtime.envfiles import read_env_file
from tasks.runtime.errors import ConfigError
from tasks.runtime.secrets import DOPPLER_METADATA, MASKER, is_secret_name

log = logging.getLogger("homelab.env")

CHAINS = ("cluster", "host")


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


class EnvLayers:
    """The resolved environment and where each variable came from."""

    def __init__(self, chain: str, layers: list[Layer]) -> None:
        self.chain = chain
        self.layers = layers
        self.values: dict[str, str] = {}
        self.source: dict[str, str] = {}
        for layer in self.layers:
            if not layer.used:
                continue
            for key, value in layer.values.items():
                self.values[key] = value
                self.source[key] = layer.name

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)

    def flag(self, name: str, default: bool = False) -> bool:
        """A true/false switch such as FEAT_VERIFY."""
        raw = self.values.get(name)
        if raw is None or raw.strip() == "":
            return default
        return truthy(raw)

    def is_secret(self, name: str) -> bool:
        if name in DOPPLER_METADATA:
            return False
        layer = next((lyr for lyr in self.layers if lyr.name == self.source.get(name)), None)
        return is_secret_name(name) or bool(layer and layer.secret)

    def layer_names(self) -> list[str]:
        """The layers that contributed, lowest first (for plans and traces)."""
        return [layer.name for layer in self.layers if layer.used]

    def missing(self, names: list[str]) -> list[str]:
        return [n for n in names if not (self.values.get(n) or "").strip()]


def truthy(raw: str | None) -> bool:
    """How every env switch reads: 1, true, yes or on (any case) is true; anything else false."""
    return (raw or "").strip().lower() in {"1", "true", "yes", "on"}


def doppler_switch(env: Mapping[str, str]) -> tuple[bool, str]:
    """Whether Doppler injection is on for this environment, and the rule that decided."""
    if env.get("DOPPLER", "").strip() == "0":
        return False, "off: DOPPLER=0"
    if env.get("CI", "").strip().lower() == "true" and env.get("FORCE_DOPPLER", "").strip() != "1":
        return False, "off: CI=true without FORCE_DOPPLER=1"
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


def _merged(layers: list[Layer]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for layer in layers:
        if layer.used:
            merged.update(layer.values)
    return merged


def resolve_env(
    inventory: Path,
    *,
    chain: str = "cluster",
    override_file: Path | None = None,
    shell: Mapping[str, str] | None = None,
    doppler: bool = True,
    fetch_doppler=None,
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
        layers.append(layer)
        log.debug(
            "env layer %-22s %s (%d vars)",
            layer.name,
            layer.skipped or layer.origin,
            len(layer.values),
        )

    add(_file_layer("config.env", inventory / "config.env", {}))
    if chain == "cluster":
        exclusive_raw = {**_merged(layers), **shell}.get("PROFILE_EXCLUSIVE", "")
        exclusive = exclusive_raw.strip().lower() == "true"
        for name, secret in (("profiles/local.env", False), ("profiles/secrets.env", True)):
            if exclusive:
                add(
                    Layer(
                        name,
                        origin=str(inventory / name),
                        secret=secret,
                        skipped="PROFILE_EXCLUSIVE=true",
                    )
                )
            else:
                add(_file_layer(name, inventory / name, _merged(layers), secret=secret))
    else:
        for name in ("host/config/homelab.env", "host/config/host.env"):
            add(_file_layer(name, inventory / name, _merged(layers)))

    add(Layer("shell", dict(shell), origin="process environment"))
    override_name = "--profile" if chain == "cluster" else "--host-env"
    override = (
        _file_layer(override_name, override_file, _merged(layers), required=True)
        if override_file is not None
        else Layer(override_name, skipped="flag not given")
    )

    # Doppler's switch and coordinates may be set anywhere below it, or in the override file.
    control = {**_merged(layers), **override.values}
    enabled, reason = doppler_switch(control)
    if not doppler:
        add(Layer("doppler", origin="doppler", secret=True, skipped="off: --no-doppler"))
    elif not enabled:
        add(Layer("doppler", origin="doppler", secret=True, skipped=reason))
    else:
        values = fetch_doppler(control) if fetch_doppler else {}
        add(Layer("doppler", dict(values), origin="doppler", secret=True))
    add(override)

    # Every secret is masked, the ones a higher layer shadows included: they are still in a file.
    for layer in layers:
        if layer.used:
            MASKER.add_all(
                v
                for k, v in layer.values.items()
                if k not in DOPPLER_METADATA and (layer.secret or is_secret_name(k))
            )
    return EnvLayers(chain, layers)
