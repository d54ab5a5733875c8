"""L4: host workloads (per-app Docker Compose apps by tag), converged with Ansible over SSH."""

from __future__ import annotations

from tasks.l3.converge import CONVERGE_HELP, group_names
from tasks.runtime.cli import task
from tasks.runtime.pipeline import LayerStage, register_stage


def _stage(sc) -> None:
    from tasks.l3.converge import converge

    run = sc.run
    converge(
        run,
        "l4",
        run.env.get("L4_GROUP") or "all",
        tags=run.env.get("L4_TAGS") or None,
        wait=run.settings.seconds("L4_WAIT", 120),
    )


register_stage(
    LayerStage("l4", "converge", _stage, "converge L4_GROUP (default all) with layers/l4")
)


@task(
    area="l4",
    choices={"group": group_names},
    help={**CONVERGE_HELP, "tags": "only these apps (Ansible tags, comma-separated), e.g. whoami"},
)
def converge(
    run, group, tags=None, limit=None, check=False, wait=None, parallel=None, dry_run=False
):
    """Converge GROUP's host workloads with layers/l4 (one tag per app)."""
    from tasks.l3.converge import converge as converge_layer
    from tasks.runtime.fanout import parse_parallel
    from tasks.runtime.settings import flag_seconds

    converge_layer(
        run,
        "l4",
        group,
        tags=tags,
        limit=limit,
        check=check,
        wait=flag_seconds("--wait", wait, run.settings.seconds("L4_WAIT", 120)),
        parallel=parse_parallel(parallel, 10),
    )
