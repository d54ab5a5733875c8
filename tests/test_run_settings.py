"""One Run per invocation: env chosen once from the task's flags, typed settings read one way
(every boolean form, integers, durations), all bad values at once, and a trace for every
mutating run, failed ones included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import base_env, run_inv
from pve_fixtures import PveFixture, pve_fixture  # noqa: F401

TRUE_FORMS = ["1", "true", "TRUE", "yes", "Yes", "on", "ON"]
FALSE_FORMS = ["0", "false", "False", "no", "NO", "off", "Off"]


def _layers(result) -> dict[str, dict]:
    assert result.returncode == 0, str(result)
    return {lyr["name"]: lyr for lyr in json.loads(result.stdout)["layers"]}


def _traces(repo: Path) -> list[dict]:
    folder = repo / ".work" / "traces"
    paths = (
        sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns) if folder.exists() else []
    )
    return [json.loads(p.read_text()) for p in paths]


@pytest.mark.parametrize("word", FALSE_FORMS)
def test_doppler_is_off_for_every_false_form(sample_repo: Path, word: str) -> None:
    result = run_inv(sample_repo, "env.show", "--json", env=base_env(DOPPLER=word))
    assert _layers(result)["doppler"]["skipped"] == f"off: DOPPLER={word}"


@pytest.mark.parametrize("word", TRUE_FORMS)
def test_profile_exclusive_for_every_true_form(sample_repo: Path, word: str) -> None:
    (sample_repo / "inventory/profiles/local.env").write_text("FROM_LOCAL=1\n")
    (sample_repo / "inventory/config.env").open("a").write(f"\nPROFILE_EXCLUSIVE={word}\n")
    layers = _layers(run_inv(sample_repo, "env.show", "--json"))
    assert layers["profiles/local.env"]["skipped"] == f"PROFILE_EXCLUSIVE={word}"
    assert layers["profiles/secrets.env"]["used"] is False


@pytest.mark.parametrize("word", FALSE_FORMS)
def test_a_feature_gate_is_off_for_every_false_form(sample_repo: Path, word: str) -> None:
    result = run_inv(sample_repo, "cluster.apply", "--dry-run", env=base_env(FEAT_VERIFY=word))
    assert result.returncode == 0, str(result)
    assert f"[skip] 94_verify_config_inputs (apply; gated off: FEAT_VERIFY={word})" in result.stdout


def test_every_bad_value_is_named_at_once_with_its_layer_and_nothing_runs(
    sample_repo: Path,
) -> None:
    (sample_repo / "inventory/profiles/local.env").write_text("L3_WAIT=abc\nPVE_RETRIES=1.5\n")
    env = base_env(FEAT_VERIFY="ture", DOPPLER="maybe")
    result = run_inv(sample_repo, "up", "--dry-run", env=env)
    assert result.returncode == 2, str(result)
    assert "Traceback" not in result.output and "bug in the runner" not in result.output
    # DOPPLER decides whether Doppler is fetched: it is checked first, alone.
    assert "DOPPLER='maybe' (from the shell environment): expected 1/0, true/false" in result.stderr
    env["DOPPLER"] = "0"
    result = run_inv(sample_repo, "up", "--dry-run", env=env)
    assert result.returncode == 2, str(result)
    for line in (
        "FEAT_VERIFY='ture' (from the shell environment): expected 1/0, true/false, yes/no or on/off",
        "L3_WAIT='abc' (from inventory/profiles/local.env): expected seconds",
        "PVE_RETRIES='1.5' (from inventory/profiles/local.env): expected a whole number",
    ):
        assert line in result.stderr, str(result)
    assert "plan: up" not in result.stdout  # nothing ran
    trace = [t for t in _traces(sample_repo) if t["task"] == "up"][-1]
    assert trace["outcome"] == "failed" and trace["exit_code"] == 2
    assert "L3_WAIT='abc'" in trace["error"] and trace["steps"] == []


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("PVE_TIMEOUT", "nan", "expected seconds"),
        ("PVE_TIMEOUT", "1e400", "expected seconds"),
        ("PVE_RETRIES", "0", "at least 1"),
        ("DDNS_TTL", "ten", "a whole number"),
        ("SSH_HOST_KEY_CHECKING", "loose", "one of strict, accept-new"),
    ],
)
def test_numbers_and_choices_are_validated(
    sample_repo: Path, name: str, value: str, accepted: str
) -> None:
    result = run_inv(sample_repo, "l2.plan", env=base_env(**{name: value}))
    assert result.returncode == 2, str(result)
    assert f"{name}={value!r} (from the shell environment)" in result.stderr
    assert accepted in result.stderr


def test_a_bad_parallel_flag_is_a_clear_error(sample_repo: Path) -> None:
    for value in ("abc", "0", "-3"):
        result = run_inv(sample_repo, "l3.exec", "true", "--parallel", value)
        assert result.returncode == 2, str(result)
        assert f"--parallel {value!r}: expected a whole number of 1 or more" in result.stderr
        assert "Traceback" not in result.output


def test_up_hands_the_profile_to_every_layer(repo_and_pve) -> None:
    """`inv up --to l0 --profile F`: the runway sees the secret only F supplies."""
    repo, pve, profile = repo_and_pve
    result = run_inv(
        repo, "up", "--to", "l0", "--profile", str(profile), env=pve.env(PM_TOKEN_SECRET="")
    )
    assert result.returncode == 0, str(result)
    assert "runway: all" in result.stdout
    (trace,) = [t for t in _traces(repo) if t["task"] == "up"]
    assert "--profile" in trace["env_layers"] and trace["outcome"] == "ok"
    # Without the profile the same run misses the secret.
    bare = run_inv(repo, "up", "--to", "l0", env=pve.env(PM_TOKEN_SECRET=""))
    assert bare.returncode == 2 and "PM_TOKEN_SECRET" in bare.output


def test_the_host_env_flag_selects_the_host_chain(sample_repo: Path, tmp_path: Path) -> None:
    extra = tmp_path / "host-extra.env"
    extra.write_text("CLOUDFLARE_API_TOKEN=cf-from-host-env-9d2a\n")
    result = run_inv(sample_repo, "env.show", "--json", "--host-env", str(extra))
    data = json.loads(result.stdout)
    assert result.returncode == 0 and data["chain"] == "host"
    token = next(v for v in data["variables"] if v["name"] == "CLOUDFLARE_API_TOKEN")
    assert token == {
        "name": "CLOUDFLARE_API_TOKEN",
        "value": "***",
        "layer": "--host-env",
        "secret": True,
    }
    assert "cf-from-host-env-9d2a" not in result.output


@pytest.fixture
def repo_and_pve(sample_repo: Path, pve: PveFixture, tmp_path: Path):
    profile = tmp_path / "profile.env"
    profile.write_text(f"PM_TOKEN_SECRET={pve.served.token_secret}\n")
    # The runway's tool checks need packer, ansible-playbook and ssh; those are on this machine.
    return sample_repo, pve, profile


def test_two_tasks_that_want_different_envs_name_what_differs(sample_repo: Path) -> None:
    """One `inv` resolves one env; the refusal says what differs, not the whole selection."""
    env = base_env()
    del env["DOPPLER"]  # Doppler on by default: app.mode needs no secrets, env.check does
    doppler = run_inv(sample_repo, "app.mode", "staging-le-prod", "env.check", "l1", env=env)
    assert doppler.returncode == 2, str(doppler)
    assert (
        "env.check wants Doppler's secrets, but this run resolved its env for app.mode with "
        "Doppler off (it needs no secrets)"
    ) in doppler.stderr
    chain = run_inv(sample_repo, "l1.list", "env.check", "host")
    assert chain.returncode == 2, str(chain)
    assert (
        "env.check wants the host env chain, but this run resolved its env for l1.list with "
        "the cluster chain"
    ) in chain.stderr
    assert "`inv l1.list ...`, then `inv env.check ...`" in chain.stderr


def test_doppler_off_by_the_env_lets_a_task_without_secrets_share_the_run(
    sample_repo: Path,
) -> None:
    """DOPPLER=0 turns Doppler off for both tasks: they would resolve the same env."""
    result = run_inv(sample_repo, "app.mode", "staging-le-prod", "env.check", "l1")
    assert "one `inv` resolves one env" not in result.output, str(result)
    assert "wrote layers/gitops/clusters/home/tenants.yaml" in result.stdout
    assert "PM_TOKEN_SECRET" in result.stderr  # env.check ran, and found the secret missing
