"""The Kustomization graph: its problems named with Kustomization and file, other sources by kind,
renders cached by their inputs, Flux's generated kustomization kept out of the tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from gitops_support import (
    add_cluster_file,
    commands,
    commit_tree,
    kube_env,
    layout_a,
    point_runner_at,
    write_tree,
)
from helpers import run_inv


def _fleet(sample_repo: Path, tmp_path: Path, **extra: str) -> Path:
    root = layout_a(tmp_path)
    if extra:
        write_tree(root, extra)
    commit_tree(root, tmp_path, "fleet-a")
    point_runner_at(sample_repo, root, "lab")
    return root.resolve()


def test_cycles_dangling_dependencies_and_missing_paths_name_kustomization_and_file(
    sample_repo: Path, tmp_path: Path
) -> None:
    root = _fleet(
        sample_repo,
        tmp_path,
        **{
            "clusters/lab/extra.yaml": """
                apiVersion: kustomize.toolkit.fluxcd.io/v1
                kind: Kustomization
                metadata:
                  name: ghost
                  namespace: flux-system
                spec:
                  path: ./nowhere
                  sourceRef: {kind: GitRepository, name: fleet}
                  dependsOn:
                    - name: not-declared
                ---
                apiVersion: kustomize.toolkit.fluxcd.io/v1
                kind: Kustomization
                metadata:
                  name: loop-a
                  namespace: flux-system
                spec:
                  path: ./infrastructure/lab
                  sourceRef: {kind: GitRepository, name: fleet}
                  dependsOn:
                    - name: loop-b
                ---
                apiVersion: kustomize.toolkit.fluxcd.io/v1
                kind: Kustomization
                metadata:
                  name: loop-b
                  namespace: flux-system
                spec:
                  path: ./infrastructure/lab
                  sourceRef: {kind: GitRepository, name: fleet}
                  dependsOn:
                    - name: loop-a
                """,
        },
    )
    where = f"{root}/clusters/lab/extra.yaml"
    result = run_inv(sample_repo, "k8s.validate")
    assert result.returncode == 2, str(result)
    err = result.stderr
    assert (
        f"Flux Kustomization ghost ({where}): folder {root}/nowhere does not exist "
        "(spec.path ./nowhere)"
    ) in err
    assert (
        f"Flux Kustomization ghost ({where}): dependsOn flux-system/not-declared, which is not in "
        "the graph"
    ) in err
    assert (
        f"Kustomization cycle: loop-a ({where}) dependsOn loop-b; loop-b ({where}) dependsOn loop-a"
    ) in err
    assert "Traceback" not in result.output
    env = kube_env(tmp_path)
    refused = run_inv(sample_repo, "flux.reconcile", "--force", env=env)
    assert refused.returncode == 2 and "Kustomization cycle" in refused.stderr, refused
    assert commands(tmp_path) == []


def test_other_sources_are_reconciled_by_kind_and_name(sample_repo: Path, tmp_path: Path) -> None:
    _fleet(
        sample_repo,
        tmp_path,
        **{
            "clusters/lab/addons.yaml": """
                apiVersion: source.toolkit.fluxcd.io/v1
                kind: GitRepository
                metadata:
                  name: addons
                  namespace: flux-system
                spec:
                  url: https://git.example/other/addons.git
                  ref: {branch: main}
                ---
                apiVersion: source.toolkit.fluxcd.io/v1
                kind: OCIRepository
                metadata:
                  name: platform-oci
                  namespace: flux-system
                spec:
                  url: oci://ghcr.io/example/platform
                  ref: {tag: "1.0"}
                ---
                apiVersion: kustomize.toolkit.fluxcd.io/v1
                kind: Kustomization
                metadata:
                  name: addons
                  namespace: flux-system
                spec:
                  path: ./deploy
                  sourceRef: {kind: GitRepository, name: addons}
                  dependsOn:
                    - name: infrastructure
                ---
                apiVersion: kustomize.toolkit.fluxcd.io/v1
                kind: Kustomization
                metadata:
                  name: platform-oci
                  namespace: flux-system
                spec:
                  path: ./
                  sourceRef: {kind: OCIRepository, name: platform-oci}
                """,
        },
    )
    result = run_inv(sample_repo, "k8s.validate")
    assert result.returncode == 0, str(result)
    assert "not rendered: its source GitRepository flux-system/addons is another repository" in (
        result.output
    )
    env = kube_env(tmp_path)
    assert run_inv(sample_repo, "flux.reconcile", env=env).returncode == 0
    cmds = commands(tmp_path)
    assert [c for c in cmds if c.startswith("flux reconcile source")] == [
        "flux reconcile source git fleet --namespace=flux-system",
        "flux reconcile source git addons --namespace=flux-system",
        "flux reconcile source oci platform-oci --namespace=flux-system",
    ]
    assert cmds.index("flux reconcile kustomization infrastructure --namespace=flux-system") < (
        cmds.index("flux reconcile kustomization addons --namespace=flux-system")
    )


def test_renders_are_cached_by_their_inputs(sample_repo: Path, tmp_path: Path) -> None:
    root = _fleet(sample_repo, tmp_path)
    first = run_inv(sample_repo, "k8s.validate")
    assert first.returncode == 0 and "from the render cache" not in first.stdout, first
    second = run_inv(sample_repo, "k8s.validate")
    assert "3 from the render cache" in second.stdout, second
    ingress = root / "tenants/staging/ingress.yaml"
    ingress.write_text(ingress.read_text().replace("name: web", "name: web2"))
    third = run_inv(sample_repo, "k8s.validate")
    assert "2 from the render cache" in third.stdout, third  # only tenants rendered again
    (root / "tenants/staging/extra.yaml").write_text("kind: [broken\n")  # not listed: ignored
    kustomization = root / "tenants/staging/kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "  - extra.yaml\n")
    broken = run_inv(sample_repo, "k8s.validate")
    assert broken.returncode == 2 and "Flux Kustomization tenants" in broken.stderr, broken
    assert "kubectl kustomize failed" in broken.stderr
    assert not any((sample_repo / ".work/gitops/tmp").iterdir())  # temp wrappers removed


def test_folders_without_kustomization_yaml_render_as_flux_generates(
    sample_repo: Path, tmp_path: Path
) -> None:
    root = _fleet(sample_repo, tmp_path)
    (root / "clusters/lab/tenants.yaml").write_text(
        (root / "clusters/lab/tenants.yaml").read_text().replace("./tenants/staging", "./bare")
    )
    write_tree(
        root,
        {
            "bare/a.yaml": """
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: a, namespace: default}
                data: {issuer: "${CERT_ISSUER}"}
                """,
            "bare/deeper/b.yml": """
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: b, namespace: default}
                """,
            "bare/with-own/kustomization.yaml": "resources: [c.yaml]\n",
            "bare/with-own/c.yaml": """
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: c, namespace: default}
                """,
            "bare/with-own/not-listed.yaml": "this: is not a manifest\n",
            "bare/README.md": "not YAML: ignored\n",
        },
    )
    result = run_inv(sample_repo, "k8s.validate")
    assert result.returncode == 0, str(result)
    assert any(
        "/bare" in ln and ln.split()[2] == "3"
        for ln in result.stdout.splitlines()
        if "tenants" in ln
    ), result.stdout
    assert not (root / "bare/kustomization.yaml").exists()  # generated outside the tree
    assert sorted(p.name for p in (root / "bare").rglob("kustomization.yaml")) == [
        "kustomization.yaml"  # with-own's, nothing else
    ]


def test_sops_file_without_decryption_and_literal_vars(sample_repo: Path, tmp_path: Path) -> None:
    root = _fleet(
        sample_repo,
        tmp_path,
        **{
            "tenants/staging/creds.sops.yaml": """
                apiVersion: v1
                kind: Secret
                metadata: {name: creds, namespace: apps-staging}
                stringData:
                  TOKEN: ENC[AES256_GCM,data:abcd,iv:efgh,tag:ijkl,type:str]
                sops:
                  age:
                    - recipient: age1example
                  mac: ENC[AES256_GCM,data:mnop,iv:qrst,tag:uvwx,type:str]
                  version: 3.11.0
                """,
            "infrastructure/lab/script.yaml": """
                apiVersion: v1
                kind: ConfigMap
                metadata: {name: script, namespace: kube-system}
                data: {run.sh: "echo ${HOME}"}
                """,
        },
    )
    kustomization = root / "tenants/staging/kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "  - creds.sops.yaml\n")
    stack = root / "clusters/lab/flux-system/stack.yaml"
    stack.write_text(stack.read_text().replace("  postBuild:", "  postBuildOff:"))
    infra = root / "infrastructure/lab/kustomization.yaml"
    infra.write_text(infra.read_text() + "  - script.yaml\n")
    result = run_inv(sample_repo, "k8s.validate")
    assert result.returncode == 2, str(result)
    assert (
        f"Flux Kustomization tenants ({root}/clusters/lab/tenants.yaml): "
        f"Secret/apps-staging/creds ({root}/tenants/staging/creds.sops.yaml) is SOPS-encrypted, "
        "but this Kustomization has no spec.decryption.provider: sops"
    ) in result.stderr
    # Without postBuild, Flux applies ${...} as written: a warning, not an error.
    assert "has no postBuild, so Flux applies ${CLUSTER_NAME}, ${CERT_ISSUER}, ${HOME}" in (
        result.stderr
    )
    assert "${HOME} is not defined" not in result.stderr
    tenants = root / "clusters/lab/tenants.yaml"
    tenants.write_text(
        tenants.read_text().replace(
            "  postBuild:", "  decryption:\n    provider: sops\n  postBuild:"
        )
    )
    # The strict schema check ignores the sops: block; the Secret's keys are a source.
    fixed = run_inv(sample_repo, "k8s.validate")
    assert fixed.returncode == 0, fixed


@pytest.mark.parametrize("problem", ["helm chart", "no flux objects"])
def test_bootstrap_refuses_a_path_that_is_not_a_flux_tree(
    sample_repo: Path, tmp_path: Path, problem: str
) -> None:
    root = layout_a(tmp_path)
    if problem == "helm chart":
        write_tree(root, {"charts/app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 0.1.0\n"})
        write_tree(root, {"charts/app/values.yaml": "replicas: 1\n"})
        path = "charts/app"
    else:
        write_tree(
            root,
            {
                "plain/cm.yaml": """
                    apiVersion: v1
                    kind: ConfigMap
                    metadata: {name: plain, namespace: default}
                    """
            },
        )
        path = "plain"
    remote = commit_tree(root, tmp_path, "fleet-a")
    add_cluster_file(sample_repo, "lab", remote, path)
    env = kube_env(tmp_path)
    result = run_inv(sample_repo, "gitops.bootstrap", "--cluster", "lab", env=env)
    assert result.returncode == 2, str(result)
    if problem == "helm chart":
        assert f"gitops.path '{path}' is a Helm chart (it has a Chart.yaml), not a Flux tree" in (
            result.stderr
        )
    else:
        assert f"gitops.path '{path}' is not a Flux tree: it renders 1 object(s)" in result.stderr
    assert "inventory/clusters/lab/cluster.yaml" in result.stderr
    assert [c for c in commands(tmp_path) if not c.startswith("kubectl kustomize")] == []


def test_schema_checks_agree_with_kubernetes_validate() -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    from tasks.gitops.schemas import SchemaNotFound, resolve_version, validator

    version = resolve_version(None)
    docs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "datum": {}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "spec": {"rules": [{"x": 1}]}},
        {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": {}},
    ]
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            theirs = "ok"
        except ValidationError as exc:
            theirs = exc.message
        except SchemaNotFoundError:
            theirs = "no schema"
        try:
            found = validator(version).errors(doc)
            ours = "ok" if not found else "error"
        except SchemaNotFound:
            ours = "no schema"
        assert (theirs if theirs in ("ok", "no schema") else "error") == ours, (doc, theirs)
        if ours == "error":
            assert theirs in [message for _, message in found]
