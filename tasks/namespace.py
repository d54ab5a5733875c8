"""The root namespace: every collection, composed. Collection modules import no heavy library."""

from __future__ import annotations

from invoke import Collection


def build_namespace() -> Collection:
    from tasks import clean, doppler, env, up  # noqa: I001  (grouped by area, one line each)
    from tasks import l0, l1, l2, l3, l4  # the layers
    from tasks import host  # the host orchestrator
    from tasks import rehearsal
    from tasks import plan  # the whole homelab, read-only
    from tasks import history  # the run history
    from tasks.gitops import collections as gitops  # the GitOps side

    ns = Collection()
    ns.add_task(clean.clean)
    ns.add_task(up.up)
    ns.add_task(rehearsal.rehearse)
    ns.add_task(plan.plan)
    ns.add_collection(Collection.from_module(history, name="runs"))
    ns.add_collection(Collection.from_module(env, name="env"))
    ns.add_collection(Collection.from_module(doppler, name="doppler"))
    for module in (l0, l1, l2, l3, l4):
        ns.add_collection(Collection.from_module(module, name=module.__name__.rsplit(".", 1)[-1]))
    for root_task in gitops.ROOT_TASKS:
        ns.add_task(root_task)
    for collection in gitops.collections():
        ns.add_collection(collection)
    ns.add_collection(Collection.from_module(host, name="host"))
    return ns
