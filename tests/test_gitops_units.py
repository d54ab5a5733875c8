"""Pure pieces of the GitOps side: substitution patterns, facts parsers, the graph's order."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.gitops.facts import names, ready_states, server_version
from tasks.gitops.graph import Graph, Node
from tasks.gitops.layout import Entry
from tasks.gitops.tree import VAR_PATTERN
from tasks.runtime.errors import ConfigError


def test_var_pattern_matches_flux_substitutions() -> None:
    found = [
        (m.group(1), m.group(2))
        for m in VAR_PATTERN.finditer(
            "a ${ONE} b ${TWO:=x} c ${THREE:-y} d $${ESCAPED} e $PLAIN ${1BAD}"
        )
    ]
    assert found == [("ONE", None), ("TWO", ":=x"), ("THREE", ":-y")]


def test_ready_states_parse_conditions() -> None:
    listing = {
        "items": [
            {
                "kind": "Kustomization",
                "metadata": {"name": "a", "namespace": "flux-system"},
                "status": {
                    "conditions": [
                        {"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded"}
                    ]
                },
            },
            {
                "kind": "HelmRelease",
                "metadata": {"name": "b", "namespace": "x"},
                "spec": {"suspend": True},
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "InstallFailed",
                            "message": "m",
                        }
                    ]
                },
            },
            {"kind": "Kustomization", "metadata": {"name": "c", "namespace": "flux-system"}},
        ]
    }
    a, b, c = ready_states(listing)
    assert (a.ready, a.ref) == (True, "flux-system/a")
    assert (b.ready, b.reason, b.message, b.suspended) == (False, "InstallFailed", "m", True)
    assert (c.ready, c.reason) == (False, "NoStatus")
    assert names({"items": [{"metadata": {"name": "z"}}, {"metadata": {"name": "y"}}]}) == [
        "y",
        "z",
    ]
    assert server_version({"serverVersion": {"gitVersion": "v1.31.4+k3s1"}}) == "v1.31.4+k3s1"


def _node(name: str, parent: str | None = None, deps: tuple[str, ...] = ()) -> Node:
    return Node(
        name=name,
        namespace="flux-system",
        path=f"./{name}",
        folder=Path(f"/repo/{name}"),
        source=("GitRepository", "flux-system", "flux-system"),
        depends_on=tuple(("flux-system", d) for d in deps),
        declared_in=f"{name}.yaml",
        parent=f"flux-system/{parent}" if parent else None,
    )


def _graph(*nodes: Node) -> Graph:
    entry = Entry(
        "flux bootstrap",
        Path("/repo/gotk-sync.yaml"),
        "flux-system",
        "flux-system",
        "./",
        "GitRepository",
        "flux-system",
        "flux-system",
    )
    graph = Graph(None, entry)  # type: ignore[arg-type]
    for node in nodes:
        graph.add(node)
    return graph


def test_graph_order_puts_parents_and_dependencies_first() -> None:
    graph = _graph(
        _node("flux-system"),
        _node("tenants", "flux-system", ("platform",)),
        _node("platform", "flux-system", ("infra",)),
        _node("infra", "flux-system"),
        _node("app", "tenants", ("infra",)),
    )
    assert [n.name for n in graph.order()] == ["flux-system", "infra", "platform", "tenants", "app"]
    assert graph.sources() == [("GitRepository", "flux-system", "flux-system")]
    assert graph.cycles() == []


def test_graph_cycles_and_dangling_dependencies_are_problems() -> None:
    graph = _graph(
        _node("flux-system"),
        _node("a", "flux-system", ("b",)),
        _node("b", "flux-system", ("a",)),
        _node("parent", "flux-system", ("child",)),
        _node("child", "parent"),
        _node("lonely", "flux-system", ("nowhere",)),
    )
    graph._check_structure()
    problems = "\n".join(graph.problems)
    assert "Kustomization cycle: a (a.yaml) dependsOn b; b (b.yaml) dependsOn a" in problems
    assert (
        "parent (parent.yaml) dependsOn child; child (child.yaml) is applied by parent" in problems
    )
    assert "Flux Kustomization lonely (lonely.yaml): dependsOn flux-system/nowhere" in problems
    with pytest.raises(ConfigError, match="problem"):
        graph.check()
    assert {n.name for n in graph.order()} == {n.name for n in graph.nodes.values()}
