"""L2 glue for the tasks: load declarations, read the cluster, print the plan, apply, destroy.

Specs (spec.py), facts (facts.py) and actions (actions.py) stay pure; this module holds the I/O
order: the Proxmox adapter, the stable manifests of L1, the inventory file for L3, and output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.l2.actions import TemplateRef, VmPlan, build_plan, execute
from tasks.l2.facts import ActualVm, ClusterView, agent_ips
from tasks.l2.journal import CloneJournal
from tasks.l2.spec import VmSpec, load_specs
from tasks.runtime.errors import ConfigError, HomelabError, RefusedError

if TYPE_CHECKING:
    from tasks.runtime.fanout import Outcome
    from tasks.runtime.run import Run

DEFAULT_OWNER_TAG = "homelab-runner"
DEFAULT_PARALLEL = 10
INVENTORY = Path("inventory") / "vms.json"  # under .work/


@dataclass
class L2Context:
    """Everything one L2 run reads once."""

    root: Path
    work: Path
    layer_dir: Path
    owner: str
    parallel: int
    client: Any
    specs: list[VmSpec]
    journal: CloneJournal

    @property
    def storage(self) -> str:
        return self.client.storage


LAYER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "owner_tag": {"type": "string", "pattern": r"^[a-z0-9_][a-z0-9_\-]*$"},
        "parallel": {"type": "integer", "minimum": 1, "maximum": 100},
    },
}


def layer_settings(layer_dir: Path) -> dict[str, Any]:
    """layers/l2/layer.yaml: owner_tag (a lower-case PVE tag) and parallel (1..100)."""
    from tasks.runtime.config import load_yaml_file

    path = layer_dir / "layer.yaml"
    if not path.exists():
        return {}
    return load_yaml_file(path, LAYER_SCHEMA, what="layer manifest") or {}


def open_l2(run: Run) -> L2Context:
    """Read layer settings and declarations, build the Proxmox client for the run's env."""
    from tasks.adapters.proxmox import ProxmoxClient

    project = run.project
    layer_dir = project.layers / "l2"
    settings = layer_settings(layer_dir)
    client = ProxmoxClient.from_run(run)
    specs = load_specs(layer_dir, project.root, client.node)
    return L2Context(
        root=project.root,
        work=project.work,
        layer_dir=layer_dir,
        owner=settings.get("owner_tag", DEFAULT_OWNER_TAG),
        parallel=int(settings.get("parallel", DEFAULT_PARALLEL)),
        client=client,
        specs=specs,
        journal=CloneJournal(project.work, run.id),
    )


def declared_nodes_and_storages(run: Run) -> tuple[set[str], set[tuple[str, str]]]:
    """The nodes and (node, storage) pairs the declared VMs use (for runway); empty if none."""
    env = run.env
    node = env.get("PVE_NODE") or ""
    storage = env.get("PVE_STORAGE_VM") or ""
    specs = load_specs(run.project.layers / "l2", run.project.root, node)
    nodes = {s.node for s in specs if s.node}
    pairs = {(s.node, s.storage or storage) for s in specs if s.node}
    pairs |= {(s.node, d.storage) for s in specs for d in s.disks if d.storage}
    return nodes, pairs


# ------------------------------------------------------------------ templates


def stable_manifests(root: Path) -> dict[str, Path]:
    """Each template's stable.json in L1's artifacts folder (`artifacts:` in layers/l1/layer.yaml)."""
    from tasks.l1.artifacts import stable_manifests as l1_stable_manifests
    from tasks.l1.spec import load_settings

    # NAME and, for a folder of several builds, FOLDER/BUILD (template = "distros/debian12").
    return l1_stable_manifests(load_settings(root / "layers" / "l1", None).artifacts_dir)


