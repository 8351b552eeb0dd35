"""Prediction for new individuals from a finished run's trained models, by any method that supports it.

The method's ``predict_new`` builds what it needs from the new genotypes with the run's exact
settings (for the sequence head: the same haplotype windows, the same embedding model and cache)
and returns predictions in the run's target units (per-gene z-scores of the normalised expression
of the training individuals).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from expredict.errors import InputFileError

_log = logging.getLogger(__name__)


def predict_cohort(
    models: str | os.PathLike[str],
    vcf: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: str = "nt_head",
    fasta: str | os.PathLike[str] | None = None,
    samples: list[str] | None = None,
    genes: list[str] | None = None,
) -> Path:
    """Predict a gene x individual matrix for the individuals of ``vcf``.

    Parameters
    ----------
    models : path
        Output folder of a run whose stage training ``method`` finished.
    vcf : path
        Indexed VCF/BCF of the individuals to predict (any individuals, seen in training or not).
    out : path
        Output prefix: writes ``OUT.parquet`` and ``OUT.tsv`` (``gene_id`` then one column per
        individual), each atomically.
    method : str
        A method of the run that can predict new individuals (default ``nt_head``).
    fasta : path, optional
        Reference FASTA; default the run's.
    samples, genes : list of str, optional
        Restrict to these individuals / genes.

    Returns
    -------
    Path
        The parquet file.
    """
    from expredict.atomic import atomic_write_parquet, atomic_write_text
    from expredict.run.layout import RunDir
    from expredict.run.method import NewCohort
    from expredict.run.registry import METHODS

    run = RunDir(models)
    run.require("config.yaml", "genes.parquet", hint="run `expredict run CONFIG` first")
    able = [m for m, spec in METHODS.items() if spec.predict_new is not None]
    if method not in able:
        msg = f"--method {method}: cannot predict new individuals; choose one of {', '.join(able)}"
        raise InputFileError(msg)
    if not run.predictions_file(method).exists():
        msg = f"{run.root}: method {method} has not been trained in this run; run its stage first"
        raise InputFileError(msg)
    matrix = METHODS[method].predict_new(run, NewCohort(Path(vcf), Path(fasta) if fasta else None, samples, genes))
    prefix = Path(out)
    pq = prefix.with_name(prefix.name + ".parquet")
    tsv = prefix.with_name(prefix.name + ".tsv")
    atomic_write_parquet(matrix, pq)
    atomic_write_text(tsv, matrix.write_csv(separator="\t"))
    if run.read_labels(method).random_weights:
        _log.warning(f"NOTE: {method} has RANDOM WEIGHTS in this run: these predictions are a plumbing check")
    _log.info(f"{method}: {matrix.height} genes x {matrix.width - 1} individuals -> {pq} and {tsv}")
    return pq
