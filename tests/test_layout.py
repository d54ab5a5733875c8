"""The layout the architecture promises, checked on the code itself: every effect through the
seam, the product independent of tests/, no frame walking, and static tools that resolve it."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Modules that reach the world directly; everything else goes through the effects seam.
FORBIDDEN = {
    "subprocess",
    "requests",
    "socket",
    "http.client",
    "urllib.request",
    "paramiko",
    "fabric",
    "proxmoxer",
}
SEAM = REPO / "tasks" / "runtime" / "seam"
REHEARSAL = REPO / "tasks" / "rehearsal"


def product_modules() -> list[Path]:
    return sorted([REPO / "tasks.py", REPO / "homelab_cli.py", *(REPO / "tasks").rglob("*.py")])


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports at run time (imports under `if TYPE_CHECKING:` left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def forbidden_in(path: Path) -> set[str]:
    return {
        name
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }


def test_only_the_seam_and_the_rehearsal_reach_the_world_directly() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(found)
        for path in product_modules()
        if SEAM not in path.parents
        and REHEARSAL not in path.parents
        and (found := forbidden_in(path))
    }
    assert offenders == {}, "import these only in tasks/runtime/seam/ (or use the seam)"


def test_the_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import subprocess\n    from requests import get\n")
    ok = tmp_path / "ok.py"
    ok.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fabric import X\n")
    assert forbidden_in(bad) == {"subprocess", "requests"} and forbidden_in(ok) == set()


def test_the_product_imports_nothing_from_tests() -> None:
    test_modules = {p.stem for p in (REPO / "tests").glob("*.py")}
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_modules(path) & test_modules)
        for path in product_modules()
        if imported_modules(path) & test_modules
    }
    assert offenders == {}
    texts = {p: p.read_text(encoding="utf-8") for p in product_modules()}
    assert not [p for p, t in texts.items() if '"tests"' in t or "tests/standins" in t]


def test_no_code_walks_interpreter_frames() -> None:
    walkers = [
        str(p.relative_to(REPO))
        for p in product_modules()
        if "_getframe" in p.read_text(encoding="utf-8")
        or "currentframe" in p.read_text(encoding="utf-8")
    ]
    assert walkers == []


def test_pyright_stub_names_what_tasks_py_defines() -> None:
    """tasks/__init__.pyi makes tasks/ a package for Pyright; it must keep naming tasks.py's
    public names, or editors would see a different `tasks` than inv does."""
    stub = ast.parse((REPO / "tasks" / "__init__.pyi").read_text(encoding="utf-8"))
    stubbed = {n.target.id for n in stub.body if isinstance(n, ast.AnnAssign)}  # type: ignore[union-attr]
    root = ast.parse((REPO / "tasks.py").read_text(encoding="utf-8"))
    public = {
        target.id
        for node in root.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and not target.id.startswith("_")
    }
    assert public == stubbed == {"ns"}


def test_pyright_resolves_every_import_of_the_runner() -> None:
    """Pyright (VS Code's engine) sees the same `tasks` package inv does. .ci/run installs it."""
    import json
    import shutil
    import subprocess
    import sys

    import pytest

    pyright = Path(sys.executable).with_name("pyright")
    if not pyright.exists() or shutil.which("node") is None:
        pytest.skip("pyright (pip) or node is not installed; .ci/run installs both")
    proc = subprocess.run(
        [str(pyright), "--outputjson", "tasks.py", "homelab_cli.py", "tasks"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    assert report["summary"]["filesAnalyzed"] > 50
    missing = [
        f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}"
        for d in report["generalDiagnostics"]
        if d.get("rule") in ("reportMissingImports", "reportMissingModuleSource")
        and "tasks" in d["message"]
    ]
    assert missing == []
