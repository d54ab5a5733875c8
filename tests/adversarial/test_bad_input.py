"""The bad-input corpus: every case is a clumsy operator's edit, run through the front door.

Each case must end with exit 2 (a configuration error), no traceback, no "bug in the runner",
and a message naming the file (with its line where there is one) or the variable. The corpus
is built from the repo's own files and the runner's table of typed settings, so a new setting
or config file is covered by adding it here, not by writing a new test.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import base_env, copy_repo, git, run_inv

from tasks.runtime.settings import SETTINGS


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    names: tuple[str, ...]  # each must appear in the error output
    edits: dict[str, Callable[[str], bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    code: int = 2


def _replaced_by(data: bytes) -> Callable[[str], bytes]:
    return lambda _old: data


def _appended(line: bytes) -> Callable[[str], bytes]:
    return lambda old: old.encode() + b"\n" + line


# ------------------------------------------------------------------ YAML files

# Each YAML file the operator edits, and a task that reads it early (nothing reached over the
# network first: the API and hosts are never contacted before the file is read).
YAML_FILES = {
    "inventory/runner.yaml": ("gitops.layout",),
    "inventory/hosts.yaml": ("l3.hosts",),
    "inventory/homelab.yaml": ("configure", "--dry-run"),
    "inventory/clusters/home/cluster.yaml": ("gitops.bootstrap", "home", "--dry-run"),
    "layers/l0/layer.yaml": ("l0.runway",),
    "layers/l1/layer.yaml": ("l1.list",),
    "layers/l2/layer.yaml": ("l2.plan",),
}


def _first_top_level_key(text: str) -> str:
    for line in text.splitlines():
        if line and line[0] not in "#- \t" and ":" in line:
            return line.split(":", 1)[0]
    raise AssertionError("no top-level key")


def _yaml_mutations(text: str) -> dict[str, tuple[bytes, str]]:
    """name -> (new bytes, what the message must name besides the file)."""
    lines = text.count("\n") + 1
    key = _first_top_level_key(text)
    body = text.encode()
    return {
        "not-utf8": (body + b"\n# caf" + b"\xe9\n", f":{lines + 1}: not valid UTF-8"),
        "duplicate-key": (body + f"\n{key}: again\n".encode(), f"duplicate key {key!r}"),
        "unclosed-bracket": (body + b"\nbroken: [1, 2\n", "invalid YAML"),
        "tab-indent": (body + b"\nlisted:\n\t- a\n", "invalid YAML"),
        "a-scalar": (b"just some words\n", ""),
    }


# inventory/homelab.yaml is the operator's own (git-ignored): `inv init` copies it from the sample.
SOURCES = {"inventory/homelab.yaml": "inventory/homelab.sample.yaml"}


def _yaml_cases(checkout: Path) -> list[Case]:
    cases = []
    for rel, argv in YAML_FILES.items():
        text = (checkout / SOURCES.get(rel, rel)).read_text(encoding="utf-8")
        for name, (data, named) in _yaml_mutations(text).items():
            cases.append(
                Case(
                    f"{rel}:{name}",
                    argv,
                    (rel, named) if named else (rel,),
                    {rel: _replaced_by(data)},
                )
            )
    return cases


# ------------------------------------------------------------------ env files

ENV_FILES = (
    "inventory/config.env",
    "inventory/profiles/local.env",
    "inventory/profiles/secrets.env",
)
ENV_MUTATIONS: dict[str, tuple[bytes, str]] = {
    "nul-byte": (b"EXTRA_NAME=ab\x00cd\n", "NUL byte"),
    "not-utf8": (b"EXTRA_NAME=caf\xe9\n", "UTF-8"),
    "not-an-assignment": (b"this line is not an assignment\n", "cannot parse"),
    "unterminated-quote": (b'EXTRA_NAME="no end\n', ""),
}


def _env_cases() -> list[Case]:
    cases = []
    for rel in ENV_FILES:
        for name, (line, named) in ENV_MUTATIONS.items():
            cases.append(
                Case(
                    f"{rel}:{name}",
                    ("env.show",),
                    (rel, named) if named else (rel,),
                    {rel: _appended(line)},
                )
            )
    return cases


# ------------------------------------------------------------------ typed settings

BAD_VALUES = {
    "bool": ("ture", "2", "enabled-ish"),
    "int": ("abc", "1.5", "1e3", "-7"),
    "duration": ("nan", "1e400", "abc", "-5", "10 parsecs"),
    "choice": ("bogus",),
}


def _setting_cases() -> list[Case]:
    cases = []
    names = sorted({*SETTINGS, "FEAT_VERIFY"})
    for name in names:
        kind = SETTINGS[name].kind if name in SETTINGS else "bool"
        for value in BAD_VALUES[kind]:
            cases.append(
                Case(f"{name}={value}", ("l2.plan",), (name, repr(value)), env={name: value})
            )
    # Set in a file, the message names the file instead of the shell.
    cases.append(
        Case(
            "PVE_RETRIES in config.env",
            ("l2.plan",),
            ("PVE_RETRIES", "inventory/config.env"),
            {"inventory/config.env": lambda old: (old + "\nPVE_RETRIES=1.5\n").encode()},
        )
    )
    return cases


# ------------------------------------------------------------------ flags and arguments

PVE_ENV = {"PM_TOKEN_SECRET": "bad-input-token-77", "PVE_ACCESS_HOST": "127.0.0.1:9"}
FLAG_CASES = [
    Case(
        "l2.apply --parallel abc", ("l2.apply", "--parallel", "abc", "--dry-run"), ("--parallel",)
    ),
    Case("l2.apply --parallel 0", ("l2.apply", "--parallel", "0", "--dry-run"), ("--parallel",)),
    Case("l2.apply --parallel -1", ("l2.apply", "--parallel", "-1", "--dry-run"), ("--parallel",)),
    Case("l3.exec --parallel abc", ("l3.exec", "uptime", "--parallel", "abc"), ("--parallel",)),
    Case("l3.exec --parallel 0", ("l3.exec", "uptime", "--parallel", "0"), ("--parallel",)),
    Case("env.check l9", ("env.check", "l9"), ("l9", "l0")),
    Case("--profile missing", ("env.show", "--profile", "nosuch"), ("nosuch",)),
    Case("l1.build unknown", ("l1.build", "nosuch", "--dry-run"), ("nosuch",)),
    Case(
        ".work/locks is a file",
        ("app.mode", "staging-le-prod"),
        (".work/locks",),
        {".work/locks": lambda _old: b""},
    ),
    Case(
        "PVE_CALL_LOG in a missing folder",
        ("l2.plan",),
        ("PVE_CALL_LOG",),
        env={"PVE_CALL_LOG": "/nonexistent-folder/calls.log"},
    ),
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = copy_repo(tmp_path_factory.mktemp("bad-input") / "repo")
    created = run_inv(repo, "init")
    assert created.returncode == 0, created
    return repo


def _all_cases() -> list[Case]:
    from helpers import REPO

    return [*_yaml_cases(REPO), *_env_cases(), *_setting_cases(), *FLAG_CASES]


CASES = _all_cases()


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 100, len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_clear_error(repo: Path, case: Case) -> None:
    saved: dict[Path, bytes | None] = {}
    for rel, edit in case.edits.items():
        path = repo / rel
        if path.is_dir():
            shutil.rmtree(path)  # .work/locks: the runner makes it again
        saved[path] = path.read_bytes() if path.exists() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        old = saved[path]
        path.write_bytes(edit(old.decode("utf-8", "replace") if old is not None else ""))
    try:
        result = run_inv(repo, *case.argv, env=base_env(**PVE_ENV, **case.env))
    finally:
        for path, data in saved.items():
            if data is None:
                path.unlink()
            else:
                path.write_bytes(data)
        git(repo, "checkout", "-q", "--", ".")
    assert result.returncode == case.code, str(result)
    assert "Traceback" not in result.output, str(result)
    assert "bug in the runner" not in result.output, str(result)
    for name in case.names:
        assert name in result.output, (name, result)
