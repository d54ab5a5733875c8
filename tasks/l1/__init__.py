"""L1 templates: Packer-built VM templates, their ISOs, artifact manifests and the stable pointer."""

from __future__ import annotations

from tasks.runtime.cli import task
from tasks.runtime.pipeline import LayerStage, register_stage

PROFILE_HELP = "extra env file, highest precedence"
NAME_HELP = (
    "the template: a folder under layers/l1/templates, or FOLDER/BUILD in a folder of several"
)


def _layer(run):
    from tasks.l1.layer import L1Layer

    return L1Layer(run)


def _template_names() -> list[str]:
    """The templates, for the error when NAME is left out (no env needed)."""
    try:
        from tasks.l1 import spec as specs
        from tasks.runtime.project import Project

        project = Project.current()
        settings = specs.load_settings(project.layers / "l1", project.work / "l1" / "parse-cache")
        found = specs.discover(settings, project.work / "l1" / "parse-cache")
        return [t.name for t in found.templates] or ["(no templates yet)"]
    except Exception:  # the names are a courtesy: the task itself reports a broken folder
        return []


def _problems_error(problems, total: int):
    from tasks.runtime.errors import HomelabError

    codes = {p.error.exit_code for p in problems}
    names = ", ".join(p.name for p in problems)
    return HomelabError(
        f"{len(problems)} of {total} template folder(s) could not be read: {names} "
        "(the rows above say why; every other template is listed)",
        hint=problems[0].error.hint,
        code=codes.pop() if len(codes) == 1 else 1,
    )


@task(
    name="list",
    help={
        "live": "also ask Proxmox whether each stable template still exists",
        "json_": "print JSON instead of a table (with each template's inputs and warnings)",
        "profile": PROFILE_HELP,
    },
)
def list_(run, live=False, json_=False, profile=None):
    """Show each template, its source, its stable artifact and whether it is up to date."""
    from tasks.l1.actions import input_staleness, live_staleness
    from tasks.l1.artifacts import stable_view
    from tasks.runtime.console import say, table, warn
    from tasks.runtime.errors import HomelabError

    l1 = _layer(run)
    found = l1.discover()
    vms = None
    if live and found.templates:
        from tasks.l1.facts import read_vms

        vms = read_vms(l1.pve())
    rows = []
    failed = list(found.problems)
    for spec in found.templates:
        try:
            fp, pv = l1.fingerprint(spec)
            analysis = l1.analysis(spec)
            view = stable_view(l1.store(spec))
        except HomelabError as exc:
            from tasks.l1.spec import TemplateProblem

            failed.append(TemplateProblem(spec.name, spec.folder, exc))
            continue
        reasons = input_staleness(fp, view.pointer) + live_staleness(view.pointer, vms)
        rows.append(
            {
                "template": spec.name,
                "folder": l1.project.rel(spec.folder),
                "build": spec.packer_name,
                "source": spec.source_label,
                "workdir": analysis.workdir,
                "stable": view.summary,
                "fingerprint": fp.value,
                "up_to_date": not reasons,
                "checked_on_proxmox": vms is not None,
                "reasons": reasons,
                "inputs": fp.inputs,
                "warnings": analysis.warnings,
                "missing_variables": sorted(pv.missing),
                "error": None,
            }
        )
        for warning in analysis.warnings:
            warn(f"{spec.name}: {warning}")
    for problem in failed:
        rows.append(
            {
                "template": problem.name,
                "folder": l1.project.rel(problem.folder),
                "error": problem.error.message,
                "hint": problem.error.hint,
                "up_to_date": False,
                "reasons": [],
            }
        )
    rows.sort(key=lambda r: r["template"])
    l1.save()
    if json_:
        import json

        say(json.dumps(rows, indent=2))
    elif not rows:
        say(f"no Packer templates under {l1.project.rel(l1.settings.templates_dir)}")
    else:
        table(
            ["template", "source", "stable", "status"],
            [
                [
                    r["template"],
                    r.get("source") or "-",
                    f"vmid {r['stable']['vmid']} on {r['stable']['node']} ({r['stable']['created_at']})"
                    if r.get("stable")
                    else "-",
                    ("error: " + r["error"])
                    if r["error"]
                    else ("up to date" + ("" if vms is not None else " (inputs)"))
                    if r["up_to_date"]
                    else "stale: " + "; ".join(r["reasons"]),
                ]
                for r in rows
            ],
        )
        if found.shared:
            say(f"shared HCL, not templates (no build block): {', '.join(found.shared)}")
    if failed:
        raise _problems_error(failed, len(rows))


