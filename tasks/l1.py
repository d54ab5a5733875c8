"""L1 templates: Packer-built VM templates, their ISOs, artifact manifests and the stable pointer."""

from __future__ import annotations

from invoke import task

from tasks.runtime.pipeline import LayerStage, register_stage

PROFILE_HELP = "extra env file, highest precedence"


def _layer(c, profile):
    from tasks.packer_templates.layer import L1Layer

    c.use_env("cluster", profile)
    return L1Layer(c)


@task(
    name="list",
    help={
        "live": "also ask Proxmox whether each stable template still exists",
        "json_": "print JSON instead of a table",
        "profile": PROFILE_HELP,
    },
)
def list_(c, live=False, json_=False, profile=None):
    """Show each template, its source, its stable artifact and whether it is up to date."""
    from tasks.packer_templates.actions import input_staleness, live_staleness
    from tasks.runtime.console import say, table

    l1 = _layer(c, profile)
    templates = l1.templates()
    vms = None
    if live and templates:
        from tasks.packer_templates.facts import read_vms

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
def isos(c, template=None, dry_run=False, profile=None):
    """Make sure every ISO a template references is on the Proxmox ISO storage."""
    from tasks.packer_templates import isos as staging

    l1 = _layer(c, profile)
    staging.stage(l1, l1.selected(template), dry_run=dry_run)


@task(
    positional=["name"],
    help={
        "name": "the template: a folder under layers/l1/templates (`inv up` builds every stale one)",
        "force": "build even when the inputs match the stable artifact",
        "dry_run": "say what would be built and why; run nothing",
        "profile": PROFILE_HELP,
    },
)
def build(c, name, force=False, dry_run=False, profile=None):
    """Build a template with Packer when stale (or --force); write and promote its artifact."""
    from tasks.packer_templates.build import build_template
    from tasks.packer_templates.facts import read_vms
    from tasks.runtime.console import say

    l1 = _layer(c, profile)
    spec = l1.template(name)
    build_template(c, l1, spec, read_vms(l1.pve()), force=force, dry_run=dry_run)
    if dry_run:
        say("dry run: nothing was built")


@task(
    positional=["name"],
    help={
        "name": "the template",
        "artifact": "the artifact manifest to promote (its file name; default: the newest)",
        "dry_run": "say what would be promoted; change nothing",
        "profile": PROFILE_HELP,
    },
)
def promote(c, name, artifact=None, dry_run=False, profile=None):
    """Point a template's stable manifest at an artifact (the newest by default)."""
    from tasks.packer_templates.facts import read_vms
    from tasks.runtime.console import say
    from tasks.runtime.errors import RefusedError

    l1 = _layer(c, profile)
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
    if dry_run:
        say(f"{name}: would point stable at {chosen.file} (vmid {vmid}); now: {before}")
        return
    store.promote(chosen)
    say(f"{name}: stable -> {chosen.file} (vmid {vmid} on {vm.node}); was: {before}")


@task(help={"name": "the template", "json_": "print JSON instead of a table"})
def history(c, name, json_=False):
    """List a template's artifacts, oldest first, with the stable one marked."""
    from tasks.packer_templates.layer import L1Layer
    from tasks.runtime.console import say, table

    store = L1Layer(c).store(name)
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
    from tasks.packer_templates import isos as staging
    from tasks.packer_templates.build import build_template, decide
    from tasks.packer_templates.facts import read_vms
    from tasks.packer_templates.layer import L1Layer

    l1 = L1Layer(sc.c)
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
    staging.stage(l1, stale, dry_run=False)
    for spec in stale:
        build_template(sc.c, l1, spec, vms)
        sc.note(f"{spec.name}: built")


register_stage(
    LayerStage(
        layer="l1",
        name="templates",
        run=_up,
        summary="build the stale Packer templates (their ISOs staged first)",
    )
)
