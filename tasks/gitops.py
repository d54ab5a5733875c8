"""GitOps bootstrap: hand a cluster over to its GitOps repository (Clusters-GitOps Handoff seed)."""

from __future__ import annotations

from invoke import task


@task(
    help={
        "cluster": "the cluster: inventory/clusters/CLUSTER/cluster.yaml",
        "dry_run": "print what would be done without cloning or touching the cluster",
        "profile": "extra env file, highest precedence in the cluster chain",
    }
)
def bootstrap(c, cluster, dry_run=False, profile=None):
    """Clone the GitOps repo at its ref, bootstrap Flux against it, write .work/CLUSTER/gitops-bootstrap.json."""
    from tasks.gitopsside import bootstrap as flow

    c.use_env("cluster", profile)
    flow.run(c, cluster, dry_run=dry_run)
