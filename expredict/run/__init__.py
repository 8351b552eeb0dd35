"""The run: stages as records (:mod:`.engine`), the run folder (:mod:`.layout`), methods (:mod:`.method`).

``run_pipeline(config)`` runs or resumes every enabled stage of :data:`.registry.STAGES` and
returns the report's path. See ``docs/architecture.md`` for the data flow and how to add a method.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from expredict.config import Config
from expredict.run.engine import RunContext, Stage, run_stages
from expredict.run.layout import PREDICTION_SCHEMA, MethodLabels, RunDir
from expredict.run.method import Method, NewCohort

__all__ = ["PREDICTION_SCHEMA", "Method", "MethodLabels", "NewCohort", "RunContext", "RunDir", "Stage", "run_pipeline"]


def run_pipeline(
    config: Config,
    stages: Sequence[str] | None = None,
    *,
    chunk: str | None = None,
    scheduler_address: str | None = None,
) -> Path:
    """Run (or resume) the pipeline; return the path of the HTML report (or of the run folder without one).

    Every log record of the package goes to the console and to ``OUT/logs/run.log``.
    """
    from expredict.logs import configure_logging
    from expredict.run.registry import STAGES

    out = RunDir(config.out_dir)
    configure_logging(log_file=out.log_file)
    run_stages(STAGES, config, stages, chunk=chunk, scheduler_address=scheduler_address)
    return out.report_file if out.report_file.exists() else out.root
