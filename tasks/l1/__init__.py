"""L1 templates: Packer-built VM templates, their ISOs, artifact manifests and the stable pointer."""

from __future__ import annotations

from tasks.runtime.cli import task
from tasks.runtime.pipeline import LayerStage, register_stage

PROFILE_HELP = "extra env file, highest precedence"


def _layer(run):
    from tasks.l1.layer import L1Layer

    return L1Layer(run)


@task(
    name="list",
    help={
        "live": "also ask Proxmox whether each stable template still exists",
        "json_": "print JSON instead of a table",
        "profile": PROFILE_HELP,
    },
)
def list_(run, live=False, json_=False, profile=None):
    """Show each template, its source, its stable artifact and whether it is up to date."""
    from tasks.l1.actions import input_staleness, live_staleness
    from tasks.runtime.console import say, table

    l1 = _layer(run)
    templates = l1.templates()
    vms = None
    if live and templates:
        from tasks.l1.facts import read_vms

        vms = read_vms(l1.pve())
    rows = []
    for spec in templates:
        fp, _pv = l1.fingerprint(spec)
        stable = l1.store(spec.name).stable()
        reasons = input_staleness(fp, stable) + live_staleness(stable, vms)
        rows.append(
            {
                "template": spec.name,
                "source": spec.source_label,
                "stable": (
                    {k: stable.get(k) for k in ("artifact", "name", "node", "vmid", "created_at")}
                    if stable
                    else None
                ),
                "fingerprint": fp.value,
                "up_to_date": not reasons,
                "checked_on_proxmox": vms is not None,
                "reasons": reasons,
            }
        )
    if json_:
        import json

        say(json.dumps(rows, indent=2))
        return
    if not rows:
        say(f"no Packer templates under {l1.project.rel(l1.settings.templates_dir)}")
        return
    table(
        ["template", "source", "stable", "status"],
        [
            [
                r["template"],
                r["source"],
                f"vmid {r['stable']['vmid']} on {r['stable']['node']} ({r['stable']['created_at']})"
                if r["stable"]
                else "-",
                ("up to date" + ("" if vms is not None else " (inputs)"))
                if r["up_to_date"]
                else "stale: " + "; ".join(r["reasons"]),
            ]
            for r in rows
        ],
    )


@task(
    help={
        "template": "only this template's ISOs (default: every template's)",
        "dry_run": "show what would be downloaded or uploaded and change nothing",
        "profile": PROFILE_HELP,
    }
)
def isos(run, template=None, dry_run=False, profile=None):
    """Make sure every ISO a template references is on the Proxmox ISO storage."""
    from tasks.l1.isos import iso_actions
    from tasks.runtime.steps import Plan

    l1 = _layer(run)
    actions = iso_actions(l1, l1.selected(template))
    if actions:
        run.execute(Plan("l1.isos", "l1", actions, nothing="ISOs: already as wanted"))


@task(
    positional=["name"],
    help={
        "name": "the template: a folder under layers/l1/templates (`inv up` builds every stale one)",
        "force": "build even when the inputs match the stable artifact",
        "dry_run": "say what would be built and why; run nothing",
        "profile": PROFILE_HELP,
    },
)
def build(run, name, force=False, dry_run=False, profile=None):
    """Build a template with Packer when stale (or --force); write and promote its artifact."""
    from tasks.l1.build import build_actions
    from tasks.l1.facts import read_vms
    from tasks.runtime.steps import Plan

    l1 = _layer(run)
    spec = l1.template(name)
    actions = build_actions(l1, spec, read_vms(l1.pve()), force=force)
    if actions:
        run.execute(Plan(f"l1.build {spec.name}", "l1", actions))


