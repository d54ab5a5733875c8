"""Rendering templates/ (render.yaml lists outputs) with Jinja2 in strict mode.

Every template is rendered before anything is written, so one missing variable anywhere fails the
whole run with all of them listed (template and line) and no file half-updated.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.gitopsside.settings import GitOpsSettings
    from tasks.runtime.project import Project

MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["outputs"],
    "properties": {
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["template", "output"],
                "additionalProperties": False,
                "properties": {
                    "template": {"type": "string", "minLength": 1},
                    "output": {"type": "string", "minLength": 1},
                    "for_each": {"enum": ["modes"]},
                },
            },
        }
    },
}
CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["gitops", "apps"],
    "properties": {
        "apps": {
            "type": "object",
            "required": ["name", "environments", "issuers"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "environments": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "issuers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "short"],
                        "properties": {"name": {"type": "string"}, "short": {"type": "string"}},
                    },
                },
            },
        },
        "gitops": {"type": "object"},
    },
}


def load_config(project: Project) -> dict[str, Any]:
    from tasks.runtime.config import load_yaml_file

    path = project.inventory / "homelab.yaml"
    if not path.exists():
        raise ConfigError(
            f"{project.rel(path)}: operator config not found",
            hint="run `inv init` to create it from the sample",
        )
    return load_yaml_file(path, CONFIG_SCHEMA, what="operator config") or {}


def app_modes(config: dict[str, Any]) -> list[dict[str, str]]:
    apps = config["apps"]
    return [
        {"name": f"{env}-{issuer['short']}", "env": env, "issuer": issuer["name"]}
        for env in apps["environments"]
        for issuer in apps["issuers"]
    ]


def _recording_undefined(env, missing: list[str]):
    """A strict Undefined that records `template:line: message` and renders empty.

    Jinja's StrictUndefined stops at the first miss; operators want every miss at once, so this one
    records each (with its template line) and the run fails afterwards, before anything is written.
    """
    import sys

    import jinja2

    root = Path(env.loader.searchpath[0])

    class Recording(jinja2.ChainableUndefined):
        def _record(self) -> None:
            frame: Any = sys._getframe(1)
            where = "render.yaml"
            while frame is not None:
                filename = frame.f_code.co_filename
                if filename.endswith(".j2"):
                    try:
                        name = Path(filename).relative_to(root).as_posix()
                        line = env.get_template(name).get_corresponding_lineno(frame.f_lineno)
                        where = f"{name}:{line}"
                    except (ValueError, jinja2.TemplateError):
                        where = filename
                    break
                frame = frame.f_back
            missing.append(f"{where}: {self._undefined_message}")

        def __str__(self) -> str:
            self._record()
            return ""

        def __iter__(self):
            self._record()
            return iter(())

        def __bool__(self) -> bool:
            self._record()
            return False

    return Recording


def _render(env, source: str | None, name: str, variables: dict[str, Any]) -> str:
    import jinja2

    try:
        template = env.from_string(source) if source is not None else env.get_template(name)
        return template.render(variables)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"templates/{exc.name or name}:{exc.lineno}: template syntax error: {exc.message}"
        ) from None
    except jinja2.TemplateNotFound:
        raise ConfigError(
            f"templates/render.yaml: template {name!r} not found under templates/"
        ) from None


def render_all(project: Project, settings: GitOpsSettings, *, dry_run: bool) -> list[Path]:
    import jinja2

    from tasks.gitopsside.edits import unified_diff
    from tasks.runtime.config import load_yaml_file
    from tasks.runtime.console import say
    from tasks.runtime.files import atomic_write

    manifest = load_yaml_file(
        project.templates / "render.yaml", MANIFEST_SCHEMA, what="render manifest"
    )
    config = load_config(project)
    variables = {
        **config,
        "cluster": settings.cluster,
        "gitops_root": project.rel(settings.root),
        "flux_root": settings.flux_root,
        "modes": app_modes(config),
    }
    missing: list[str] = []
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(project.templates.resolve())),
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.undefined = _recording_undefined(env, missing)
    planned: dict[Path, str] = {}
    for entry in manifest["outputs"]:
        items = variables["modes"] if entry.get("for_each") == "modes" else [None]
        for item in items:
            scope = {**variables, "mode": item} if item is not None else variables
            before = len(missing)
            out_name = _render(env, entry["output"], "render.yaml", scope)
            text = _render(env, None, entry["template"], scope)
            if len(missing) > before:
                continue
            target = (project.root / out_name.strip()).resolve()
            if project.root.resolve() not in target.parents:
                raise ConfigError(
                    f"templates/render.yaml: output {out_name!r} is outside the checkout"
                )
            planned[target] = text
    if missing:
        raise ConfigError(
            f"{len(missing)} undefined variable(s) in templates/ (nothing was written):\n  "
            + "\n  ".join(f"templates/{m}" for m in dict.fromkeys(missing)),
            hint=f"define them in {project.rel(project.inventory / 'homelab.yaml')}",
        )
    changed = []
    for target, text in planned.items():
        old = target.read_text(encoding="utf-8") if target.exists() else ""
        if old == text:
            continue
        changed.append(target)
        if dry_run:
            say(unified_diff(old, text, project.rel(target)).rstrip("\n"))
        else:
            atomic_write(target, text)
            say(f"rendered {project.rel(target)}")
    if not changed:
        say(f"configure: already as wanted ({len(planned)} files rendered, none changed)")
    elif dry_run:
        say(f"dry run: {len(changed)} of {len(planned)} files would change; nothing written")
    else:
        say(f"configure: {len(changed)} of {len(planned)} files written")
    return changed
