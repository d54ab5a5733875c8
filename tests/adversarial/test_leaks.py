"""Secrets in every form stay out of output: Invoke's own --debug logging, encoded forms
(base64, URL, JSON), a secret folded across lines, a password in any URL's userinfo, and a
warning for a secret too short to mask."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers import base_env, run_inv

SECRET = "adv-secret-9f3c1d77e2"


@pytest.fixture
def repo(sample_repo: Path) -> Path:
    (sample_repo / "inventory/profiles/secrets.env").write_text(
        f"ADV_SECRET={SECRET}\nTINY_PASSWORD=ab\n"
        "DB_PASSWORD_URL=postgres://app:url-pass-55b1@db.home.arpa/x\n"
    )
    return sample_repo


def test_debug_logging_is_masked(repo: Path) -> None:
    """Invoke logs every parsed argument at --debug, before the env is known: held, then masked."""
    result = run_inv(repo, "--debug", "l3.exec", f"echo {SECRET}", "--hosts", "all")
    assert result.returncode == 3, result  # refused: a secret on the hosts' command line
    assert "invoke.parser" in result.stderr and "l3.exec" in result.stderr  # the log was written
    assert SECRET not in result.output


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),
        base64.b64encode((SECRET + "\n").encode()).decode(),
        quote(SECRET, safe=""),
        json.dumps(SECRET)[1:-1],
    ],
)
def test_a_child_printing_a_secret_in_any_form_is_masked(repo: Path, form: str) -> None:
    """The child gets the form in its environment and prints it; the seam masks its output."""
    from run_support import make_run

    run = make_run(repo, shell={"PATH": base_env()["PATH"]})
    _ = run.env  # the secrets are known once the env is read
    lines: list[str] = []
    run.effects.command(
        ["sh", "-c", 'printf "%s\\n" "$FORM"'],
        mutates=False,
        env={"FORM": form},
        on_stdout=lines.append,
    )
    assert lines and form not in "".join(lines) and "***" in "".join(lines)


def test_a_secret_folded_across_lines_is_masked_in_both_parts(repo: Path) -> None:
    from run_support import make_run

    run = make_run(repo)
    _ = run.env
    lines: list[str] = []
    head, tail = SECRET[:9], SECRET[9:]
    run.effects.command(
        ["printf", f"key {head}\\n{tail} end\\nnext\\n"], mutates=False, on_stdout=lines.append
    )
    text = "".join(lines)
    assert head not in text and tail not in text and text.count("***") == 2, text


def test_a_url_password_is_masked_whatever_the_variable_is_called(repo: Path) -> None:
    result = run_inv(repo, "env.show", "--all")
    assert result.returncode == 0, str(result)
    assert "url-pass-55b1" not in result.output


def test_a_secret_too_short_to_mask_is_named(repo: Path) -> None:
    result = run_inv(repo, "env.show")
    assert result.returncode == 0, str(result)
    assert (
        "TINY_PASSWORD (from profiles/secrets.env) is a secret shorter than 4 characters"
        in result.stderr
    )
