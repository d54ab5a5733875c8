"""k3s on the hosts HOST_NAME names (a host or a group): who is a server and who an agent, what
each host says (facts, read over SSH in parallel), and the plans the step engine runs.

- apply: the first server (inventory order) initialises the cluster (`cluster-init` when there
  are several servers); the other servers join it one at a time, a failure stopping the rest
  (etcd quorum); then the agents, one at a time, where one agent's failure does not stop the
  others. Every joining host first waits, from where it stands, for the server's API to answer,
  then joins with the server's token, read from the first server and handed to the installer on
  the session's stdin (never argv, never printed). Last, the kubeconfig hand-off: the first
  server's kubeconfig, its server rewritten to the API address and its names to the cluster's,
  0600 at `.work/<cluster>/kubeconfig`.
- delete: the agents first (drained and deleted through the first server, then uninstalled),
  then the joined servers the same way, the first server last, then the local kubeconfig.

Only hosts whose version or config differ are touched; a converged group reads and changes nothing.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.host import k3s
from tasks.runtime.errors import ConfigError, ExternalError, RefusedError

if TYPE_CHECKING:
    from fabric import Connection

    from tasks.adapters.ssh import SshSettings, SshTarget
    from tasks.l3.inventory import HostSpec, Inventory
    from tasks.runtime.run import Run
    from tasks.runtime.steps import Plan, StepContext

DEFAULT_API_WAIT = 300.0
NOT_INSTALLED = "k3s not installed: already as wanted"


@dataclass
class Member:
    """One host of the group and its role (no K3S_* needed: dynamic DNS uses this too)."""

    host: HostSpec
    role: str
    vars: dict


def select_members(run: Run) -> tuple[Inventory, list[Member]]:
    """The hosts HOST_NAME names, servers first (inventory order within each role)."""
    from tasks.l3.inventory import load_inventory

    pattern = (run.env.get("HOST_NAME") or "").strip()
    if not pattern:
        raise ConfigError(
            "HOST_NAME is not set: name the inventory host, or group of hosts, the host "
            "orchestrator drives",
            hint="set it in inventory/host/config/homelab.env or pass --host-env FILE",
        )
    inv = load_inventory(run.project)
    tokens = [t.strip() for t in pattern.split(",") if t.strip()]
    unknown = [t for t in tokens if t != "all" and t not in inv.groups and t not in inv.hosts]
    if unknown:
        known = ", ".join([*sorted(inv.groups), *sorted(inv.hosts)]) or "none"
        raise ConfigError(
            f"HOST_NAME={pattern!r}: {', '.join(unknown)} is neither a host nor a group of the "
            f"inventory (hosts.yaml and L2's VMs); groups and hosts: {known}",
            hint="`inv l3.hosts` shows them; VMs join once `inv l2.apply` has made them",
        )
    named = [n for t in tokens for n in (inv.members(t) if t in inv.groups else [t])]
    if not named and "all" not in tokens:
        raise ConfigError(
            f"HOST_NAME={pattern!r}: no hosts yet (an empty group: its hosts come from L2's VMs)",
            hint="`inv l2.apply` creates the VMs (or declare the hosts in inventory/hosts.yaml)",
        )
    members = []
    for host in inv.select(pattern):
        host_vars = inv.host_vars(host)
        members.append(Member(host, k3s.role_of(host_vars, host.name), host_vars))
    if not any(m.role == "server" for m in members):
        raise ConfigError(
            f"HOST_NAME={pattern!r}: no host with k3s_role server among "
            f"{', '.join(m.host.name for m in members)}: agents need a server to join",
            hint="give one host (or its group) k3s_role: server in inventory/hosts.yaml",
        )
    members.sort(key=lambda m: 0 if m.role == "server" else 1)
    return inv, members


def cluster_name(run: Run) -> str:
    """The cluster the kubeconfig is for: gitops.cluster of runner.yaml, else home. One name for
    both sides: the cluster tasks find the hand-off by it (tasks/gitops/settings.py)."""
    from tasks.gitops.settings import configured_cluster

    return configured_cluster(run.project) or "home"


@dataclass
class Node:
    host: HostSpec
    target: SshTarget
    spec: k3s.K3sSpec
    facts: k3s.K3sFacts | None = None
    unreachable: str = ""  # why the facts could not be read

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def role(self) -> str:
        return self.spec.role


@dataclass
class K3sGroup:
    pattern: str
    nodes: list[Node]  # servers first; nodes[0] initialises the cluster
    settings: SshSettings
    cluster: str
    kubeconfig: Path  # the local hand-off file
    kubeconfig_rel: str
    exec_args: str
    wait: float
    token: str | None  # K3S_TOKEN: the first server's token when set (else k3s makes one)
    results: dict[str, tuple[str, str]] = field(default_factory=dict)  # host -> (outcome, note)
    _token_lock: threading.Lock = field(default_factory=threading.Lock)
    _join_token: str | None = None

    @property
    def first(self) -> Node:
        return self.nodes[0]

    @property
    def servers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "server"]

    @property
    def agents(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "agent"]

    @property
    def api_url(self) -> str:
        return self.first.spec.api_url

    def describe(self) -> list[str]:
        servers = ", ".join(
            n.name + (" (initialises the cluster)" if i == 0 else "")
            for i, n in enumerate(self.servers)
        )
        agents = ", ".join(n.name for n in self.agents) or "none"
        return [
            f"hosts (HOST_NAME={self.pattern}): servers {servers}; agents {agents}",
            f"k3s {self.first.spec.version}; API {self.api_url}; kubeconfig -> {self.kubeconfig_rel}",
        ]


def load_group(run: Run) -> K3sGroup:
    """The group's spec from the env (host chain) and the inventory; no host is reached."""
    inv, members = select_members(run)
    servers = [m for m in members if m.role == "server"]
    first = k3s.K3sSpec.build(
        run.env,
        servers[0].vars,
        servers[0].host.address,
        node_name=servers[0].host.name,
        cluster_init=len(servers) > 1,
    )
    nodes = [Node(servers[0].host, inv.target(servers[0].host), first)]
    for member in members[1:]:
        spec = k3s.K3sSpec.build(
            run.env,
            member.vars,
            member.host.address,
            node_name=member.host.name,
            join_url=first.api_url,
        )
        nodes.append(Node(member.host, inv.target(member.host), spec))
    from tasks.gitops.settings import handoff_kubeconfig

    cluster = cluster_name(run)
    local = handoff_kubeconfig(run.project)
    return K3sGroup(
        pattern=(run.env.get("HOST_NAME") or "").strip(),
        nodes=nodes,
        settings=inv.settings(run.project, run),
        cluster=cluster,
        kubeconfig=local,
        kubeconfig_rel=run.project.rel(local),
        exec_args=run.env.get("K3S_EXEC_ARGS") or "",
        wait=run.settings.seconds("K3S_API_WAIT", DEFAULT_API_WAIT),
        token=(run.env.get("K3S_TOKEN") or "").strip() or None,
    )


