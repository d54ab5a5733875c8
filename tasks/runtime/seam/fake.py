"""A recording fake of the seam for unit tests: it answers only the calls a test scripted.

    fake = ScriptedEffects()
    fake.expect_command(["git", "-C", "/repo", "status"], stdout=" M x\n")
    ...code under test, given `fake` as its effects...
    fake.assert_done()

Any call no expectation matches raises AssertionError (a test that forgets a call fails instead
of passing silently); `assert_done()` fails when a scripted call never came. Dry-run behaviour is
the real seam's: scripted mutations are withheld and recorded as skipped when `dry_run=True`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.runtime.seam import CommandResult, Effects, _quote


class Expected:
    __slots__ = ("kind", "key", "answer", "mutates", "seen")

    def __init__(self, kind: str, key: Any, answer: Any, mutates: bool | None) -> None:
        self.kind = kind
        self.key = key
        self.answer = answer
        self.mutates = mutates
        self.seen = 0


class ScriptedEffects(Effects):
    def __init__(self, *, dry_run: bool = False, env: Mapping[str, str] | None = None) -> None:
        super().__init__(
            dry_run=dry_run,
            child_env=lambda: dict(env or {}),
            work=Path("/nonexistent-work"),
            say=self.said_line,
        )
        self.expected: list[Expected] = []
        self.calls: list[tuple[str, Any, bool]] = []
        self.said: list[str] = []

    def said_line(self, message: str) -> None:
        self.said.append(message)

    # ------------------------------------------------------------------ scripting

    def expect_command(
        self,
        argv: Sequence[str],
        *,
        stdout: str = "",
        stderr: str = "",
        exited: int = 0,
        mutates: bool | None = None,
        times: int = 1,
    ) -> None:
        for _ in range(times):
            self.expected.append(Expected("command", list(argv), (exited, stdout, stderr), mutates))

    def expect_pve(self, method: str, path: str, answer: Any = None, *, times: int = 1) -> None:
        for _ in range(times):
            self.expected.append(Expected("pve", (method, path), answer, method != "GET"))

    def _take(self, kind: str, key: Any, mutates: bool) -> Expected:
        self.calls.append((kind, key, mutates))
        for item in self.expected:
            if item.kind == kind and item.key == key and not item.seen:
                if item.mutates is not None and item.mutates != mutates:
                    raise AssertionError(
                        f"{kind} {key!r}: called with mutates={mutates}, "
                        f"scripted mutates={item.mutates}"
                    )
                item.seen = 1
                return item
        raise AssertionError(f"unexpected {kind} call: {key!r} (mutates={mutates})")

    def assert_done(self) -> None:
        left = [f"{i.kind} {i.key!r}" for i in self.expected if not i.seen]
        assert not left, "scripted calls that never came: " + "; ".join(left)

    # ------------------------------------------------------------------ the seam's calls

    def command(self, argv: Sequence[str], *, mutates: bool, check: bool = True, **_: Any):
        item = self._take("command", list(argv), mutates)
        effect = self._begin("command", _quote(argv), mutates, f"run: {_quote(argv)}")
        if effect is None:
            return CommandResult(_quote(argv), 0, "", "")
        exited, stdout, stderr = item.answer
        self._end(effect, "ok" if exited == 0 else "failed", f"exit {exited}")
        result = CommandResult(_quote(argv), exited, stdout, stderr)
        if check and result.failed:
            from tasks.runtime.errors import CommandFailed

            raise CommandFailed(result.command, exited, result.tail())
        return result

    def pve(self, transport: Any, method: str, path: str, params: dict[str, Any]) -> Any:
        item = self._take("pve", (method, path), method != "GET")
        effect = self._begin("pve", f"{method} {path}", method != "GET", f"{method} {path}")
        if effect is None:
            return None
        self._end(effect, "ok")
        if isinstance(item.answer, Exception):
            raise item.answer
        return item.answer(params) if callable(item.answer) else item.answer

    def http(self, method: str, url: str, **_: Any):
        raise AssertionError(f"unexpected http call: {method} {url}")

    def ssh_connect(self, target: Any, settings: Any):
        raise AssertionError(f"unexpected ssh connection to {target}")

    def write_file(self, path: Path, data: str | bytes, **_: Any) -> bool:
        raise AssertionError(f"unexpected file write: {path}")

    def remove(self, path: Path, **_: Any) -> bool:
        raise AssertionError(f"unexpected removal: {path}")
