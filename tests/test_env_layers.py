"""The env precedence table, row by row, through `inv env.show --json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import STANDINS, base_env, run_inv


def _show(repo: Path, *args: str, **env: str) -> dict:
    result = run_inv(repo, "env.show", "--json", "--all", *args, env=base_env(**env))
    assert result.returncode == 0, str(result)
    data = json.loads(result.stdout)
    return {v["name"]: v for v in data["variables"]} | {"__layers__": data["layers"]}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def layered(sample_repo: Path, tmp_path: Path) -> dict:
    """FOO_LEVEL set in every layer of both chains, each to the layer's own name."""
    inv = sample_repo / "inventory"
    _write(inv / "config.env", (inv / "config.env").read_text() + "\nFOO_LEVEL=config\n")
    _write(inv / "profiles" / "local.env", "FOO_LEVEL=local\n")
    _write(inv / "profiles" / "secrets.env", "FOO_LEVEL=secretsfile\n")
    _write(inv / "host" / "config" / "homelab.env", "FOO_LEVEL=homelab\n")
    _write(inv / "host" / "config" / "host.env", "FOO_LEVEL=hostenv\n")
    profile = _write(tmp_path / "profile.env", "FOO_LEVEL=profile\n")
    secrets = _write(tmp_path / "doppler.json", json.dumps({"FOO_LEVEL": "value-from-doppler"}))
    doppler_env = {
        "DOPPLER": "1",
        "PATH": f"{STANDINS}:{base_env()['PATH']}",
        "DOPPLER_STANDIN_SECRETS": str(secrets),
        "DOPPLER_STANDIN_LOG": str(tmp_path / "calls"),
    }
    return {"repo": sample_repo, "profile": str(profile), "doppler": doppler_env}


def _winner(data: dict) -> tuple[str, str]:
    return data["FOO_LEVEL"]["value"], data["FOO_LEVEL"]["layer"]


def test_cluster_chain_each_row(layered: dict) -> None:
    repo, inv = layered["repo"], layered["repo"] / "inventory"
    # Every layer present: --profile wins.
    assert _winner(
        _show(repo, "--profile", layered["profile"], FOO_LEVEL="shell", **layered["doppler"])
    ) == ("profile", "--profile")
    # Without --profile: Doppler beats the shell. Doppler values are secrets, so masked.
    assert _winner(_show(repo, FOO_LEVEL="shell", **layered["doppler"])) == ("***", "doppler")
    # Without Doppler: the shell beats every file.
    assert _winner(_show(repo, FOO_LEVEL="shell")) == ("shell", "shell")
    # secrets.env beats local.env, and its values are masked.
    assert _winner(_show(repo)) == ("***", "profiles/secrets.env")
    (inv / "profiles" / "secrets.env").unlink()
    assert _winner(_show(repo)) == ("local", "profiles/local.env")
    (inv / "profiles" / "local.env").unlink()
    assert _winner(_show(repo)) == ("config", "config.env")


def test_profile_exclusive_skips_local_and_secrets(layered: dict) -> None:
    data = _show(layered["repo"], PROFILE_EXCLUSIVE="true")
    assert _winner(data) == ("config", "config.env")
    skipped = {lyr["name"]: lyr["skipped"] for lyr in data["__layers__"]}
    assert skipped["profiles/local.env"] == "PROFILE_EXCLUSIVE=true"
    assert skipped["profiles/secrets.env"] == "PROFILE_EXCLUSIVE=true"


def test_profile_exclusive_in_the_profile_file_itself(layered: dict, tmp_path: Path) -> None:
    """An exclusive profile says so itself: its PROFILE_EXCLUSIVE=true skips local and secrets."""
    profile = _write(tmp_path / "only.env", "PROFILE_EXCLUSIVE=true\n")
    data = _show(layered["repo"], "--profile", str(profile))
    assert _winner(data) == ("config", "config.env")
    skipped = {lyr["name"]: lyr["skipped"] for lyr in data["__layers__"]}
    assert skipped["profiles/local.env"] == "PROFILE_EXCLUSIVE=true", data["__layers__"]


def test_profile_exclusive_from_config_env(layered: dict) -> None:
    inv = layered["repo"] / "inventory"
    (inv / "config.env").write_text((inv / "config.env").read_text() + "PROFILE_EXCLUSIVE=true\n")
    assert _winner(_show(layered["repo"])) == ("config", "config.env")


def test_host_chain_each_row(layered: dict, tmp_path: Path) -> None:
    repo, cfg = layered["repo"], layered["repo"] / "inventory" / "host" / "config"
    host_file = _write(tmp_path / "override-host.env", "FOO_LEVEL=hostflag\n")
    assert _winner(
        _show(repo, "--host-env", str(host_file), FOO_LEVEL="shell", **layered["doppler"])
    ) == ("hostflag", "--host-env")
    assert _winner(_show(repo, "--chain", "host", FOO_LEVEL="shell", **layered["doppler"])) == (
        "***",
        "doppler",
    )
    assert _winner(_show(repo, "--chain", "host", FOO_LEVEL="shell")) == ("shell", "shell")
    assert _winner(_show(repo, "--chain", "host")) == ("hostenv", "host/config/host.env")
    (cfg / "host.env").unlink()
    assert _winner(_show(repo, "--chain", "host")) == ("homelab", "host/config/homelab.env")
    (cfg / "homelab.env").unlink()
    assert _winner(_show(repo, "--chain", "host")) == ("config", "config.env")