# ---------------------------------------------------------------------- SSH


@contextlib.contextmanager
def session(run: Run, target: SshTarget, settings: SshSettings) -> Iterator[Connection]:
    from tasks.adapters.ssh import SshFailure, close_connection, host_key_refusal

    try:
        conn = run.effects.ssh_connect(target, settings)
    except SshFailure as exc:
        if exc.status == "refused":  # one exit code for a refused host key everywhere: 3
            raise host_key_refusal(f"{target.name}: {exc.message}", settings) from None
        raise ExternalError(f"{target.name}: {exc.message}") from None
    try:
        yield conn
    finally:
        close_connection(conn)


def remote(
    run: Run, conn: Connection, host: str, command: str, what: str, *, mutates: bool, **kwargs
) -> str:
    """`command` on `host`; a non-zero exit is an ExternalError with the tail of its output."""
    from tasks.adapters.ssh import SshFailure

    try:
        result = run.effects.ssh_run(conn, host, command, mutates=mutates, what=what, **kwargs)
    except SshFailure as exc:
        raise ExternalError(f"{host}: {what}: {exc.message}") from None
    if result.exited != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise ExternalError(f"{host}: {what} failed (exit {result.exited}): {tail}")
    return result.stdout


def read_on(run: Run, target: SshTarget, settings: SshSettings, command: str, what: str) -> str:
    """One read-only command on a host, in a session of its own (a dry run reads it too)."""
    with session(run, target, settings) as conn:
        return remote(run, conn, target.name, command, what, mutates=False)


