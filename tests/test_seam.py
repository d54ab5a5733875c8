"""The effects seam: env to children, masking, no secret in argv, dry runs withhold mutations,
every call recorded; and the recording fake fails on a call the test did not expect."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_support import make_run

from tasks.runtime.errors import CommandFailed, RefusedError
from tasks.runtime.seam.fake import ScriptedEffects

SECRET = "hunter2-but-longer-7781"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "inventory" / "profiles").mkdir(parents=True)
    (tmp_path / "inventory" / "config.env").write_text("PLAIN_SETTING=visible-value\n")
    (tmp_path / "inventory" / "profiles" / "secrets.env").write_text(f"ANY_NAME={SECRET}\n")
    return tmp_path


def test_child_sees_the_runs_env_and_streamed_output_is_masked(root: Path) -> None:
    run = make_run(root)
    lines: list[str] = []
    result = run.effects.command(
        ["sh", "-c", 'echo "plain=$PLAIN_SETTING secret=$ANY_NAME"; echo "again $ANY_NAME" >&2'],
        mutates=False,
        on_stdout=lines.append,
        on_stderr=lines.append,
    )
    assert "plain=visible-value secret=***\n" in lines and "again ***\n" in lines
    assert SECRET not in "".join(lines)
    assert SECRET in result.stdout  # the caller still gets the real value to work with
    (effect,) = run.effects.trace_records()
    assert effect["kind"] == "command" and effect["mutates"] is False and effect["outcome"] == "ok"


def test_a_secret_on_the_command_line_is_refused(root: Path) -> None:
    run = make_run(root)
    _ = run.env  # the secrets are known once the env is read
    with pytest.raises(RefusedError) as err:
        run.effects.command(
            ["curl", "-H", f"Authorization: {SECRET}", "http://127.0.0.1:9"], mutates=False
        )
    assert SECRET not in str(err.value) and "***" in err.value.message


def test_a_failure_is_masked_and_recorded(root: Path) -> None:
    run = make_run(root)
    with pytest.raises(CommandFailed) as err:
        run.effects.command(["sh", "-c", 'echo "bad $ANY_NAME" >&2; exit 3'], mutates=False)
    assert err.value.exited == 3 and "bad ***" in err.value.message
    assert SECRET not in err.value.message
    assert run.effects.trace_records()[-1]["outcome"] == "failed"


def test_a_dry_run_runs_reads_and_withholds_mutations(root: Path, tmp_path: Path) -> None:
    run = make_run(root, dry_run=True)
    marker = tmp_path / "ran"
    read = run.effects.command(["echo", "still reads"], mutates=False)
    skipped = run.effects.command(["touch", str(marker)], mutates=True)
    assert read.stdout == "still reads\n"
    assert skipped.exited == 0 and not marker.exists()
    outside = tmp_path / "outside.txt"
    assert run.effects.write_file(outside, "x") is False and not outside.exists()
    assert run.effects.mutations() == []
    kinds = [(e["kind"], e["mutates"], e["outcome"]) for e in run.effects.trace_records()]
    assert kinds == [
        ("command", False, "ok"),
        ("command", True, "skipped"),
        ("file", True, "skipped"),
    ]


def test_writes_inside_work_are_not_effects(root: Path) -> None:
    run = make_run(root)
    run.effects.write_file(root / ".work" / "cache" / "x.json", "{}")
    assert run.effects.records == []
    run.effects.write_file(root / "layers" / "out.yaml", "a: 1\n")
    assert [e.target for e in run.effects.records] == [f"write {root / 'layers' / 'out.yaml'}"]


def test_a_credential_url_must_be_https_or_a_loopback_ip(root: Path) -> None:
    from tasks.runtime.errors import ConfigError
    from tasks.runtime.seam.http import check_credential_url

    assert check_credential_url("https://api.example.net/x", "X")
    assert check_credential_url("http://127.0.0.9:8080/x", "X")
    assert check_credential_url("http://[::1]:8080/x", "X")
    for bad in (
        "http://127.example.invalid/x",
        "http://localhost:80/",
        "http://10.0.0.1/",
        "ftp://h/",
    ):
        with pytest.raises(ConfigError):
            check_credential_url(bad, "X")


def test_the_fake_answers_scripted_calls_and_fails_on_others() -> None:
    fake = ScriptedEffects()
    fake.expect_command(["git", "status"], stdout=" M x\n")
    assert fake.command(["git", "status"], mutates=False).stdout == " M x\n"
    with pytest.raises(AssertionError, match="unexpected command call"):
        fake.command(["git", "push"], mutates=True)
    fake.expect_command(["kubectl", "apply"], mutates=True)
    with pytest.raises(AssertionError, match="scripted calls that never came"):
        fake.assert_done()


def test_the_fake_withholds_mutations_in_a_dry_run() -> None:
    fake = ScriptedEffects(dry_run=True)
    fake.expect_command(["flux", "reconcile"], mutates=True)
    fake.command(["flux", "reconcile"], mutates=True)
    assert fake.said == ["would run: flux reconcile"] and fake.mutations() == []
    fake.assert_done()
