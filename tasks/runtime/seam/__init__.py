"""The effects seam: every way the runner reaches the world, in one place.

Local commands (git, kubectl, flux, packer, ansible-playbook, the doppler CLI, ...), HTTP
(Doppler, Vault, DNS providers, checksum files), the Proxmox API, SSH sessions and commands, and
writes of files outside `.work/` all go through an `Effects`, and each call says whether it reads
or mutates. Here, once, for all of them:

- a dry run lets reads through (so it checks real state) and withholds every mutation, printing
  `would ...` instead: Invoke's `--dry` and every task's `--dry-run` set the same switch;
- a secret is refused on a command line or in a URL (argv and URLs are visible to others);
- children get the run's resolved env (env files, Doppler, the shell), never just os.environ;
- every call is recorded for the run's trace: kind, target, read or mutate, start, duration,
  outcome, all masked.

The transports (`process`, `http`, `pve`, `ssh`) hold the only imports of subprocess, requests,
proxmoxer, paramiko and fabric in the runner; a test enforces it. `fake.ScriptedEffects` is the
recording fake unit tests use.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.runtime.errors import CommandFailed, RefusedError
from tasks.runtime.secrets import MASKER, mask

if TYPE_CHECKING:
    from fabric import Connection

    from tasks.runtime.seam.http import HttpAnswer
    from tasks.runtime.seam.pve import PveTransport
    from tasks.runtime.seam.ssh import RemoteResult, SshSettings, SshTarget

LineSink = Callable[[str], None]


class Effect:
    """One call through the seam, as the trace records it (masked)."""

    __slots__ = ("kind", "target", "mutates", "started", "seconds", "outcome", "detail", "count")

    def __init__(self, kind: str, target: str, mutates: bool) -> None:
        self.kind = kind
        self.target = mask(target)
        self.mutates = mutates
        self.started = time.time()
        self.seconds = 0.0
        self.outcome = "running"
        self.detail = ""
        self.count = 1

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "kind": self.kind,
            "target": self.target,
            "mutates": self.mutates,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "started_epoch": round(self.started, 3),  # for a timeline of sub-second effects
            "seconds": round(self.seconds, 3),
            "outcome": self.outcome,
        }
        if self.detail:
            record["detail"] = mask(self.detail)
        if self.count > 1:
            record["count"] = self.count
        return record


class CommandResult:
    """A finished local command: its exit status and output (unmasked: callers parse it)."""

    __slots__ = ("command", "exited", "stdout", "stderr")

    def __init__(self, command: str, exited: int, stdout: str, stderr: str) -> None:
        self.command = command  # masked, for messages
        self.exited = exited
        self.stdout = stdout
        self.stderr = stderr

    @property
    def ok(self) -> bool:
        return self.exited == 0

    @property
    def failed(self) -> bool:
        return self.exited != 0

    def tail(self, lines: int = 3) -> str:
        text = (self.stderr or self.stdout or "").strip().splitlines()
        return mask(" | ".join(text[-lines:]))


def _quote(argv: Sequence[str]) -> str:
    import shlex

    return shlex.join(str(a) for a in argv)


class Effects:
    """The seam of one run. `child_env()` gives the run's resolved env for children."""

    def __init__(
        self,
        *,
        dry_run: bool,
        child_env: Callable[[], Mapping[str, str]],
        work: Path,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.dry_run = dry_run
        self._child_env = child_env
        self.work = work
        self._say = say
        self._lock = threading.Lock()
        self.records: list[Effect] = []

    # ------------------------------------------------------------------ bookkeeping

    def say(self, message: str) -> None:
        if self._say is not None:
            self._say(message)
        else:
            from tasks.runtime.console import say

            say(message)

    @contextlib.contextmanager
    def saying(self, say: Callable[[str], None]) -> Iterator[None]:
        """Notes ("would write ...") go to `say` meanwhile: stderr, for output that is data."""
        before, self._say = self._say, say
        try:
            yield
        finally:
            self._say = before

    def _begin(self, kind: str, target: str, mutates: bool, would: str) -> Effect | None:
        """Record the start of a call; None when a dry run withholds this mutation."""
        effect = Effect(kind, target, mutates)
        with self._lock:
            self.records.append(effect)
        if mutates and self.dry_run:
            effect.outcome = "skipped"
            effect.detail = "dry run"
            self.say(f"would {would}")
            return None
        return effect

    @staticmethod
    def _end(effect: Effect, outcome: str, detail: str = "") -> None:
        effect.seconds = time.time() - effect.started
        effect.outcome = outcome
        effect.detail = detail

    def trace_records(self) -> list[dict[str, Any]]:
        """The records, consecutive repeats of one read (task-status polls) folded into one."""
        folded: list[Effect] = []
        with self._lock:
            records = list(self.records)
        for effect in records:
            last = folded[-1] if folded else None
            if (
                last is not None
                and not effect.mutates
                and (last.kind, last.target, last.mutates, last.outcome)
                == (effect.kind, effect.target, effect.mutates, effect.outcome)
            ):
                last.count += 1
                last.seconds += effect.seconds
                continue
            folded.append(effect)
        return [e.as_dict() for e in folded]

    def mutations(self) -> list[Effect]:
        """Mutations that were carried out (not withheld by a dry run)."""
        with self._lock:
            return [e for e in self.records if e.mutates and e.outcome != "skipped"]

    @staticmethod
    def refuse_secret(text: str, where: str) -> None:
        if MASKER.contains_secret(text):
            raise RefusedError(
                f"refusing to put a secret on {where}: {mask(text)}",
                hint="pass the secret through the environment or stdin",
            )

    # ------------------------------------------------------------------ local commands

    def command(
        self,
        argv: Sequence[str],
        *,
        mutates: bool,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        stdin: str | bytes | None = None,
        cwd: Path | None = None,
        timeout: float | None = None,
        check: bool = True,
        echo: bool | None = None,
        on_stdout: LineSink | None = None,
        on_stderr: LineSink | None = None,
        what: str | None = None,
        executable: str | None = None,
    ) -> CommandResult:
        """Run `argv` (no shell). `env` is added to the run's env (or replaces it: inherit_env=False).
        `executable` is the binary to start for argv[0] (the one `tasks.runtime.tools` chose);
        output and the trace keep argv as given, so they read `kubectl ...`, not a long path.

        `on_stdout`/`on_stderr` receive each output line already masked (live streaming); the
        returned result holds the whole output. `check` raises CommandFailed on a non-zero exit.
        """
        from tasks.runtime.seam.process import run_process

        shown = _quote(argv)
        self.refuse_secret(shown, "a command line")
        effect = self._begin("command", what or shown, mutates, f"run: {mask(shown)}")
        if effect is None:
            return CommandResult(mask(shown), 0, "", "")
        if echo if echo is not None else mutates:
            self.say(f"$ {mask(shown)}")
        child = {**(self._child_env() if inherit_env else {}), **(env or {})}
        data = stdin.encode() if isinstance(stdin, str) else stdin
        out, err = _Stream(on_stdout), _Stream(on_stderr)
        try:
            outcome = run_process(
                [executable, *argv[1:]] if executable else argv,
                env=child,
                stdin=data,
                cwd=cwd,
                timeout=timeout,
                on_stdout=out.feed if on_stdout else None,
                on_stderr=err.feed if on_stderr else None,
            )
        finally:
            out.close()
            err.close()
        result = CommandResult(mask(shown), outcome.exited, outcome.stdout, outcome.stderr)
        if outcome.timed_out:
            self._end(effect, "failed", f"timed out after {timeout:g}s")
            from tasks.runtime.errors import ExternalError

            raise ExternalError(f"{mask(shown)}: timed out after {timeout:g}s")
        self._end(effect, "ok" if result.ok else "failed", f"exit {outcome.exited}")
        if check and result.failed:
            raise CommandFailed(result.command, result.exited, result.tail())
        return result

    # ------------------------------------------------------------------ HTTP

    def http(
        self,
        method: str,
        url: str,
        *,
        mutates: bool | None = None,
        credential: str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        timeout: tuple[float, float] = (5.0, 20.0),
        verify: bool | str = True,
        what: str | None = None,
    ) -> HttpAnswer | None:
        """One HTTP request. `credential` names the setting a credential-bearing URL came from:
        the URL must then be https (plain http only to a loopback IP). None in a dry run's write."""
        from tasks.runtime.seam.http import check_credential_url, send

        method = method.upper()
        if mutates is None:
            mutates = method not in ("GET", "HEAD", "OPTIONS")
        if credential is not None:
            check_credential_url(url, credential)
        self.refuse_secret(url, "a URL")
        target = what or f"{method} {url.split('?', 1)[0]}"
        effect = self._begin("http", target, mutates, f"send {target}")
        if effect is None:
            return None
        try:
            answer = send(
                method,
                url,
                headers=headers,
                params=params,
                json=json,
                data=data,
                timeout=timeout,
                verify=verify,
            )
        except Exception as exc:
            self._end(effect, "failed", getattr(exc, "message", type(exc).__name__))
            raise
        self._end(effect, "ok" if answer.status < 400 else "failed", f"HTTP {answer.status}")
        return answer

    # ------------------------------------------------------------------ Proxmox

    def pve(self, transport: PveTransport, method: str, path: str, params: dict[str, Any]) -> Any:
        """One PVE API request; every method but GET mutates."""
        mutates = method != "GET"
        effect = self._begin("pve", f"{method} {path}", mutates, f"{method} {path}")
        if effect is None:
            return None
        try:
            answer = transport.send(method, path, params)
        except Exception as exc:
            status = getattr(exc, "status", None)
            self._end(effect, "failed", f"HTTP {status}" if status else type(exc).__name__)
            raise
        self._end(effect, "ok")
        return answer

    # ------------------------------------------------------------------ SSH

    def ssh_connect(self, target: SshTarget, settings: SshSettings) -> Connection:
        """An SSH connection with host keys checked (a read); SshFailure when it cannot be had."""
        from tasks.runtime.seam.ssh import open_connection

        effect = self._begin("ssh", f"connect {target.name} ({target.where})", False, "")
        assert effect is not None
        try:
            conn = open_connection(target, settings, record_new_keys=not self.dry_run)
        except Exception as exc:
            self._end(effect, "failed", getattr(exc, "status", type(exc).__name__))
            raise
        self._end(effect, "ok")
        return conn

    def ssh_run(
        self,
        conn: Connection,
        host: str,
        command: str,
        *,
        mutates: bool,
        env: Mapping[str, str] | None = None,
        stdin: bytes = b"",
        timeout: float | None = None,
        what: str | None = None,
    ) -> RemoteResult:
        """`command` on an open connection; `env` arrives on stdin, never on the command line."""
        from tasks.runtime.seam.ssh import RemoteResult, run_command

        self.refuse_secret(command, f"{host}'s command line")
        target = f"{host}: {what or command}"
        effect = self._begin("ssh", target, mutates, f"run on {mask(target)}")
        if effect is None:
            return RemoteResult(0, "", "")
        try:
            result = run_command(conn, command, env=env, stdin=stdin, timeout=timeout)
        except Exception as exc:
            self._end(effect, "failed", getattr(exc, "status", type(exc).__name__))
            raise
        self._end(effect, "ok" if result.exited == 0 else "failed", f"exit {result.exited}")
        return result

    # ------------------------------------------------------------------ files

    def _inside_work(self, path: Path) -> bool:
        try:
            Path(path).resolve().relative_to(self.work.resolve())
        except ValueError:
            return False
        return True

    def write_file(
        self, path: Path, data: str | bytes, *, mode: int | None = None, what: str = ""
    ) -> bool:
        """Write `path` atomically. Outside `.work/` it is a recorded mutation; False in a dry run."""
        from tasks.runtime.files import atomic_write

        if self._inside_work(path):
            # Generated state: private to the operator (files 0600, folders 0700).
            self.work.mkdir(mode=0o700, exist_ok=True)
            atomic_write(path, data, mode=0o600 if mode is None else mode)
            return True
        effect = self._begin("file", f"write {path}", True, f"write {what or path}")
        if effect is None:
            return False
        try:
            atomic_write(path, data, mode=mode)
        except OSError as exc:
            self._end(effect, "failed", exc.strerror or type(exc).__name__)
            raise
        self._end(effect, "ok")
        return True

    def write_files(self, files: Mapping[Path, str | bytes], *, what: str = "") -> bool:
        """Several files, all or nothing: every one staged first, then renamed in one pass."""
        from tasks.runtime.files import atomic_write_all

        outside = [p for p in files if not self._inside_work(p)]
        effect = None
        if outside:
            names = ", ".join(str(p) for p in outside[:3]) + (" ..." if len(outside) > 3 else "")
            effect = self._begin("file", f"write {names}", True, f"write {what or names}")
            if effect is None:
                return False
        try:
            atomic_write_all(files)
        except OSError as exc:
            if effect is not None:
                self._end(effect, "failed", exc.strerror or type(exc).__name__)
            raise
        if effect is not None:
            self._end(effect, "ok")
        return True

    def remove(self, path: Path, *, what: str = "") -> bool:
        """Remove a file, link or folder tree (recorded, withheld in a dry run)."""
        import shutil

        effect = self._begin("file", f"remove {path}", True, f"remove {what or path}")
        if effect is None:
            return False
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            self._end(effect, "failed", exc.strerror or type(exc).__name__)
            raise
        self._end(effect, "ok")
        return True


class _Stream:
    """A child's live output, masked line by line (one line behind, for folded secrets)."""

    def __init__(self, sink: LineSink | None) -> None:
        from tasks.runtime.secrets import LineMasker

        self.sink = sink
        self.masker = LineMasker(MASKER)

    def feed(self, line: str) -> None:
        if self.sink is not None:
            for ready in self.masker.feed(line):
                self.sink(ready)

    def close(self) -> None:
        if self.sink is not None:
            for ready in self.masker.close():
                self.sink(ready)
