"""Shared state for the recording stand-ins of `kubectl` and `flux` (see those two files).

No Kubernetes API server, k3s or flux CLI can run on this machine, so the cluster is modelled by a
small JSON state file ($KUBE_STANDIN_STATE): namespaces, CRDs, Flux Kustomizations, HelmReleases
and secrets (key names only). Every call is appended to $KUBE_STANDIN_LOG as one JSON line
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