def read_facts(run: Run, group: K3sGroup) -> None:
    """Every host's k3s facts at once (reads, so a dry run reads them too)."""
    from tasks.runtime.fanout import fan_out

    def one(node: Node) -> k3s.K3sFacts:
        command = k3s.facts_command(node.spec)
        return k3s.parse_facts(
            read_on(run, node.target, group.settings, command, "reading k3s facts")
        )

    outcomes = fan_out(group.nodes, one, name=lambda n: n.name, parallel=10)
    for node, outcome in zip(group.nodes, outcomes, strict=True):
        node.facts = outcome.value if outcome.ok else None
        node.unreachable = "" if outcome.ok else outcome.detail
    # An unreachable host is planned as "install"; a refused host key is never planned around.
    refused = next((o.error for o in outcomes if isinstance(o.error, RefusedError)), None)
    if refused is not None:
        raise refused


def join_token(run: Run, group: K3sGroup) -> str:
    """The server's token, read once from the first server; masked from then on."""
    from tasks.runtime.secrets import MASKER

    with group._token_lock:
        if group._join_token is None:
            first = group.first
            command = k3s.token_command(first.spec)
            raw = read_on(run, first.target, group.settings, command, "reading the cluster token")
            token = raw.strip()
            if not token:
                raise ExternalError(f"{first.name}: {first.spec.token_file} is empty")
            MASKER.add(token)
            if "::server:" in token:
                MASKER.add(token.split("::server:", 1)[1])
            group._join_token = token
        return group._join_token


# ---------------------------------------------------------------------- apply


def _recorded(group: K3sGroup, node_name: str, work: Callable[[StepContext], str]):
    """An action body that records its host's outcome for the summary table."""
    from tasks.runtime.fanout import describe_failure

    def run(sc: StepContext) -> None:
        try:
            note = work(sc)
        except Exception as exc:
            group.results[node_name] = ("failed", describe_failure(exc)[1])
            raise
        group.results[node_name] = ("ok", note)
        sc.note(note)

    return run


def _install(group: K3sGroup, node: Node) -> Callable[[StepContext], str]:
    def work(sc: StepContext) -> str:
        run, spec = sc.run, node.spec
        token = group.token
        if spec.join_url:
            with session(run, node.target, group.settings) as conn:
                sc.note(f"waiting for the k3s API at {spec.join_url} (from {node.name})")
                remote(
                    run,
                    conn,
                    node.name,
                    k3s.wait_command(spec.join_url, group.wait),
                    "waiting for the server's API",
                    mutates=False,
                    timeout=group.wait + 30,
                )
            token = join_token(run, group)
        with session(run, node.target, group.settings) as conn:
            facts = node.facts
            if facts is None:
                output = remote(
                    run,
                    conn,
                    node.name,
                    k3s.facts_command(spec),
                    "reading k3s facts",
                    mutates=False,
                )
                facts = k3s.parse_facts(output)
            steps = k3s.plan(spec, facts)
            if "write-config" in steps:
                remote(
                    run,
                    conn,
                    node.name,
                    k3s.write_config_command(spec),
                    "writing the k3s config",
                    mutates=True,
                    stdin=spec.config_text().encode(),
                )
            if "install" in steps:
                remote(
                    run,
                    conn,
                    node.name,
                    k3s.install_command(spec, group.exec_args),
                    "the k3s installer",
                    mutates=True,
                    env=spec.installer_env(token),
                    timeout=900,
                )
                after = k3s.parse_facts(
                    remote(
                        run,
                        conn,
                        node.name,
                        k3s.facts_command(spec),
                        "reading k3s facts",
                        mutates=False,
                    )
                )
                if after.version != spec.version:
                    raise ExternalError(
                        f"{node.name}: after installing, k3s reports "
                        f"{after.version or 'nothing'}, not {spec.version}"
                    )
        was = facts.version or "not installed"
        joined = f", joined {spec.join_url}" if spec.join_url else ""
        if not steps:
            return f"k3s {spec.version} {spec.role}: already as wanted{joined}"
        return f"k3s {spec.version} {spec.role} (was {was}){joined}"

    return work


