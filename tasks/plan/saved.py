"""Saved plans (`inv plan --out FILE`, `inv up --plan FILE`) and the declarations' digest that
saved plans and `inv up --resume` compare.

A saved plan is JSON, masked: the plan's tables as data, a sha256 per item of what its reader read
(state, detail, the lines below it and the reader's extra `facts`, all masked first), one per layer
over its items, the digest of every declaration file, and when it was made. `inv up --plan FILE`
re-reads the same layers the same way and refuses (RefusedError, exit 3) when a digest differs,
naming the layer and item, when a declaration file changed, or when the plan is older than
PLAN_MAX_AGE (default 1h).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import ConfigError, RefusedError

if TYPE_CHECKING:
    from tasks.plan.readers import Item, LayerPlan
    from tasks.runtime.project import Project
    from tasks.runtime.run import Run

FORMAT = "homelab-plan/1"
DEFAULT_MAX_AGE = 3600.0
# The plan's layers and the `inv up` stage that changes each (L0 changes nothing: it can only
# fail; the host orchestrator's k3s: the k3s stage; GitOps: the cluster stage reconciles what is
# pushed, committing is the operator's).
STAGE_OF = {
    "l0": "l0",
    "l1": "l1",
    "l2": "l2",
    "l3": "l3",
    "l4": "l4",
    "host": "k3s",
    "gitops": "cluster",
}

# Declarations: every file under these folders, except what runs write there themselves.
DECLARED = ("layers", "inventory")
RUNNER_WRITTEN = ("inventory/ssh/", "layers/l1/artifacts/")  # recorded host keys, L1 builds
SKIPPED_PARTS = {"__pycache__", ".git"}
# Editors' and file managers' leftovers (vim, emacs, nano, macOS): an open editor must not make
# every saved plan and `inv up --resume` refuse with "declarations changed".
EDITOR_LEFTOVERS = re.compile(r"(~|\.sw[a-p]|\.save|\.orig|\.rej)$|^(\.#|#.*#$)|^\.DS_Store$")
# Files of secrets: only their variable names count (a digest of a short secret can be guessed).
SECRET_FILES = {"inventory/profiles/secrets.env", "inventory/host/config/host.env"}
_ENV_KEY = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", re.MULTILINE)


def canonical_digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------- declarations


def _generated_patterns(project: Project) -> dict[str, list[str]]:
    """Each layer's `generated` globs (layer.yaml), by layer folder."""
    from tasks.runtime.config import load_layer_manifests

    return {
        name: [str(p) for p in manifest.get("generated") or []]
        for name, manifest in load_layer_manifests(project).items()
    }


def _generated(rel: str, patterns: dict[str, list[str]]) -> bool:
    from fnmatch import fnmatch

    parts = rel.split("/")
    if len(parts) < 3 or parts[0] != "layers":
        return False
    inner = "/".join(parts[2:])
    for pattern in patterns.get(parts[1], []):
        tail = pattern[3:] if pattern.startswith("**/") else pattern
        if fnmatch(inner, pattern) or any(fnmatch(p, tail) for p in parts[2:]):
            return True
    return False


def declarations(project: Project) -> dict[str, str]:
    """{checkout-relative path: sha256} of every declaration file (layers/, inventory/), without
    what runs write there (L1's artifacts, recorded host keys, the layers' `generated` files);
    secrets never reach a digest (_file_digest)."""
    patterns = _generated_patterns(project)
    found: dict[str, str] = {}
    for top in DECLARED:
        folder = project.root / top
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(project.root).as_posix()
            if (
                not path.is_file()
                or SKIPPED_PARTS.intersection(rel.split("/"))
                or EDITOR_LEFTOVERS.search(path.name)
                or rel.startswith(RUNNER_WRITTEN)
                or _generated(rel, patterns)
            ):
                continue
            found[rel] = _file_digest(path, secret_file=rel in SECRET_FILES)
    return found


