"""The layers' own reads, each turned into plan items: nothing here changes anything.

Each reader takes the Run (its seam is a dry run while `inv plan` reads) and returns a
`LayerPlan`; it never prints, so the readers can run at once (tasks/runtime/fanout.py). Every
reader reuses its layer's logic: L0's probes, L1's fingerprints and staleness, L2's plan, L3/L4's
check-mode playbook run, the GitOps side's git adapter and `flux diff`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import HomelabError

if TYPE_CHECKING:
    from tasks.runtime.run import Run

# An item's state: `ok` (as declared), `change` (pending: `inv up` would change it), `warn`
# (worth knowing, changes nothing), `error` (could not be read, or is broken: exit 1),
# `not checked` (nothing to read it from, said so).
OK, CHANGE, WARN, ERROR, UNCHECKED = "ok", "change", "warn", "error", "not checked"


@dataclass
class Item:
    name: str
    state: str
    detail: str = ""
    lines: list[str] = field(default_factory=list)  # more detail, below the table
    # What the reader read that decided this item and is not in its detail (an L1 fingerprint,
    # the VMID L2 would use): part of the item's digest in a saved plan (tasks/plan/saved.py).
    facts: dict[str, Any] = field(default_factory=dict)
    # The `inv up` stage that would change it, when not its layer's (tasks/plan/saved.py
    # STAGE_OF); "" when `inv up` does not (dynamic DNS is `inv host.apply --only 10`'s).
    stage: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "detail": self.detail, "lines": self.lines}


@dataclass
class LayerPlan:
    layer: str
    title: str
    items: list[Item] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, state: str) -> int:
        return sum(1 for i in self.items if i.state == state)

    @property
    def changes(self) -> int:
        return self.count(CHANGE)

    @property
    def errors(self) -> int:
        return self.count(ERROR)

    def as_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "title": self.title,
            "seconds": round(self.seconds, 3),
            "changes": self.changes,
            "errors": self.errors,
            "items": [i.as_dict() for i in self.items],
        }


def _first_line(exc: HomelabError) -> str:
    return " ".join(line.strip() for line in exc.message.splitlines() if line.strip())


# ---------------------------------------------------------------------- L0


def read_l0(run: Run) -> LayerPlan:
    """L0's runway probes (tasks/l0/checks.py): the checks that fail or warn."""
    from tasks.l0.checks import FAIL, api_probes, env_probes, run_probes, runway_inputs, tool_probes
    from tasks.l0.checks import WARN as L0_WARN
    from tasks.runtime.errors import ConfigError

    plan = LayerPlan("l0", "L0 runway")
    inputs = runway_inputs(run)
    probes = env_probes(inputs) + tool_probes(run, inputs)
    try:
        from tasks.adapters.proxmox import ProxmoxClient

        probes += api_probes(inputs, ProxmoxClient.from_run(run))
    except ConfigError as exc:
        # As `inv l0.runway`: the env rows already name a missing value (one error, not two); a
        # value that is there but unusable shows up only here.
        if getattr(exc, "problems", [exc.message]):
            plan.items.append(Item("env: Proxmox settings", ERROR, _first_line(exc)))
    rows = run_probes(probes)
    passed = 0
    for row in rows:
        if row.status == FAIL:
            state = ERROR if row.required else WARN
            plan.items.append(Item(row.check, state, row.detail, [row.fix] if row.fix else []))
        elif row.status == L0_WARN:
            plan.items.append(Item(row.check, WARN, row.detail, [row.fix] if row.fix else []))
        else:
            passed += 1
    plan.items.insert(0, Item(f"{passed} check(s)", OK, "passed"))
    return plan


# ---------------------------------------------------------------------- L1


