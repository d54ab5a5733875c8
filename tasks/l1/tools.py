"""Tool versions: what a template's `packer` block asks of the installed Packer.

`required_version` constraints (`>= 1.9.0`, `~> 1.10`) and `required_plugins` (which need
`packer init`, Packer 1.7 or later) are checked before anything is built, so a too-old Packer is
one clear error naming the file and line rather than a Packer parse failure half-way through.
`l0.runway` can report the same with `packer_problems` over every template.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.runtime.errors import ConfigError

if TYPE_CHECKING:
    from tasks.adapters.packer import PackerVersion
    from tasks.l1.spec import TemplateSpec


def packer_problems(spec: TemplateSpec, version: PackerVersion) -> list[str]:
    """What the installed Packer lacks for `spec` (empty: nothing)."""
    from tasks.adapters.packer import unmet

    problems = []
    for constraint, where in spec.folder_spec.required_version:
        try:
            failed = unmet(constraint, version.parts)
        except ValueError as exc:
            problems.append(f"{where}: required_version: {exc}")
            continue
        if failed:
            problems.append(
                f"{where}: required_version = {constraint!r} (Packer {version.text} fails {failed!r})"
            )
    if spec.plugins and not version.has_init:
        problems.append(
            f"required_plugins ({', '.join(sorted(spec.plugins))}) needs Packer 1.7 or later "
            f"for `packer init`; this machine has {version.text}"
        )
    return problems


def require_packer(spec: TemplateSpec, version: PackerVersion) -> None:
    problems = packer_problems(spec, version)
    if problems:
        raise ConfigError(
            f"template {spec.name}: the installed Packer {version.text} is too old: "
            + "; ".join(problems),
            hint="install a current Packer from HashiCorp's releases "
            "(https://developer.hashicorp.com/packer/install)",
        )


def packer_report(run, version: PackerVersion) -> list[tuple[str, str]]:
    """(template, what the installed Packer lacks) for every template: for `l0.runway`'s tool row.
    A template folder that cannot be read is left to `l1.list`, which names its error."""
    from tasks.l1.layer import L1Layer

    found = []
    for spec in L1Layer(run).templates():
        found += [(spec.name, problem) for problem in packer_problems(spec, version)]
    return found
