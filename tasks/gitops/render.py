"""Rendering templates/ (render.yaml lists outputs) with Jinja2 in strict mode.

Every template is rendered before anything is written, so one missing variable anywhere fails the
whole run with all of them listed (template and line) and no file half-updated.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.gitops.settings import GitOpsSettings
    from tasks.runtime.project import Project
    from tasks.runtime.run import Run

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


def _strict_environment(searchpath: str, missing: list[str]):
    """A Jinja2 environment whose undefined values record `template:line: message` and render empty.

    StrictUndefined stops at the first miss; operators want every miss at once. At compile time every
    name/attribute/item lookup and call/filter result is wrapped in a `_missing_at(name, line)`
    filter (public AST API: Environment.parse/compile, jinja2.nodes, NodeTransformer) that tags an
    undefined result with where it was looked up; the tag is recorded only when the value is
    actually printed, iterated or tested (so `| default`, `is defined` and untaken branches don't count).
    """
    import jinja2
    from jinja2 import nodes
    from jinja2.visitor import NodeTransformer

    class Recording(jinja2.ChainableUndefined):
        _where = "render.yaml"  # class default: an untagged instance (e.g. the output expressions)

        def _record(self) -> None:
            missing.append(f"{self._where}: {self._undefined_message}")

        def __str__(self) -> str:
            self._record()
            return ""

        def __iter__(self):
            self._record()
            return iter(())

        def __bool__(self) -> bool:
            self._record()
            return False

    def missing_at(value: Any, where: str) -> Any:
        if isinstance(value, Recording) and "_where" not in vars(value):
            tagged = Recording(
                value._undefined_hint,
                value._undefined_obj,
                value._undefined_name,
                value._undefined_exception,
            )
            tagged._where = where
            return tagged
        return value

    class Tag(NodeTransformer):
        def __init__(self, name: str) -> None:
            self.name = name

        def generic_visit(self, node, *args, **kwargs):
            node = super().generic_visit(node)
            if (
                isinstance(node, (nodes.Getattr, nodes.Getitem, nodes.Call))
                or (isinstance(node, nodes.Name) and node.ctx == "load")
                or (isinstance(node, nodes.Filter) and node.node is not None)
            ):
                where = nodes.Const(f"{self.name}:{node.lineno}")
                return nodes.Filter(
                    node, "_missing_at", [where], [], None, None, lineno=node.lineno
                )
            return node

        def visit_CallBlock(self, node):  # `{% call m() %}` needs its Call node as is
            node.call = super().generic_visit(node.call)
            node.body = [self.visit(n) for n in node.body]
            return node

    class StrictEnvironment(jinja2.Environment):
        def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
            if isinstance(source, str) and name is not None:  # from_string (render.yaml): name None
                source = Tag(name).visit(self.parse(source, name, filename))
            return super().compile(source, name, filename, raw, defer_init)

    env = StrictEnvironment(
        loader=jinja2.FileSystemLoader(searchpath),
        undefined=Recording,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["_missing_at"] = missing_at
    return env


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


def render_all(run: Run, settings: GitOpsSettings) -> list[Path]:
    """Render every output in memory, then write the changed ones in one all-or-nothing pass."""
    from tasks.gitops.edits import unified_diff
    from tasks.runtime.config import load_yaml_file
    from tasks.runtime.console import say
    from tasks.runtime.steps import Action, Plan

    project = run.project
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
    env = _strict_environment(str(project.templates.resolve()), missing)
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
        listed = list(dict.fromkeys(missing))
        raise ConfigError(
            f"{len(listed)} undefined variable(s) in templates/ (nothing was written):\n  "
            + "\n  ".join(f"templates/{m}" for m in listed),
            hint=f"define them in {project.rel(project.inventory / 'homelab.yaml')}",
        )
    changed: dict[Path, str] = {}
    for target, text in planned.items():
        old = target.read_text(encoding="utf-8") if target.exists() else ""
        if old != text:
            changed[target] = text
            say(unified_diff(old, text, project.rel(target)).rstrip("\n"))
    if not changed:
        say(f"configure: already as wanted ({len(planned)} files rendered, none changed)")
        return []

    def write(sc) -> None:
        sc.effects.write_files(changed, what=f"{len(changed)} rendered file(s)")
        for target in changed:
            say(f"rendered {project.rel(target)}")

    names = [project.rel(t) for t in changed]
    plan = Plan(
        title="configure",
        area="gitops-tree",
        actions=[Action("write", f"{len(changed)} of {len(planned)} files", write, details=names)],
    )
    run.execute(plan)
    if not run.dry_run:
        say(f"configure: {len(changed)} of {len(planned)} files written")
    return list(changed)
