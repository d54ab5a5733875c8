"""L2: the VMs declared in HCL under layers/l2/, planned and applied on Proxmox."""

from __future__ import annotations

from tasks.runtime.cli import task
from tasks.runtime.pipeline import LayerStage, register_stage

PROFILE_HELP = "extra env file, highest precedence"


@task(
    help={
        "json": "print the plan as JSON",
        "deep": "read every VM's config instead of trusting the spec digest tag (finds drift "
        "made outside the runner; one API call per VM)",
        "profile": PROFILE_HELP,
    }
)
def plan(run, json=False, deep=False, profile=None):
    """Show, per declared VM, what apply would do: create, update (field by field), nothing, orphan."""
    from tasks.l2.apply import make_plan, open_l2, plan_json, print_plan, refuse_errors
    from tasks.runtime.console import say

    l2 = open_l2(run)
    plans = make_plan(l2, deep=deep)
    if json:
        say(plan_json(plans))
    else:
        print_plan(plans)
    refuse_errors(plans)


@task(
    area="l2",
    help={
        "parallel": "how many VMs to work on at once (default: layers/l2/layer.yaml `parallel`, 10)",
        "dry_run": "print the plan and stop; nothing is changed",
        "deep": "read every VM's config to find drift made outside the runner",
        "profile": PROFILE_HELP,
    },
)
def apply(run, parallel=None, dry_run=False, deep=False, profile=None):
    """Create and update the declared VMs (clone, configure, resize, start); write the VM inventory."""
    from tasks.l2.apply import apply_plans, make_plan, open_l2, print_plan, refuse_errors
    from tasks.runtime.fanout import parse_parallel

    l2 = open_l2(run)
    at_once = parse_parallel(parallel, l2.parallel)
    plans = make_plan(l2, deep=deep)
    print_plan(plans)
    refuse_errors(plans)
    apply_plans(run, l2, plans, at_once)


@task(
    area="l2",
    iterable=["name"],
    help={
        "name": "a VM to destroy; repeat for several (default: every declared VM)",
        "yes": "do not ask for confirmation",
        "dry_run": "list what would be destroyed and stop",
        "parallel": "how many VMs to destroy at once (default 10)",
        "profile": PROFILE_HELP,
    },
)
def destroy(run, name=None, yes=False, dry_run=False, parallel=None, profile=None):
    """Stop and delete managed VMs (--name ..., or every declared one); asks first unless --yes."""
    from tasks.l2.apply import destroy as destroy_vms
    from tasks.l2.apply import destroy_targets, open_l2
    from tasks.runtime.console import say
    from tasks.runtime.fanout import parse_parallel

    names = list(name or [])
    l2 = open_l2(run)
    at_once = parse_parallel(parallel, l2.parallel)
    targets = destroy_targets(l2, names)
    if not targets:
        say("l2.destroy: none of these VMs exists; nothing to do")
        return
    listing = ", ".join(f"{vm.name} ({vm.vmid} on {vm.node})" for vm in targets)
    say(f"to destroy: {listing}")
    destroy_vms(run, l2, targets, at_once, yes=yes)


def _up_apply(sc) -> None:
    """`inv up`'s L2 stage: apply with the layer's defaults."""
    from tasks.l2.apply import apply_plans, make_plan, open_l2, print_plan, refuse_errors

    l2 = open_l2(sc.run)
    plans = make_plan(l2)
    print_plan(plans)
    refuse_errors(plans)
    apply_plans(sc.run, l2, plans, l2.parallel)


register_stage(
    LayerStage(
        layer="l2",
        name="apply",
        run=_up_apply,
        summary="clone and configure the VMs of layers/l2/; write .work/inventory/vms.json",
    )
)
