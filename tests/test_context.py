"""HomelabContext.run: the env injected, child output masked, secrets kept out of argv."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Config

import tasks.runtime.session as session_module
from tasks.runtime.context import HomelabContext
from tasks.runtime.errors import CommandFailed, RefusedError

SECRET = "hunter2-but-longer-7781"


@pytest.fixture
def c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HomelabContext:
    (tmp_path / "inventory" / "profiles").mkdir(parents=True)
    (tmp_path / "inventory" / "config.env").write_text("PLAIN_SETTING=visible-value\n")
    (tmp_path / "inventory" / "profiles" / "secrets.env").write_text(f"ANY_NAME={SECRET}\n")
    monkeypatch.setattr("tasks.runtime.project.project_root", lambda: tmp_path)
    monkeypatch.setattr(session_module, "_SESSION", None)
    monkeypatch.setenv("DOPPLER", "0")
    monkeypatch.delenv("PROFILE_EXCLUSIVE", raising=False)
    return HomelabContext(config=Config(overrides={"run": {"in_stream": False}}))


def test_child_sees_env_and_output_is_masked(c: HomelabContext, capfd) -> None:
    result = c.run('echo "plain=$PLAIN_SETTING secret=$ANY_NAME"; echo "again $ANY_NAME" >&2')
    out, err = capfd.readouterr()
    assert "plain=visible-value secret=***" in out and "again ***" in err
    assert SECRET not in out + err
    assert SECRET in result.stdout  # the task itself still gets the real value to work with


def test_secret_split_across_pipe_reads_is_masked(c: HomelabContext, capfd) -> None:
    # Invoke reads child output 1000 bytes at a time; put the secret across that boundary.
    c.run(
        "python3 -c \"import os,sys; sys.stdout.write('x'*995 + os.environ['ANY_NAME'] + '\\n')\""
    )
    out, _ = capfd.readouterr()
    assert SECRET not in out and out.endswith("x***\n")


def test_secret_in_argv_is_refused(c: HomelabContext, capfd) -> None:
    with pytest.raises(RefusedError) as err:
        c.run(f"curl -H 'Authorization: {SECRET}' http://127.0.0.1:9")
    assert SECRET not in str(err.value) and "***" in err.value.message
    assert SECRET not in "".join(capfd.readouterr())


def test_failure_is_masked(c: HomelabContext, capfd) -> None:
    with pytest.raises(CommandFailed) as err:
        c.run('echo "bad $ANY_NAME" >&2; exit 3', hide=True)
    assert (
        err.value.exited == 3 and "bad ***" in err.value.message and SECRET not in err.value.message
    )
    assert c.run("exit 5", warn=True, hide=True).exited == 5


def test_dry_run_echoes_masked_and_runs_nothing(c: HomelabContext, tmp_path: Path, capfd) -> None:
    marker = tmp_path / "ran"
    result = c.run(f"touch {marker}", dry=True)
    assert not marker.exists() and result.exited == 0
    assert f"$ touch {marker}" in capfd.readouterr().out
