"""The step engine: plans, gates, --only, modes, dry runs, confirmation, locks and traces."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_support import make_run

from tasks.runtime.errors import CommandFailed, ConfigError, RefusedError
from tasks.runtime.run import Run
from tasks.runtime.steps import Gate, Orchestrator, Step, StepContext, StepPlan, run_orchestrator


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "config.env").write_text("FEAT_VERIFY=true\n")
    return tmp_path


@pytest.fixture
def c(project: Path) -> Run:
    return make_run(project)


def finished(run: Run, body) -> None:
    """Run `body`, then end the run as the executor does (its trace written)."""
    try:
        body()
    except Exception as exc:
        run.finish("failed", exit_code=getattr(exc, "exit_code", 1), error=str(exc))
        raise
    run.finish("ok")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail: str | None = None

    def action(self, name: str):
        def run(sc: StepContext) -> None:
            self.calls.append((name, sc.mode))
            if self.fail == name:
                raise CommandFailed("false", 7, "boom")

        return run


def seed_shaped(rec: Recorder) -> Orchestrator:
    """The seed's cluster orchestrator shape: shared, apply-only, delete-only and gated steps."""
    both, apply_only, delete_only = (
        frozenset({"apply", "delete"}),
        frozenset({"apply"}),
        frozenset({"delete"}),
    )
    s15 = Step("verify_cluster_access", rec.action("15"), both, 15)
    s94 = Step("verify_config_inputs", rec.action("94"), apply_only, 94, Gate("FEAT_VERIFY"))
    flux = Step("install_flux", rec.action("flux"), both)
    s32 = Step("reconcile_flux_stack", rec.action("32"), both, 32)
    s91 = Step("verify_platform_state", rec.action("91"), apply_only, 91, Gate("FEAT_VERIFY"))
    s30 = Step("manage_cert_manager_cleanup", rec.action("30"), delete_only, 30)
    s26 = Step(
        "manage_cilium_lifecycle",
        rec.action("26"),
        delete_only,
        26,
        Gate("FEAT_CILIUM", default=False),
    )
    return Orchestrator("demo", [s15, s94, flux, s32, s91], [s15, s32, s30, s26, flux])


def test_plan_order_and_gates(c: Run) -> None:
    orch = seed_shaped(Recorder())
    plan = StepPlan.build(orch, "apply", c)
    assert [s.id for s in plan.selected] == [
        "15_verify_cluster_access",
        "94_verify_config_inputs",
        "install_flux",
        "32_reconcile_flux_stack",
        "91_verify_platform_state",
    ]
    delete = StepPlan.build(orch, "delete", c)
    skipped = {e.step.id: e.reason for e in delete.entries if not e.included}
    assert skipped == {"26_manage_cilium_lifecycle": "gated off: FEAT_CILIUM=false (default)"}


def test_gate_off_from_env(c: Run, project: Path) -> None:
    (project / "inventory" / "config.env").write_text("FEAT_VERIFY=false\n")
    plan = StepPlan.build(seed_shaped(Recorder()), "apply", make_run(project))
    assert [s.number for s in plan.selected] == [15, None, 32]
    assert "gated off: FEAT_VERIFY=false" in "\n".join(plan.render())


@pytest.mark.parametrize(
    "only",
    [
        "15,32",
        "verify_cluster_access,reconcile_flux_stack",
        "15_verify_cluster_access, 32_reconcile_flux_stack.sh",
    ],
)
def test_only_by_number_or_name(c: Run, only: str) -> None:
    plan = StepPlan.build(seed_shaped(Recorder()), "apply", c, only)
    assert [s.number for s in plan.selected] == [15, 32]


def test_only_matches_script_paths(c: Run) -> None:
    plan = StepPlan.build(seed_shaped(Recorder()), "apply", c, "bootstrap/install-flux.sh")
    assert [s.name for s in plan.selected] == ["install_flux"]


def test_only_env_fallback(project: Path) -> None:
    plan = StepPlan.build(seed_shaped(Recorder()), "apply", make_run(project, shell={"ONLY": "32"}))
    assert [s.number for s in plan.selected] == [32]
    assert "not selected by ONLY" in "\n".join(plan.render())


def test_unknown_step_lists_valid_ones(c: Run) -> None:
    with pytest.raises(ConfigError) as err:
        StepPlan.build(seed_shaped(Recorder()), "apply", c, "15,77")
    assert "unknown step '77' for demo apply" in err.value.message
    assert "15_verify_cluster_access, 94_verify_config_inputs, install_flux" in err.value.message


