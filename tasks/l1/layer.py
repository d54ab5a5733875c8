"""The L1 layer as the tasks see it: its settings, templates, artifact stores, env and Proxmox.

One `L1Layer` per task run ties the pure parts (spec, inputs, fingerprint, actions) to the
adapters (Packer, Proxmox). Nothing here prints except through the console; nothing is imported by
`inv --list`.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.l1 import spec as specs
from tasks.l1.artifacts import ArtifactStore
from tasks.l1.fingerprint import Fingerprint, compute
from tasks.runtime.errors import ConfigError, HomelabError

if TYPE_CHECKING:
    from tasks.l1.facts import VmFact
    from tasks.l1.inputs import Analysis


class L1Layer:
    def __init__(self, run):
        self.run = run
        self.project = run.project
        _ = run.env  # resolved (and its settings checked) once, before any per-template error
        self.cache_dir: Path = self.project.work / "l1" / "parse-cache"
        self.settings = specs.load_settings(self.project.layers / "l1", self.cache_dir)
        self._pve: Any = None
        self._expanded: dict[str, Any] = {}  # the env does not change: mapping values memoised
        self._discovery: specs.Discovery | None = None
        self._variables: dict[str, specs.PackerVariables] = {}
        self._analyses: dict[tuple[str, bool], Analysis] = {}
        self._listings: dict[str, list[str]] = {}
        self._checkout = specs.checkout_root(self.settings.templates_dir)
        from tasks.l1.digests import DigestCache

        self.digests = DigestCache(self.project.work / "l1" / "digests.json")

    @property
    def env_layers(self):
        return self.run.env

    @property
    def env(self) -> dict[str, str]:
        return self.run.env.merged

    # ------------------------------------------------------------------ templates

    def discover(self) -> specs.Discovery:
        if self._discovery is None:
            self._discovery = specs.discover(self.settings, self.cache_dir, self.digests)
        return self._discovery

    def templates(self) -> list[specs.TemplateSpec]:
        return self.discover().templates

    def select(self, name: str, *, several: bool = False) -> list[specs.TemplateSpec]:
        return specs.select(
            self.settings, name, self.cache_dir, several=several, digests=self.digests
        )

    def template(self, name: str) -> specs.TemplateSpec:
        return self.select(name)[0]

    def selected(self, name: str | None) -> list[specs.TemplateSpec]:
        if name:
            return self.select(name, several=True)
        found = self.discover()
        if not found.templates and not found.problems:
            raise ConfigError(
                f"no Packer templates under {self.project.rel(self.settings.templates_dir)}",
                hint="add one folder per template holding its *.pkr.hcl files",
            )
        return found.templates

    def names(self) -> list[str]:
        return [t.name for t in self.templates()]

    def store(self, spec: specs.TemplateSpec | str) -> ArtifactStore:
        name = spec if isinstance(spec, str) else spec.name
        return ArtifactStore(self.settings.artifacts_dir, name, self.run.effects)

    # ------------------------------------------------------------------ variables and inputs

    def variables(self, spec: specs.TemplateSpec) -> specs.PackerVariables:
        pv = self._variables.get(spec.name)
        if pv is None:
            pv = specs.packer_variables(spec, self.settings, self.env_layers, self._expanded)
            self._variables[spec.name] = pv
        return pv

    def workdir(self, spec: specs.TemplateSpec) -> tuple[str, Path, str]:
        """(workdir, Packer's working directory, the folder argument Packer gets there)."""
        workdir = self.settings.for_template(spec)[2]
        if workdir == "repo":
            return workdir, self.settings.templates_dir, spec.folder_name
        return workdir, spec.folder, "."

    def analysis(self, spec: specs.TemplateSpec, *, isos: bool = False) -> Analysis:
        """The build's inputs (and ISO references), evaluated with this run's variables."""
        from tasks.l1 import inputcache

        key = (spec.name, isos)
        found = self._analyses.get(key)
        if found is None:
            workdir, cwd, _target = self.workdir(spec)
            cwd_text = os.path.abspath(cwd)
            listing = spec.folder_spec.entries if workdir == "folder" else self._listing(cwd_text)
            checkout = str(self._checkout) if self._checkout else None
            pv = self.variables(spec)
            if not isos:
                found = inputcache.recall(
                    self.digests, spec, pv, cwd_text, workdir, checkout, listing
                )
            if found is None:
                from tasks.l1.inputs import analyse

                found = analyse(spec, pv, cwd_text, workdir, checkout, listing, self.env, isos=isos)
                inputcache.remember(self.digests, spec, pv, found, listing, checkout)
            self._analyses[key] = found
        return found

    def _listing(self, folder: str) -> list[str]:
        if folder not in self._listings:
            try:
                self._listings[folder] = os.listdir(folder)
            except OSError:
                self._listings[folder] = []
        return self._listings[folder]

    def fingerprint(self, spec: specs.TemplateSpec) -> tuple[Fingerprint, specs.PackerVariables]:
        pv = self.variables(spec)
        found = compute(
            spec, self.analysis(spec), pv.placement, self.project.root, self.digests.digest
        )
        return found, pv

    def save(self) -> None:
        """Keep what this run learnt (file digests) for the next one."""
        self.digests.save()

    def require_variables(self, spec: specs.TemplateSpec, pv: specs.PackerVariables) -> None:
        """Every declared variable must get a value (Packer refuses to start otherwise): say, at
        once, every one that will not."""
        if not pv.missing:
            return
        parts = specs.describe_missing(spec, pv.missing)
        raise ConfigError(
            f"template {spec.name}: no value for Packer variable(s) {', '.join(parts)}",
            hint=specs.missing_hint(pv.missing),
        )

    # ------------------------------------------------------------------ Proxmox

    @property
    def iso_storage(self) -> str:
        return (self.env.get("PVE_STORAGE_ISO") or "").strip() or "local"

    def pve(self):
        """The Proxmox client for the resolved env (built once; ConfigError names what is missing)."""
        if self._pve is None:
            from tasks.adapters.proxmox import ProxmoxClient

            self._pve = ProxmoxClient.from_run(self.run)
        return self._pve

    def live_vms(self) -> tuple[dict[int, VmFact] | None, str | None]:
        """Proxmox's VMs, or in a dry run that cannot reach Proxmox (None, why): a dry run works
        offline and says which checks needed the API. A real run raises."""
        from tasks.l1.facts import read_vms

        try:
            return read_vms(self.pve()), None
        except HomelabError as exc:
            if not self.run.dry_run:
                raise
            return None, exc.message.splitlines()[0]

    @cached_property
    def ca_bundle(self) -> str | None:
        """The CA Packer should verify PVE with (PVE_CA_BUNDLE), unless TLS checks are off."""
        if self.run.settings.flag("PVE_TLS_INSECURE"):
            return None
        return (self.env.get("PVE_CA_BUNDLE") or "").strip() or None

    def log_path(self, name: str, stamp: str) -> Path:
        return self.project.work / "l1" / "logs" / f"{name.replace('/', '--')}-{stamp}.log"

    def run_record(self, name: str) -> Path:
        """Where the last Packer run of a build is recorded (for SKIP_BUILD=1)."""
        return self.project.work / "l1" / "runs" / f"{name.replace('/', '--')}.json"
