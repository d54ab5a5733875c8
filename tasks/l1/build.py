"""Building templates: decide, run Packer, read the VMID back, write the artifact, promote.

Each build is its own outcome: a template that cannot be read, lacks variables, needs a newer
Packer or fails to build is reported, and every other one is still decided and built; the
command's exit code says some failed. Before any Proxmox call every selected build's variables
and Packer requirements are checked, so a dry run names every variable that will have no value
even offline (it then says which checks needed the API).

The VMID of a build comes from Packer's `-machine-readable` artifact line (the manifest
post-processor's file is read as well when the template has one) and is confirmed through the API
before anything is recorded. A failed build raises before anything under the artifacts folder is
written, so the stable pointer and every earlier artifact stay as they were.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from tasks.adapters import packer
from tasks.l1.actions import BuildDecision, decide_build
from tasks.l1.artifacts import artifact_head, update_stable_wanted, utc_iso, utc_stamp
from tasks.l1.facts import VmFact, is_template, read_vms
from tasks.l1.layer import L1Layer
from tasks.l1.spec import TemplateProblem, TemplateSpec, describe_missing, missing_hint
from tasks.runtime.console import say, table, warn
from tasks.runtime.errors import ConfigError, ExternalError, HomelabError

if TYPE_CHECKING:
    from tasks.runtime.steps import Action

FAILED_HINT = (
    "nothing under the artifacts folder changed: the stable pointer and earlier artifacts "
    "are untouched"
)


def decide(
    l1: L1Layer, spec: TemplateSpec, vms: dict[int, VmFact] | None, force: bool
) -> BuildDecision:
    fp, _pv = l1.fingerprint(spec)
    return decide_build(spec.name, fp, l1.store(spec).stable(), vms, force)


def preflight(
    l1: L1Layer, spec: TemplateSpec, version: packer.PackerVersion | HomelabError | None
) -> None:
    """Everything that can be checked without Proxmox: the variables, the installed Packer.
    One ConfigError lists every problem of the build."""
    from tasks.l1.tools import packer_problems

    _fp, pv = l1.fingerprint(spec)
    problems = []
    if pv.missing:
        problems.append(
            "no value for Packer variable(s) " + ", ".join(describe_missing(spec, pv.missing))
        )
    if isinstance(version, HomelabError):
        problems.append(version.message)
    elif version is not None:
        problems += packer_problems(spec, version)
    if problems:
        hints = []
        if pv.missing:
            hints.append(missing_hint(pv.missing))
        if len(problems) > (1 if pv.missing else 0):
            hints.append(
                "install a current Packer (https://developer.hashicorp.com/packer/install)"
            )
        raise ConfigError(f"template {spec.name}: " + "; ".join(problems), hint="; ".join(hints))


def build_many(
    l1: L1Layer,
    specs: list[TemplateSpec],
    *,
    force: bool = False,
    problems: list[TemplateProblem] | None = None,
    stage_isos: bool = False,
    note=say,
) -> None:
    """Build every stale one of `specs`; one outcome each. Raises one error at the end when any
    failed (a single build's own error when only one was asked for)."""
    failures: list[tuple[str, HomelabError]] = [(p.name, p.error) for p in problems or []]
    outcomes: list[tuple[str, str]] = [(name, f"error: {e.message}") for name, e in failures]
    version: packer.PackerVersion | HomelabError | None = None
    if specs:
        try:
            version = packer.version(l1.run.effects)
        except ConfigError as exc:
            version = exc
    ready: list[TemplateSpec] = []
    for spec in specs:
        try:
            preflight(l1, spec, version)
        except HomelabError as exc:
            failures.append((spec.name, exc))
            outcomes.append((spec.name, f"error: {exc.message}"))
            continue
        for text in l1.analysis(spec).warnings:
            warn(f"{spec.name}: {text}")
        ready.append(spec)
    l1.save()
    vms, offline = l1.live_vms() if ready else (None, None)
    stale: list[tuple[TemplateSpec, BuildDecision]] = []
    for spec in ready:
        decision = decide(l1, spec, vms, force)
        if decision.build:
            stale.append((spec, decision))
        else:
            note(f"{spec.name}: already as wanted: {decision.summary}")
            outcomes.append((spec.name, "already as wanted"))
    blocked: set[str] = set()
    if stage_isos and stale:
        blocked = _stage_isos(l1, [s for s, _ in stale], failures, outcomes)
    for spec, decision in stale:
        if spec.name in blocked:
            continue
        try:
            actions = build_actions(l1, spec, vms, decision=decision)
            from tasks.runtime.steps import Plan

            l1.run.execute(Plan(f"l1.build {spec.name}", "l1", actions))
        except HomelabError as exc:
            if len(specs) == 1 and not failures:
                raise
            failures.append((spec.name, exc))
            outcomes.append((spec.name, f"failed: {exc.message.splitlines()[0]}"))
            continue
        outcomes.append((spec.name, "would build" if l1.run.dry_run else "built"))
    if offline:
        note(
            f"not checked in this dry run (needs the Proxmox API: {offline}): whether each "
            "stable template still exists on Proxmox; the decisions above follow the inputs only"
        )
    if len(outcomes) > 1 or (failures and len(specs) != 1):
        table(["template", "outcome"], sorted(outcomes))
    if failures:
        raise combined(failures, len(specs) + len(problems or []))


def combined(failures: list[tuple[str, HomelabError]], total: int) -> HomelabError:
    if len(failures) == 1 and total == 1:
        return failures[0][1]
    codes = {exc.exit_code for _, exc in failures}
    names = ", ".join(name for name, _ in failures)
    first = failures[0][1].message.splitlines()[0]
    return HomelabError(
        f"{len(failures)} of {total} template(s) failed: {names} (first: {first}); the others went ahead",
        hint="fix the causes above and run it again: up-to-date templates are skipped",
        code=codes.pop() if len(codes) == 1 else 1,
    )


def _stage_isos(l1, specs, failures, outcomes) -> set[str]:
    from tasks.l1.isos import iso_actions, warn_manual
    from tasks.runtime.steps import Plan

    actions, planned = iso_actions(l1, specs)
    warn_manual(planned)
    if actions:
        try:
            l1.run.execute(Plan("l1 ISOs", "l1", actions, nothing="ISOs: already as wanted"))
        except HomelabError as exc:
            failures.append(("ISOs", exc))
            outcomes.append(("ISOs", f"failed: {exc.message.splitlines()[0]}"))
            return {s.name for s in specs}
    blocked = planned.blocked
    for problem in planned.problems:
        if problem.kind != "manual" and problem.template in blocked:
            failures.append((problem.template, HomelabError(problem.text, code=problem.code)))
            outcomes.append((problem.template, f"not built: ISO {problem.volid}: {problem.text}"))
    return blocked


def build_actions(
    l1: L1Layer,
    spec: TemplateSpec,
    vms: dict[int, VmFact] | None,
    *,
    force: bool = False,
    decision: BuildDecision | None = None,
) -> list[Action]:
    """The steps that bring `spec` up to date: none when it already is (said out loud)."""
    from tasks.runtime.steps import Action

    fp, pv = l1.fingerprint(spec)
    l1.require_variables(spec, pv)
    store = l1.store(spec)
    stable = store.stable()
    if decision is None:
        decision = decide_build(spec.name, fp, stable, vms, force)
    if not decision.build:
        say(f"{spec.name}: already as wanted: {decision.summary}")
        return []
    say(f"{spec.name}: build: {decision.summary}")
    promote = update_stable_wanted(l1.env.get("UPDATE_STABLE"))
    skip_build = l1.run.settings.flag("SKIP_BUILD")
    workdir, cwd, target = l1.workdir(spec)
    manifest_path = cwd / spec.manifest_output if spec.manifest_output else None
    stamp = utc_stamp()
    log_path = l1.log_path(spec.name, stamp)
    state: dict[str, Any] = {}
    now = f"{stable.get('artifact', '?')} (vmid {stable.get('vmid')})" if stable else "none"
    only = [f"-only={spec.packer_name}"] if spec.several else []

    def build(sc) -> None:
        state["version"] = packer.version(l1.run.effects)
        if skip_build:
            state["run"] = _last_run(l1, spec, manifest_path)
            say(f"  SKIP_BUILD=1: reusing the VMID of Packer's last run ({state['run']['vmid']})")
            return
        values = pv.values  # expanded now: a malformed PVE_ACCESS_HOST stops here
        env = packer.packer_env(values, l1.ca_bundle)
        if spec.plugins:
            result = packer.run(l1.run.effects, ["init", target], cwd, env, log_path)
            packer.check(result, f"packer init ({spec.name})", log_path, FAILED_HINT)
        result = packer.run(l1.run.effects, ["validate", *only, target], cwd, env, log_path)
        packer.check(result, f"packer validate ({spec.name})", log_path, FAILED_HINT)
        before = (
            packer.last_run_uuid(packer.read_manifest(manifest_path)) if manifest_path else None
        )
        say(
            f"  packer build {' '.join([*only, target])} in {l1.project.rel(cwd)} (log: {l1.project.rel(log_path)})"
        )
        started = time.monotonic()
        machine = packer.MachineOutput()
        result = packer.run(
            l1.run.effects,
            ["build", "-machine-readable", "-color=false", *only, target],
            cwd,
            env,
            log_path,
            machine=machine,
        )
        packer.check(result, f"packer build ({spec.name})", log_path, FAILED_HINT)
        state["run"] = _read_back(l1, spec, machine, manifest_path, before, log_path)
        say(
            f"  packer build finished in {time.monotonic() - started:.1f}s (VMID {state['run']['vmid']})"
        )
        from tasks.runtime.files import atomic_write

        atomic_write(l1.run_record(spec.name), json.dumps(state["run"], indent=2) + "\n")

    def record(sc) -> None:
        found = state["run"]
        data = _artifact_data(
            l1, spec, found, fp, pv, state["version"].text, log_path, workdir, cwd
        )
        artifact = store.write(data)
        state["artifact"] = artifact
        say(
            f"{spec.name}: template {data['name']} (vmid {data['vmid']} on {data['node']}, storage "
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
    where = (
        f"in {folder}"
        if workdir == "folder"
        else f"{target} in {l1.project.rel(cwd)} (workdir: repo)"
    )
    how = (
        "reuse the VMID of Packer's last run (SKIP_BUILD=1), without building"
        if skip_build
        else f"packer {', '.join(steps)} {where}" + (f" ({only[0]})" if only else "")
    )
    sources = [f"{var} <- {pv.sources[var]}" for var in sorted(pv.sources)]
    return [
        Action(f"build {spec.name}", how, build, details=[f"variables: {', '.join(sources)}"]),
        Action(
            f"record {spec.name}",
            f"read the template back; artifact under {l1.project.rel(store.folder)}",
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


def _read_back(l1, spec, machine, manifest_path, before, log_path) -> dict[str, Any]:
    """The VMID Packer built, from its machine-readable artifact (or the manifest's custom_data)."""
    targets = list(machine.artifacts)
    name = spec.packer_name if spec.packer_name in machine.artifacts else None
    if name is None and len(targets) == 1:
        name = targets[0]
    artifact = (machine.artifacts.get(name) or [{}])[0] if name else {}
    vmid = machine.vmid(name) if name else None
    found: dict[str, Any] = {
        "packer_build": name or spec.packer_name,
        "builder_id": artifact.get("builder-id"),
        "artifact_id": artifact.get("id"),
        "artifact": artifact.get("string"),
        "at": utc_iso(),
    }
    if manifest_path is not None:
        manifest = packer.read_manifest(manifest_path) or {}
        run_uuid = packer.last_run_uuid(manifest)
        if run_uuid and run_uuid != before:
            found["packer_run_uuid"] = run_uuid
            found["manifest"] = l1.project.rel(manifest_path)
            builds = packer.builds_of_run(manifest, run_uuid)
            if vmid is None and len(builds) == 1:
                vmid = packer.vmid_of(builds[0])
    if vmid is None:
        raise ExternalError(
            f"template {spec.name}: Packer's build {found['packer_build']} reported artifact "
            f"{found['artifact_id']!r} ({found['builder_id'] or 'no builder id'}), which is no "
            "Proxmox VMID",
            hint="a proxmox-iso or proxmox-clone build reports its VMID; another builder (a null "
            "build preparing a VM over SSH) must name it in a manifest post-processor's "
            f"custom_data.vmid; Packer's output: {log_path}",
        )
    found["vmid"] = vmid
    return found


def _last_run(l1, spec, manifest_path) -> dict[str, Any]:
    path = l1.run_record(spec.name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("vmid"), int):
            return data
    except (OSError, ValueError):
        pass
    manifest = packer.read_manifest(manifest_path) if manifest_path else None
    run_uuid = packer.last_run_uuid(manifest)
    if manifest and run_uuid:
        builds = packer.builds_of_run(manifest, run_uuid)
        vmid = packer.vmid_of(builds[0]) if len(builds) == 1 else None
        if vmid is not None:
            return {
                "vmid": vmid,
                "packer_run_uuid": run_uuid,
                "manifest": l1.project.rel(manifest_path),
            }
    raise ConfigError(
        f"SKIP_BUILD=1 but no earlier Packer run of {spec.name} is recorded "
        f"({l1.project.rel(path)})",
        hint="unset SKIP_BUILD to build",
    )


def _artifact_data(
    l1, spec, found, fp, pv, packer_version, log_path, workdir, cwd
) -> dict[str, Any]:
    """Read the built template back from Proxmox; the artifact manifest's content."""
    pve = l1.pve()
    vmid = int(found["vmid"])
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
    analysis = l1.analysis(spec, isos=True)
    return {
        **artifact_head(spec, vm, vmid, config, pve.storage, fp),
        "packer_version": packer_version,
        "packer_run_uuid": found.get("packer_run_uuid"),
        "packer_artifact": {
            k: found.get(k) for k in ("builder_id", "artifact_id", "artifact") if found.get(k)
        },
        "manifest": found.get("manifest"),
        "builder": spec.source.type,
        "workdir": workdir,
        "cwd": l1.project.rel(cwd),
        "isos": [ref.volid(l1.iso_storage) for ref in analysis.isos],
        "log": l1.project.rel(log_path),
    }
