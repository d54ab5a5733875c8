"""Shared pieces for the GitOps-side tests: stand-in kubectl/flux on PATH, their log, a bare remote."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import STANDINS, base_env, git

from tasks.rehearsal.play import real_kubectl

# What `flux.reconcile` runs, in the tree's dependency order (also step 32 of cluster.apply).
RECONCILE = [
    "flux reconcile source git flux-system --namespace=flux-system",
    "flux reconcile kustomization flux-system --namespace=flux-system",
    "flux reconcile kustomization infrastructure --namespace=flux-system",
    "flux reconcile kustomization issuers --namespace=flux-system",
    "flux reconcile kustomization platform-services --namespace=flux-system",
    "flux reconcile kustomization tenants --namespace=flux-system",
]

# Runtime inputs as the cluster orchestrator needs them (values long enough to be masked).
RUNTIME_INPUTS = {
    "OAUTH2_PROXY_CLIENT_ID": "client-id-7f3a",
    "OAUTH2_PROXY_CLIENT_SECRET": "client-secret-9b2c41",
    "OAUTH2_PROXY_COOKIE_SECRET": "cookie-secret-5d8e77",
    "CLICKSTACK_API_KEY": "clickstack-key-1a2b3c",
    "OTEL_INGESTION_KEY": "otel-key-4d5e6f",
}
GITOPS = "layers/gitops"
SETTINGS = f"{GITOPS}/clusters/home/flux-system/sources/configmap-platform-settings.yaml"
TENANTS = f"{GITOPS}/clusters/home/tenants.yaml"


@functools.cache
def _real_kubectl() -> str:
    return real_kubectl(base_env()["PATH"])


def kube_env(tmp: Path, state: dict | None = None, **extra: str) -> dict[str, str]:
    """Env with the recording kubectl/flux stand-ins first on PATH, a kubeconfig and a state file."""
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    state_file = tmp / "kube-state.json"
    if state is not None:
        state_file.write_text(json.dumps(state))
    env = base_env(
        PATH=f"{STANDINS}:{base_env()['PATH']}",
        REAL_KUBECTL=_real_kubectl(),
        KUBECONFIG=str(kubeconfig),
        KUBE_STANDIN_LOG=str(tmp / "kube.log"),
        KUBE_STANDIN_STATE=str(state_file),
    )
    env.update(extra)
    return env


# The runner asks each binary its version once (tasks/runtime/tools.py) before using it: a probe
# of the tool, not a command to the cluster.
VERSION_PROBES = (["version", "--client", "-o", "json"], ["--version"])


def calls(tmp: Path, *, with_kustomize: bool = False, with_probes: bool = False) -> list[dict]:
    log = tmp / "kube.log"
    if not log.exists():
        return []
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [
        e
        for e in entries
        if (with_kustomize or e["argv"][:1] != ["kustomize"])
        and (with_probes or e["argv"] not in VERSION_PROBES)
    ]


def commands(tmp: Path) -> list[str]:
    return [" ".join([e["tool"], *e["argv"]]) for e in calls(tmp)]


def state(tmp: Path) -> dict:
    return json.loads((tmp / "kube-state.json").read_text())


def bare_remote(repo: Path, tmp: Path, name: str = "remote.git") -> Path:
    """A local bare remote holding `repo`'s main branch, set as its upstream."""
    remote = tmp / name
    git(tmp, "init", "-q", "--bare", "-b", "main", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "-u", "origin", "main")
    return remote


# ---------------------------------------------------------------------- real-world layouts
#
# Fixture trees written here, in the layouts NOTES.md describes (none copied from a project):
# (a) `flux bootstrap`: clusters/lab/flux-system/{gotk-components,gotk-sync,kustomization}.yaml,
#     a GitRepository named `fleet` (not flux-system), the settings ConfigMap and two "stack"
#     Kustomizations inside flux-system/;
# (b) cluster-template: kubernetes/flux/cluster/ks.yaml, kubernetes/apps/<ns>/<app>/ks.yaml + app/,
#     folders without kustomization.yaml, a FluxInstance, Kustomizations three levels deep,
#     SOPS-encrypted Secrets (real sops, an age key made here).

