"""An optional positional argument for Invoke tasks (`inv app.mode` lists, `inv app.mode NAME` sets).

Invoke treats every positional argument as required: its parser eats the next token for a missing
positional and errors at the end of the task's context when one is still missing. This argument
reports itself missing while tokens are being parsed (so `inv app.mode NAME` fills it) and present
when the context is completed (so a bare `inv app.mode` is accepted and the task gets "").
"""

from __future__ import annotations

import sys
from typing import Any

from invoke import Argument, Task


class OptionalPositional(Argument):
    @property
    def value(self) -> Any:
        value = self._value if self._value is not None else self.default
        if value is None:
            frame: Any = sys._getframe(1)
            for _ in range(
                6
            ):  # value <- comprehension <- missing_positional_args <- complete_context
                if frame is None:
                    break
                if frame.f_code.co_name == "complete_context":
                    return ""
                frame = frame.f_back
        return value

    @value.setter
    def value(self, arg: Any) -> None:
        self.set_value(arg, cast=True)


class OptionalPositionalTask(Task):
    """A Task whose positional arguments may be omitted."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        args = super().get_arguments(ignore_unknown_help)
        for arg in args:
            if arg.positional:
                arg.__class__ = OptionalPositional
        return args