def _kubeconfig_text(run: Run, group: K3sGroup) -> str:
    """The first server's kubeconfig, rewritten for the hand-off; its secrets masked."""
    from tasks.runtime.secrets import MASKER

    first = group.first
    command = f"{first.spec.sudo}cat {shlex.quote(first.spec.remote_kubeconfig)}"
    raw = read_on(run, first.target, group.settings, command, "fetching the kubeconfig")
    text, secrets = k3s.rewrite_kubeconfig(raw, group.api_url, group.cluster)
    MASKER.add_all(secrets)
    return text


def _write_kubeconfig(group: K3sGroup, known: str | None) -> Callable[[StepContext], str]:
    def work(sc: StepContext) -> str:
        from tasks.runtime.files import atomic_write

        text = known if known is not None else _kubeconfig_text(sc.run, group)
        if group.kubeconfig.exists() and group.kubeconfig.read_text() == text:
            return f"{group.kubeconfig_rel}: already current"
        atomic_write(group.kubeconfig, text, mode=0o600)
        return f"kubeconfig written to {group.kubeconfig_rel} (server {group.api_url})"

    return work


def _check_roles(group: K3sGroup) -> None:
    wrong = [
        f"{n.name} runs k3s as {n.facts.installed_role}, declared {n.role}"
        for n in group.nodes
        if n.facts is not None and n.facts.installed_role not in (None, n.role)
    ]
    if wrong:
        raise RefusedError(
            "k3s role changed: " + "; ".join(wrong),
            hint="remove k3s from those hosts first (`inv host.delete`), or restore k3s_role",
        )


def apply_plan(run: Run, group: K3sGroup) -> Plan:
    """The apply plan, from the facts `read_facts` gathered."""
    from tasks.runtime.steps import Action, Plan

    _check_roles(group)
    actions = []
    changed_first = True
    for index, node in enumerate(group.nodes):
        role = node.role + (
            ", initialises the cluster" if index == 0 else f", joins {group.first.name}"
        )
        if node.facts is None:
            summary, included = f"facts unreadable ({node.unreachable}); install", True
        else:
            summary = k3s.describe(node.spec, node.facts)
            included = bool(k3s.plan(node.spec, node.facts))
        if index == 0:
            changed_first = included
        actions.append(
            Action(
                id=node.name,
                summary=summary if included else "",
                run=_recorded(group, node.name, _install(group, node)),
                included=included,
                reason=role if included else f"{node.role}: {summary}",
                item=node.name,
                group="k3s-agents" if node.role == "agent" else None,
            )
        )
        if not included:
            group.results[node.name] = ("ok", summary)
    known = None
    if changed_first:
        fetch, reason = True, "after the install"
    elif group.first.facts is None:
        fetch, reason = True, "first server unread"
    else:
        known = _kubeconfig_text(run, group)
        current = group.kubeconfig.exists() and group.kubeconfig.read_text() == known
        fetch, reason = not current, "already current" if current else "missing or out of date"
    actions.append(
        Action(
            id="kubeconfig",
            summary=f"{group.first.name} -> {group.kubeconfig_rel}, server {group.api_url}",
            run=_recorded(group, "kubeconfig", _write_kubeconfig(group, known)),
            included=fetch,
            reason=reason,
        )
    )
    return Plan(
        title=f"k3s on {group.pattern}",
        area="host",
        actions=actions,
        header=group.describe(),
        nothing=f"k3s on {group.pattern}: every host already as wanted; kubeconfig current",
        parallel=1,
        unit="host",
    )


# ---------------------------------------------------------------------- delete


