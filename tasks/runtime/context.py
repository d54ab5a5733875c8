"""HomelabContext: Invoke's Context with the layered env injected and secrets masked."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from invoke import Context

from tasks.runtime.envlayers import EnvLayers
from tasks.runtime.errors import CommandFailed, RefusedError
from tasks.runtime.project import Project
from tasks.runtime.secrets import MASKER, mask
from tasks.runtime.session import session


class MaskedStream(io.TextIOBase):
    """A line-buffered writer that masks secrets before they reach the terminal.

    Whole lines are masked so a secret split across two reads of the child's pipe is still caught.
    """

    def __init__(self, target):
        self.target = target
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            complete, self._pending = self._pending.rsplit("\n", 1)
            self.target.write(MASKER.mask(complete) + "\n")
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def finish(self) -> None:
        if self._pending:
            self.target.write(MASKER.mask(self._pending))
            self._pending = ""
        self.target.flush()


class HomelabContext(Context):
    """Every `c.run` and every adapter sees the resolved env; nothing unmasked is printed."""

    _env_layers: EnvLayers | None = None

    @property
    def project(self) -> Project:
        return session().project

    def use_env(
        self, chain: str = "cluster", override: str | Path | None = None, doppler: bool = True
    ) -> EnvLayers:
        """Select the env chain for this task (`--profile`, `--host-env`); Doppler at most once."""
        layers = session().env(chain, override, doppler)
        object.__setattr__(self, "_env_layers", layers)
        return layers

    @property
    def env_layers(self) -> EnvLayers:
        if self._env_layers is None:
            return self.use_env()
        return self._env_layers

    @property
    def env(self) -> dict[str, str]:
        return self.env_layers.values

    def run(self, command: str, **kwargs: Any):  # type: ignore[override]
        if MASKER.contains_secret(command):
            # Secrets go to children through env or stdin: argv is world-readable in /proc.
            raise RefusedError(
                f"refusing to run a command with a secret in its arguments: {mask(command)}",
                hint="pass the secret through the environment or stdin",
            )
        env = {**self.env, **kwargs.pop("env", {})}
        echo = kwargs.pop("echo", self.config.run.echo)
        dry = kwargs.pop("dry", self.config.run.dry)
        if echo or dry:
            print(f"$ {mask(command)}", flush=True)
        if dry:
            # Invoke's own dry run would echo the command unmasked; answer for it here.
            from invoke.runners import Result

            return Result(command=mask(command), exited=0, hide=("stdout", "stderr"))
        hide = kwargs.get("hide", self.config.run.hide)
        streams: list[MaskedStream] = []
        if hide not in (True, "both", "out") and "out_stream" not in kwargs:
            kwargs["out_stream"] = MaskedStream(sys.stdout)
            streams.append(kwargs["out_stream"])
        if hide not in (True, "both", "err") and "err_stream" not in kwargs:
            kwargs["err_stream"] = MaskedStream(sys.stderr)
            streams.append(kwargs["err_stream"])
        warn = kwargs.pop("warn", False)
        try:
            result = super().run(command, env=env, echo=False, dry=False, warn=True, **kwargs)
        finally:
            for stream in streams:
                stream.finish()
        if result is not None and result.failed and not warn:
            tail = (result.stderr or "").strip().splitlines()[-3:]
            raise CommandFailed(mask(command), result.exited, mask(" | ".join(tail)))
        return result
