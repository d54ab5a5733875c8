"""The command surface: listing, docs in step with it, clear errors for bad input."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import INV, REPO, base_env, run_inv, task_names


def test_every_task_is_in_the_readme_table(sample_repo: Path) -> None:
    readme = (REPO / "README.md").read_text()
    rows = set(re.findall(r"^\| `inv ([a-z0-9_.-]+)", readme, re.M))
    missing = sorted(set(task_names(sample_repo)) - rows)
    assert missing == [], f"tasks missing from README's Tasks table: {missing}"


def test_every_task_has_a_docstring_and_help_for_every_flag() -> None:
    import tasks as root

    ns = root.ns
    undocumented = []
    for name in ns.task_names:
        task = ns[name]
        if not (task.__doc__ or "").strip():
            undocumented.append(f"{name}: no docstring")
        for arg in task.get_arguments():
            if not arg.help:
                undocumented.append(f"{name} --{arg.name}: no help")
    assert undocumented == []


def test_up_rejects_bad_layer_ranges(sample_repo: Path) -> None:
    bad = run_inv(sample_repo, "up", "--from", "l9")
    assert bad.returncode == 2 and "--from 'l9': expected one of l0, l1, l2, l3, l4" in bad.stderr
    backwards = run_inv(sample_repo, "up", "--from", "l3", "--to", "l1")
    assert backwards.returncode == 2 and "--from l3 comes after --to l1" in backwards.stderr
    assert "Traceback" not in bad.output + backwards.output


@pytest.mark.parametrize(
    "argv", [["--list"], ["env.show", "--all"], ["--help"], ["--print-completion-script", "bash"]]
)
def test_a_closed_pipe_ends_quietly_with_141(sample_repo: Path, argv: list[str]) -> None:
    """`inv ... | head`: Invoke's own output (--list) and a task's alike stop without a traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        proc = subprocess.run(
            [INV, *argv],
            cwd=sample_repo,
            env=base_env(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, "")


def test_help_after_every_task_name(sample_repo: Path) -> None:
    """`-h` and `--help` are that task's help for every task (no task flag takes `-h`)."""
    for name in task_names(sample_repo):
        for flag in ("-h", "--help"):
            result = run_inv(sample_repo, name, flag)
            assert result.returncode == 0, str(result)
            assert f"Usage: inv [--core-opts] {name}" in result.stdout, str(result)


def test_task_help_names_the_positionals(sample_repo: Path) -> None:
    """Invoke lists a positional only as `--name=STRING`; README writes `inv l1.build NAME`."""
    for task, usage in (("l1.build", "inv l1.build NAME"), ("app.mode", "inv app.mode [MODE]")):
        result = run_inv(sample_repo, task, "--help")
        assert result.returncode == 0 and f"Positional:\n  {usage}\n" in result.stdout, result
    assert "Positional:" not in run_inv(sample_repo, "clean", "--help").stdout


def test_bare_inv_lists_the_tasks_with_a_hint(sample_repo: Path) -> None:
    result = run_inv(sample_repo)
    assert result.returncode == 0, str(result)
    assert "Available tasks:" in result.stdout and "l0.runway" in result.stdout
    assert result.stdout.rstrip().endswith("run 'inv TASK --help' for a task's flags")


def test_core_help_says_what_dry_does_here(sample_repo: Path) -> None:
    """Invoke's `--dry` echoes commands; here it is every task's dry run, and the help says so."""
    result = run_inv(sample_repo, "--help")
    assert result.returncode == 0, str(result)
    text = " ".join(result.stdout.split())  # Invoke wraps help text to the terminal
    assert "--dry Dry run: reads still run, every change is withheld" in text, result.stdout
    assert "Echo commands" not in text, result.stdout


def test_a_misspelt_task_or_flag_is_bad_input_with_the_nearest_names(sample_repo: Path) -> None:
    result = run_inv(sample_repo, "l0.runaway")
    assert result.returncode == 2, str(result)
    assert "error: no task 'l0.runaway'" in result.stderr
    assert "did you mean l0.runway?" in result.stderr
    flag = run_inv(sample_repo, "clean", "--al")
    assert flag.returncode == 2, str(flag)
    assert "error: clean has no flag --al" in flag.stderr and "did you mean --all?" in flag.stderr
    before = run_inv(sample_repo, "runs.show", "--jsn", "last")  # taken as the positional
    assert before.returncode == 2, str(before)
    assert "runs.show has no flag --jsn" in before.stderr and "--json?" in before.stderr, before
    value = run_inv(sample_repo, "up", "--from")
    assert value.returncode == 2 and "error: up: --from needs a value" in value.stderr, value
    # Invoke hands a left-out positional the next token: a flag-like one is a misspelt flag.
    swallowed = run_inv(sample_repo, "app.mode", "--yes", "--dry-run")
    assert swallowed.returncode == 2, str(swallowed)
    assert "error: app.mode has no flag --yes" in swallowed.stderr, str(swallowed)
    typed = run_inv(sample_repo, "l1.adopt", "debian12-k3s", "--vmid", "abc", "--dry-run")
    assert typed.returncode == 2 and "takes a whole number" in typed.stderr, str(typed)
    # `inv plan`'s 2 means "changes pending": its bad input is 1, said so.
    plan = run_inv(sample_repo, "plan", "--dry-run")
    assert plan.returncode == 1 and "bad input to plan" in plan.stderr, str(plan)
    empty = run_inv(sample_repo, "plan", "--layer", "--json")  # not "every layer"
    assert empty.returncode == 1 and "--layer needs a value" in empty.stderr, str(empty)
    everything = result.output + flag.output + value.output + plan.output + typed.output
    assert "Traceback" not in everything + swallowed.output


def test_a_missing_positional_is_the_projects_error(sample_repo: Path) -> None:
    """Invoke's own message for it is pinned here too: homelab_cli.py recognises it by its text."""
    result = run_inv(sample_repo, "env.check")
    assert result.returncode == 2, str(result)
    assert "error: env.check needs LAYER: one of l0, l1, l2, l3, l4, cluster, host" in result.stderr
    assert "Traceback" not in result.output
    # The inventory's groups and the clusters, read from the checkout, not the sample's names.
    hosts = sample_repo / "inventory" / "hosts.yaml"
    hosts.write_text(hosts.read_text().replace("\n  homelab:", "\n  garage:", 1))
    (sample_repo / "inventory" / "clusters" / "lab2").mkdir()
    (sample_repo / "inventory" / "clusters" / "lab2" / "cluster.yaml").write_text("name: lab2\n")
    for task, wanted in [
        ("l3.converge", "needs GROUP: one of all, "),
        ("l4.converge", "needs GROUP: one of all, "),
        ("l3.reboot", "needs GROUP: one of all, "),
        ("gitops.bootstrap", "needs CLUSTER: one of home, lab2"),
    ]:
        missing_one = run_inv(sample_repo, task)
        assert missing_one.returncode == 2 and wanted in missing_one.stderr, str(missing_one)
        if task != "gitops.bootstrap":
            assert "garage" in missing_one.stderr and "homelab" not in missing_one.stderr
    from invoke.parser import Parser, ParserContext
    from invoke.parser.argument import Argument

    from homelab_cli import MISSING, UNKNOWN

    context = ParserContext(name="t", args=[Argument(names=("layer",), positional=True)])
    with pytest.raises(Exception) as missing:
        Parser(initial=ParserContext(), contexts=[context]).parse_argv(["t"])
    assert MISSING in str(missing.value)
    with pytest.raises(Exception) as unknown:
        Parser(initial=ParserContext(), contexts=[context]).parse_argv(["nope"])
    assert UNKNOWN.match(str(unknown.value))


def test_an_optional_positional_may_be_left_out(sample_repo: Path) -> None:
    listed = run_inv(sample_repo, "app.mode")
    assert listed.returncode == 0 and "app modes" in listed.stdout, listed
    dry = run_inv(sample_repo, "app.mode", "--dry-run", "staging-le-prod")
    assert dry.returncode == 0 and "dry run: nothing was changed" in dry.stdout, dry
    both = run_inv(sample_repo, "l3.hosts", "env.check", "l0")
    assert both.returncode == 2 and "ADDRESS" in both.stdout  # the second task ran too


def test_bash_completion_works_without_the_venv_on_path(sample_repo: Path, tmp_path: Path) -> None:
    script = run_inv(sample_repo, "--print-completion-script", "bash")
    assert script.returncode == 0 and INV in script.stdout, script
    completion = tmp_path / "complete.bash"
    completion.write_text(script.stdout)
    probe = (
        f"source {completion}\n"
        f"COMP_WORDS=({INV} l0.); COMP_CWORD=1\n"
        f"_complete_homelab_inv {INV} l0. {INV}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        ["bash", "-c", probe], cwd=sample_repo, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["l0.runway"], str(result)