def _file_digest(path: Path, *, secret_file: bool) -> str:
    """A file's sha256, never of a secret: a text file is hashed masked (every known secret
    value replaced), an env file's secret assignments (a file of secrets: all) by name only."""
    from tasks.runtime.secrets import is_secret_name, mask

    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    if secret_file or path.suffix == ".env":
        lines = []
        for line in text.splitlines():
            key = _ENV_KEY.match(line)
            if key and (secret_file or is_secret_name(key.group(1))):
                lines.append(f"{key.group(1)}=<secret>")
            elif not secret_file:
                lines.append(line)
        text = "\n".join(lines)
    return "sha256:" + hashlib.sha256(mask(text).encode()).hexdigest()


def declaration_changes(then: dict[str, str], now: dict[str, str]) -> list[str]:
    """What differs between two `declarations()`: one line per file."""
    lines = []
    for rel in sorted(set(then) | set(now)):
        if rel not in now:
            lines.append(f"{rel}: removed")
        elif rel not in then:
            lines.append(f"{rel}: added")
        elif then[rel] != now[rel]:
            lines.append(f"{rel}: changed")
    return lines


# ---------------------------------------------------------------------- facts


def _item_record(item: Item) -> dict[str, Any]:
    from tasks.runtime.secrets import mask_data

    return mask_data(
        {"state": item.state, "detail": item.detail, "lines": item.lines, "facts": item.facts}
    )


def _keyed(items: list[Item]) -> list[tuple[str, Item]]:
    """Items by name; a name seen twice gets `#2`, `#3` (names are unique in practice)."""
    seen: dict[str, int] = {}
    keyed = []
    for item in items:
        seen[item.name] = seen.get(item.name, 0) + 1
        count = seen[item.name]
        keyed.append((item.name if count == 1 else f"{item.name}#{count}", item))
    return keyed


def layer_facts(plan: LayerPlan) -> dict[str, Any]:
    """{digest, items: {name: {digest, state, detail}}} of one layer's plan, masked."""
    from tasks.runtime.secrets import mask

    items = {}
    for name, item in _keyed(plan.items):
        record = _item_record(item)
        items[mask(name)] = {
            "digest": canonical_digest(record),
            "state": record["state"],
            "detail": record["detail"],
        }
    digest = canonical_digest(
        {"layer": plan.layer, "items": {k: v["digest"] for k, v in items.items()}}
    )
    return {"digest": digest, "items": items}


def fact_changes(saved: dict[str, Any], plans: list[LayerPlan]) -> list[str]:
    """One line per item whose facts differ between a saved plan and this reading of its layers."""
    lines = []
    for plan in plans:
        then = (saved.get(plan.layer) or {}) if isinstance(saved, dict) else {}
        now = layer_facts(plan)
        if then.get("digest") == now["digest"]:
            continue
        before, after = then.get("items") or {}, now["items"]
        for name in [*before, *(n for n in after if n not in before)]:
            old, new = before.get(name), after.get(name)
            if old is None:
                lines.append(f"{plan.layer}: {name}: new since the plan ({_said(new)})")
            elif new is None:
                lines.append(f"{plan.layer}: {name}: gone since the plan (was {_said(old)})")
            elif old.get("digest") != new["digest"]:
                if (old.get("state"), old.get("detail")) != (new["state"], new["detail"]):
                    lines.append(f"{plan.layer}: {name}: was {_said(old)}, now {_said(new)}")
                else:
                    lines.append(
                        f"{plan.layer}: {name}: {_said(new)}, but what it was read from differs"
                    )
        if not lines or not lines[-1].startswith(f"{plan.layer}: "):
            lines.append(f"{plan.layer}: its facts differ from the plan's")
    return lines


def _said(entry: dict[str, Any] | None) -> str:
    entry = entry or {}
    detail = str(entry.get("detail") or "")
    return f"{entry.get('state')}: {detail}" if detail else str(entry.get("state"))


# ---------------------------------------------------------------------- the file


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def pending_stages(plans: list[LayerPlan]) -> list[str]:
    """The `inv up` stages the plan has changes for, in chain order."""
    from tasks.plan.readers import CHANGE

    found = set()
    for plan in plans:
        for item in plan.items:
            if item.state == CHANGE:
                stage = item.stage if item.stage is not None else STAGE_OF.get(plan.layer, "")
                if stage:
                    found.add(stage)
    order = list(dict.fromkeys(STAGE_OF.values()))
    return [s for s in order if s in found]


