"""A missing secret is pointed at Doppler or profiles/secrets.env, never at the committed
config.env; a missing plain value at config.env or profiles/local.env."""

from __future__ import annotations

from pathlib import Path

from helpers import base_env, run_inv


def _without_secrets(text: str) -> str:
    return text.replace("never in config.env", "")


def test_missing_values_are_sent_where_they_belong(sample_repo: Path) -> None:
    env = base_env()
    env.pop("PM_TOKEN_SECRET", None)
    for args in (["env.check", "l0"], ["l2.plan"]):
        result = run_inv(sample_repo, *args, env=env)
        assert result.returncode == 2, str(result)
        assert "PM_TOKEN_SECRET in Doppler or inventory/profiles/secrets.env" in result.stderr
        assert "config.env" not in _without_secrets(result.stderr), str(result)
    (sample_repo / "inventory" / "config.env").write_text(
        (sample_repo / "inventory" / "config.env").read_text().replace("PVE_NODE=", "#PVE_NODE=")
    )
    result = run_inv(sample_repo, "env.check", "l0", env=env)
    assert "set PVE_NODE in inventory/config.env (shared) or inventory/profiles/local.env" in (
        result.stderr
    ), result


def test_env_check_covers_the_orchestrators_as_its_help_says(sample_repo: Path) -> None:
    host = run_inv(sample_repo, "env.check", "host")
    assert host.returncode == 2, host
    assert "HOST_NAME" in host.stdout and "CLOUDFLARE_API_TOKEN" in host.stdout
    assert "inventory/host/config/host.env" in host.stderr  # the host chain's secrets file
    cluster = run_inv(sample_repo, "env.check", "cluster")
    assert cluster.returncode in (0, 2), cluster
    assert "unknown layer" not in cluster.output
    unknown = run_inv(sample_repo, "env.check", "l9")
    assert unknown.returncode == 2 and "cluster, host" in unknown.stderr, unknown


def test_env_check_names_bad_values_too(sample_repo: Path) -> None:
    """A present but unusable value (FEAT_VERIFY=ture) fails the check, named with its file."""
    config = sample_repo / "inventory" / "config.env"
    config.write_text(config.read_text() + "\nFEAT_VERIFY=ture\n")
    result = run_inv(sample_repo, "env.check", "l0")
    assert result.returncode == 2, str(result)
    assert "FEAT_VERIFY" in result.stdout and "inventory/config.env" in result.stdout, str(result)
    assert "setting(s) with a bad value" in result.stderr, str(result)  # beside the missing one
    host = run_inv(sample_repo, "env.check", "host")
    assert "`inv env.show --chain host`" in host.stderr, str(host)


def test_a_chain_that_contradicts_the_host_orchestrator_is_refused(sample_repo: Path) -> None:
    """`env.check host` reads the host chain: an explicit --chain cluster is not silently dropped."""
    result = run_inv(sample_repo, "env.check", "host", "--chain", "cluster")
    assert result.returncode == 2, str(result)
    assert "--chain cluster" in result.stderr and "Traceback" not in result.output, str(result)
    agreed = run_inv(sample_repo, "env.check", "host", "--chain", "host")
    assert "HOST_NAME" in agreed.stdout and "--chain cluster" not in agreed.stderr, str(agreed)
    shown = run_inv(sample_repo, "env.show", "--host-env", "x.env", "--chain", "cluster")
    assert shown.returncode == 2 and "--host-env" in shown.stderr, str(shown)