@task(
    help={
        "template": "only this template's ISOs (default: every template's)",
        "dry_run": "show what would be downloaded or uploaded and change nothing (works offline)",
        "profile": PROFILE_HELP,
    }
)
def isos(run, template=None, dry_run=False, profile=None):
    """Make sure every ISO a template references is on the Proxmox ISO storage."""
    from tasks.l1.isos import iso_actions, problems_error
    from tasks.runtime.console import warn
    from tasks.runtime.errors import HomelabError
    from tasks.runtime.steps import Plan

    l1 = _layer(run)
    specs = l1.selected(template)
    problems = [] if template else l1.discover().problems
    for problem in problems:
        warn(f"{problem.name}: not read, its ISOs are not staged: {problem.error.message}")
    actions, planned = iso_actions(l1, specs)
    l1.save()
    staged, failure = 0, None
    if actions:
        try:
            run.execute(Plan("l1.isos", "l1", actions, nothing="ISOs: already as wanted"))
            staged = len(actions)
        except HomelabError as exc:
            failure = exc
    error = problems_error(planned, 0 if run.dry_run else staged)
    if failure is not None:
        raise failure
    if error is not None:
        raise error
    if problems:
        raise _problems_error(problems, len(specs) + len(problems))


@task(
    positional=["name"],
    choices={"name": _template_names},
    help={
        "name": NAME_HELP + " (a folder of several builds: each); `inv up` builds every stale one",
        "force": "build even when the inputs match the stable artifact",
        "dry_run": "say what would be built and why, and every variable that will have no value; "
        "run nothing (works offline, saying which checks needed the API)",
        "profile": PROFILE_HELP,
    },
)
def build(run, name, force=False, dry_run=False, profile=None):
    """Build a template with Packer when stale (or --force); write and promote its artifact."""
    from tasks.l1.build import build_many

    l1 = _layer(run)
    build_many(l1, l1.select(name, several=True), force=force)


@task(
    positional=["name"],
    choices={"name": _template_names},
    help={
        "name": NAME_HELP,
        "artifact": "the artifact manifest to promote (its file name; default: the newest)",
        "dry_run": "say what would be promoted; change nothing",
        "profile": PROFILE_HELP,
    },
)
def promote(run, name, artifact=None, dry_run=False, profile=None):
    """Point a template's stable manifest at an artifact (the newest by default)."""
    from tasks.l1.artifacts import stable_view
    from tasks.l1.facts import read_vms
    from tasks.runtime.console import say
    from tasks.runtime.errors import RefusedError
    from tasks.runtime.steps import Action, Plan

    l1 = _layer(run)
    spec = l1.template(name)
    store = l1.store(spec)
    chosen = store.find(artifact)
    view = stable_view(store)
    stable = view.pointer
    if stable and view.artifact == chosen.file:
        say(f"{spec.name}: already as wanted: stable is {chosen.file} (vmid {chosen.data['vmid']})")
        return
    vmid = int(chosen.data["vmid"])
    vm = read_vms(l1.pve()).get(vmid)
    if vm is None or not vm.template:
        state = "gone from Proxmox" if vm is None else "no longer a template"
        raise RefusedError(
            f"refusing to promote {chosen.file}: its template {vmid} is {state}",
            hint=f"build a new one: inv l1.build {spec.name}",
        )
    before = f"{view.artifact or 'a stable.json'} (vmid {stable.get('vmid')})" if stable else "none"
    if run.dry_run:
        say(f"{spec.name}: would point stable at {chosen.file} (vmid {vmid}); now: {before}")

    def point(sc) -> None:
        store.promote(chosen)
        say(f"{spec.name}: stable -> {chosen.file} (vmid {vmid} on {vm.node}); was: {before}")

    summary = f"point stable at {chosen.file} (vmid {vmid})"
    run.execute(
        Plan(f"l1.promote {spec.name}", "l1", [Action("promote", summary, point)], show_plan=False)
    )


