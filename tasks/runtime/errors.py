"""Operator-facing failures: one clear sentence, a hint, an exit code, never a traceback."""

from __future__ import annotations


class HomelabError(Exception):
    """A failure the operator can act on. The executor prints it masked and exits non-zero."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.exit_code = code

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(HomelabError):
    """Bad or missing configuration: an env file, a spec, an inventory file, a variable."""

    exit_code = 2


class RefusedError(HomelabError):
    """The runner declined to act: no confirmation, a held lock, a dirty tree, an unsafe target."""

    exit_code = 3


class ExternalError(HomelabError):
    """Something outside the runner failed: Doppler, Proxmox, a host, a command."""

    exit_code = 4


class CommandFailed(ExternalError):
    """An external command exited non-zero."""

    def __init__(self, command: str, exited: int, detail: str = "", hint: str | None = None):
        message = f"command failed (exit {exited}): {command}"
        if detail:
            message += f"\n  {detail}"
        super().__init__(message, hint=hint)
        self.exited = exited