def build_saved(run: Run, plans: list[LayerPlan], *, deep: bool) -> dict[str, Any]:
    from tasks.plan.report import summary
    from tasks.runtime.secrets import mask, mask_data

    now = time.time()
    found = declarations(run.project)
    payload = {
        "format": FORMAT,
        "created": _stamp(now),
        "created_epoch": round(now, 3),
        "run": run.id,
        "argv": [mask(a) for a in run.argv],
        "env": run.selection.describe(),
        "layers": [p.layer for p in plans],
        "deep": deep,
        "summary": summary(plans),
        "stages": pending_stages(plans),
        "declarations_digest": canonical_digest(found),
        "declarations": found,
        "facts": {p.layer: layer_facts(p) for p in plans},
        "plans": [p.as_dict() for p in plans],
    }
    return mask_data(payload)


def resolve_path(raw: str) -> Path:
    path = Path(str(raw)).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def check_out_path(project: Project, raw: str) -> Path:
    """`--out FILE` checked before anything is read: a file that can be written, and not among
    the declarations the plan records (it would change them, and never apply)."""
    import os

    hint = "e.g. --out .work/plan.json (any writable path outside layers/ and inventory/)"
    if not str(raw).strip():
        raise ConfigError("--out: no file given (an empty value)", hint=hint)
    path = resolve_path(raw)
    if path.is_dir():
        raise ConfigError(f"--out {raw}: is a folder; name a file in it", hint=hint)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        # The plan replaces the file (write, then rename): a device such as /dev/null, a pipe or
        # a link would be replaced by a regular file, not written through.
        raise ConfigError(
            f"--out {raw}: not a regular file (a device, pipe or link); the saved plan replaces "
            "the file it names",
            hint=hint,
        )
    work, parent = project.work.resolve(), path.parent.resolve()
    under_work = parent == work or work in parent.parents
    if not path.parent.is_dir() and not under_work:  # .work/ and its folders are made on use
        raise ConfigError(f"--out {raw}: the folder {path.parent} does not exist", hint=hint)
    writable = path.parent if path.parent.is_dir() else project.root
    if not os.access(writable, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"--out {raw}: not writable by this user", hint=hint)
    if under_work and parent != work:
        inner = parent.relative_to(work).parts[0]
        if inner in ("traces", "locks"):
            raise ConfigError(
                f"--out {raw}: inside .work/{inner}/, which the runner keeps for itself", hint=hint
            )
    try:
        rel = path.resolve().relative_to(project.root.resolve()).as_posix()
    except ValueError:
        return path
    if rel.split("/", 1)[0] in DECLARED:
        raise ConfigError(
            f"--out {raw}: inside {rel.split('/', 1)[0]}/, whose files the plan records as "
            "declarations: the saved plan would change them and never apply",
            hint=hint,
        )
    return path


def write_saved(
    run: Run, raw: str, plans: list[LayerPlan], *, deep: bool, was_dry: bool
) -> Path | None:
    """Write the saved plan (0600). Inside .work/ it is generated state; elsewhere an effect,
    a real write unless the operator asked for a dry run (`inv --dry plan --out F` writes nothing).
    `raw` was checked (`check_out_path`) before the reads."""
    if was_dry:  # `inv --dry plan --out F` writes nothing, inside .work/ too
        return None
    path = resolve_path(raw)
    text = json.dumps(build_saved(run, plans, deep=deep), indent=2) + "\n"
    from tasks.runtime.console import progress

    effects = run.effects
    effects.dry_run = was_dry  # the reads were a dry run; the file is the plan's one write
    try:
        with effects.saying(progress):  # stdout is the plan itself (--json, --quiet)
            written = effects.write_file(
                path, text, mode=0o600, what=f"the saved plan {run.project.rel(path)}"
            )
    except OSError as exc:
        raise ConfigError(
            f"--out {raw}: cannot write it ({exc.strerror or exc})",
            hint="name a writable file, e.g. --out .work/plan.json",
        ) from None
    finally:
        effects.dry_run = True
    return path if written else None


