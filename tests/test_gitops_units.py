"""Pure pieces of the GitOps side: substitution patterns, facts parsers, stack order."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.gitops.facts import names, ready_states, server_version
from tasks.gitops.tree import VAR_PATTERN, FluxKustomization, stack_order
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


class _Settings:
    cluster_dir = Path("/repo/clusters/home")

    def resolve_flux_path(self, path: str) -> Path:
        return Path("/repo") / path.lstrip("./")


def test_stack_order_puts_the_entry_first_then_dependencies() -> None:
    items = [
        FluxKustomization("tenants", "flux-system", "./tenants", ("platform",)),
        FluxKustomization("platform", "flux-system", "./platform", ("infra",)),
        FluxKustomization("infra", "flux-system", "./infra"),
        FluxKustomization("flux-system", "flux-system", "./clusters/home"),
    ]
    order = stack_order(_Settings(), items)  # type: ignore[arg-type]
    assert [k.name for k in order] == ["flux-system", "infra", "platform", "tenants"]
    cyclic = [
        FluxKustomization("a", "n", "./a", ("b",)),
        FluxKustomization("b", "n", "./b", ("a",)),
    ]
    with pytest.raises(ConfigError, match="cycle"):
        stack_order(_Settings(), cyclic)  # type: ignore[arg-type]
