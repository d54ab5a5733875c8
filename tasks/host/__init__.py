"""The host orchestrator (the seed's host/run-host.sh): dynamic DNS and k3s over SSH on HOST_NAME,
an inventory host or a group of them (servers, then agents joining; tasks/host/group.py)."""

from __future__ import annotations

from tasks.runtime.cli import task

ORCH_HELP = {
    "host_env": "extra env file for the host chain (highest precedence)",
    "only": "comma-separated step numbers or names (10, dynamic_dns, 20_install_k3s); ONLY as fallback",
    "dry_run": "print the resolved plan (with each host's k3s plan) and exit without executing",
}


def build_orchestrator():
    """Apply: 10_dynamic_dns, 20_install_k3s. Delete: k3s first, then the DNS record (the seed)."""
    from tasks.host.steps import dynamic_dns, install_k3s
    from tasks.runtime.steps import Gate, Orchestrator, Step

    dns = Step(
        "dynamic_dns",
        dynamic_dns,
        number=10,
        gate=Gate("FEAT_DYNAMIC_DNS", True),
        summary="keep DDNS_RECORD pointing at the public address of HOST_NAME's first server",
    )
    k3s = Step(
        "install_k3s",
        install_k3s,
        number=20,
        summary="k3s at K3S_VERSION on HOST_NAME's servers, then its agents; kubeconfig to "
        ".work/<cluster>/kubeconfig (delete: agents drained and removed first, then servers)",
    )
    return Orchestrator("host", [dns, k3s], [k3s, dns], chain="host")


def run_host_orchestrator(run, mode: str, *, only=None, yes: bool = False) -> None:
    """Plan, then the engine; a dry run also shows each host's k3s plan (its facts are reads)."""
    from tasks.runtime.steps import StepPlan

    run.extra["mode"] = mode
    plan = StepPlan.build(build_orchestrator(), mode, run, only).to_plan()
    if run.dry_run:
        from tasks.host.group import preview

        for action in plan.actions:
            if action.id == "20_install_k3s" and action.included:
                action.details = preview(run, mode)
    run.execute(plan, yes=yes)


@task(env="host", area="host", help=ORCH_HELP)
def apply(run, host_env=None, only=None, dry_run=False):
    """Run the host orchestrator's apply steps (dynamic DNS, k3s on servers then agents)."""
    run_host_orchestrator(run, "apply", only=only)


@task(
    env="host",
    area="host",
    help={**ORCH_HELP, "yes": "do not ask for confirmation (needed without a terminal)"},
)
def delete(run, host_env=None, only=None, dry_run=False, yes=False):
    """Drain and remove k3s agents, then servers, then the DNS record (asks first)."""
    run_host_orchestrator(run, "delete", only=only, yes=yes)