@task(
    doppler=False,
    positional=["name"],
    choices={"name": _template_names},
    help={"name": NAME_HELP, "json_": "print JSON instead of a table"},
)
def history(run, name, json_=False):
    """List a template's artifacts, oldest first, with the stable one marked."""
    from tasks.l1.artifacts import ArtifactStore, stable_view
    from tasks.l1.layer import L1Layer
    from tasks.runtime.console import say, table
    from tasks.runtime.errors import HomelabError

    l1 = L1Layer(run)
    try:
        store = l1.store(l1.template(name))
    except HomelabError:
        # A template whose folder is gone or broken still has its history.
        if not (l1.settings.artifacts_dir / name / "stable.json").is_file():
            raise
        store = ArtifactStore(l1.settings.artifacts_dir, name, run.effects)
    artifacts = store.artifacts()
    view = stable_view(store, artifacts)
    rows = [
        {
            "artifact": a.file,
            "stable": a.file == view.artifact,
            **{k: a.data.get(k) for k in ("created_at", "name", "node", "vmid", "fingerprint")},
            "packer_version": a.data.get("packer_version"),
            "adopted": bool(a.data.get("adopted")),
        }
        for a in artifacts
    ]
    if json_:
        import json

        say(
            json.dumps(
                {
                    "template": store.template,
                    "stable": view.artifact,
                    "stable_pointer": view.summary,
                    "artifacts": rows,
                },
                indent=2,
            )
        )
        return
    if not rows and view.pointer is None:
        say(f"{store.template}: no artifacts yet (inv l1.build {store.template})")
        return
    if rows:
        table(
            ["", "artifact", "created_at", "vmid", "node", "fingerprint"],
            [
                [
                    "*" if r["stable"] else "",
                    f"{r['artifact']}{' (adopted)' if r['adopted'] else ''}",
                    r["created_at"],
                    r["vmid"],
                    r["node"],
                    str(r["fingerprint"] or "")[:19],
                ]
                for r in rows
            ],
        )
    named = bool(view.pointer and view.pointer.get("artifact"))
    if any(r["stable"] for r in rows):
        say("* stable" + ("" if named else f" ({view.note})"))
    else:
        say(view.note)


@task(
    positional=["name"],
    choices={"name": _template_names},
    help={
        "name": NAME_HELP,
        "vmid": "the VMID of the existing Proxmox template",
        "node": "the node it is on (checked; default: wherever Proxmox says it is)",
        "dry_run": "say what would be recorded; change nothing",
        "profile": PROFILE_HELP,
    },
)
def adopt(run, name, vmid=0, node=None, dry_run=False, profile=None):
    """Record an existing Proxmox template as a template's artifact and make it stable."""
    from tasks.l1.adopt import adopt_plan
    from tasks.runtime.errors import ConfigError

    try:
        wanted = int(vmid)
    except (TypeError, ValueError):
        wanted = 0
    if wanted < 100:
        raise ConfigError("l1.adopt needs --vmid N (the existing template's VMID, 100 or more)")
    l1 = _layer(run)
    plan = adopt_plan(l1, l1.template(name), wanted, node)
    l1.save()
    if plan is not None:
        run.execute(plan)


def _up(sc) -> None:
    """`inv up`'s L1 stage: stage the ISOs of stale templates, then build them; a template that
    cannot be read or built is reported and the others go ahead."""
    from tasks.l1.build import build_many
    from tasks.l1.layer import L1Layer

    l1 = L1Layer(sc.run)
    found = l1.discover()
    if not found.templates and not found.problems:
        sc.note("no Packer templates: nothing to build")
        return
    build_many(l1, found.templates, problems=found.problems, stage_isos=True, note=sc.note)


register_stage(
    LayerStage(
        layer="l1",
        name="templates",
        run=_up,
        summary="build the stale Packer templates (their ISOs staged first); "
        "report the ones that cannot be built",
    )
)
