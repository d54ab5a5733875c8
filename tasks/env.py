"""Inspect the layered environment: every variable, its value (masked) and where it came from."""

from __future__ import annotations

from tasks.runtime.cli import task
from tasks.runtime.errors import ConfigError

ENV_FLAGS = {
    "profile": "extra env file for the cluster chain (highest precedence)",
    "host_env": "extra env file for the host chain (highest precedence); selects the host chain",
    "chain": "which chain to resolve: cluster (default) or host",
    "no_doppler": "resolve without fetching Doppler (never contacts it)",
}


def _chain(kwargs) -> str:
    asked = kwargs.get("chain")
    if asked not in (None, "cluster", "host"):
        raise ConfigError(f"--chain {asked!r}: expected cluster or host")
    selects_host = (
        "`env.check host` (the host orchestrator's variables)"
        if kwargs.get("layer") == "host"
        else "--host-env"
        if kwargs.get("host_env")
        else None
    )
    if selects_host and asked == "cluster":
        raise ConfigError(
            f"{selects_host} reads the host chain, but --chain cluster asks for the other one",
            hint="drop --chain cluster: the host chain is the one that applies here",
        )
    return "host" if selects_host else asked or "cluster"


def _declared_names(project) -> set[str]:
    from tasks.runtime.config import load_layer_manifests

    names: set[str] = set()
    for manifest in load_layer_manifests(project).values():
        names.update(manifest.get("required_env") or [])
        names.update(manifest.get("optional_env") or [])
    return names


@task(
    env=_chain,
    check_settings=False,
    help={
        **ENV_FLAGS,
        "json": "print JSON instead of a table",
        "all": "include every variable of the process environment",
    },
)
def show(run, json=False, all=False, profile=None, host_env=None, chain=None, no_doppler=False):
    """Show every resolved variable, its value (secrets masked) and the layer it came from."""
    import json as jsonlib

    from tasks.runtime.console import say, table
    from tasks.runtime.secrets import MASK, mask
    from tasks.runtime.settings import bad_value, setting_for

    env = run.env
    below_shell = {k for lyr in env.layers if lyr.used and lyr.name != "shell" for k in lyr.values}
    interesting = below_shell | _declared_names(run.project)
    rows = []
    for name in sorted(env.merged):
        source = env.source[name]
        if not all and source == "shell" and name not in interesting:
            continue
        secret = env.is_secret(name)
        # Masked before JSON escaping, which would hide a secret inside a value from the masker.
        value = MASK if secret else mask(env.merged[name])
        row = {"name": name, "value": value, "layer": source, "secret": secret}
        setting = setting_for(name)
        raw = env.merged[name]
        if setting is not None and raw.strip() and setting.parse(raw) is None:
            row["problem"] = mask(bad_value(name, raw, env.where(name), setting))
        rows.append(row)
    layers = [
        {
            "name": lyr.name,
            "origin": lyr.origin,
            "used": lyr.used,
            "skipped": lyr.skipped,
            "count": len(lyr.values) if lyr.used else 0,
        }
        for lyr in env.layers
    ]
    if json:
        say(jsonlib.dumps({"chain": env.chain, "layers": layers, "variables": rows}, indent=2))
        return
    say(f"env chain: {env.chain} (lowest precedence first)")
    for lyr in layers:
        state = f"{lyr['count']} vars" if lyr["used"] else f"skipped: {lyr['skipped']}"
        say(f"  {lyr['name']:<24} {state:<28} {lyr['origin']}")
    say("")
    table(
        ["NAME", "VALUE", "LAYER"],
        [
            [r["name"], r["value"] + (" (invalid)" if "problem" in r else ""), r["layer"]]
            for r in rows
        ],
    )
    for row in rows:
        if "problem" in row:
            say(f"invalid: {row['problem']}")


ORCHESTRATORS = ("cluster", "host")


def _layers() -> list[str]:
    from tasks.runtime.config import load_layer_manifests
    from tasks.runtime.project import Project

    return [*sorted(load_layer_manifests(Project.current())), *ORCHESTRATORS]


def orchestrator_required(run, name: str) -> list[str]:
    """What an orchestrator's apply needs from the env, as its steps read it: the host one
    HOST_NAME and K3S_VERSION, and the DNS step's three when FEAT_DYNAMIC_DNS is on; the cluster
    one the runtime-input ${VARS} when the GitOps tree wants the runner to build that Secret."""
    if name == "host":
        names = ["HOST_NAME", "K3S_VERSION"]
        if run.settings.flag("FEAT_DYNAMIC_DNS", True):
            names += ["DDNS_ZONE", "DDNS_RECORD", "CLOUDFLARE_API_TOKEN"]
        return names
    from tasks.gitops.settings import GitOpsSettings
    from tasks.gitops.tree import runtime_input_names

    settings = GitOpsSettings.load(run)
    wanted, _why = settings.layout.runtime_inputs_wanted()
    if not wanted or not run.settings.flag("FEAT_RUNTIME_INPUTS", True):
        return []
    return runtime_input_names(settings)


@task(
    env=_chain,
    check_settings=False,
    choices={"layer": _layers},
    help={
        "layer": "the layer or orchestrator whose required variables to check (l0..l4, cluster, host)",
        **ENV_FLAGS,
    },
)
def check(run, layer, profile=None, host_env=None, chain=None, no_doppler=False):
    """Report every missing required variable of LAYER at once."""
    from tasks.runtime.config import load_layer_manifests
    from tasks.runtime.console import say
    from tasks.runtime.secrets import where_to_set

    manifests = load_layer_manifests(run.project)
    if layer not in manifests and layer not in ORCHESTRATORS:
        known = ", ".join([*sorted(manifests), *ORCHESTRATORS])
        raise ConfigError(
            f"unknown layer {layer!r}; expected a layer with a layer.yaml or an orchestrator: {known}"
        )
    env = run.env
    if layer in ORCHESTRATORS:
        required = orchestrator_required(run, layer)
    else:
        required = manifests[layer].get("required_env") or []
    missing = env.missing(required)
    for name in required:
        state = "MISSING" if name in missing else f"ok ({env.source[name]})"
        say(f"  {name:<28} {state}")
    # Every typed setting's value too, all at once: the check runs without the up-front one so
    # that it can name missing and bad values together.
    bad = run.settings.problems()
    for problem in bad:
        say(f"  bad value: {problem}")
    show = "`inv env.show" + ("" if run.selection.chain == "cluster" else " --chain host") + "`"
    if missing:
        raise ConfigError(
            f"{layer}: {len(missing)} required variable(s) missing: {', '.join(missing)}"
            + (f"; {len(bad)} setting(s) with a bad value" if bad else ""),
            hint=f"{where_to_set(missing, run.selection.chain)} ({show} shows each layer)",
        )
    if bad:
        raise ConfigError(
            f"{layer}: {len(bad)} setting(s) have values the runner cannot use (listed above)",
            hint=f"fix them where they are set ({show} shows every layer)",
        )
    say(f"{layer}: all {len(required)} required variable(s) present, every setting's value usable")
