"""The chain `inv up` runs (tasks/up.py is its thin task): the stages, their plan and inputs, the
k3s and cluster stages, `--plan FILE` and `--resume`.

`stages()` is the chain: L0-L4 as the layers register them (tasks/runtime/pipeline.py), then
`k3s` (the host orchestrator's k3s install on HOST_NAME: servers, then agents; it hands the
kubeconfig off) and `cluster` (the cluster orchestrator's apply steps with that kubeconfig). Every
stage runs its own plan on the step engine, with its own area lock, inside this one Run: one env
(the cluster chain, from `--profile`; the k3s stage sees the same run through the host chain),
one trace. The plan names, for each stage, what it reads and what it hands to the next, from
local files only; a dry run prints it and runs nothing. Imported only when `inv up` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.runtime.errors import ConfigError, RefusedError
from tasks.runtime.pipeline import STAGES, UP_ORDER

if TYPE_CHECKING:
    from tasks.l3.inventory import HostSpec, Inventory
    from tasks.runtime.run import Run
    from tasks.runtime.steps import Plan, StepContext

ORDER = UP_ORDER


@dataclass(frozen=True)
class Stage:
    """One stage of the chain: `name` is what `--from`/`--to` take, `step` its id in the plan and
    the trace; `inputs(run)` says what it reads and `hands_off` what the next stage gets."""

    name: str
    step: str
    summary: str
    run: Callable[[StepContext], None]
    inputs: Callable[[Run], list[str]]
    hands_off: str = ""


def stages() -> tuple[Stage, ...]:
    """The whole chain, in order (a layer that registered no stage is left out)."""
    found = []
    for index, name in enumerate(ORDER):
        if name in EXTRA:
            found.append(EXTRA[name](index))
            continue
        layer = STAGES.get(name)
        if layer is not None:
            found.append(
                Stage(
                    name,
                    f"{index:02d}_{name}_{layer.name}",
                    layer.summary,
                    layer.run,
                    INPUTS.get(name, _nothing),
                    HANDS_OFF.get(name, ""),
                )
            )
    return tuple(found)


def select(first: str, last: str) -> tuple[Stage, ...]:
    """The stages from `first` to `last`, both included (`L2` as `l2`: the README's tables say
    L0-L4)."""
    first, last = str(first).strip().lower(), str(last).strip().lower()
    for flag, value in (("--from", first), ("--to", last)):
        if value not in ORDER:
            raise ConfigError(f"{flag} {value!r}: expected one of {', '.join(ORDER)}")
    lo, hi = ORDER.index(first), ORDER.index(last)
    if lo > hi:
        raise ConfigError(f"--from {first} comes after --to {last}")
    return tuple(s for s in stages() if lo <= ORDER.index(s.name) <= hi)


def build_plan(run: Run, chosen: tuple[Stage, ...]) -> Plan:
    from tasks.runtime.console import LINE_LIMIT, wrap
    from tasks.runtime.steps import Action, Plan

    env = run.env
    layers = ", ".join(
        lyr.name + ("" if lyr.used else f" [skipped: {lyr.skipped}]") for lyr in env.layers
    )
    from tasks.runtime.config import load_layer_manifests

    manifests = load_layer_manifests(run.project)  # once: each layer stage's required variables
    names = [s.name for s in chosen]
    run.memo["up-stages"] = names  # the cluster stage's inputs say where its kubeconfig comes from
    actions = []
    for index, stage in enumerate(chosen, 1):
        lines = [f"reads: {line}" for line in stage.inputs(run)]
        if stage.hands_off:
            lines.append(f"hands off: {stage.hands_off.format(**_names(run))}")
        required = (manifests.get(stage.name) or {}).get("required_env") or []
        missing = run.env.missing(list(required))
        if missing:  # said before it runs (and in a dry run, which would otherwise look fine)
            lines.append(
                f"missing: {', '.join(missing)}: this stage stops here until they are set "
                f"(`inv env.check {stage.name}`)"
            )
        # The engine prints an action's line and details whole: wrapped here to LINE_LIMIT.
        head = f"  {index}. [run ] {stage.step}: "
        summary, *rest = wrap(stage.summary, limit=LINE_LIMIT - len(head))
        details = [f"  {line}" for line in rest]
        for line in lines:
            details += wrap(line, indent="  ", limit=LINE_LIMIT - 7)
        actions.append(
            Action(
                id=stage.step,
                summary=summary,
                run=stage.run,
                details=details,
                number=ORDER.index(stage.name),
            )
        )
    return Plan(
        title=f"up {names[0]} -> {names[-1]}",
        area="up",
        actions=actions,
        header=[f"env layers ({env.chain} chain, lowest first): {layers}"],
        nothing="nothing to run",
        show_mode=False,
    )


# ---------------------------------------------------------------------- what each stage reads


def _nothing(run: Run) -> list[str]:
    return []


def _names(run: Run) -> dict[str, str]:
    from tasks.gitops.settings import configured_cluster

    return {"cluster": configured_cluster(run.project) or "home"}


def _l0(run: Run) -> list[str]:
    env = run.env
    return [
        f"the Proxmox API at {env.get('PVE_ACCESS_HOST') or '(PVE_ACCESS_HOST not set)'}, node "
        f"{env.get('PVE_NODE') or '(PVE_NODE not set)'}; env, credentials and tools of every layer"
    ]


def _l1(run: Run) -> list[str]:
    folder = run.project.layers / "l1" / "templates"
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return [f"templates {', '.join(names) or 'none'} ({run.project.rel(folder)}); built when stale"]


def _declared_vms(run: Run) -> list:
    from tasks.l2.spec import load_specs

    folder = run.project.layers / "l2"
    if not folder.is_dir():
        return []
    return load_specs(folder, run.project.root, run.env.get("PVE_NODE") or "(PVE_NODE)")


def _l2(run: Run) -> list[str]:
    vms = _declared_vms(run)
    if not vms:
        return ["no VMs declared under layers/l2/"]
    listed = ", ".join(f"{vm.name} ({vm.node})" for vm in vms)
    return [f"VMs {listed} (layers/l2/); templates from L1's stable manifests"]


def prospective_inventory(run: Run) -> Inventory:
    """The host inventory once L2 has made its VMs: inventory/hosts.yaml, L2's VM inventory, and
    the VMs declared under layers/l2/ not in it yet (joining groups by `groups` and tags, as
    tasks/l3/inventory.py merges them; a VM hosts.yaml already declares keeps its address)."""
    from tasks.l3.inventory import GroupSpec, HostSpec, load_inventory

    inv = load_inventory(run.project)
    for vm in _declared_vms(run):
        host = inv.hosts.get(vm.name)
        if host is None:
            address = (vm.cloud_init.ip or "").split("/")[0] if vm.cloud_init else ""
            host = inv.hosts[vm.name] = HostSpec(vm.name, address or "?", vm.source)
        for name in [*vm.groups, *(t for t in vm.tags if t in inv.groups)]:
            group = inv.groups.setdefault(name, GroupSpec(name))
            if vm.name not in group.hosts:
                group.hosts.append(vm.name)
            if name not in host.groups:
                host.groups.append(name)
    return inv


def prospective_hosts(run: Run, pattern: str) -> list[HostSpec]:
    """The hosts `pattern` names once L2 has made its VMs (prospective_inventory)."""
    return prospective_inventory(run).select(pattern)


def _hosts_line(run: Run, variable: str) -> str:
    pattern = run.env.get(variable) or "all"
    names = ", ".join(h.name for h in prospective_hosts(run, pattern))
    return f"hosts {variable}={pattern}: {names} (layers/{variable[:2].lower()})"


def _l3(run: Run) -> list[str]:
    return [_hosts_line(run, "L3_GROUP")]


def _l4(run: Run) -> list[str]:
    return [_hosts_line(run, "L4_GROUP") + f"; apps {run.env.get('L4_TAGS') or 'every tag'}"]


def _k3s(run: Run) -> list[str]:
    from tasks.host import k3s
    from tasks.host.chain import host_run

    view = host_run(run)
    pattern = (view.env.get("HOST_NAME") or "").strip()
    if not pattern:
        raise ConfigError(
            "HOST_NAME is not set (host chain): name the inventory host or group k3s goes on",
            hint="set it in inventory/host/config/homelab.env",
        )
    inv_vars = prospective_roles(view, pattern)
    servers = [n for n, role in inv_vars if role == "server"]
    agents = [n for n, role in inv_vars if role == "agent"]
    if not servers:
        raise ConfigError(f"HOST_NAME={pattern!r}: no host with k3s_role server")
    return [
        f"hosts HOST_NAME={pattern} (host chain): servers {', '.join(servers)} (the first "
        f"initialises the cluster); agents {', '.join(agents) or 'none'}",
        f"k3s {k3s.wanted_version(view.env)} from {view.env.get('K3S_INSTALL_URL') or k3s.DEFAULT_INSTALL_URL}",
    ]


def prospective_roles(run: Run, pattern: str) -> list[tuple[str, str]]:
    """(host, k3s role) of each prospective host, servers first."""
    from tasks.host import k3s

    inv = prospective_inventory(run)
    found = [(h.name, k3s.role_of(inv.host_vars(h), h.name)) for h in inv.select(pattern)]
    return sorted(found, key=lambda item: 0 if item[1] == "server" else 1)


def _cluster(run: Run) -> list[str]:
    from tasks.gitops.settings import GitOpsSettings, handoff_kubeconfig, kubeconfig_source

    if (run.env.get("KUBECONFIG") or "").strip() or "k3s" not in run.memo.get("up-stages", ()):
        paths, why = kubeconfig_source(run)
        kubeconfig = f"kubeconfig {', '.join(run.project.rel(p) for p in paths)} ({why})"
    else:
        kubeconfig = (
            f"kubeconfig {run.project.rel(handoff_kubeconfig(run.project))} (from the k3s stage)"
        )
    settings = GitOpsSettings.load(run)
    entry = settings.layout.entry
    if entry is None:
        source = f"Flux source: no Flux entry found under {settings.rel(settings.root)}"
    else:
        ref = entry.source_ref or {}
        at = next(
            (f"{k} {ref[k]}" for k in ("tag", "semver", "commit", "branch") if ref.get(k)), ""
        )
        source = (
            f"Flux source {entry.source_kind} {entry.source_namespace}/{entry.source_name} "
            f"{entry.source_url}" + (f" ({at})" if at else "") + f", path {entry.path}"
        )
    return [kubeconfig, source]


INPUTS: dict[str, Callable[[Run], list[str]]] = {
    "l0": _l0,
    "l1": _l1,
    "l2": _l2,
    "l3": _l3,
    "l4": _l4,
}
HANDS_OFF = {
    "l1": "layers/l1/artifacts/<template>/stable.json",
    "l2": ".work/inventory/vms.json (the VMs' addresses and groups, merged into the host inventory)",
    "l3": "converged hosts",
}


# ---------------------------------------------------------------------- the k3s and cluster stages


def _k3s_stage(sc: StepContext) -> None:
    from tasks.host.chain import host_run
    from tasks.host.group import run_k3s

    run_k3s(host_run(sc.run), "apply")


def cluster_pending(run: Run) -> str | None:
    """Why the cluster orchestrator has to run, or None when the cluster, read only, already shows
    the whole stack: Flux's CRDs, the entry's source Ready, every Kustomization of the graph
    present, Ready and not suspended. (The runtime-inputs Secret and the Git credentials are not
    read back: `inv cluster.apply` pushes changed values.)"""
    from tasks.gitops.facts import names, ready_states
    from tasks.gitops.graph import graph_for
    from tasks.gitops.settings import GitOpsSettings, kube_for, kubeconfig_source

    paths, why = kubeconfig_source(run)
    if not any(p.is_file() for p in paths):
        return f"no kubeconfig ({why})"
    kube = kube_for(run)
    if kube.kubectl("version", "-o", "json", "--request-timeout=10s", check=False).failed:
        return "the Kubernetes API does not answer"
    crds = names(kube.get_json("customresourcedefinitions"))
    if not any(c.endswith(".toolkit.fluxcd.io") for c in crds):
        return "Flux is not installed"
    settings = GitOpsSettings.load(run)
    entry = settings.entry
    kind = entry.source_kind.lower()  # GitRepository -> gitrepositories, Bucket -> buckets
    plural = (kind[:-1] + "ies" if kind.endswith("y") else kind + "s") + ".source.toolkit.fluxcd.io"
    if plural not in crds:
        return f"no {entry.source_kind} CRD"
    source = kube.get_one(plural, entry.source_name, entry.source_namespace)
    if source is None:
        return f"source {entry.source_kind} {entry.source_namespace}/{entry.source_name} missing"
    (state,) = ready_states({"items": [source]})
    if not state.ready:
        return f"source {state.ref} not ready ({state.reason})"
    graph = graph_for(settings, kube)
    live = {
        (s.namespace, s.name): s
        for s in ready_states(
            kube.get_json("kustomizations.kustomize.toolkit.fluxcd.io", "--all-namespaces")
        )
    }
    for node in graph.order():
        found = live.get((node.namespace, node.name))
        if found is None:
            return f"Kustomization {node.namespace}/{node.name} missing"
        if found.suspended or not found.ready:
            return f"Kustomization {found.ref} {'suspended' if found.suspended else 'not ready'}"
    run.memo["cluster-converged"] = (
        f"Flux installed, {entry.source_kind} {entry.source_namespace}/{entry.source_name} ready, "
        f"all {len(graph.nodes)} Kustomizations ready"
    )
    return None


def _cluster_stage(sc: StepContext) -> None:
    from tasks.gitops.collections import _runtime_inputs_in_plan, build_orchestrator
    from tasks.runtime.console import say
    from tasks.runtime.steps import StepPlan

    run = sc.run
    pending = cluster_pending(run)
    if pending is None:
        say(f"cluster: already as wanted ({run.memo['cluster-converged']})")
        return
    say(f"cluster: {pending}: the cluster orchestrator's apply steps")
    plan = StepPlan.build(build_orchestrator(), "apply", run).to_plan()
    _runtime_inputs_in_plan(run, plan)
    run.execute(plan)


EXTRA: dict[str, Callable[[int], Stage]] = {
    "k3s": lambda index: Stage(
        "k3s",
        f"{index:02d}_k3s_install",
        "k3s on HOST_NAME: the first server, the other servers, then the agents joining "
        "(only hosts whose version or config differ); the kubeconfig from the first server",
        _k3s_stage,
        _k3s,
        ".work/{cluster}/kubeconfig (0600, server rewritten to the API address)",
    ),
    "cluster": lambda index: Stage(
        "cluster",
        f"{index:02d}_cluster_apply",
        "the cluster orchestrator's apply steps (Flux, runtime inputs, reconcile), unless the "
        "cluster already shows the whole stack installed and ready",
        _cluster_stage,
        _cluster,
    ),
}


def record_chain(run: Run, chain: list[Stage], chosen: tuple[Stage, ...]) -> None:
    """What `--resume` needs from this run's trace: the chain, its stages' step ids, and the
    digest of every declaration file (tasks/plan/saved.py declarations)."""
    from tasks.plan.saved import canonical_digest, declarations

    found = declarations(run.project)
    run.extra["mode"] = "apply"
    run.extra["stages"] = [s.name for s in chosen]
    run.extra["up_chain"] = [s.name for s in chain]
    run.extra["up_steps"] = {s.name: s.step for s in chain}
    run.extra["declarations_digest"] = canonical_digest(found)
    run.extra["declarations"] = found


def _tell(text: str) -> None:
    from tasks.runtime.console import say, wrap

    for line in wrap(text, indent="  "):
        say(line)


def _by_name(names: list[str]) -> tuple[Stage, ...]:
    wanted = set(names)
    return tuple(s for s in stages() if s.name in wanted)


def saved_plan_stages(run: Run, raw: str) -> tuple[Stage, ...]:
    """`--plan FILE`: check the saved plan still holds (age, declarations, every fact re-read the
    same way), then the stages it had changes for."""
    from tasks.plan import read_layers
    from tasks.plan.saved import (
        age_text,
        check_age,
        check_declarations,
        check_saved,
        load_saved,
        pending_stages,
    )

    _path, data = load_saved(raw)
    age = check_age(run, raw, data)
    errors = (data.get("summary") or {}).get("errors") or 0
    if not isinstance(errors, int) or errors:
        raise RefusedError(
            f"the saved plan {raw} has {errors} item(s) in error: a plan that could not read "
            "everything cannot be applied",
            hint="fix the errors it lists, then make a new plan: inv plan --out FILE",
        )
    check_declarations(
        run.project,
        data.get("declarations") or {},
        f"the saved plan {raw} no longer holds",
        "make a new plan: inv plan --out FILE",
    )
    layers = [str(n) for n in data.get("layers") or []]
    _tell(
        f"saved plan {raw}: made {data.get('created')} ({age_text(age)} ago); "
        f"re-reading {', '.join(layers)}"
    )
    was_dry = run.dry_run
    run.dry_run = run.effects.dry_run = True  # the facts check is reads only, as `inv plan` is
    try:
        plans = read_layers(run, layers, deep=bool(data.get("deep")))
    finally:
        run.dry_run = run.effects.dry_run = was_dry
    check_saved(run, raw, data, plans)
    broken = sum(p.errors for p in plans)
    if broken:  # the summary said none (edited by hand?), but what was re-read has errors
        raise RefusedError(
            f"the saved plan {raw} reads {broken} item(s) in error now: a plan that cannot read "
            "everything cannot be applied",
            hint="fix the errors (`inv plan` lists them), then make a new plan: inv plan --out FILE",
        )
    names = pending_stages(plans)
    run.extra["saved_plan"] = {"file": raw, "created": data.get("created"), "stages": names}
    _tell(
        f"saved plan {raw}: every fact as it was; stages with changes: {', '.join(names) or 'none'}"
    )
    return _by_name(names)


def resume_stages(run: Run) -> tuple[tuple[Stage, ...], tuple[Stage, ...]]:
    """`--resume`: the failed `up`'s chain and the stages from the one that failed."""
    from tasks.plan.resume import check_before, check_unchanged_declarations, last_up, summary

    found = last_up(run)
    _tell(
        f"resume: run {found.entry.id} ({found.entry.started}) failed at {found.failed}; "
        f"its chain: {', '.join(found.chain)}"
    )
    check_unchanged_declarations(run, found)
    check_before(run, found)
    run.extra["resumed"] = summary(found)
    return _by_name(found.chain), _by_name(found.rest)