def read_l1(run: Run) -> LayerPlan:
    """L1's fingerprints against each stable artifact, and whether the stable template still
    exists on Proxmox (tasks/l1/actions.py's staleness)."""
    from tasks.l1.actions import input_staleness, live_staleness
    from tasks.l1.artifacts import stable_view
    from tasks.l1.facts import read_vms
    from tasks.l1.layer import L1Layer

    plan = LayerPlan("l1", "L1 templates")
    l1 = L1Layer(run)
    found = l1.discover()
    for problem in found.problems:
        plan.items.append(Item(problem.name, ERROR, _first_line(problem.error)))
    vms = None
    if found.templates:
        try:
            vms = read_vms(l1.pve())
        except HomelabError as exc:
            plan.items.append(
                Item("proxmox", ERROR, "templates not checked on Proxmox: " + _first_line(exc))
            )
    for spec in found.templates:
        try:
            fp, _pv = l1.fingerprint(spec)
            view = stable_view(l1.store(spec))
        except HomelabError as exc:
            plan.items.append(Item(spec.name, ERROR, _first_line(exc)))
            continue
        reasons = input_staleness(fp, view.pointer) + live_staleness(view.pointer, vms)
        pointer = view.pointer or {}
        facts = {
            "fingerprint": fp.value,
            "stable": [pointer.get("vmid"), pointer.get("node"), pointer.get("fingerprint")],
        }
        if reasons:
            plan.items.append(Item(spec.name, CHANGE, "build: " + "; ".join(reasons), facts=facts))
        else:
            where = f"template {pointer.get('vmid')} on {pointer.get('node')}"
            plan.items.append(
                Item(spec.name, OK, f"up to date ({view.note}; {where})", facts=facts)
            )
    l1.save()
    return plan


# ---------------------------------------------------------------------- L2


def read_l2(run: Run, *, deep: bool = False) -> LayerPlan:
    """L2's own plan (tasks/l2/apply.py make_plan): one listing call, `--deep` one per VM."""
    from tasks.l2.apply import make_plan, open_l2

    plan = LayerPlan("l2", "L2 VMs")
    for vm in make_plan(open_l2(run), deep=deep):
        facts = {
            "action": vm.action,
            "node": vm.node,
            "vmid": vm.vmid,
            "config": dict(sorted(vm.config_updates.items())),
            "resizes": [list(r) for r in vm.resizes],
            "tags": vm.tags,
            "reboot": vm.reboot,
            "start": vm.start,
        }
        if vm.action == "none":
            plan.items.append(Item(vm.name, OK, "already as wanted", facts=facts))
        elif vm.action == "error":
            plan.items.append(Item(vm.name, ERROR, vm.detail, facts=facts))
        else:
            lines = [f"{c.field}: {c.old} -> {c.new}" for c in vm.changes]
            plan.items.append(
                Item(vm.name, CHANGE, f"{vm.action}: {vm.detail}", lines, facts=facts)
            )
    return plan


# ---------------------------------------------------------------------- L3 / L4

_TASK = re.compile(r"^TASK \[(?P<task>.*?)\]")
_CHANGED = re.compile(r"^changed: \[(?P<host>[^\]]+)\]")


def changed_tasks(output: str) -> dict[str, list[str]]:
    """From ansible-playbook's default output: the tasks reported `changed` per host."""
    found: dict[str, list[str]] = {}
    task = ""
    for line in output.splitlines():
        started = _TASK.match(line)
        if started:
            task = started.group("task")
            continue
        changed = _CHANGED.match(line)
        if changed:
            host = changed.group("host").split(" -> ")[0]
            found.setdefault(host, []).append(task)
    return found


def read_hosts(run: Run, layer: str) -> LayerPlan:
    """L3/L4 as `l3.converge --check` reads them (tasks/l3/converge.py): who answers SSH, then
    `ansible-playbook --check --diff` once; unreachable hosts are errors."""
    from tasks.l3.ansible import parse_recap, playbook_argv, render
    from tasks.l3.converge import wait_ready
    from tasks.l3.inventory import load_inventory

    plan = LayerPlan(layer, f"{layer.upper()} {'OS' if layer == 'l3' else 'workloads'}")
    project = run.project
    playbook = project.layers / layer / "site.yml"
    if not playbook.exists():
        plan.items.append(Item(project.rel(playbook), UNCHECKED, "no playbook: nothing declared"))
        return plan
    group = run.env.get(f"{layer.upper()}_GROUP") or "all"
    tags = (run.env.get("L4_TAGS") or None) if layer == "l4" else None
    inv = load_inventory(project)
    hosts = inv.select(group)
    if not hosts:
        plan.items.append(Item(group, UNCHECKED, "no hosts in this group"))
        return plan
    settings = inv.settings(project, run)
    names = [h.name for h in hosts]
    readiness = wait_ready(run, [inv.target(h) for h in hosts], settings, wait=0.0, parallel=10)
    ready = [n for n in names if readiness[n].ok]
    items = {
        n: Item(n, ERROR, f"{readiness[n].status}: {readiness[n].detail}".rstrip(": "))
        for n in names
        if n not in ready
    }
    if ready:
        rendered = render(project, inv, settings, forks=10)
        argv = playbook_argv(rendered, playbook, ready, tags=tags, check=True)
        result = run.effects.command(
            argv,
            mutates=False,
            env={"ANSIBLE_CONFIG": str(rendered.config), "ANSIBLE_NOCOLOR": "1"},
            check=False,
            what=f"ansible-playbook {project.rel(playbook)} --check",
        )
        recap = parse_recap(result.stdout)
        tasks = changed_tasks(result.stdout)
        for name in ready:
            counts = recap.get(name)
            if counts is None:
                items[name] = Item(name, ERROR, f"no PLAY RECAP line (exit {result.exited})")
            elif counts["unreachable"]:
                items[name] = Item(name, ERROR, "unreachable during the check")
            elif counts["failed"]:
                items[name] = Item(name, ERROR, f"{counts['failed']} task(s) failed in check mode")
            elif counts["changed"]:
                changed = tasks.get(name) or []
                items[name] = Item(
                    name, CHANGE, f"{counts['changed']} task(s) would change", changed
                )
            else:
                items[name] = Item(name, OK, "already as wanted")
    plan.items.extend(items[n] for n in names)
    return plan


