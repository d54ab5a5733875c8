"""The progressive pipeline behind `inv up`: layers register a stage, `up` runs them in order.

A layer module registers its stage at import time (it is imported by the namespace anyway);
nothing here imports a heavy library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from tasks.runtime.steps import StepContext

LAYER_ORDER = ("l0", "l1", "l2", "l3", "l4")
# `inv up`'s stages: the layers, then the k3s install and the cluster orchestrator.
UP_ORDER = (*LAYER_ORDER, "k3s", "cluster")


class LayerStage(NamedTuple):
    """One layer's part in `inv up`: `run(sc)` does the layer's default job."""

    layer: str
    name: str
    run: Callable[[StepContext], None]
    summary: str


STAGES: dict[str, LayerStage] = {}


def register_stage(stage: LayerStage) -> LayerStage:
    if stage.layer not in LAYER_ORDER:
        raise ValueError(f"unknown layer {stage.layer!r}")
    STAGES[stage.layer] = stage
    return stage
