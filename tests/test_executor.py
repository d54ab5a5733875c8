"""The executor: operator errors as one masked line; tracebacks only with --debug."""

from __future__ import annotations

import logging

import pytest
from invoke import Collection, Program, task

from tasks.runtime.errors import ConfigError
from tasks.runtime.executor import HomelabExecutor
from tasks.runtime.secrets import MASKER

SECRET = "executor-secret-4411"


@task
def broken(c):
    """Fail the way a bug would."""
    raise ValueError(f"bad value {SECRET}")


@task
def misconfigured(c):
    """Fail the way bad input would."""
    raise ConfigError(f"inventory/x.yaml:3: expected a list, got {SECRET}", hint="fix line 3")


@task
def context_type(c):
    """Report the context class."""
    print(type(c).__name__)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    MASKER.add(SECRET)
    program = Program(
        namespace=Collection(broken, misconfigured, context_type), executor_class=HomelabExecutor
    )
    with pytest.raises(SystemExit) as exit_info:
        program.run(["inv", *argv])
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_tasks_get_the_homelab_context(capsys) -> None:
    program = Program(namespace=Collection(context_type), executor_class=HomelabExecutor)
    program.run(["inv", "context-type"], exit=False)
    assert capsys.readouterr().out.strip() == "HomelabContext"


def test_config_error_is_one_masked_line(capsys) -> None:
    code, _, err = _run(["misconfigured"], capsys)
    assert code == 2
    assert err == "error: inventory/x.yaml:3: expected a list, got ***\n  hint: fix line 3\n"


def test_unexpected_error_has_no_traceback(capsys) -> None:
    code, _, err = _run(["broken"], capsys)
    assert code == 1 and "Traceback" not in err and SECRET not in err
    assert "error: unexpected ValueError: bad value ***" in err and "inv --debug" in err


def test_debug_shows_the_masked_traceback(capsys) -> None:
    try:
        code, _, err = _run(["--debug", "broken"], capsys)
    finally:
        logging.getLogger().setLevel(logging.WARNING)
    assert code == 1 and "Traceback (most recent call last)" in err and SECRET not in err
