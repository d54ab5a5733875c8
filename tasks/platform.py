"""Platform mode targets: local Git edits of the cluster's operator switches (never reconcile)."""

from __future__ import annotations

from invoke import task

from tasks.runtime.errors import ConfigError


@task(
    help={
        "prod": "use letsencrypt-prod for platform certificates",
        "staging": "use letsencrypt-staging for platform certificates",
        "dry_run": "print the diff without writing the file",
    }
)
def certs(c, prod=False, staging=False, dry_run=False):
    """Set CERT_ISSUER in the platform-settings ConfigMap (a one-line local edit; then push and reconcile)."""
    from tasks.gitopsside.edits import apply_local_edit, set_data_value
    from tasks.gitopsside.settings import CERT_ISSUERS, GitOpsSettings

    if prod == staging:
        raise ConfigError("give exactly one of --prod or --staging")
    issuer = CERT_ISSUERS["prod" if prod else "staging"]
    settings = GitOpsSettings.load(c.project)
    path = settings.platform_settings_file
    old, new, _ = set_data_value(path, "CERT_ISSUER", issuer, settings.rel(path))
    apply_local_edit(
        settings, path, old, new, dry_run=dry_run, what=f"platform certs: CERT_ISSUER={issuer}"
    )
