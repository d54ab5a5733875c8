"""L4: host workloads (per-app Docker Compose apps by tag), converged with Ansible over SSH."""

from __future__ import annotations

from invoke import task

from tasks.fleet.converge import CONVERGE_HELP
from tasks.runtime.pipeline import LayerStage, register_stage


def _stage(sc) -> None:
    from tasks.fleet.converge import converge

    converge(
        sc.c,
        "l4",
        sc.env.get("L4_GROUP") or "all",
        tags=sc.env.get("L4_TAGS") or None,
        wait=float(sc.env.get("L4_WAIT") or 120),
    )


register_stage(
    LayerStage("l4", "converge", _stage, "converge L4_GROUP (default all) with layers/l4")
)


@task(
    help={**CONVERGE_HELP, "tags": "only these apps (Ansible tags, comma-separated), e.g. whoami"}
)
def converge(c, group, tags=None, limit=None, check=False, wait=120, parallel=10, dry_run=False):
    """Converge GROUP's host workloads with layers/l4 (one tag per app)."""
    from tasks.fleet.converge import converge as run

    run(
        c,
        "l4",
        group,
        tags=tags,
        limit=limit,
        check=check,
        wait=float(wait),
        parallel=int(parallel),
        dry_run=dry_run,
    )