def test_interpolation_from_lower_layer(sample_repo: Path) -> None:
    _write(
        sample_repo / "inventory" / "profiles" / "local.env",
        "KUBE_DIR=${PVE_NODE}/kube\nLITERAL='${PVE_NODE}'\n",
    )
    data = _show(sample_repo)
    assert data["KUBE_DIR"]["value"] == "pve1/kube"
    assert data["LITERAL"]["value"] == "${PVE_NODE}"


@pytest.mark.parametrize("line", ["NOT A VALID LINE 'x", "9LIVES=1", "JUSTANAME"])
def test_malformed_line_names_file_and_line(sample_repo: Path, line: str) -> None:
    _write(sample_repo / "inventory" / "profiles" / "local.env", f"# header\nOK=1\n{line}\n")
    result = run_inv(sample_repo, "env.show")
    assert result.returncode == 2, str(result)
    assert "profiles/local.env:3:" in result.stderr
    assert "Traceback" not in result.output


def test_missing_profile_file_is_an_error(sample_repo: Path) -> None:
    result = run_inv(sample_repo, "env.show", "--profile", "nope.env")
    assert result.returncode == 2, str(result)
    assert "nope.env: env file not found" in result.stderr


def test_secret_names_are_masked(sample_repo: Path) -> None:
    _write(
        sample_repo / "inventory" / "profiles" / "local.env",
        "PM_TOKEN_SECRET=abcd-1234-secret\nPM_TOKEN_ID=user@pve!tok\nMY_PAT=ghp_whatever\n",
    )
    result = run_inv(sample_repo, "env.show")
    assert result.returncode == 0, str(result)
    assert "abcd-1234-secret" not in result.output and "ghp_whatever" not in result.output
    assert "user@pve!tok" in result.stdout  # a token *id* is a reference, not a secret


def test_a_pasted_secret_line_is_named_but_never_quoted(sample_repo: Path) -> None:
    _write(sample_repo / "inventory" / "profiles" / "secrets.env", "OK=1\nghp_pasted123token\n")
    result = run_inv(sample_repo, "env.show")
    assert result.returncode == 2, str(result)
    assert "profiles/secrets.env:2:" in result.stderr
    assert "ghp_pasted123token" not in result.output


def test_shadowed_secrets_and_secrets_inside_values_stay_masked(sample_repo: Path) -> None:
    """A secrets.env value a higher layer overrides is still masked, also inside JSON output."""
    _write(sample_repo / "inventory" / "profiles" / "secrets.env", 'NOTE=pä"ss-word-9\n')
    result = run_inv(
        sample_repo, "env.show", "--json", env=base_env(NOTE='x pä"ss-word-9 y', DOPPLER="0")
    )
    assert result.returncode == 0, str(result)
    assert "ss-word-9" not in result.output


def test_env_check_reports_every_missing_variable(sample_repo: Path) -> None:
    cfg = sample_repo / "inventory" / "config.env"
    cfg.write_text("PVE_NODE=pve1\n")
    result = run_inv(sample_repo, "env.check", "l0")
    assert result.returncode == 2, str(result)
    for name in ("PVE_ACCESS_HOST", "PM_TOKEN_ID", "PM_TOKEN_SECRET", "PVE_STORAGE_VM"):
        assert name in result.stderr
    assert "4 required variable(s) missing" in result.stderr
    ok = run_inv(
        sample_repo,
        "env.check",
        "l0",
        env=base_env(
            PVE_ACCESS_HOST="h",
            PM_TOKEN_ID="a@b!c",
            PM_TOKEN_SECRET="s3cr3t-value",
            PVE_STORAGE_VM="x",
        ),
    )
    assert ok.returncode == 0, ok
    unknown = run_inv(sample_repo, "env.check", "l9")
    assert (
        unknown.returncode == 2
        and "a layer with a layer.yaml or an orchestrator: " in unknown.stderr
    )


def test_env_files_use_dotenv_parser_without_its_package_init(tmp_path: Path) -> None:
    """Reading an env file loads python-dotenv's parser alone; `import dotenv` later reuses it."""
    import subprocess
    import sys

    env_file = _write(tmp_path / "a.env", "A=1\nB=${A}2\nC='${A}'\n")
    root = Path(__file__).resolve().parents[1]
    script = f"""
import sys
sys.path.insert(0, {str(root)!r})
from pathlib import Path
from tasks.runtime.envfiles import read_env_file
print(read_env_file(Path({str(env_file)!r})))
print("dotenv.main" in sys.modules, "tempfile" in sys.modules)
import dotenv
print(dotenv.main.parse_stream is sys.modules["dotenv.parser"].parse_stream)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["{'A': '1', 'B': '12', 'C': '${A}'}", "False False", "True"]
