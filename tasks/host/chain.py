"""The host env chain inside a run that resolved the cluster chain (`inv up`'s k3s stage).

The host orchestrator's settings (HOST_NAME, K3S_*, DDNS_*) live in the host chain
(`inventory/host/config/homelab.env`, `host.env`, the seed's layering), while `inv up` resolves the
cluster chain for every layer. The k3s stage therefore sees the same run through the host chain:
the same effects seam, trace, locks and dry-run switch, the same shell environment and the same
Doppler secrets (fetched once per run, never twice) and the same `--profile` file (the host
chain's highest layer, where `--host-env` would be), only the env files below them differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from tasks.runtime.envlayers import EnvLayers
    from tasks.runtime.run import Run
    from tasks.runtime.settings import Settings
    from tasks.runtime.steps import Plan


class HostChainRun:
    """A run seen through another env chain; everything but `env` and `settings` is the run's."""

    def __init__(self, run: Run, env: EnvLayers) -> None:
        from tasks.runtime.settings import Settings

        self._run = run
        self.env = env
        self.settings: Settings = Settings(env)
        self.settings.check()  # every bad value of the host chain at once, before it is used

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def execute(self, plan: Plan, *, yes: bool = False) -> None:
        from tasks.runtime.steps import execute_plan

        execute_plan(cast("Run", self), plan, yes=yes)


def host_run(run: Run) -> Run:
    """`run` itself when it resolved the host chain; otherwise the run seen through it."""
    if isinstance(run, HostChainRun) or run.env.chain == "host":
        return run
    key = ("host-chain", id(run))
    cached = run.memo.get(key)
    if cached is None:
        cached = run.memo[key] = HostChainRun(run, _host_env(run))
        run.extra["host_env_layers"] = cached.env.layer_names()
    return cast("Run", cached)


def _host_env(run: Run) -> EnvLayers:
    from tasks.runtime.envlayers import resolve_env

    cluster = run.env
    shell = next((layer for layer in cluster.layers if layer.name == "shell"), None)
    doppler = next((layer for layer in cluster.layers if layer.name == "doppler"), None)
    fetched = doppler is not None and doppler.used
    # `inv up --profile F`: F stays the highest layer in the host chain too (one env, every stage).
    profile = run.selection.override if run.selection.chain == "cluster" else None
    env = resolve_env(
        run.project.inventory,
        chain="host",
        override_file=profile,
        shell=dict(shell.values) if shell is not None else None,
        doppler=fetched,
        fetch_doppler=lambda control: dict(doppler.values) if doppler is not None else {},
        root=run.project.root,
    )
    for layer in env.layers:
        if layer.name == "--host-env":
            layer.name = "--profile"  # the flag that gave it
    if not fetched:
        for layer in env.layers:
            if layer.name == "doppler":
                layer.skipped = (doppler.skipped if doppler else None) or "off"
    return env
