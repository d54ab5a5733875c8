"""How `inv rehearse` plays (tasks/rehearsal/__init__.py is its thin task): the throwaway copy of
the checkout, the stages' stand-ins, and each act run through the front door. Imported only when
the rehearsal runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Stages are entered in this order; a later stage sees the env earlier ones set.
STAGE_MODULES = ("foundation", "proxmox", "templates", "ssh", "gitops", "chain")
STANDINS = Path(__file__).with_name("standins")


def real_kubectl(path: str) -> str:
    """The kubectl the stand-in hands `kubectl kustomize` to: the first on `path` (the stand-ins
    skipped) or in the runner's venv whose kustomize is v5 (kubectl 1.27+), as the runner picks."""
    import os
    import subprocess
    import sys

    from tasks.runtime.tools import parse_version

    folders = [d for d in path.split(os.pathsep) if d and Path(d).resolve() != STANDINS.resolve()]
    for folder in [*folders, str(Path(sys.executable).parent)]:
        exe = Path(folder) / "kubectl"
        if not (exe.is_file() and os.access(exe, os.X_OK)) or _is_standin(exe):
            continue
        try:
            out = subprocess.run(
                [str(exe), "version", "--client", "-o", "json"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        version = parse_version(out)
        if version and version >= (1, 27):
            return str(exe)
    return "/usr/bin/kubectl"  # the stand-in's own default; its error then names it


def _is_standin(exe: Path) -> bool:
    """A recording stand-in (this checkout's or any copy's, e.g. a test's): never the real tool,
    though it answers `version` like one."""
    try:
        with exe.open("rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return b"stand-in" in head.lower()


@dataclass(frozen=True)
class Act:
    title: str
    argv: tuple[str, ...]
    expect_exit: int = 0


@dataclass
class Rehearsal:
    workdir: Path  # the throwaway copy of the checkout the acts run in
    scratch: Path  # room for certificates, keys, remotes
    env: dict[str, str] = field(default_factory=dict)
    stood_up: list[str] = field(default_factory=list)  # what the stages started, in plain words


# The heading each stage's acts are grouped under.
STAGE_TITLES = {
    "foundation": "environment and the layer pipeline",
    "proxmox": "Proxmox: runway (L0) and VMs (L2)",
    "templates": "Packer templates (L1)",
    "ssh": "hosts over SSH: L3, L4 and the host orchestrator",
    "gitops": "GitOps: the Flux tree, modes, cluster orchestrator, bootstrap",
    "chain": "the whole chain: `inv up` from the VMs to a Flux-reconciled cluster",
}
NEXT_STEPS = (
    "Point it at your Proxmox: PVE_ACCESS_HOST, PVE_NODE and PVE_STORAGE_VM in "
    "inventory/profiles/local.env, the API token (PM_TOKEN_ID, PM_TOKEN_SECRET) in Doppler or "
    "inventory/profiles/secrets.env; then `inv l0.runway`.",
    "Declare your VMs under layers/l2/ and your hosts in inventory/hosts.yaml; then `inv l2.plan` "
    "and `inv up --dry-run`.",
    "Point gitops.root in inventory/runner.yaml at your Flux repository; then `inv gitops.layout` "
    "and `inv k8s.validate`.",
)


def copy_checkout(root: Path, dest: Path) -> None:
    """The checkout's tracked files (as they are on disk), committed in a new repo at `dest`."""
    import os
    import shutil
    import subprocess

    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached"],
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        from tasks.runtime.errors import ConfigError

        raise ConfigError(
            f"{root} is not a git checkout: the rehearsal copies the checkout's tracked files",
            hint="run it from a clone of the runner",
        )
    dest.mkdir(parents=True, exist_ok=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        if Path(name).parts[:3] == ("layers", "l1", "artifacts"):
            # The operator's L1 records (committed stable.json files) name templates on their
            # real Proxmox, which the rehearsal's fakepve does not have: it builds its own.
            continue
        source = root / name
        if not source.is_file() and not source.is_symlink():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "rehearsal",
        "GIT_AUTHOR_EMAIL": "rehearsal@localhost",
        "GIT_COMMITTER_NAME": "rehearsal",
        "GIT_COMMITTER_EMAIL": "rehearsal@localhost",
    }
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-q", "-m", "rehearsal copy"],
    ):
        subprocess.run(["git", "-C", str(dest), *args], check=True, capture_output=True, env=env)


def perform(run, keep: bool = False) -> None:
    """The rehearsal: every stage's stand-ins up, every act played, the copy removed."""
    import importlib
    import os
    import shutil
    import sys
    import tempfile
    import time
    from contextlib import ExitStack

    from tasks.runtime.console import rich_print, say, wrap
    from tasks.runtime.errors import ExternalError

    if run.dry_run:
        intro = (
            "dry run: the rehearsal would copy this checkout's tracked files to a private temporary "
            "folder, stand up fakepve, three sshd hosts, DNS and k3s installer stand-ins, a bare git "
            "remote and recording kubectl/flux stand-ins on loopback, and run its acts there:"
        )
        for line in wrap(intro):
            say(line)
        for name in STAGE_MODULES:
            say(f"  - {STAGE_TITLES.get(name, name)}")
        say("nothing was started")
        return
    scratch = Path(tempfile.mkdtemp(prefix="homelab-rehearsal-"))  # mode 0700
    workdir = scratch / "repo"
    copy_checkout(run.project.root, workdir)
    # The rehearsal never reaches Doppler or the operator's machine-local profiles.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DOPPLER", "PVE_", "PM_"))}
    rehearsal = Rehearsal(workdir, scratch, {**base, "DOPPLER": "0", "PROFILE_EXCLUSIVE": "true"})
    inv = str(Path(sys.executable).with_name("inv"))
    failures = []
    acts: list[tuple[str, Act]] = []
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            for name in STAGE_MODULES:
                module = importlib.import_module(f"tasks.rehearsal.{name}")
                acts += [(name, act) for act in stack.enter_context(module.stage(rehearsal))]
            say(f"rehearsal: {len(acts)} acts in a throwaway copy of this checkout ({workdir}),")
            say("against what it stood up on loopback, nothing else:")
            for line in rehearsal.stood_up:
                for part in wrap(f"  - {line}", indent="    "):
                    say(part)
            area = None
            for number, (stage_name, act) in enumerate(acts, 1):
                if stage_name != area:
                    area = stage_name
                    rich_print(f"\n[bold]### {STAGE_TITLES.get(area, area)}[/bold]")
                failure = _play(inv, rehearsal, number, len(acts), act)
                if failure:
                    failures.append(f"{stage_name}: {failure}")
    finally:
        if keep:
            say(f"\nrehearsal copy kept at {workdir}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    took = time.monotonic() - started
    if failures:
        raise ExternalError(
            f"rehearsal: {len(failures)} of {len(acts)} act(s) failed in {took:.0f}s:\n  "
            + "\n  ".join(failures)
        )
    say(f"\nrehearsal: all {len(acts)} acts passed in {took:.0f}s. Next steps, for your homelab:")
    for number, step in enumerate(NEXT_STEPS, 1):
        for part in wrap(f"  {number}. {step}", indent="     "):
            say(part)


def _play(inv: str, rehearsal: Rehearsal, number: int, total: int, act: Act) -> str | None:
    """Run one act; None when it ended as expected, else what went wrong."""
    import subprocess
    import time

    from tasks.runtime.console import rich_print, say

    command = f"inv {' '.join(act.argv)}"
    rich_print(f"\n[bold]== {number}/{total} {act.title}[/bold]")
    say(f"   $ {command}")
    t0 = time.monotonic()
    refused = act.expect_exit != 0
    proc = subprocess.run(
        [inv, *act.argv],
        cwd=rehearsal.workdir,
        env=rehearsal.env,
        stdin=subprocess.DEVNULL,
        # An act expected to be refused is shown as such, not as an error.
        stdout=subprocess.PIPE if refused else None,
        stderr=subprocess.STDOUT if refused else None,
        text=True,
    )
    took = time.monotonic() - t0
    if refused:
        for line in (proc.stdout or "").splitlines():
            say(line.replace("error: ", "refused: ", 1) if line.startswith("error: ") else line)
    if proc.returncode != act.expect_exit:
        rich_print(f"[red]-- failed[/red] (exit {proc.returncode}, {took:.1f}s)")
        return f"{command} exited {proc.returncode} (expected {act.expect_exit})"
    if refused:
        rich_print(f"[green]-- refused, as expected[/green] (exit {proc.returncode}, {took:.1f}s)")
    else:
        rich_print(f"[green]-- ok[/green] ({took:.1f}s)")
    return None
