"""Run traces under `.work/traces/`: what ran, with which env layers, and how each step ended."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.runtime.files import atomic_write_json
from tasks.runtime.secrets import mask, mask_data


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def masked_argv() -> list[str]:
    return [mask(a) for a in sys.argv]


@dataclass
class Trace:
    task: str
    work: Path
    env_layers: list[str]
    mode: str | None = None
    started: str = field(default_factory=utc_now)
    steps: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def step(self, record: dict[str, Any]) -> None:
        self.steps.append(mask_data(record))

    def write(self, outcome: str) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.work / "traces" / f"{self.task.replace('.', '-')}-{stamp}-{os.getpid()}.json"
        atomic_write_json(
            path,
            {
                "task": self.task,
                "mode": self.mode,
                "argv": masked_argv(),
                "env_layers": self.env_layers,
                "started": self.started,
                "ended": utc_now(),
                "outcome": outcome,
                "steps": self.steps,
                **mask_data(self.extra),
            },
        )
        return path