def _from_manifest(name: str, path: Path, root: Path, view: ClusterView) -> TemplateRef:
    rel = str(path.relative_to(root))
    try:
        data = json.loads(path.read_text())
        vmid, node = int(data["vmid"]), str(data["node"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{rel}: not a stable manifest with vmid and node ({exc})") from None
    vm = view.by_vmid(vmid)
    if vm is None or vm.kind != "qemu":
        raise ConfigError(
            f"{rel} points at VMID {vmid}, which "
            + ("does not exist in the cluster" if vm is None else "is an LXC container, not a VM"),
            hint="rebuild the template with L1, or promote another one",
        )
    return TemplateRef(
        vmid, vm.node or node, str(data.get("name") or name), f"stable manifest {rel}"
    )


def template_resolver(root: Path):
    manifests = stable_manifests(root)

    def resolve(spec: VmSpec, view: ClusterView) -> TemplateRef:
        ref = spec.template
        if ref is None:
            if len(manifests) == 1:
                name, path = next(iter(manifests.items()))
                return _from_manifest(name, path, root, view)
            found = ", ".join(manifests) or "none"
            raise ConfigError(
                f"{spec.source}: no template declared and no single L1 stable manifest to default "
                f"to (found: {found}); set `template`"
            )
        if ref.isdigit():
            vm = view.by_vmid(int(ref))
            if vm is None:
                raise ConfigError(f"{spec.source}: template VMID {ref} does not exist")
            if vm.kind != "qemu":
                raise ConfigError(
                    f"{spec.source}: template VMID {ref} is an LXC container, not a VM template"
                )
            return TemplateRef(vm.vmid, vm.node, vm.name or ref, "VMID")
        if ref in manifests:
            return _from_manifest(ref, manifests[ref], root, view)
        candidates = view.templates_named(ref)
        if not candidates:
            raise ConfigError(
                f"{spec.source}: template {ref!r} is neither an L1 stable manifest nor a template "
                "in the cluster",
                hint="build it with L1, or name an existing template or its VMID",
            )
        local = [vm for vm in candidates if vm.node == spec.node]
        vm = (local or candidates)[0]
        return TemplateRef(vm.vmid, vm.node, vm.name, "template name")

    return resolve


# ----------------------------------------------------------------------- plan


def make_plan(l2: L2Context, *, deep: bool = False) -> list[VmPlan]:
    view = ClusterView.from_resources(l2.client.resources())
    configs: dict[int, dict[str, Any]] = {}

    def read_config(vm: ActualVm) -> dict[str, Any]:
        # Once per VM: a VM recognised by its clone mark is then diffed from the same answer.
        if vm.vmid not in configs:
            configs[vm.vmid] = l2.client.vm_config(vm.vmid, vm.node)
        return configs[vm.vmid]

    return build_plan(
        l2.specs,
        view,
        owner=l2.owner,
        storage=l2.storage,
        read_config=read_config,
        resolve_template=template_resolver(l2.root),
        deep=deep,
        interrupted_clone=lambda vm: l2.journal.names(vm.vmid, vm.node, vm.name) is not None,
    )


def print_plan(plans: list[VmPlan]) -> None:
    from tasks.runtime.console import say, table

    if not plans:
        say("no VMs declared under layers/l2/ and none managed in the cluster")
        return
    table(
        ["VM", "ACTION", "NODE", "VMID", "DETAIL"],
        [[p.name, p.action, p.node, p.vmid or "-", p.detail] for p in plans],
    )
    for p in plans:
        if p.action == "update":
            for change in p.changes:
                say(f"  {p.name}: {change.field}: {change.old} -> {change.new}")
    counts = {
        a: sum(1 for p in plans if p.action == a)
        for a in ("create", "update", "none", "orphan", "error")
    }
    say(
        f"plan: {counts['create']} to create, {counts['update']} to update, {counts['none']} already "
        f"as wanted, {counts['orphan']} orphaned, {counts['error']} in error"
    )


def plan_json(plans: list[VmPlan]) -> str:
    return json.dumps(
        [
            {
                "name": p.name,
                "action": p.action,
                "node": p.node,
                "vmid": p.vmid,
                "detail": p.detail,
                "changes": [vars(c) for c in p.changes],
            }
            for p in plans
        ],
        indent=2,
    )


def refuse_errors(plans: list[VmPlan]) -> None:
    errors = [p for p in plans if p.action == "error"]
    if errors:
        lines = "\n  ".join(f"{p.name}: {p.error}" for p in errors)
        raise RefusedError(
            f"l2: {len(errors)} VM(s) cannot be planned; nothing was changed:\n  {lines}"
        )


# ---------------------------------------------------------------------- apply


def apply_plans(run: Run, l2: L2Context, plans: list[VmPlan], parallel: int) -> None:
    """Carry out the plan on the engine: one action per VM to create or update (at most
    `parallel` at once; one VM's failure never stops the others), then the VM inventory for L3,
    written whatever happened to the VMs."""
    from tasks.runtime.console import say, table
    from tasks.runtime.fanout import check_parallel
    from tasks.runtime.steps import Action, Plan

    check_parallel(parallel)
    todo = [p for p in plans if p.action in ("create", "update")]
    for p in plans:
        if p.action == "orphan":
            say(
                f"{p.name}: orphaned (VMID {p.vmid}); left alone, `inv l2.destroy --name {p.name}` "
                "removes it"
            )
    failed: set[str] = set()

    def vm_action(plan: VmPlan):
        def action(sc) -> str:
            def progress(message: str) -> None:
                say(f"{plan.name}: {message}")

            execute(
                l2.client,
                plan,
                owner=l2.owner,
                storage=l2.storage,
                progress=progress,
                journal=l2.journal,
            )
            return "created" if plan.action == "create" else "updated"

        return action

    def report(outcomes: list[Outcome]) -> None:
        by_vm = {o.name.removeprefix("vm "): o for o in outcomes}
        failed.update(name for name, o in by_vm.items() if not o.ok)
        rows = []
        for p in plans:
            o = by_vm.get(p.name)
            if o is not None:
                if o.ok:
                    detail = p.detail if p.action == "update" else f"VMID {p.vmid}"
                    rows.append([p.name, o.value, p.vmid or "-", f"{o.seconds:.1f}s", detail])
                else:
                    rows.append(
                        [p.name, o.status, p.vmid or "-", f"{o.seconds:.1f}s", o.detail[:300]]
                    )
            elif p.action == "none":
                rows.append([p.name, "unchanged", p.vmid or "-", "-", "already as wanted"])
            elif p.action == "orphan":
                rows.append([p.name, "orphan", p.vmid or "-", "-", "left alone"])
        table(["VM", "RESULT", "VMID", "TIME", "DETAIL"], rows)

    def inventory(sc) -> None:
        write_inventory(l2, plans, failed)

    actions = [
        Action(f"vm {p.name}", f"{p.action}: {p.detail}", vm_action(p), group="vms", item=p.name)
        for p in todo
    ]
    actions.append(Action("inventory", f"write .work/{INVENTORY} for L3", inventory, always=True))
    if not todo:
        say("l2: every declared VM is already as wanted; nothing to do")
    run.execute(
        Plan(
            "l2.apply",
            "l2",
            actions,
            parallel=parallel,
            report=report,
            show_plan=False,
            unit="VM",
        )
    )


def write_inventory(l2: L2Context, plans: list[VmPlan], failed: set[str]) -> Path:
    """`.work/inventory/vms.json` for L3: every declared VM that exists, with its addresses."""
    from tasks.runtime.files import atomic_write_json

    entries: list[dict[str, Any]] = []
    for p in plans:
        spec = p.spec
        if spec is None or p.vmid is None or p.action == "error":
            continue
        if p.name in failed and p.action == "create":
            continue
        entries.append(
            {
                "name": spec.name,
                "node": spec.node,
                "vmid": p.vmid,
                "ips": vm_ips(l2, spec, p.vmid),
                "tags": list(spec.tags),
                "groups": list(spec.groups),
            }
        )
    path = l2.work / INVENTORY
    atomic_write_json(path, {"generated_by": "inv l2.apply", "vms": entries})
    from tasks.runtime.console import say

    say(f"inventory: {len(entries)} VM(s) written to .work/{INVENTORY}")
    return path


def vm_ips(l2: L2Context, spec: VmSpec, vmid: int) -> list[str]:
    """The declared static address, else what the guest agent reports (if it answers)."""
    if spec.cloud_init and spec.cloud_init.ip and spec.cloud_init.ip != "dhcp":
        return [spec.cloud_init.ip.split("/")[0]]
    if spec.agent is False:
        return []
    try:
        answer = l2.client.get(f"/nodes/{spec.node}/qemu/{vmid}/agent/network-get-interfaces")
    except HomelabError:
        return []
    return agent_ips(answer)


# -------------------------------------------------------------------- destroy


def destroy_targets(l2: L2Context, names: list[str]) -> list[ActualVm]:
    """The managed VMs to destroy: the named ones, or every declared one that exists."""
    view = ClusterView.from_resources(l2.client.resources("vm"))
    declared = {s.name for s in l2.specs}
    wanted = names or sorted(declared)
    targets, problems = [], []
    for name in wanted:
        found = view.named(name)
        ours = [vm for vm in found if vm.managed(l2.owner)]
        if not found:
            if names:
                problems.append(f"{name}: no such VM in the cluster")
            continue
        if not ours:
            problems.append(
                f"{name}: VMID {found[0].vmid} has no {l2.owner!r} tag; the runner never destroys a "
                "VM it does not manage"
            )
            continue
        targets.extend(ours)
    if problems:
        raise RefusedError("l2.destroy: " + "; ".join(problems) + "; nothing was destroyed")
    return targets


def destroy(run: Run, l2: L2Context, targets: list[ActualVm], parallel: int, *, yes: bool) -> None:
    """Stop and delete `targets` on the engine (destructive: asks first), then drop them from
    the VM inventory. A failed answer is re-read before it is reported as a failure."""
    from tasks.runtime.console import say, table
    from tasks.runtime.fanout import check_parallel
    from tasks.runtime.steps import Action, Plan

    check_parallel(parallel)

    def vm_action(vm: ActualVm):
        def action(sc) -> str:
            base = f"/nodes/{vm.node}/qemu/{vm.vmid}"
            if vm.status == "running":
                say(f"{vm.name}: stopping")
                l2.client.run_task("POST", f"{base}/status/stop")
            say(f"{vm.name}: deleting VMID {vm.vmid}")
            try:
                l2.client.run_task("DELETE", base, purge=1, **{"destroy-unreferenced-disks": 1})
            except Exception:
                # A lost answer (reset, timeout, a task status unread) is not a failed delete:
                # the cluster, read again, says whether the VM is still there.
                if _still_there(l2, vm):
                    raise
                return "the answer was lost; reading the cluster again shows it gone"
            return ""

        return action

    def report(outcomes: list[Outcome]) -> None:
        table(
            ["VM", "VMID", "RESULT", "DETAIL"],
            [
                [
                    vm.name,
                    vm.vmid,
                    "destroyed" if o.ok else o.status,
                    o.value or "" if o.ok else o.detail,
                ]
                for vm, o in zip(targets, outcomes, strict=True)
            ],
        )
        gone = {vm.name for vm, o in zip(targets, outcomes, strict=True) if o.ok}
        _drop_from_inventory(l2, gone)

    listing = ", ".join(f"{vm.name} ({vm.vmid} on {vm.node})" for vm in targets)
    plan = Plan(
        title=f"l2.destroy {len(targets)} VM(s): {listing}",
        area="l2",
        actions=[
            Action(
                f"vm {vm.name}",
                f"stop and delete VMID {vm.vmid}",
                vm_action(vm),
                destructive=True,
                group="vms",
                item=vm.name,
            )
            for vm in targets
        ],
        parallel=parallel,
        report=report,
        show_plan=False,
        unit="VM",
    )
    run.execute(plan, yes=yes)


def _still_there(l2: L2Context, vm: ActualVm) -> bool:
    """Whether `vm` is still in the cluster; True when the cluster cannot be read either."""
    try:
        found = l2.client.resources("vm")
    except Exception:
        return True
    return any(str(r.get("vmid")) == str(vm.vmid) for r in found)


def _drop_from_inventory(l2: L2Context, names: set[str]) -> None:
    from tasks.runtime.files import atomic_write_json

    path = l2.work / INVENTORY
    if not names or not path.exists():
        return
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return
    data["vms"] = [e for e in data.get("vms", []) if e.get("name") not in names]
    atomic_write_json(path, data)
