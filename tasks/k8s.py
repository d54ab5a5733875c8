"""Kubernetes manifests of the GitOps tree, checked offline."""

from __future__ import annotations

from invoke import task


@task(
    help={
        "k8s_version": "Kubernetes schema version to validate against (default: the newest bundled)"
    }
)
def validate(c, k8s_version=None):
    """Render every Flux Kustomization path with kubectl kustomize; validate it strictly, offline."""
    from tasks.adapters.kube import Kube
    from tasks.gitopsside.settings import GitOpsSettings
    from tasks.gitopsside.validate import validate_tree
    from tasks.runtime.console import say, table
    from tasks.runtime.errors import ConfigError

    c.use_env("cluster", doppler=False)  # offline: no cluster, no secrets needed
    settings = GitOpsSettings.load(c.project)
    report = validate_tree(settings, Kube(c), k8s_version)
    table(["KUSTOMIZATION", "FOLDER", "OBJECTS"], [[o, f, n] for o, f, n in report.rendered])
    if report.not_schema_checked:
        say("not schema-checked (custom resources; no bundled schema):")
        for kind, where in sorted(report.not_schema_checked.items()):
            say(f"  {kind}  ({', '.join(sorted(where))})")
    if not report.ok:
        errors = list(dict.fromkeys(report.errors))
        raise ConfigError(f"{len(errors)} problem(s) in the GitOps tree:\n  " + "\n  ".join(errors))
    say(
        f"k8s.validate: ok ({sum(n for _, _, n in report.rendered)} objects in {len(report.rendered)} folders)"
    )
