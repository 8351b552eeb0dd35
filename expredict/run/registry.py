"""The run's stages in order, and the methods they train. Adding a method is one line in ``STAGES``."""

from __future__ import annotations

from expredict.run.engine import Stage
from expredict.run.method import Method
from expredict.run.stages import (
    embed,
    enet,
    enformer,
    ensemble,
    evaluate,
    haplotypes,
    head,
    prepare,
    pretraining_control,
    report,
)

STAGES: tuple[Stage, ...] = (
    prepare.STAGE,
    haplotypes.STAGE,
    embed.STAGE,
    head.STAGE,
    pretraining_control.STAGE,
    enet.STAGE,
    enformer.STAGE,
    ensemble.STAGE,
    evaluate.STAGE,
    report.STAGE,
)

METHODS: dict[str, Method] = {m.name: m for s in STAGES for m in s.methods}
"""Every method, in report order, by name."""


def stage_names() -> list[str]:
    return [s.name for s in STAGES]
