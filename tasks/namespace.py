"""The root namespace: every collection, composed. Collection modules import no heavy library."""

from __future__ import annotations

from invoke import Collection


def build_namespace() -> Collection:
    from tasks import clean, env, rehearse, up  # noqa: I001  (grouped by area, one line each)
    from tasks import host, l3, l4  # the SSH side
    from tasks import l1  # L1 templates
    from tasks import l0, l2  # Proxmox: runway and VMs
    from tasks import app, cluster, flux, gitops, k8s, platform, render  # the GitOps side

    ns = Collection()
    ns.add_task(clean.clean)
    ns.add_task(up.up)
    ns.add_task(rehearse.rehearse)
    ns.add_collection(Collection.from_module(env, name="env"))
    ns.add_collection(Collection.from_module(l0, name="l0"))
    ns.add_collection(Collection.from_module(l1, name="l1"))
    ns.add_collection(Collection.from_module(l2, name="l2"))
    ns.add_task(render.init)
    ns.add_task(render.configure)
    for module in (cluster, platform, app, flux, k8s, gitops):
        ns.add_collection(Collection.from_module(module, name=module.__name__.rsplit(".", 1)[-1]))
    for module, name in ((host, "host"), (l3, "l3"), (l4, "l4")):
        ns.add_collection(Collection.from_module(module, name=name))
    return ns
