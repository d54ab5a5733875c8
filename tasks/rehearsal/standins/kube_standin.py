"""Shared state for the recording stand-ins of `kubectl` and `flux` (see those two files).

No Kubernetes API server, k3s or flux CLI can run on this machine, so the cluster is modelled by a
small JSON state file ($KUBE_STANDIN_STATE): namespaces, CRDs, Flux sources, Kustomizations,
HelmReleases and secrets (key names only). Names listed in the state's "fail_reconcile" fail to
reconcile and stay not ready. Every call is appended to $KUBE_STANDIN_LOG as one JSON line
`{"tool", "argv", "stdin"}` so tests can assert the exact commands, their order, and that secret
data arrived on stdin and never on argv. Calls a stand-in does not know fail with exit 97, so an
unexpected command fails the test instead of passing silently.
"""

from __future__ import annotations

import json
import os
import sys

FLUX_CRDS = [
    "gitrepositories.source.toolkit.fluxcd.io",
    "helmrepositories.source.toolkit.fluxcd.io",
    "kustomizations.kustomize.toolkit.fluxcd.io",
    "helmreleases.helm.toolkit.fluxcd.io",
]


def load() -> dict:
    path = os.environ.get("KUBE_STANDIN_STATE")
    state: dict = {}
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
    state.setdefault("namespaces", ["default", "kube-system", "kube-public"])
    state.setdefault("crds", [])
    state.setdefault("kustomizations", {})
    state.setdefault("helmreleases", {})
    state.setdefault("secrets", {})
    state.setdefault("sources", {})  # "Kind/namespace/name" -> info
    return state


def save(state: dict) -> None:
    path = os.environ.get("KUBE_STANDIN_STATE")
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=1)
        os.replace(tmp, path)


def record(tool: str, argv: list[str], stdin: str | None = None) -> None:
    path = os.environ.get("KUBE_STANDIN_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"tool": tool, "argv": argv, "stdin": stdin}) + "\n")


def unsupported(tool: str, argv: list[str]) -> None:
    print(f"stand-in {tool}: unsupported call: {' '.join(argv)}", file=sys.stderr)
    sys.exit(97)


SOURCE_APIS = {
    "GitRepository": "gitrepositories",
    "OCIRepository": "ocirepositories",
    "Bucket": "buckets",
    "HelmRepository": "helmrepositories",
}


def apply_objects(state: dict, docs: list[dict]) -> list[str]:
    """What `kubectl apply` of these objects leaves in the modelled cluster; one line each."""
    lines = []
    failing = set(state.get("fail_reconcile", []))
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        kind = str(doc.get("kind"))
        meta = doc.get("metadata") or {}
        name, ns = str(meta.get("name")), str(meta.get("namespace") or "default")
        api = str(doc.get("apiVersion", ""))
        if kind == "Namespace" and name not in state["namespaces"]:
            state["namespaces"].append(name)
        elif kind == "CustomResourceDefinition" and name not in state["crds"]:
            state["crds"].append(name)
        elif kind in SOURCE_APIS and api.startswith("source.toolkit.fluxcd.io/"):
            state["sources"][f"{kind}/{ns}/{name}"] = {"ready": name not in failing}
        elif kind == "Kustomization" and api.startswith("kustomize.toolkit.fluxcd.io/"):
            state["kustomizations"][f"{ns}/{name}"] = {"ready": name not in failing}
        elif kind == "HelmRelease":
            state["helmreleases"][f"{ns}/{name}"] = {"ready": True}
        elif kind == "Secret":
            state["secrets"][f"{ns}/{name}"] = sorted(
                {*(doc.get("data") or {}), *(doc.get("stringData") or {})}
            )
        lines.append(f"{kind.lower()}/{name} configured")
    return lines


def flux_item(kind: str, api: str, ref: str, info: dict) -> dict:
    namespace, name = ref.split("/", 1)
    ready = info.get("ready", True)
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"suspend": bool(info.get("suspended"))},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": info.get(
                        "reason", "ReconciliationSucceeded" if ready else "ReconciliationFailed"
                    ),
                    "message": info.get(
                        "message", "Applied revision: main@sha1:0000000" if ready else "failed"
                    ),
                }
            ]
        },
    }
