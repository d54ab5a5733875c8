"""The host orchestrator: dynamic DNS and k3s on one host over SSH (the seed's host/run-host.sh)."""

from __future__ import annotations

from tasks.runtime.cli import task

ORCH_HELP = {
    "host_env": "extra env file for the host chain (highest precedence)",
    "only": "comma-separated step numbers or names (10, dynamic_dns, 20_install_k3s); ONLY as fallback",
    "dry_run": "print the resolved plan and exit without executing",
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
        summary="keep DDNS_RECORD pointing at the host's public address",
    )
    k3s = Step(
        "install_k3s",
        install_k3s,
        number=20,
        summary="k3s at K3S_VERSION over SSH; kubeconfig to .work/<cluster>/kubeconfig",
    )
    return Orchestrator("host", [dns, k3s], [k3s, dns], chain="host")


@task(env="host", area="host", help=ORCH_HELP)
def apply(run, host_env=None, only=None, dry_run=False):
    """Run the host orchestrator's apply steps (dynamic DNS, k3s) against HOST_NAME."""
    from tasks.runtime.steps import run_orchestrator

    run_orchestrator(run, build_orchestrator(), "apply", only=only)


@task(
    env="host", area="host", help={**ORCH_HELP, "yes": "do not ask for confirmation (needed without a terminal)"}
)
def delete(run, host_env=None, only=None, dry_run=False, yes=False):
    """Uninstall k3s from HOST_NAME, then remove its DNS record (asks first)."""
    from tasks.runtime.steps import run_orchestrator

    run_orchestrator(run, build_orchestrator(), "delete", only=only, yes=yes)
