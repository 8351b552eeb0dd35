"""A method: something that predicts each individual's expression of each gene.

A method is trained by one stage (:class:`expredict.run.engine.Stage` lists it in ``methods``),
which writes its predictions as the standard frame (``gene_id, sample, split, prediction``,
:data:`expredict.run.layout.PREDICTION_SCHEMA`) with its labels through
:meth:`expredict.run.layout.RunDir.write_predictions`. Evaluation, the report and the
head-to-head tables read that frame and never name a method. A method that can predict new
individuals from its trained models also gives ``predict_new``, which ``expredict predict`` calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from expredict.run.layout import RunDir


@dataclass(frozen=True)
class NewCohort:
    """New individuals to predict: their genotypes (indexed VCF/BCF) and, optionally, a FASTA and subsets."""

    vcf: Path
    fasta: Path | None = None
    samples: list[str] | None = None
    genes: list[str] | None = None


@dataclass(frozen=True)
class Method:
    """``name``: the method's name in every table; ``summary``: one line on what it is;
    ``predict_new(run, cohort)``: a wide frame (``gene_id`` then one column per new individual)
    from the run's trained models, or None when the method cannot predict new individuals."""

    name: str
    summary: str
    predict_new: Callable[[RunDir, NewCohort], pl.DataFrame] | None = None