# ---------------------------------------------------------------------- host orchestrator


def read_host(run: Run) -> LayerPlan:
    """The host orchestrator as `host.apply --dry-run` reads it (through the host env chain): per
    host of HOST_NAME the k3s version and config against the inventory's, the kubeconfig
    hand-off, and DDNS_RECORD against the public address. Hosts L2 has not made yet: to install."""
    from tasks.host.chain import host_run
    from tasks.host.group import apply_plan, load_group, read_facts
    from tasks.runtime.errors import ConfigError

    plan = LayerPlan("host", "Host orchestrator (k3s, dynamic DNS)")
    view = host_run(run)
    pattern = (view.env.get("HOST_NAME") or "").strip()
    if not pattern:
        plan.items.append(Item("HOST_NAME", UNCHECKED, "not set (host chain): no k3s hosts"))
        return plan
    try:
        group = load_group(view)
    except ConfigError as exc:
        plan.items.extend(_hosts_to_come(view, pattern, exc))
        return plan
    try:
        read_facts(view, group)
    except HomelabError as exc:  # a refused host key: the plan reads nothing around it
        plan.items.append(Item(pattern, ERROR, _first_line(exc)))
        return plan
    unread = {n.name: n.unreachable for n in group.nodes if n.facts is None}
    try:
        k3s_plan = apply_plan(view, group)
    except HomelabError as exc:
        plan.items.append(Item(pattern, ERROR, _first_line(exc)))
        return plan
    for action in k3s_plan.actions:
        node = next((n for n in group.nodes if n.name == action.id), None)
        facts = {}
        if node is not None and node.facts is not None:
            config = node.facts.config_text or ""
            facts = {
                "version": node.facts.version,
                "config": hashlib.sha256(config.encode()).hexdigest(),
            }
        if action.id in unread:
            plan.items.append(Item(action.id, ERROR, f"unreachable: {unread[action.id]}"))
        elif action.included:
            # The hosts' summaries say what changes; the kubeconfig's reason says why it would.
            detail = action.summary if node is not None else f"{action.reason}: {action.summary}"
            plan.items.append(Item(action.id, CHANGE, detail, facts=facts))
        else:
            plan.items.append(Item(action.id, OK, action.reason, facts=facts))
    plan.items.extend(_dns_items(view))
    return plan


def _hosts_to_come(run: Run, pattern: str, problem: HomelabError) -> list[Item]:
    """HOST_NAME's hosts once L2 has made its VMs (tasks/upchain.py's prospective inventory)."""
    from tasks.host import k3s
    from tasks.upchain import prospective_roles

    hosts = prospective_roles(run, pattern)
    if not any(role == "server" for _name, role in hosts):
        return [Item(pattern, ERROR, _first_line(problem))]
    version = k3s.wanted_version(run.env)
    items = [
        Item(name, CHANGE, f"install k3s {version} {role} (L2 has not made this host yet)")
        for name, role in hosts
    ]
    if run.settings.flag("FEAT_DYNAMIC_DNS", True):
        items.append(Item("dynamic DNS", UNCHECKED, "its server does not exist yet"))
    return items


