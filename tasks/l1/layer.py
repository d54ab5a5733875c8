"""The L1 layer as the tasks see it: its settings, templates, artifact stores, env and Proxmox.

One `L1Layer` per task run ties the pure parts (spec, fingerprint, actions) to the adapters
(Packer, Proxmox). Nothing here prints except through the console; nothing is imported by
`inv --list`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from tasks.l1 import spec as specs
from tasks.l1.artifacts import ArtifactStore
from tasks.l1.fingerprint import Fingerprint, compute
from tasks.runtime.errors import ConfigError


class L1Layer:
    def __init__(self, run):
        self.run = run
        self.project = run.project
        self.cache_dir: Path = self.project.work / "l1" / "parse-cache"
        self.settings = specs.load_settings(self.project.layers / "l1", self.cache_dir)
        self._pve: Any = None
        self._expanded: dict[str, tuple[str | None, list[str]]] = {}  # the env does not change

    @property
    def env_layers(self):
        return self.run.env

    @property
    def env(self) -> dict[str, str]:
        return self.run.env.merged

    def templates(self) -> list[specs.TemplateSpec]:
        return specs.discover(self.settings, self.cache_dir)

    def template(self, name: str) -> specs.TemplateSpec:
        return specs.find_template(self.settings, name, self.cache_dir)

    def selected(self, name: str | None) -> list[specs.TemplateSpec]:
        if name:
            return [self.template(name)]
        found = self.templates()
        if not found:
            raise ConfigError(
                f"no Packer templates under {self.project.rel(self.settings.templates_dir)}",
                hint="add one folder per template holding its *.pkr.hcl files",
            )
        return found

    def store(self, name: str) -> ArtifactStore:
        return ArtifactStore(self.settings.artifacts_dir, name, self.run.effects)

    def variables(self, spec: specs.TemplateSpec) -> specs.PackerVariables:
        from tasks.runtime.secrets import MASKER

        pv = specs.packer_variables(spec, self.settings, self.env_layers, self._expanded)
        # A variable the template marks sensitive is a secret whatever its env name says.
        MASKER.add_all(pv.values[name] for name in pv.secret_names)
        return pv

    def fingerprint(self, spec: specs.TemplateSpec) -> tuple[Fingerprint, specs.PackerVariables]:
        pv = self.variables(spec)
        return compute(spec, pv.placement, self.project.root), pv

    def require_variables(self, spec: specs.TemplateSpec, pv: specs.PackerVariables) -> None:
        """Every declared variable without a default must get a value: say all that do not."""
        if not pv.missing:
            return
        parts = [
            f"{var} (set {' and '.join(names)})" if names else var
            for var, names in sorted(pv.missing.items())
        ]
        raise ConfigError(
            f"template {spec.name}: no value for Packer variable(s) {', '.join(parts)}",
            hint="set them in inventory/config.env or inventory/profiles/local.env (secrets in "
            "inventory/profiles/secrets.env or Doppler); `inv env.show` shows what is set "
            "(mapping: layers/l1/layer.yaml packer:)",
        )

    @property
    def iso_storage(self) -> str:
        return (self.env.get("PVE_STORAGE_ISO") or "").strip() or "local"

    def pve(self):
        """The Proxmox client for the resolved env (built once; ConfigError names what is missing)."""
        if self._pve is None:
            from tasks.adapters.proxmox import ProxmoxClient

            self._pve = ProxmoxClient.from_run(self.run)
        return self._pve

    @cached_property
    def ca_bundle(self) -> str | None:
        """The CA Packer should verify PVE with (PVE_CA_BUNDLE), unless TLS checks are off."""
        if self.run.settings.flag("PVE_TLS_INSECURE"):
            return None
        return (self.env.get("PVE_CA_BUNDLE") or "").strip() or None

    def log_path(self, name: str, stamp: str) -> Path:
        return self.project.work / "l1" / "logs" / f"{name}-{stamp}.log"