def load_saved(raw: str) -> tuple[Path, dict[str, Any]]:
    path = resolve_path(raw)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"--plan {raw}: no such file", hint="make one: inv plan --out FILE"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--plan {raw}: not a saved plan ({type(exc).__name__}: {exc})",
            hint="make one: inv plan --out FILE",
        ) from None
    shapes: dict[str, type | tuple[type, ...]] = {
        "created_epoch": (int, float),
        "layers": list,
        "facts": dict,
        "declarations": dict,
        "summary": dict,
    }
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        problem = f"not a saved plan of this runner (format {FORMAT})"
    else:
        wrong = [
            k
            for k, kind in shapes.items()
            if isinstance(data.get(k), bool) or not isinstance(data.get(k), kind)
        ]
        if not wrong and not all(isinstance(n, str) for n in data["layers"]):
            wrong = ["layers"]
        if not wrong:
            wrong = _inner_problems(data)
        if not wrong and not math.isfinite(data["created_epoch"]):
            wrong = ["created_epoch"]
        problem = f"not a saved plan: {', '.join(wrong)} missing or malformed" if wrong else ""
    if problem:
        raise ConfigError(f"--plan {raw}: {problem}", hint="make one: inv plan --out FILE")
    return path, data


def _inner_problems(data: dict[str, Any]) -> list[str]:
    """The saved plan's layers and facts as `inv plan --out` writes them, or what is not."""
    from tasks.plan import LAYER_NAMES

    unknown = [n for n in data["layers"] if n not in LAYER_NAMES]
    if unknown:
        return [f"layers (unknown: {', '.join(unknown)})"]
    for layer, facts in data["facts"].items():
        items = facts.get("items") if isinstance(facts, dict) else None
        if (
            layer not in LAYER_NAMES
            or not isinstance(items, dict)  # also when `facts` itself is not a mapping
            or not isinstance(facts.get("digest"), str)
            or not all(
                isinstance(i, dict) and isinstance(i.get("digest"), str) for i in items.values()
            )
        ):
            return [f"facts.{layer}"]
    return []


def age_text(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def listed(lines: list[str]) -> str:
    """Lines under an error's first line, each wrapped to 120 columns."""
    from tasks.runtime.console import wrap

    return "\n".join(part for line in lines for part in wrap(f"  {line}", indent="      "))


def check_age(run: Run, raw: str, data: dict[str, Any]) -> float:
    """Refuse a plan older than PLAN_MAX_AGE (or made in the future); the age in seconds."""
    limit = run.settings.seconds("PLAN_MAX_AGE", DEFAULT_MAX_AGE)
    try:
        age = time.time() - float(data["created_epoch"])
    except (TypeError, ValueError):
        raise ConfigError(f"--plan {raw}: created_epoch is not a number") from None
    where = run.env.where("PLAN_MAX_AGE") if run.env.get("PLAN_MAX_AGE") else "the default"
    if age < -300:
        raise RefusedError(
            f"the saved plan {raw} says it was made in the future ({data.get('created')})",
            hint="check this machine's clock, then make a new plan: inv plan --out FILE",
        )
    if age > limit:
        raise RefusedError(
            f"the saved plan {raw} is {age_text(age)} old (made {_stamp(float(data['created_epoch']))}), older than "
            f"PLAN_MAX_AGE={age_text(limit)} ({where})",
            hint="make a new plan (inv plan --out FILE), or raise PLAN_MAX_AGE",
        )
    return age


def check_saved(run: Run, raw: str, data: dict[str, Any], plans: list[LayerPlan]) -> None:
    """Refuse when the saved plan no longer holds: its facts differ from this reading."""
    changed = fact_changes(data.get("facts") or {}, plans)
    if changed:
        shown = changed[:20] + ([f"and {len(changed) - 20} more"] if len(changed) > 20 else [])
        raise RefusedError(
            f"the saved plan {raw} no longer holds: {len(changed)} fact(s) differ from when it was "
            f"made ({data.get('created')}):\n" + listed(shown),
            hint="look at the change, then make a new plan: inv plan --out FILE",
        )


def check_declarations(project: Project, then: dict[str, str], what: str, hint: str) -> None:
    """Refuse when a declaration file differs from `then` (a saved plan's, a failed run's)."""
    changed = declaration_changes(then, declarations(project))
    if changed:
        shown = changed[:20] + ([f"and {len(changed) - 20} more"] if len(changed) > 20 else [])
        raise RefusedError(
            f"{what}: {len(changed)} declaration file(s) changed since then:\n" + listed(shown),
            hint=hint,
        )