def _remove(group: K3sGroup, node: Node, drain: bool) -> Callable[[StepContext], str]:
    def work(sc: StepContext) -> str:
        run, first = sc.run, group.first
        done = []
        if drain:
            with session(run, first.target, group.settings) as conn:
                name = node.spec.node_name or node.name
                remote(
                    run,
                    conn,
                    first.name,
                    k3s.drain_command(first.spec, name),
                    f"draining node {name}",
                    mutates=True,
                    timeout=360,
                )
                remote(
                    run,
                    conn,
                    first.name,
                    k3s.delete_node_command(first.spec, name),
                    f"deleting node {name}",
                    mutates=True,
                )
            done.append(f"drained and deleted through {first.name}")
        role = (node.facts.installed_role if node.facts else None) or node.role
        with session(run, node.target, group.settings) as conn:
            remote(
                run,
                conn,
                node.name,
                k3s.uninstall_command(node.spec, role),
                "k3s uninstall",
                mutates=True,
                timeout=600,
            )
        done.append(f"k3s {role} uninstalled")
        return ", ".join(done)

    return work


def _remove_kubeconfig(group: K3sGroup) -> Callable[[StepContext], str]:
    def work(sc: StepContext) -> str:
        group.kubeconfig.unlink(missing_ok=True)
        return f"removed {group.kubeconfig_rel}"

    return work


def delete_plan(run: Run, group: K3sGroup) -> Plan:
    """Agents first, then the joined servers (last joined first), the first server last."""
    from tasks.runtime.steps import Action, Plan

    first = group.first
    server_up = first.facts is None or first.facts.installed
    order = [*group.agents, *reversed(group.servers[1:]), first]
    actions = []
    for node in order:
        installed = node.facts is None or node.facts.installed
        drain = node is not first and server_up
        summary = "" if node.facts is not None else f"facts unreadable ({node.unreachable}); "
        summary += (
            f"drain and delete node {node.spec.node_name} through {first.name}, then uninstall"
            if drain
            else "uninstall"
        ) + f" k3s ({node.role})"
        actions.append(
            Action(
                id=node.name,
                summary=summary if installed else "",
                run=_recorded(group, node.name, _remove(group, node, drain)),
                destructive=True,
                included=installed,
                reason=node.role if installed else f"{node.role}: {NOT_INSTALLED}",
                item=node.name,
            )
        )
        if not installed:
            group.results[node.name] = ("ok", NOT_INSTALLED)
    present = group.kubeconfig.exists()
    actions.append(
        Action(
            id="kubeconfig",
            summary=f"remove {group.kubeconfig_rel}" if present else "",
            run=_recorded(group, "kubeconfig", _remove_kubeconfig(group)),
            destructive=True,
            included=present,
            reason="" if present else "not present",
        )
    )
    return Plan(
        title=f"k3s delete on {group.pattern}",
        area="host",
        actions=actions,
        mode="delete",
        header=group.describe()[:1],
        nothing=f"k3s on {group.pattern}: not installed anywhere; no kubeconfig",
        unit="host",
    )


# ---------------------------------------------------------------------- the step


def summary_rows(group: K3sGroup) -> list[list[str]]:
    rows = []
    for node in group.nodes:
        outcome, note = group.results.get(node.name, ("not-run", "an earlier host failed"))
        rows.append([node.name, node.role, outcome, note])
    return rows


def run_k3s(run: Run, mode: str) -> None:
    """20_install_k3s (and `inv up`'s k3s stage): plan from the hosts' facts, then the engine.
    `run` must see the host chain (tasks/host/chain.py)."""
    from tasks.runtime.console import table

    group = load_group(run)
    read_facts(run, group)
    plan = delete_plan(run, group) if mode == "delete" else apply_plan(run, group)
    try:
        # Confirmation, when deleting, was the orchestrator's (host.delete asks once).
        run.execute(plan, yes=True)
    finally:
        if not run.dry_run and plan.selected:
            table(["HOST", "ROLE", "OUTCOME", "DETAIL"], summary_rows(group), status_column=2)


def preview(run: Run, mode: str) -> list[str]:
    """The k3s plan's lines for a dry run of the host orchestrator (facts are reads)."""
    try:
        group = load_group(run)
        read_facts(run, group)
        plan = delete_plan(run, group) if mode == "delete" else apply_plan(run, group)
    except ExternalError as exc:
        return [f"k3s plan unavailable: {exc.message}"]
    return [line.strip() for line in plan.render()[1:]]
