"""L2 glue for the tasks: load declarations, read the cluster, print the plan, apply, destroy.

Specs (spec.py), facts (facts.py) and actions (actions.py) stay pure; this module holds the I/O
order: the Proxmox adapter, the stable manifests of L1, the inventory file for L3, and output.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.runtime.errors import ConfigError, ExternalError, HomelabError, RefusedError
from tasks.vms.actions import TemplateRef, VmPlan, build_plan, execute
from tasks.vms.facts import ActualVm, ClusterView, agent_ips
from tasks.vms.spec import VmSpec, load_specs

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

    @property
    def storage(self) -> str:
        return self.client.storage


def layer_settings(layer_dir: Path) -> dict[str, Any]:
    from tasks.runtime.config import load_yaml_file

    path = layer_dir / "layer.yaml"
    if not path.exists():
        return {}
    data = load_yaml_file(path, what="layer manifest") or {}
    owner = data.get("owner_tag", DEFAULT_OWNER_TAG)
    import re

    if not isinstance(owner, str) or not re.fullmatch(r"[a-z0-9_][a-z0-9_\-]*", owner):
        raise ConfigError(f"{path}: owner_tag {owner!r}: expected a lower-case PVE tag")
    return data


def open_l2(c, *, profile: str | None = None) -> L2Context:
    """Resolve the env, read layer settings and declarations, build the Proxmox client."""
    from tasks.adapters.proxmox import ProxmoxClient

    env = c.use_env("cluster", profile)
    project = c.project
    layer_dir = project.layers / "l2"
    settings = layer_settings(layer_dir)
    client = ProxmoxClient.from_env(env.values)
    node = client.node if client else (env.get("PVE_NODE") or "")
    specs = load_specs(layer_dir, project.root, node)
    return L2Context(
        root=project.root,
        work=project.work,
        layer_dir=layer_dir,
        owner=settings.get("owner_tag", DEFAULT_OWNER_TAG),
        parallel=int(settings.get("parallel", DEFAULT_PARALLEL)),
        client=client,
        specs=specs,
    )


def declared_nodes_and_storages(c) -> tuple[set[str], set[tuple[str, str]]]:
    """The nodes and (node, storage) pairs the declared VMs use (for runway); empty if none."""
    env = c.env_layers
    node = env.get("PVE_NODE") or ""
    storage = env.get("PVE_STORAGE_VM") or ""
    specs = load_specs(c.project.layers / "l2", c.project.root, node)
    nodes = {s.node for s in specs if s.node}
    pairs = {(s.node, s.storage or storage) for s in specs if s.node}
    pairs |= {(s.node, d.storage) for s in specs for d in s.disks if d.storage}
    return nodes, pairs


# ------------------------------------------------------------------ templates


def stable_manifests(root: Path) -> dict[str, Path]:
    """Each template's stable.json in L1's artifacts folder (`artifacts:` in layers/l1/layer.yaml)."""
    from tasks.packer_templates.spec import load_settings

    base = load_settings(root / "layers" / "l1", None).artifacts_dir
    return {p.parent.name: p for p in sorted(base.glob("*/stable.json"))} if base.exists() else {}


def _from_manifest(name: str, path: Path, root: Path, view: ClusterView) -> TemplateRef:
    rel = str(path.relative_to(root))
    try:
        data = json.loads(path.read_text())
        vmid, node = int(data["vmid"]), str(data["node"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{rel}: not a stable manifest with vmid and node ({exc})") from None
    vm = view.by_vmid(vmid)
    if vm is None:
        raise ConfigError(
            f"{rel} points at VMID {vmid}, which does not exist in the cluster",
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

    def read_config(vm: ActualVm) -> dict[str, Any]:
        return l2.client.vm_config(vm.vmid, vm.node)

    return build_plan(
        l2.specs,
        view,
        owner=l2.owner,
        storage=l2.storage,
        read_config=read_config,
        resolve_template=template_resolver(l2.root),
        deep=deep,
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


def apply_plans(l2: L2Context, plans: list[VmPlan], parallel: int) -> None:
    from tasks.runtime.console import say, table

    todo = [p for p in plans if p.action in ("create", "update")]
    for p in plans:
        if p.action == "orphan":
            say(
                f"{p.name}: orphaned (VMID {p.vmid}); left alone, `inv l2.destroy {p.name}` removes it"
            )
    results: dict[str, tuple[str, str, float]] = {}
    lock = threading.Lock()

    def one(plan: VmPlan) -> None:
        started = time.monotonic()

        def progress(message: str) -> None:
            with lock:
                say(f"{plan.name}: {message}")

        try:
            execute(l2.client, plan, owner=l2.owner, storage=l2.storage, progress=progress)
        except Exception as exc:  # one VM's failure must not stop the others
            message = (
                exc.message
                if isinstance(exc, HomelabError)
                else f"unexpected {type(exc).__name__}: {exc} (a bug in the runner)"
            )
            outcome = "failed"
            with lock:
                say(f"{plan.name}: failed: {message}")
            detail = " ".join(line.strip() for line in message.splitlines())[:300]
        else:
            outcome = "created" if plan.action == "create" else "updated"
            detail = plan.detail if plan.action == "update" else f"VMID {plan.vmid}"
            with lock:
                say(f"{plan.name}: {outcome}")
        results[plan.name] = (outcome, detail, time.monotonic() - started)

    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(todo)))) as pool:
            list(pool.map(one, todo))
    rows = []
    for p in plans:
        if p.name in results:
            outcome, detail, took = results[p.name]
            rows.append([p.name, outcome, p.vmid or "-", f"{took:.1f}s", detail])
        elif p.action == "none":
            rows.append([p.name, "unchanged", p.vmid or "-", "-", "already as wanted"])
        elif p.action == "orphan":
            rows.append([p.name, "orphan", p.vmid or "-", "-", "left alone"])
    if rows:
        table(["VM", "RESULT", "VMID", "TIME", "DETAIL"], rows)
    if not todo:
        say("l2: every declared VM is already as wanted; nothing to do")
    write_inventory(l2, plans, {n for n, r in results.items() if r[0] == "failed"})
    failed = sorted(n for n, r in results.items() if r[0] == "failed")
    if failed:
        raise ExternalError(
            f"l2.apply: {len(failed)} of {len(todo)} VM(s) failed: {', '.join(failed)}; the others "
            "were applied",
            hint="fix the cause shown above and run `inv l2.apply` again: it picks up where it stopped",
        )


def write_inventory(l2: L2Context, plans: list[VmPlan], failed: set[str]) -> Path:
    """`.work/inventory/vms.json` for L3: every declared VM that exists, with its addresses."""
    from tasks.runtime.files import atomic_write_json

    entries = []
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


def destroy(l2: L2Context, targets: list[ActualVm], parallel: int) -> None:
    from tasks.runtime.console import say, table

    lock = threading.Lock()
    results: dict[int, tuple[str, str]] = {}

    def one(vm: ActualVm) -> None:
        base = f"/nodes/{vm.node}/qemu/{vm.vmid}"
        try:
            if vm.status == "running":
                with lock:
                    say(f"{vm.name}: stopping")
                l2.client.run_task("POST", f"{base}/status/stop")
            with lock:
                say(f"{vm.name}: deleting VMID {vm.vmid}")
            l2.client.run_task("DELETE", base, purge=1, **{"destroy-unreferenced-disks": 1})
        except HomelabError as exc:
            results[vm.vmid] = ("failed", exc.message.splitlines()[0])
        else:
            results[vm.vmid] = ("destroyed", "")

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets)))) as pool:
        list(pool.map(one, targets))
    table(
        ["VM", "VMID", "RESULT", "DETAIL"],
        [[vm.name, vm.vmid, *results[vm.vmid]] for vm in targets],
    )
    _drop_from_inventory(l2, {vm.name for vm in targets if results[vm.vmid][0] == "destroyed"})
    failed = [vm.name for vm in targets if results[vm.vmid][0] == "failed"]
    if failed:
        raise ExternalError(f"l2.destroy: {len(failed)} VM(s) not destroyed: {', '.join(failed)}")


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