SOPS = str(Path(sys.executable).parent / "sops")


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def commit_tree(root: Path, tmp: Path, name: str) -> Path:
    """`root` as its own repository, pushed to a local bare remote (its upstream); the remote."""
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "fleet")
    remote = tmp / f"{name}.git"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(remote))
    git(root, "remote", "add", "origin", str(remote))
    git(root, "push", "-q", "-u", "origin", "main")
    return remote


def point_runner_at(repo: Path, root: Path, cluster: str | None, **extra: str) -> None:
    """The runner checkout's runner.yaml: gitops.root (and gitops.cluster) for a fixture tree."""
    lines = ["gitops:", f"  root: {root}"]
    if cluster:
        lines.append(f"  cluster: {cluster}")
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    (repo / "inventory/runner.yaml").write_text("\n".join(lines) + "\n")
    git(repo, "commit", "-qam", "runner points at the fixture tree")


def add_cluster_file(repo: Path, name: str, remote: Path, path: str, **extra: str) -> None:
    folder = repo / "inventory/clusters" / name
    folder.mkdir(parents=True, exist_ok=True)
    body = "".join(f"\n  {k}: {v}" for k, v in extra.items())
    (folder / "cluster.yaml").write_text(
        f"name: {name}\nowner: platform-team   # not a key the runner reads: accepted\n"
        f"dns:\n  base_domain: lab.example\n  provider: cloudflare\n"
        f"gitops:\n  env: staging\n  repo_url: file://{remote}\n  repo_ref: main\n  path: {path}"
        f"{body}\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"cluster {name}")


GOTK_COMPONENTS = """
    # Stand-in for the `flux install --export` output (the real one is ~10k lines).
    apiVersion: v1
    kind: Namespace
    metadata:
      name: flux-system
    ---
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: kustomizations.kustomize.toolkit.fluxcd.io
    spec:
      group: kustomize.toolkit.fluxcd.io
      names: {kind: Kustomization, listKind: KustomizationList, plural: kustomizations, singular: kustomization}
      scope: Namespaced
      versions:
        - name: v1
          served: true
          storage: true
          schema:
            openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
    ---
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: gitrepositories.source.toolkit.fluxcd.io
    spec:
      group: source.toolkit.fluxcd.io
      names: {kind: GitRepository, listKind: GitRepositoryList, plural: gitrepositories, singular: gitrepository}
      scope: Namespaced
      versions:
        - name: v1
          served: true
          storage: true
          schema:
            openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
    """


def layout_a(tmp: Path, url: str = "https://git.example/homelab/fleet.git") -> Path:
    """(a) the `flux bootstrap` layout, its GitRepository named `fleet`."""
    return write_tree(
        tmp / "fleet-a",
        {
            "clusters/lab/flux-system/gotk-components.yaml": GOTK_COMPONENTS,
            "clusters/lab/flux-system/gotk-sync.yaml": f"""
                # As `flux bootstrap git --path=clusters/lab` writes it, the source renamed.
                apiVersion: source.toolkit.fluxcd.io/v1
                kind: GitRepository
                metadata:
                  name: fleet
                  namespace: flux-system
                spec:
                  interval: 1m0s
                  ref:
                    branch: main
                  secretRef:
                    name: fleet-auth
                  url: {url}
                ---
                apiVersion: kustomize.toolkit.fluxcd.io/v1
                kind: Kustomization
                metadata:
                  name: flux-system
                  namespace: flux-system
                spec:
                  interval: 10m0s
                  path: ./clusters/lab
                  prune: true
                  sourceRef:
                    kind: GitRepository
                    name: fleet
                """,
            "clusters/lab/flux-system/kustomization.yaml": """
                apiVersion: kustomize.config.k8s.io/v1beta1
                kind: Kustomization
                resources:
                  - gotk-components.yaml
                  - gotk-sync.yaml
                  - settings.yaml
                  - stack.yaml
                """,
            "clusters/lab/flux-system/settings.yaml": """
                # Two ConfigMaps in one file; the runner finds platform-settings by kind and name.
                apiVersion: v1
                kind: ConfigMap
                metadata:
                  name: cluster-vars
                  namespace: flux-system
                data:
                  CLUSTER_NAME: lab
                ---
                apiVersion: v1
                kind: ConfigMap
                metadata:
                  name: platform-settings
                  namespace: flux-system
                data:
                  CERT_ISSUER: letsencrypt-staging   # switched by `inv platform.certs`
                  BASE_DOMAIN: lab.example
                """,
            "clusters/lab/flux-system/stack.yaml": """
                # The stack's own Kustomizations, declared inside flux-system/.
                apiVersion: kustomize.toolkit.fluxcd.io/v1
                kind: Kustomization
                metadata:
                  name: infrastructure
                  namespace: flux-system
                spec:
                  interval: 30m
                  path: ./infrastructure/lab
                  prune: true
                  sourceRef:
                    kind: GitRepository
                    name: fleet
                  postBuild:
                    substituteFrom:
                      - kind: ConfigMap
                        name: platform-settings
                      - kind: ConfigMap
                        name: cluster-vars
                """,
            "clusters/lab/tenants.yaml": MODE_A.format(env="staging"),
            "infrastructure/lab/kustomization.yaml": """
                apiVersion: kustomize.config.k8s.io/v1beta1
                kind: Kustomization
                resources:
                  - issuer.yaml
                """,
            "infrastructure/lab/issuer.yaml": """
                apiVersion: v1
                kind: ConfigMap
                metadata:
                  name: issuer-choice
                  namespace: kube-system
                data:
                  issuer: ${CERT_ISSUER}
                  cluster: ${CLUSTER_NAME}
                """,
            **{
                f"tenants/{env}/{name}": text.format(env=env)
                for env in ("staging", "prod")
                for name, text in TENANT_FILES_A.items()
            },
            "modes/staging.yaml": MODE_A.format(env="staging"),
            "modes/prod.yaml": MODE_A.format(env="prod"),
        },
    )


MODE_A = """
    apiVersion: kustomize.toolkit.fluxcd.io/v1
    kind: Kustomization
    metadata:
      name: tenants
      namespace: flux-system
    spec:
      dependsOn:
        - name: infrastructure
      interval: 10m
      path: ./tenants/{env}
      prune: true
      sourceRef:
        kind: GitRepository
        name: fleet
      postBuild:
        substituteFrom:
          - kind: ConfigMap
            name: platform-settings
    """
TENANT_FILES_A = {
    "kustomization.yaml": """
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources:
          - namespace.yaml
          - ingress.yaml
        """,
    "namespace.yaml": """
        apiVersion: v1
        kind: Namespace
        metadata:
          name: apps-{env}
        """,
    "ingress.yaml": """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata:
          name: web
          namespace: apps-{env}
          annotations:
            cert-manager.io/cluster-issuer: ${{CERT_ISSUER}}
        spec:
          rules:
            - host: web.${{BASE_DOMAIN}}
        """,
}
# What `flux.reconcile` runs on layout (a): the source by its real name, then the graph in order.
RECONCILE_A = [
    "flux reconcile source git fleet --namespace=flux-system",
    "flux reconcile kustomization flux-system --namespace=flux-system",
    "flux reconcile kustomization infrastructure --namespace=flux-system",
    "flux reconcile kustomization tenants --namespace=flux-system",
]


def age_key(tmp: Path) -> tuple[Path, str]:
    """A new age key pair (age-keygen): the key file and its public recipient."""
    key = tmp / "age.key"
    if not key.exists():
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = next(
        line.split(":", 1)[1].strip()
        for line in key.read_text().splitlines()
        if line.startswith("# public key:")
    )
    return key, recipient


def sops_encrypt(root: Path, name: str, key: Path) -> None:
    """Encrypt `root/name` in place with the tree's .sops.yaml, as an operator would."""
    subprocess.run(
        [SOPS, "--encrypt", "--in-place", name],
        cwd=root,
        check=True,
        capture_output=True,
        env={**os.environ, "SOPS_AGE_KEY_FILE": str(key)},
    )


def layout_b(tmp: Path, url: str = "https://git.example/homelab/cluster.git") -> Path:
    """(b) the cluster-template layout; its Secrets SOPS-encrypted with a key made here."""
    key, recipient = age_key(tmp)
    root = write_tree(
        tmp / "fleet-b",
        {
            ".sops.yaml": f"""
                creation_rules:
                  - path_regex: kubernetes/.*\\.sops\\.ya?ml
                    encrypted_regex: "^(data|stringData)$"
                    age: {recipient}
                """,
            # The entry: the operator makes GitRepository + Kustomization flux-system from this.
            "kubernetes/apps/flux-system/flux-instance/app/fluxinstance.yaml": f"""
                apiVersion: fluxcd.controlplane.io/v1
                kind: FluxInstance
                metadata:
                  name: flux
                  namespace: flux-system
                spec:
                  distribution:
                    version: 2.x
                    registry: ghcr.io/fluxcd
                  sync:
                    kind: GitRepository
                    url: {url}
                    ref: refs/heads/main
                    path: kubernetes/flux/cluster
                """,
            "kubernetes/apps/flux-system/flux-instance/ks.yaml": KS_B.format(
                name="flux-instance",
                path="./kubernetes/apps/flux-system/flux-instance/app",
                extra="",
            ),
            "kubernetes/apps/flux-system/kustomization.yaml": """
                apiVersion: kustomize.config.k8s.io/v1beta1
                kind: Kustomization
                namespace: flux-system
                components:
                  - ../../components/common
                resources:
                  - ./flux-instance/ks.yaml
                  - ./runtime-inputs.sops.yaml
                """,
            "kubernetes/apps/flux-system/runtime-inputs.sops.yaml": """
                apiVersion: v1
                kind: Secret
                metadata:
                  name: platform-runtime-inputs
                stringData:
                  OAUTH2_PROXY_CLIENT_SECRET: in-git-client-secret
                """,
            "kubernetes/components/common/kustomization.yaml": """
                apiVersion: kustomize.config.k8s.io/v1alpha1
                kind: Component
                resources:
                  - ./namespace.yaml
                  - ./cluster-secrets.sops.yaml
                """,
            "kubernetes/components/common/namespace.yaml": """
                apiVersion: v1
                kind: Namespace
                metadata:
                  name: _
                """,
            "kubernetes/components/common/cluster-secrets.sops.yaml": """
                apiVersion: v1
                kind: Secret
                metadata:
                  name: cluster-secrets
                stringData:
                  SECRET_DOMAIN: secret-domain.example
                """,
            "kubernetes/flux/cluster/ks.yaml": """
                apiVersion: kustomize.toolkit.fluxcd.io/v1
                kind: Kustomization
                metadata:
                  name: cluster-apps
                  namespace: flux-system
                spec:
                  decryption:
                    provider: sops
                    secretRef:
                      name: sops-age
                  interval: 1h
                  path: ./kubernetes/apps
                  prune: true
                  sourceRef:
                    kind: GitRepository
                    name: flux-system
                  postBuild:
                    substituteFrom:
                      - kind: ConfigMap
                        name: platform-settings
                  patches:
                    - # Sops decryption and substitution for every child Kustomization
                      patch: |-
                        apiVersion: kustomize.toolkit.fluxcd.io/v1
                        kind: Kustomization
                        metadata:
                          name: not-used
                        spec:
                          decryption:
                            provider: sops
                            secretRef:
                              name: sops-age
                          postBuild:
                            substituteFrom:
                              - kind: Secret
                                name: cluster-secrets
                      target:
                        group: kustomize.toolkit.fluxcd.io
                        kind: Kustomization
                """,
            "kubernetes/flux/cluster/settings.yaml": """
                apiVersion: v1
                kind: ConfigMap
                metadata:
                  name: platform-settings
                  namespace: flux-system
                data:
                  CERT_ISSUER: "letsencrypt-staging"
                """,
            "kubernetes/flux/cluster/tenants.yaml": MODE_B.format(mode="app-staging-le-staging"),
            **{
                f"kubernetes/flux/modes/tenants-{mode}.yaml": MODE_B.format(mode=mode)
                for mode in MODES_B
            },
            **{
                f"kubernetes/tenants/{mode}/deployment.yaml": TENANT_B.format(mode=mode)
                for mode in MODES_B
            },
            "kubernetes/apps/cert-manager/kustomization.yaml": APP_NS_B.format(
                ns="cert-manager", app="cert-manager"
            ),
            "kubernetes/apps/cert-manager/cert-manager/ks.yaml": KS_B.format(
                name="cert-manager",
                path="./kubernetes/apps/cert-manager/cert-manager/app",
                extra="  targetNamespace: cert-manager\n",
            ),
            "kubernetes/apps/cert-manager/cert-manager/app/helmrelease.yaml": """
                apiVersion: helm.toolkit.fluxcd.io/v2
                kind: HelmRelease
                metadata:
                  name: cert-manager
                spec:
                  interval: 1h
                  chartRef:
                    kind: OCIRepository
                    name: cert-manager
                  values:
                    crds:
                      enabled: true
                """,
            "kubernetes/apps/cert-manager/cert-manager/app/ocirepository.yaml": """
                apiVersion: source.toolkit.fluxcd.io/v1
                kind: OCIRepository
                metadata:
                  name: cert-manager
                spec:
                  interval: 12h
                  url: oci://quay.io/jetstack/charts/cert-manager
                  ref:
                    tag: v1.17.0
                """,
            "kubernetes/apps/default/kustomization.yaml": APP_NS_B.format(ns="default", app="echo"),
            "kubernetes/apps/default/echo/ks.yaml": KS_B.format(
                name="echo",
                path="./kubernetes/apps/default/echo/app",
                extra="  dependsOn:\n    - name: cert-manager\n      namespace: cert-manager\n",
            ),
            "kubernetes/apps/default/echo/app/deployment.yaml": """
                apiVersion: apps/v1
                kind: Deployment
                metadata:
                  name: echo
                spec:
                  selector:
                    matchLabels: {app: echo}
                  template:
                    metadata:
                      labels: {app: echo}
                    spec:
                      containers:
                        - name: echo
                          image: ghcr.io/example/echo:1.0
                          env:
                            - name: HOST
                              value: echo.${SECRET_DOMAIN}
                """,
            # Three levels down: flux-system -> cluster-apps -> echo -> echo-config.
            "kubernetes/apps/default/echo/app/config/ks.yaml": KS_B.format(
                name="echo-config",
                path="./kubernetes/apps/default/echo/config",
                extra="  postBuild:\n    substituteFrom:\n      - kind: Secret\n"
                "        name: cluster-secrets\n",
            ),
            "kubernetes/apps/default/echo/config/configmap.yaml": """
                apiVersion: v1
                kind: ConfigMap
                metadata:
                  name: echo-config
                data:
                  greeting: hello from ${SECRET_DOMAIN}
                """,
        },
    )
    for name in (
        "kubernetes/apps/flux-system/runtime-inputs.sops.yaml",
        "kubernetes/components/common/cluster-secrets.sops.yaml",
    ):
        sops_encrypt(root, name, key)
    return root


MODES_B = ("app-staging-le-staging", "app-staging-le-prod", "app-prod-le-prod", "db-prod-le-prod")
MODE_B = """
    apiVersion: kustomize.toolkit.fluxcd.io/v1
    kind: Kustomization
    metadata:
      name: tenants
      namespace: flux-system
    spec:
      interval: 10m
      path: ./kubernetes/tenants/{mode}
      prune: true
      sourceRef:
        kind: GitRepository
        name: flux-system
      postBuild:
        substituteFrom:
          - kind: ConfigMap
            name: platform-settings
    """
TENANT_B = """
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: tenant-{mode}
      namespace: default
    data:
      issuer: ${{CERT_ISSUER}}
    """
KS_B = (
    textwrap.dedent(
        """
    apiVersion: kustomize.toolkit.fluxcd.io/v1
    kind: Kustomization
    metadata:
      name: {name}
    spec:
      interval: 1h
      path: {path}
      prune: true
      sourceRef:
        kind: GitRepository
        name: flux-system
        namespace: flux-system
    """
    )
    + "{extra}"
)
APP_NS_B = """
    apiVersion: kustomize.config.k8s.io/v1beta1
    kind: Kustomization
    namespace: {ns}
    components:
      - ../../components/common
    resources:
      - ./{app}/ks.yaml
    """
# flux.reconcile on layout (b): the FluxInstance's source, then all six Kustomizations in order.
RECONCILE_B = [
    "flux reconcile source git flux-system --namespace=flux-system",
    "flux reconcile kustomization flux-system --namespace=flux-system",
    "flux reconcile kustomization cluster-apps --namespace=flux-system",
    "flux reconcile kustomization tenants --namespace=flux-system",
    "flux reconcile kustomization cert-manager --namespace=cert-manager",
    "flux reconcile kustomization echo --namespace=default",
    "flux reconcile kustomization flux-instance --namespace=flux-system",
    "flux reconcile kustomization echo-config --namespace=default",
]