def _dns_items(run: Run) -> list[Item]:
    """DDNS_RECORD as the provider has it against the public address (10_dynamic_dns's reads).
    `inv up` does not run dynamic DNS: `inv host.apply --only 10` does."""
    from tasks.adapters.dns import provider_from_env
    from tasks.host.steps import wanted_record

    if not run.settings.flag("FEAT_DYNAMIC_DNS", True):
        return [Item("dynamic DNS", OK, "off (FEAT_DYNAMIC_DNS=false)")]
    try:
        zone, record, record_type, address, ttl, proxied = wanted_record(run)
        current, changes = provider_from_env(run).pending(
            zone, record, record_type, address, ttl, proxied
        )
    except HomelabError as exc:
        return [Item("dynamic DNS", ERROR, _first_line(exc))]
    label = f"{record} {record_type}"
    if not changes:
        return [Item(label, OK, f"{address}, ttl {ttl}", facts={"address": address})]
    fix = "`inv host.apply --only 10` updates it (`inv up` does not run dynamic DNS)"
    what = changes[0] if current is None else "update " + "; ".join(changes)
    return [Item(label, CHANGE, what, [fix], facts={"address": address}, stage="")]


# ---------------------------------------------------------------------- GitOps


def read_gitops(run: Run) -> LayerPlan:
    """Local edits of the GitOps tree not committed or not pushed (git adapter), then per Flux
    Kustomization `flux diff` when a cluster answers; without a kubeconfig: named, not checked."""
    from tasks.adapters.git import Git
    from tasks.gitops.settings import GitOpsSettings

    plan = LayerPlan("gitops", "GitOps")
    settings = GitOpsSettings.load(run)
    git = Git(run.effects)
    repo = git.toplevel(settings.root)
    if repo is None:
        plan.items.append(
            Item(settings.rel(settings.root), ERROR, "not in a Git repository: Flux cannot see it")
        )
    else:
        dirty = git.changed_paths(repo, [settings.root])
        for path in dirty:
            plan.items.append(Item(path, CHANGE, "not committed"))
        upstream = git.upstream(repo)
        if upstream is None:
            ref = f"{settings['remote']}/{settings['branch']}"
            upstream = ref if git.has_ref(repo, f"refs/remotes/{ref}") else None
        if upstream is None:
            plan.items.append(
                Item("branch", CHANGE, "no upstream: Flux cannot have seen any of the tree")
            )
        else:
            for path in git.unpushed_paths(repo, upstream, [settings.root]):
                plan.items.append(Item(path, CHANGE, f"committed, not pushed to {upstream}"))
        if not plan.items:
            plan.items.append(Item(settings.rel(settings.root), OK, "committed and pushed"))
    plan.items.extend(_flux_diffs(run, settings))
    return plan


def _flux_diffs(run: Run, settings) -> list[Item]:
    from tasks.gitops.flux_ops import diff_kustomization, diff_verdict
    from tasks.gitops.graph import graph_for
    from tasks.gitops.settings import kube_for, kubeconfig_source

    paths, why = kubeconfig_source(run)
    if not any(p.is_file() for p in paths):
        return [Item("flux diff", UNCHECKED, f"no cluster to compare with: no kubeconfig ({why})")]
    kube = kube_for(run)
    answer = kube.kubectl("version", "-o", "json", "--request-timeout=10s", check=False)
    if answer.failed:
        return [Item("flux diff", ERROR, f"the Kubernetes API does not answer ({why})")]
    items = []
    graph = graph_for(settings, kube)
    for node in graph.order():
        label = f"{node.namespace}/{node.name}"
        if not node.local:
            items.append(Item(label, UNCHECKED, node.note or "not in this tree"))
            continue
        result = diff_kustomization(kube, node)
        verdict, shown = diff_verdict(result)
        if verdict == "none":
            items.append(Item(label, OK, "flux diff: no changes"))
        elif verdict == "differs":
            items.append(Item(label, CHANGE, "flux diff: differs", shown[:20]))
        else:
            tail = result.tail()
            detail = f"flux diff failed (exit {result.exited})" + (f": {tail}" if tail else "")
            items.append(Item(label, ERROR, detail))
    return items


READERS: dict[str, Callable[..., LayerPlan]] = {
    "l0": read_l0,
    "l1": read_l1,
    "l2": read_l2,
    "l3": lambda run: read_hosts(run, "l3"),
    "l4": lambda run: read_hosts(run, "l4"),
    "host": read_host,
    "gitops": read_gitops,
}
LAYERS = tuple(READERS)