@task(
    positional=["name"],
    help={
        "name": "the template",
        "artifact": "the artifact manifest to promote (its file name; default: the newest)",
        "dry_run": "say what would be promoted; change nothing",
        "profile": PROFILE_HELP,
    },
)
def promote(run, name, artifact=None, dry_run=False, profile=None):
    """Point a template's stable manifest at an artifact (the newest by default)."""
    from tasks.l1.facts import read_vms
    from tasks.runtime.console import say
    from tasks.runtime.errors import RefusedError
    from tasks.runtime.steps import Action, Plan

    l1 = _layer(run)
    store = l1.store(name)
    chosen = store.find(artifact)
    stable = store.stable()
    if stable and stable.get("artifact") == chosen.file:
        say(f"{name}: already as wanted: stable is {chosen.file} (vmid {chosen.data['vmid']})")
        return
    vmid = int(chosen.data["vmid"])
    vm = read_vms(l1.pve()).get(vmid)
    if vm is None or not vm.template:
        state = "gone from Proxmox" if vm is None else "no longer a template"
        raise RefusedError(
            f"refusing to promote {chosen.file}: its template {vmid} is {state}",
            hint=f"build a new one: inv l1.build {name}",
        )
    before = f"{stable.get('artifact')} (vmid {stable.get('vmid')})" if stable else "none"
    if run.dry_run:
        say(f"{name}: would point stable at {chosen.file} (vmid {vmid}); now: {before}")

    def point(sc) -> None:
        store.promote(chosen)
        say(f"{name}: stable -> {chosen.file} (vmid {vmid} on {vm.node}); was: {before}")

    summary = f"point stable at {chosen.file} (vmid {vmid})"
    run.execute(
        Plan(f"l1.promote {name}", "l1", [Action("promote", summary, point)], show_plan=False)
    )


@task(doppler=False, help={"name": "the template", "json_": "print JSON instead of a table"})
def history(run, name, json_=False):
    """List a template's artifacts, oldest first, with the stable one marked."""
    from tasks.l1.layer import L1Layer
    from tasks.runtime.console import say, table

    store = L1Layer(run).store(name)
    artifacts = store.artifacts()
    stable = store.stable()
    stable_file = stable.get("artifact") if stable else None
    rows = [
        {
            "artifact": a.file,
            "stable": a.file == stable_file,
            **{k: a.data.get(k) for k in ("created_at", "name", "node", "vmid", "fingerprint")},
            "packer_version": a.data.get("packer_version"),
        }
        for a in artifacts
    ]
    if json_:
        import json

        say(json.dumps({"template": name, "stable": stable_file, "artifacts": rows}, indent=2))
        return
    if not rows:
        say(f"{name}: no artifacts yet (inv l1.build {name})")
        return
    table(
        ["", "artifact", "created_at", "vmid", "node", "fingerprint"],
        [
            [
                "*" if r["stable"] else "",
                r["artifact"],
                r["created_at"],
                r["vmid"],
                r["node"],
                str(r["fingerprint"] or "")[:19],
            ]
            for r in rows
        ],
    )
    if stable_file and not any(r["stable"] for r in rows):
        say(f"stable points at {stable_file}, which is no longer in {store.folder}")
    else:
        say("* stable" if stable_file else "no stable artifact yet")


def _up(sc) -> None:
    """`inv up`'s L1 stage: stage the ISOs of stale templates, then build them."""
    from tasks.l1.build import build_actions, decide
    from tasks.l1.facts import read_vms
    from tasks.l1.isos import iso_actions
    from tasks.l1.layer import L1Layer
    from tasks.runtime.steps import Plan

    l1 = L1Layer(sc.run)
    specs = l1.templates()
    if not specs:
        sc.note("no Packer templates: nothing to build")
        return
    vms = read_vms(l1.pve())
    stale = []
    for spec in specs:
        decision = decide(l1, spec, vms, False)
        if decision.build:
            stale.append(spec)
        else:
            sc.note(f"{spec.name}: already as wanted ({decision.summary})")
    if not stale:
        return
    actions = iso_actions(l1, stale)
    for spec in stale:
        actions += build_actions(l1, spec, vms)
    sc.run.execute(Plan("l1 templates", "l1", actions))
    for spec in stale:
        sc.note(f"{spec.name}: built")


register_stage(
    LayerStage(
        layer="l1",
        name="templates",
        run=_up,
        summary="build the stale Packer templates (their ISOs staged first)",
    )
)
