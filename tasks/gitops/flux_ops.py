"""Flux operations by the graph: reconcile what was pushed, diff one Kustomization, report status."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.runtime.errors import CommandFailed, ConfigError, ExternalError

if TYPE_CHECKING:
    from tasks.gitops.graph import Graph
    from tasks.gitops.settings import GitOpsSettings
    from tasks.runtime.run import Run


def source_command(kind: str, namespace: str, name: str) -> list[str]:
    """`flux reconcile source KIND NAME`, by the source's real kind."""
    from tasks.gitops.graph import SOURCE_KINDS

    sub = SOURCE_KINDS.get(kind)
    if sub is None:
        raise ConfigError(
            f"source {kind} {namespace}/{name}: the flux CLI cannot reconcile a {kind}"
        )
    return ["reconcile", "source", sub, name, f"--namespace={namespace}"]


def reconcile_commands(graph: Graph) -> list[list[str]]:
    """Each source the stack uses, by kind and name; then every Kustomization in dependency
    order (each after the one applying it and after its dependsOn)."""
    return [source_command(*s) for s in graph.sources()] + [
        ["reconcile", "kustomization", n.name, f"--namespace={n.namespace}"] for n in graph.order()
    ]


def _graph(run: Run) -> tuple[GitOpsSettings, Graph]:
    from tasks.gitops.graph import graph_for
    from tasks.gitops.settings import GitOpsSettings, kube_for

    settings = GitOpsSettings.load(run)
    graph = graph_for(settings, kube_for(run))
    graph.check()
    return settings, graph


def reconcile(run: Run, *, force: bool, kustomization: str | None, with_source: bool) -> None:
    """Plan the flux commands from the graph, then run them on the engine."""
    import shlex

    from tasks.gitops.pushed import check_mode_files_pushed
    from tasks.gitops.settings import GitOpsSettings, cluster_kube
    from tasks.runtime.console import say
    from tasks.runtime.steps import Action, Plan

    if with_source and not kustomization:
        raise ConfigError(
            "--with-source goes with one Kustomization: inv flux.reconcile KS --with-source"
        )
    check_mode_files_pushed(GitOpsSettings.load(run), force=force)
    settings, graph = _graph(run)
    kube = cluster_kube(run)
    if kustomization:
        node = graph.find(kustomization)
        commands = [
            ["reconcile", "kustomization", node.name, f"--namespace={node.namespace}"]
            + (["--with-source"] if with_source else [])
        ]
        done = node.key
    else:
        commands = reconcile_commands(graph)
        done = " -> ".join(n.name for n in graph.order())

    def flux(args: list[str]):
        return lambda sc: kube.flux(*args, mutating=True)

    actions = [
        Action(
            " ".join(args[1:4] if args[1] == "source" else args[1:3]),
            shlex.join(["flux", *args]),
            flux(args),
        )
        for args in commands
    ]
    run.execute(Plan(title="flux.reconcile", area="flux", actions=actions))
    if not run.dry_run:
        say(f"reconciled: {done}")


def diff_kustomization(kube, node):
    """`flux diff kustomization` of one local node of the graph against the cluster (a read:
    flux exits 0 no changes, 1 differences, >1 failed; the caller judges)."""
    return kube.flux(
        "diff",
        "kustomization",
        node.name,
        f"--namespace={node.namespace}",
        f"--path={node.folder}",
        check=False,
    )


def diff_verdict(result) -> tuple[str, list[str]]:
    """("none" | "differs" | "failed", the diff's lines) of a `flux diff kustomization` result.
    flux exits 1 when there are differences and >1 when it failed, but also 1 for errors outside
    the diff (a bad flag, a missing file): those print no `►` line, so they are failures too."""
    shown = [ln for ln in result.stdout.splitlines() if ln.startswith(("►", "+", "-"))]
    if result.exited == 0:
        return "none", shown
    if result.exited == 1 and any(ln.startswith("►") for ln in shown):
        return "differs", shown
    return "failed", shown


def diff(run: Run, kustomization: str) -> None:
    from tasks.gitops.settings import cluster_kube
    from tasks.runtime.console import say

    settings, graph = _graph(run)
    node = graph.find(kustomization)
    if not node.local:
        raise ConfigError(f"{node.label()}: {node.note}; flux diff needs it in this tree")
    result = diff_kustomization(cluster_kube(run), node)
    verdict, _ = diff_verdict(result)
    if verdict == "failed":
        raise CommandFailed(f"flux diff kustomization {node.name}", result.exited, result.tail())
    say(result.stdout.rstrip())
    say(
        f"{kustomization}: "
        + (
            "differences above (push and `inv flux.reconcile` to apply)"
            if verdict == "differs"
            else "no changes"
        )
    )


def show_status(run: Run) -> None:
    from tasks.gitops.facts import ready_states
    from tasks.gitops.settings import cluster_kube
    from tasks.runtime.console import say, table

    kube = cluster_kube(run)
    rows, not_ready = [], 0
    for resource in (
        "kustomizations.kustomize.toolkit.fluxcd.io",
        "helmreleases.helm.toolkit.fluxcd.io",
    ):
        for s in ready_states(kube.get_json(resource, "--all-namespaces")):
            state = "suspended" if s.suspended else ("ready" if s.ready else "not ready")
            not_ready += 0 if s.ready else 1
            rows.append([s.kind, s.ref, state, s.reason, s.message])
    if not rows:
        say("no Flux Kustomizations or HelmReleases found (is Flux installed? `inv cluster.apply`)")
        return
    table(["KIND", "NAME", "STATE", "REASON", "MESSAGE"], rows)
    if not_ready:
        raise ExternalError(f"{not_ready} Flux object(s) not ready")


def kustomization_names() -> list[str]:
    """Names for the error when `inv flux.diff` is given none: read off the tree's files (no
    render), so the error stays instant."""
    try:
        from tasks.gitops.layout import is_flux_kustomization
        from tasks.gitops.settings import _gitops_section
        from tasks.runtime.project import Project

        project = Project.current()
        root = (project.root / str(_gitops_section(project).get("root") or ".")).resolve()
        from tasks.gitops.layout import TreeIndex

        index = TreeIndex(root)
        names: set[str] = set()
        for path in index.files():
            if "kustomize.toolkit.fluxcd.io" not in index.text(path):
                continue
            for doc in index.docs(path):
                if is_flux_kustomization(doc) and path.parent.name != "modes":
                    names.add(str((doc.get("metadata") or {}).get("name")))
        return sorted(names)
    except Exception:  # the listing is a courtesy: never fail the error message over it
        return []
