"""The Kustomization graph: render + validate of a generated tree of 100 Kustomizations.

Run: .venv/bin/python benchmarks/gitops_graph.py   (writes the `gitops_graph` section of RESULTS.md;
`--no-write` only prints it; BENCH_ROUNDS sets the number of rounds, 5 by default)

The tree (generated here, its own Git repository): an entry (`clusters/bench`, flux-system/ with
gotk-sync.yaml) applying `apps`, which applies 98 app Kustomizations (`apps/appNN/ks.yaml` +
`app/`, 9 objects each, `${APP}` substituted): 100 Kustomizations, about 1,000 objects.

Baseline: one `kubectl kustomize` per Kustomization path, run one after another by a shell loop
(what rendering the tree by hand, or the earlier runner, costs). Measured, paired with a baseline
run in every round: `inv k8s.validate` cold (no render or check cache: `.work/gitops/` removed)
and warm (nothing changed). The figure is the median of the per-round ratios.
Targets on 2 cores: cold <= 0.7, warm <= 0.1.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]

from helpers import INV, base_env, copy_repo, git  # noqa: E402
from results import compile_runner, paired_ratio, write_section  # noqa: E402

APPS = 98
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
COLD_TARGET, WARM_TARGET = 0.7, 0.1

APP_FILES = {
    "namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {app}\n",
    "serviceaccount.yaml": (
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {app}\n  namespace: {app}\n"
    ),
    "config.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}-config\n  namespace: {app}\n"
        "data:\n  name: ${{APP}}\n  url: https://${{APP}}.bench.example\n"
    ),
    "env.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}-env\n  namespace: {app}\n"
        "data:\n  LOG_LEVEL: info\n"
    ),
    "deployment.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\n  namespace: {app}\n"
        "spec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: {app}}}\n  template:\n"
        "    metadata:\n      labels: {{app: {app}}}\n    spec:\n      serviceAccountName: {app}\n"
        "      containers:\n        - name: web\n          image: ghcr.io/example/web:1.0\n"
        "          ports:\n            - containerPort: 8080\n          envFrom:\n"
        "            - configMapRef: {{name: {app}-env}}\n"
    ),
    "service.yaml": (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {app}\n  namespace: {app}\nspec:\n"
        "  selector: {{app: {app}}}\n  ports:\n    - port: 80\n      targetPort: 8080\n"
    ),
    "ingress.yaml": (
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {app}\n"
        "  namespace: {app}\nspec:\n  rules:\n    - host: ${{APP}}.bench.example\n      http:\n"
        "        paths:\n          - path: /\n            pathType: Prefix\n            backend:\n"
        "              service: {{name: {app}, port: {{number: 80}}}}\n"
    ),
    "role.yaml": (
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {app}\n"
        "  namespace: {app}\nrules:\n  - apiGroups: ['']\n    resources: [configmaps]\n"
        "    verbs: [get, list]\n"
    ),
    "rolebinding.yaml": (
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {app}\n"
        "  namespace: {app}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n"
        "  name: {app}\nsubjects:\n  - kind: ServiceAccount\n    name: {app}\n"
        "    namespace: {app}\n"
    ),
}
KS = (
    "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: {name}\n"
    "  namespace: flux-system\nspec:\n  interval: 1h\n  path: {path}\n  prune: true\n"
    "  sourceRef:\n    kind: GitRepository\n    name: flux-system\n{extra}"
)


def generate(tree: Path) -> list[str]:
    """Write the tree; return the 100 Kustomization paths (relative to the tree)."""

    def write(name: str, text: str) -> None:
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    write(
        "clusters/bench/flux-system/gotk-sync.yaml",
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n"
        "  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 1m\n"
        "  url: https://git.example/bench.git\n  ref: {branch: main}\n---\n"
        + KS.format(name="flux-system", path="./clusters/bench", extra=""),
    )
    write("clusters/bench/flux-system/kustomization.yaml", "resources: [gotk-sync.yaml]\n")
    write("clusters/bench/apps.yaml", KS.format(name="apps", path="./apps", extra=""))
    write("clusters/bench/kustomization.yaml", "resources: [flux-system, apps.yaml]\n")
    paths = ["clusters/bench", "apps"]
    names = [f"app{i:02d}" for i in range(APPS)]
    for app in names:
        extra = f"  dependsOn:\n    - name: {names[0]}\n" if app != names[0] else ""
        extra += f"  postBuild:\n    substitute:\n      APP: {app}\n"
        write(f"apps/{app}/ks.yaml", KS.format(name=app, path=f"./apps/{app}/app", extra=extra))
        for name, text in APP_FILES.items():
            write(f"apps/{app}/app/{name}", text.format(app=app))
        write(
            f"apps/{app}/app/kustomization.yaml",
            "resources:\n" + "".join(f"  - {n}\n" for n in APP_FILES),
        )
        paths.append(f"apps/{app}/app")
    write("apps/kustomization.yaml", "resources:\n" + "".join(f"  - {a}/ks.yaml\n" for a in names))
    return paths


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr.decode()[-3000:]}"
        )
    return elapsed


def main() -> int:
    env = base_env()
    with tempfile.TemporaryDirectory() as tmp:
        repo = copy_repo(Path(tmp) / "repo")
        compile_runner(repo)
        tree = Path(tmp) / "bench-tree"
        paths = generate(tree)
        for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-qm", "bench")):
            git(tree, *args)
        (repo / "inventory/runner.yaml").write_text(f"gitops:\n  root: {tree}\n  cluster: bench\n")
        loop = (
            "for p in " + " ".join(paths) + '; do kubectl kustomize "$p" >/dev/null || exit 1; done'
        )
        baseline = ["bash", "-c", loop]
        validate = [INV, "k8s.validate"]
        cache = repo / ".work" / "gitops"

        def cold() -> float:
            shutil.rmtree(cache, ignore_errors=True)
            return timed(validate, repo, env)

        rounds: dict[str, list[float]] = {"base_cold": [], "cold": [], "base_warm": [], "warm": []}
        cold()  # warm-up: OS caches, bytecode, kubectl
        timed(baseline, tree, env)
        for _ in range(ROUNDS):
            rounds["base_cold"].append(timed(baseline, tree, env))
            rounds["cold"].append(cold())
            rounds["base_warm"].append(timed(baseline, tree, env))
            rounds["warm"].append(timed(validate, repo, env))  # the cache of the cold run
        out = subprocess.run(validate, cwd=repo, env=env, capture_output=True, text=True).stdout
        summary = next((ln for ln in out.splitlines() if ln.startswith("k8s.validate:")), out)
    cold_ratio = paired_ratio(rounds["cold"], rounds["base_cold"])
    warm_ratio = paired_ratio(rounds["warm"], rounds["base_warm"])
    med = {k: statistics.median(v) for k, v in rounds.items()}
    ok = cold_ratio <= COLD_TARGET and warm_ratio <= WARM_TARGET
    lines = [
        "## GitOps graph render + validate (`benchmarks/gitops_graph.py`)",
        "",
        f"A generated tree of 100 Kustomizations (entry -> apps -> {APPS} apps, 9 objects each):",
        f"`{summary}`. Baseline: one `kubectl kustomize` per Kustomization path, one after another",
        f"in a shell loop. {ROUNDS} rounds, each pairing the baseline with the measured run; the",
        "ratio is the median of the per-round ratios.",
        "",
        "| what | baseline s (median) | `inv k8s.validate` s (median) | ratio | target |",
        "|---|---|---|---|---|",
        f"| cold (no cache) | {med['base_cold']:.2f} | {med['cold']:.2f} | **{cold_ratio:.2f}** | <= {COLD_TARGET} |",
        f"| warm (nothing changed) | {med['base_warm']:.2f} | {med['warm']:.2f} | **{warm_ratio:.2f}** | <= {WARM_TARGET} |",
        "",
        f"Targets {'met' if ok else 'NOT met'}; load average while measuring: "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
    ]
    if "--no-write" not in sys.argv:
        write_section("gitops_graph", "\n".join(lines))
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
