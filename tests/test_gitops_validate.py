"""k8s.validate with the real `kubectl kustomize` and real kubernetes-validate, offline."""

from __future__ import annotations

from pathlib import Path

from gitops_support import GITOPS
from helpers import git, run_inv

PLATFORM = f"{GITOPS}/platform-services"


def test_sample_tree_validates(sample_repo: Path) -> None:
    result = run_inv(sample_repo, "k8s.validate")
    assert result.returncode == 0, str(result)
    for owner in ("infrastructure", "issuers", "platform-services", "tenants"):
        assert owner in result.stdout
    assert "not schema-checked" in result.stdout
    assert "helm.toolkit.fluxcd.io/v2 HelmRelease" in result.stdout
    assert "cert-manager.io/v1 ClusterIssuer" in result.stdout
    assert "k8s.validate: ok" in result.stdout


def test_every_app_mode_validates(sample_repo: Path) -> None:
    for mode in ("staging-le-prod", "prod-le-staging", "prod-le-prod"):
        assert run_inv(sample_repo, "app.mode", mode).returncode == 0
        result = run_inv(sample_repo, "k8s.validate")
        assert result.returncode == 0, str(result)
        assert f"app-{mode}" in result.stdout


def test_undefined_substitution_is_named(sample_repo: Path) -> None:
    release = sample_repo / PLATFORM / "base/oauth2-proxy/helmrelease.yaml"
    release.write_text(release.read_text().replace("auth.${BASE_DOMAIN}", "auth.${SITE_DOMAIN}", 1))
    result = run_inv(sample_repo, "k8s.validate")
    assert result.returncode == 2, str(result)
    assert "HelmRelease/oauth2-proxy/oauth2-proxy" in result.stderr
    assert "${SITE_DOMAIN} is not defined by Flux Kustomization platform-services" in result.stderr
    assert "BASE_DOMAIN" not in result.stderr


def test_substitution_defaults_and_inline_substitute_count_as_defined(sample_repo: Path) -> None:
    release = sample_repo / PLATFORM / "base/oauth2-proxy/helmrelease.yaml"
    release.write_text(
        release.read_text()
        .replace("auth.${BASE_DOMAIN}", "auth.${AUTH_DOMAIN:=home.arpa}", 1)
        .replace("oauth2-proxy-tls", "${TLS_SECRET}", 1)
    )
    entry = sample_repo / GITOPS / "clusters/home/platform-services.yaml"
    entry.write_text(
        entry.read_text().replace(
            "  postBuild:\n",
            "  postBuild:\n    substitute:\n      TLS_SECRET: oauth2-proxy-tls\n",
            1,
        )
    )
    result = run_inv(sample_repo, "k8s.validate")
    assert result.returncode == 0, str(result)


def test_runtime_inputs_come_from_the_external_secret_only(sample_repo: Path) -> None:
    """A runtime-input variable used in a Kustomization without the runtime-inputs source fails."""
    ingress = sample_repo / GITOPS / "tenants/apps/example/base/ingress.yaml"
    ingress.write_text(ingress.read_text().replace("example-tls", "${CLICKSTACK_API_KEY}"))
    result = run_inv(sample_repo, "k8s.validate")
    assert result.returncode == 2
    assert (
        "Ingress/apps-staging/example" in result.stderr and "${CLICKSTACK_API_KEY}" in result.stderr
    )


def test_strict_schema_errors_name_file_and_resource(sample_repo: Path) -> None:
    service = sample_repo / GITOPS / "tenants/apps/example/base/service.yaml"
    service.write_text(service.read_text().replace("  ports:", "  portz:"))
    result = run_inv(sample_repo, "k8s.validate")
    assert result.returncode == 2, str(result)
    # The file the object came from (kustomize's origin annotation), not only the overlay.
    assert (
        "layers/gitops/tenants/apps/example/base/service.yaml: Service/apps-staging/example "
        "(Flux Kustomization tenants): spec: Additional properties are not allowed ('portz' was "
        "unexpected)"
    ) in result.stderr


def test_broken_kustomization_and_missing_path(sample_repo: Path) -> None:
    (sample_repo / PLATFORM / "overlays/home/kustomization.yaml").write_text(
        "resources:\n  - ../../base/missing\n"
    )
    entry = sample_repo / GITOPS / "clusters/home/infrastructure.yaml"
    entry.write_text(entry.read_text().replace("infrastructure/issuers", "infrastructure/nowhere"))
    result = run_inv(sample_repo, "k8s.validate")
    assert result.returncode == 2, str(result)
    assert (
        "Flux Kustomization platform-services" in result.stderr
        and "kubectl kustomize failed" in result.stderr
    )
    assert (
        "Flux Kustomization issuers" in result.stderr
        and "infrastructure/nowhere does not exist" in result.stderr
    )
    assert "Traceback" not in result.output


def test_malformed_cluster_yaml(sample_repo: Path) -> None:
    (sample_repo / GITOPS / "clusters/home/tenants.yaml").write_text("kind: [unclosed\n")
    git(sample_repo, "commit", "-qam", "broken")
    result = run_inv(sample_repo, "k8s.validate")
    assert result.returncode == 2, str(result)
    assert "clusters/home" in result.stderr and "Traceback" not in result.output