def test_step_in_unsupported_mode_fails_fast(c: Run) -> None:
    rec = Recorder()
    with pytest.raises(ConfigError) as err:
        run_orchestrator(c, seed_shaped(rec), "apply", only="30")
    assert "step 30_manage_cert_manager_cleanup supports delete only" in err.value.message
    assert rec.calls == []


def test_dry_run_prints_plan_and_does_nothing(project: Path, capsys) -> None:
    rec = Recorder()
    run = make_run(project, dry_run=True)
    run_orchestrator(run, seed_shaped(rec), "delete")
    out = capsys.readouterr().out
    assert (
        "plan: demo delete" in out and "env layers (cluster chain, lowest first): config.env" in out
    )
    assert "[skip] 26_manage_cilium_lifecycle" in out and "dry run: nothing was changed" in out
    assert rec.calls == [] and not (project / ".work" / "locks").exists()


def test_run_writes_trace_and_stops_at_first_failure(c: Run, project: Path) -> None:
    rec = Recorder()
    rec.fail = "flux"
    with pytest.raises(CommandFailed):
        finished(c, lambda: run_orchestrator(c, seed_shaped(rec), "apply"))
    assert rec.calls == [("15", "apply"), ("94", "apply"), ("flux", "apply")]
    (trace_path,) = (project / ".work" / "traces").glob("demo-apply-*.json")
    trace = json.loads(trace_path.read_text())
    assert (
        trace["task"] == "demo.apply" and trace["mode"] == "apply" and trace["outcome"] == "failed"
    )
    assert trace["env_layers"] == ["config.env", "shell"]
    outcomes = [(s["id"], s["outcome"]) for s in trace["steps"]]
    assert outcomes == [
        ("15_verify_cluster_access", "ok"),
        ("94_verify_config_inputs", "ok"),
        ("install_flux", "failed"),
        ("32_reconcile_flux_stack", "not-run"),
        ("91_verify_platform_state", "not-run"),
    ]
    failed = trace["steps"][2]
    assert (
        failed["exit_code"] == 4
        and "boom" in failed["error"]
        and failed["started"]
        and failed["ended"]
    )


def test_delete_refuses_without_terminal_or_yes(c: Run) -> None:
    rec = Recorder()
    with pytest.raises(RefusedError) as err:
        run_orchestrator(c, seed_shaped(rec), "delete")
    assert "without a terminal" in err.value.message and "--yes" in (err.value.hint or "")
    assert rec.calls == []
    run_orchestrator(c, seed_shaped(rec), "delete", yes=True)
    assert [name for name, _ in rec.calls] == ["15", "32", "30", "flux"]


def test_concurrent_run_is_refused_with_holder(c: Run, project: Path) -> None:
    lock = project / ".work" / "locks" / "demo.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl,json,os,sys,time\n"
                f"fd=os.open({str(lock)!r},os.O_RDWR|os.O_CREAT)\n"
                "fcntl.flock(fd,fcntl.LOCK_EX)\n"
                "os.write(fd,json.dumps({'pid':os.getpid(),'started':'2026-01-01T00:00:00Z'}).encode())\n"
                "print('held',flush=True)\ntime.sleep(30)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout and holder.stdout.readline().strip() == "held"
        rec = Recorder()
        with pytest.raises(RefusedError) as err:
            run_orchestrator(c, seed_shaped(rec), "apply")
        assert (
            f"demo is already in use by another run (pid {holder.pid}, started 2026-01-01T00:00:00Z)"
            in err.value.message
        )
        assert rec.calls == []
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_is_taken_over(c: Run, project: Path, capsys) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    time.sleep(0.05)
    lock = project / ".work" / "locks" / "demo.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": dead.pid, "started": "2026-01-01T00:00:00Z"}))
    rec = Recorder()
    run_orchestrator(c, seed_shaped(rec), "apply")
    assert f"took over a stale demo lock left by pid {dead.pid}" in capsys.readouterr().out
    assert len(rec.calls) == 5


def test_trace_notes_are_masked(c: Run, project: Path) -> None:
    from tasks.runtime.secrets import MASKER

    MASKER.add("note-secret-8842")

    def noisy(sc: StepContext) -> None:
        sc.note("token is note-secret-8842")

    orch = Orchestrator("demo", [Step("noisy", noisy, frozenset({"apply"}))], [])
    finished(c, lambda: run_orchestrator(c, orch, "apply"))
    (trace_path,) = (project / ".work" / "traces").glob("demo-apply-*.json")
    text = trace_path.read_text()
    assert "note-secret-8842" not in text and "token is ***" in text
