"""Building one template: decide, run Packer, read the VMID back, write the artifact, promote.

A failed build raises before anything under the artifacts folder is written, so the stable
pointer and every earlier artifact stay as they were.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tasks.adapters import packer
from tasks.l1.actions import BuildDecision, decide_build
from tasks.l1.artifacts import update_stable_wanted, utc_iso, utc_stamp
from tasks.l1.facts import VmFact, disk_storage, is_template, read_vms
from tasks.l1.layer import L1Layer
from tasks.l1.spec import TemplateSpec, iso_refs
from tasks.runtime.console import say
from tasks.runtime.errors import ConfigError, ExternalError

if TYPE_CHECKING:
    from tasks.runtime.steps import Action


def decide(
    l1: L1Layer, spec: TemplateSpec, vms: dict[int, VmFact] | None, force: bool
) -> BuildDecision:
    fp, _pv = l1.fingerprint(spec)
    return decide_build(spec.name, fp, l1.store(spec.name).stable(), vms, force)


def build_actions(
    l1: L1Layer, spec: TemplateSpec, vms: dict[int, VmFact] | None, *, force: bool = False
) -> list[Action]:
    """The steps that bring `spec` up to date: none when it already is (said out loud)."""
    from tasks.runtime.steps import Action

    fp, pv = l1.fingerprint(spec)
    l1.require_variables(spec, pv)
    store = l1.store(spec.name)
    stable = store.stable()
    decision = decide_build(spec.name, fp, stable, vms, force)
    if not decision.build:
        say(f"{spec.name}: already as wanted: {decision.summary}")
        return []
    say(f"{spec.name}: build: {decision.summary}")
    if spec.manifest_output is None:
        raise ConfigError(
            f"template {spec.name}: no `manifest` post-processor, so the built VMID cannot be read back",
            hint='add to its build block: post-processor "manifest" { output = "packer-manifest.json" }',
        )
    promote = update_stable_wanted(l1.env.get("UPDATE_STABLE"))
    skip_build = l1.run.settings.flag("SKIP_BUILD")
    manifest_path = spec.folder / spec.manifest_output
    stamp = utc_stamp()
    log_path = l1.log_path(spec.name, stamp)
    state: dict[str, Any] = {}
    now = f"{stable.get('artifact', '?')} (vmid {stable.get('vmid')})" if stable else "none"

    def build(sc) -> None:
        state["version"] = packer.version(l1.run.effects)
        if skip_build:
            run_uuid = packer.last_run_uuid(packer.read_manifest(manifest_path))
            if run_uuid is None:
                raise ConfigError(
                    f"SKIP_BUILD=1 but {l1.project.rel(manifest_path)} records no earlier Packer run",
                    hint="unset SKIP_BUILD to build",
                )
            say(f"  SKIP_BUILD=1: reusing Packer's last run {run_uuid}")
        else:
            run_uuid = _run_packer(l1, spec, pv.values, state["version"], manifest_path, log_path)
        state["run_uuid"] = run_uuid

    def record(sc) -> None:
        run_uuid = state["run_uuid"]
        manifest = packer.read_manifest(manifest_path) or {}
        builds = packer.builds_of_run(manifest, run_uuid)
        if len(builds) != 1:
            raise ExternalError(
                f"template {spec.name}: Packer's run {run_uuid} recorded {len(builds)} builds in "
                f"{l1.project.rel(manifest_path)}; one template folder must build one Proxmox template",
                hint="keep one source in the template's build block",
            )
        vmid = packer.vmid_of(builds[0])
        if vmid is None:
            raise ExternalError(
                f"template {spec.name}: Packer's manifest names no VMID (artifact_id "
                f"{builds[0].get('artifact_id')!r})",
                hint="a non-Proxmox builder must put the VMID in the manifest's custom_data.vmid",
            )
        data = _artifact_data(l1, spec, vmid, fp, pv, state["version"].text, run_uuid, log_path)
        artifact = store.write(data)
        state["artifact"] = artifact
        say(
            f"{spec.name}: template {data['name']} (vmid {vmid} on {data['node']}, storage "
            f"{data['storage']}); artifact {l1.project.rel(artifact.path)}"
        )
        if not promote:
            say(
                f"{spec.name}: stable left at {now}: UPDATE_STABLE={l1.env.get('UPDATE_STABLE')}; "
                f"promote with `inv l1.promote {spec.name} --artifact {artifact.path.stem}`"
            )

    def promote_step(sc) -> None:
        store.promote(state["artifact"])
        say(f"{spec.name}: stable -> {state['artifact'].file} (UPDATE_STABLE=yes)")

    steps = ["init"] if spec.plugins else []
    steps += ["validate", "build"]
    folder = l1.project.rel(spec.folder)
    how = (
        "reuse the VMID of Packer's last run (SKIP_BUILD=1), without building"
        if skip_build
        else f"packer {', '.join(steps)} in {folder}"
    )
    return [
        Action(f"build {spec.name}", how, build),
        Action(
            f"record {spec.name}",
            f"read the template back from Proxmox; write an artifact under {l1.project.rel(store.folder)}",
            record,
        ),
        Action(
            f"promote {spec.name}",
            "point stable.json at the new artifact",
            promote_step,
            included=promote,
            reason="" if promote else f"UPDATE_STABLE={l1.env.get('UPDATE_STABLE')} is not yes",
        ),
    ]


def _run_packer(l1, spec, values, version, manifest_path, log_path) -> str:
    env = packer.packer_env(values, l1.ca_bundle)
    failed_hint = (
        "nothing under the artifacts folder changed: the stable pointer and earlier artifacts "
        "are untouched"
    )
    if spec.plugins:
        if not version.has_init:
            raise ConfigError(
                f"template {spec.name} declares required_plugins "
                f"({', '.join(sorted(spec.plugins))}), which needs Packer 1.7 or later "
                f"for `packer init`; this machine has {version.text}",
                hint="install a current Packer from HashiCorp's releases",
            )
        result = packer.run(l1.run.effects, ["init", "."], spec.folder, env, log_path)
        packer.check(result, f"packer init ({spec.name})", log_path, failed_hint)
    result = packer.run(l1.run.effects, ["validate", "."], spec.folder, env, log_path)
    packer.check(result, f"packer validate ({spec.name})", log_path, failed_hint)
    before = packer.last_run_uuid(packer.read_manifest(manifest_path))
    say(f"  packer build {l1.project.rel(spec.folder)} (log: {l1.project.rel(log_path)})")
    started = time.monotonic()
    result = packer.run(l1.run.effects, ["build", "-color=false", "."], spec.folder, env, log_path)
    packer.check(result, f"packer build ({spec.name})", log_path, failed_hint)
    run_uuid = packer.last_run_uuid(packer.read_manifest(manifest_path))
    if run_uuid is None or run_uuid == before:
        raise ExternalError(
            f"template {spec.name}: Packer finished but {l1.project.rel(manifest_path)} records "
            "no new run, so the VMID it built is unknown",
            hint=f"check the manifest post-processor's output path; Packer's output: {log_path}",
        )
    say(f"  packer build finished in {time.monotonic() - started:.1f}s (run {run_uuid})")
    return run_uuid


def _artifact_data(l1, spec, vmid, fp, pv, packer_version, run_uuid, log_path) -> dict[str, Any]:
    """Read the built template back from Proxmox; the artifact manifest's content."""
    pve = l1.pve()
    vm = read_vms(pve).get(vmid)
    if vm is None:
        raise ExternalError(
            f"template {spec.name}: Packer reported VMID {vmid}, but Proxmox has no such VM",
            hint="check the Proxmox task log; nothing was recorded",
        )
    config = pve.vm_config(vmid, vm.node)
    if not is_template(config):
        raise ExternalError(
            f"template {spec.name}: VM {vmid} on {vm.node} is not a template",
            hint="Packer's proxmox builders convert the VM at the end of a build; check its log",
        )
    return {
        "name": str(config.get("name") or vm.name),
        "template": spec.name,
        "node": vm.node,
        "vmid": vmid,
        "storage": disk_storage(config) or pve.storage,
        "created_at": utc_iso(),
        "description": str(config.get("description") or "").strip(),
        "fingerprint": fp.value,
        "inputs": fp.inputs,
        "packer_version": packer_version,
        "packer_run_uuid": run_uuid,
        "builder": ", ".join(sorted(spec.builders)),
        "isos": [ref.volid(l1.iso_storage) for ref in iso_refs(spec, pv.values)],
        "log": l1.project.rel(log_path),
    }
