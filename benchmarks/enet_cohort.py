"""Elastic net on every gene of one contig held in memory: the benchmarks' gene fan-out.

Why here and not in the package: the run engine fans genes out through ``expredict.executor`` (each
task reads its own cis window from the VCF); the benchmarks instead parse a contig once and ship
each gene's genotype slice to a process pool, which is what they time. Built on the library's
:func:`expredict.baselines.enet.fit_enet_gene`; targets are prepared with the pipeline's
:class:`expredict.targets.TargetNormalizer` (training individuals only, population s.d.).

    from enet_cohort import fit_enet_genes      # with benchmarks/ on sys.path, as the scripts run
    res = fit_enet_genes(geno, genes, expr, train, test, covariates=cov, config=EnetConfig(), seed=1)
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl
from numpy.typing import NDArray

from expredict.baselines.cis import cis_window, slice_genotypes
from expredict.baselines.enet import EnetCohortResult, GeneFit, fit_enet_gene
from expredict.baselines.enet_path import resolve_backend
from expredict.config import EnetConfig
from expredict.io.genotypes import GenotypeArrays
from expredict.targets import TargetNormalizer

__all__ = ["fit_enet_genes"]


def _run_gene_task(task: tuple) -> GeneFit:
    """Process-pool entry point: ``(geno, y_train, y_test, train_idx, test_idx, cfg, seed, name, type, gene_id)``."""
    from threadpoolctl import threadpool_limits

    geno, y_train, y_test, train_idx, test_idx, cfg, seed, gene_name, gene_type, gene_id = task
    with threadpool_limits(1):
        return fit_enet_gene(gene_id, geno, y_train, train_idx, test_idx, config=cfg, seed=seed, y_test=y_test,
                             gene_name=gene_name, gene_type=gene_type)  # fmt: skip


def _map(
    executor: Any, n_jobs: int, fn: Callable[[tuple], GeneFit], tasks: Iterable[tuple]
) -> Iterable[GeneFit] | None:
    if executor is not None:
        if hasattr(executor, "map_unordered"):  # expredict.executor.Executor
            return executor.map_unordered(fn, tasks)
        return executor.map(fn, tasks)
    if n_jobs <= 1:
        return map(fn, tasks)
    return None  # caller makes a pool


def _wide(frame: pl.DataFrame | NDArray, samples: Sequence[str], what: str, key: str | None) -> tuple[list, NDArray]:
    """(row keys, float64[rows, len(samples)]) from a wide polars frame with one column per sample."""
    if all(hasattr(frame, a) for a in ("gene_ids", "samples", "values")):  # expredict.io.expression.Expression
        pos = {s: i for i, s in enumerate(frame.samples)}
        missing = [s for s in samples if s not in pos]
        if missing:
            msg = f"{what}: {len(missing)} sample(s) missing, e.g. {missing[:5]}"
            raise ValueError(msg)
        return list(frame.gene_ids), np.asarray(frame.values, dtype=np.float64)[:, [pos[s] for s in samples]]
    if isinstance(frame, pl.DataFrame):
        missing = [s for s in samples if s not in frame.columns]
        if missing:
            msg = f"{what}: {len(missing)} sample(s) have no column, e.g. {missing[:5]}"
            raise ValueError(msg)
        keys = frame[key].to_list() if key is not None and key in frame.columns else list(range(frame.height))
        return keys, frame.select(list(samples)).to_numpy().astype(np.float64)
    arr = np.asarray(frame, dtype=np.float64)
    return list(range(arr.shape[0])), arr


def fit_enet_genes(
    genotypes: GenotypeArrays,
    genes_table: pl.DataFrame,
    expression: pl.DataFrame | Any,
    train_samples: Sequence[str],
    test_samples: Sequence[str],
    *,
    covariates: pl.DataFrame | NDArray[np.floating] | None = None,
    config: EnetConfig | None = None,
    seed: int = 0,
    window: int | None = None,
    anchor: Literal["gene", "tss"] = "gene",
    n_jobs: int = 1,
    executor: Any = None,
    prepare: bool = True,
) -> EnetCohortResult:
    """Fit the elastic net for every gene of ``genes_table`` on one contig's genotypes.

    Parameters
    ----------
    genotypes : GenotypeArrays
        One contig, parsed once (``read_genotypes``); must contain every train/test sample.
    genes_table : polars.DataFrame
        ``gene_id, contig, tss, strand`` (0-based TSS), optional ``start``/``end`` (0-based
        half-open gene body), ``gene_name``, ``gene_type``. Rows on other contigs are ignored.
    expression : polars.DataFrame or Expression
        ``gene_id`` + one column per sample, or an ``expredict.io.expression.Expression``
        (``gene_ids``, ``samples``, ``values[gene, sample]``); already normalised (e.g. log2(x + 1)).
    train_samples, test_samples : sequence of str
        The shared individual split.
    covariates : polars.DataFrame or ndarray, optional
        Wide frame, one row per covariate and one column per sample (QTLtools layout), or an array
        ``(n_train + n_test, k)`` in ``train_samples + test_samples`` order. Regressed out with
        training rows only.
    config : expredict.config.EnetConfig, optional
        Filters and solver (default: the config's defaults).
    seed : int, default=0
        The run's seed (PredictDB ``cv_seed``).
    window, anchor
        Cis window half-width (default ``config.window``) and its anchor (``"gene"``: gene start
        and end; ``"tss"``: the TSS, as a sequence model's window).
    n_jobs : int, default=1
        Processes when no ``executor`` is given (1 = in-process). Each fit is single-threaded.
    executor : object, optional
        An ``expredict.executor`` executor (``map_unordered``) or anything with
        ``map(fn, iterable)`` (``concurrent.futures.Executor``). Tasks carry the gene's genotype slice.
    prepare : bool, default=True
        Regress the covariates out and z-score each gene, with
        :class:`~expredict.targets.TargetNormalizer` fitted on the training individuals only;
        False uses ``expression`` as given.
    """
    cfg = config if config is not None else EnetConfig()
    window = cfg.window if window is None else window
    resolve_backend(cfg.backend)
    train_samples, test_samples = list(train_samples), list(test_samples)
    both = train_samples + test_samples
    if len(set(both)) != len(both):
        msg = "fit_enet_genes: train and test samples overlap or repeat"
        raise ValueError(msg)
    geno = genotypes if genotypes.samples == both else genotypes.subset_samples(both)
    train_idx = np.arange(len(train_samples), dtype=np.int64)
    test_idx = np.arange(len(train_samples), len(both), dtype=np.int64)
    genes = genes_table.filter(pl.col("contig") == genotypes.contig) if "contig" in genes_table.columns else genes_table
    expr_keys, E = _wide(expression, both, "expression", "gene_id")
    row_of = {str(k): i for i, k in enumerate(expr_keys)}
    gene_ids = [str(g) for g in genes["gene_id"].to_list()]
    absent = [g for g in gene_ids if g not in row_of]
    if absent:
        msg = f"fit_enet_genes: {len(absent)} gene(s) of genes_table have no expression row, e.g. {absent[:5]}"
        raise ValueError(msg)
    Y = E[[row_of[g] for g in gene_ids]].T  # (n_samples, n_genes)
    if prepare:
        C = None
        if covariates is not None:
            C = _wide(covariates, both, "covariates", None)[1].T if isinstance(covariates, pl.DataFrame) else None
            C = np.asarray(covariates, dtype=np.float64) if C is None else C
        if len(gene_ids):
            norm = TargetNormalizer().fit(Y[train_idx], None if C is None else C[train_idx])
            Y = norm.transform(Y, C)
    tss = genes["tss"].to_list()
    starts = genes["start"].to_list() if "start" in genes.columns else [None] * len(tss)
    ends = genes["end"].to_list() if "end" in genes.columns else [None] * len(tss)
    names = genes["gene_name"].to_list() if "gene_name" in genes.columns else [""] * len(tss)
    types = genes["gene_type"].to_list() if "gene_type" in genes.columns else [""] * len(tss)

    def tasks() -> Iterable[tuple]:
        for j, gid in enumerate(gene_ids):
            lo, hi = cis_window(int(tss[j]), start=starts[j], end=ends[j], window=window, anchor=anchor)
            sl = slice_genotypes(geno, lo, hi)
            yield (sl, Y[train_idx, j], Y[test_idx, j], train_idx, test_idx, cfg, seed, names[j] or "",
                   types[j] or "", gid)  # fmt: skip

    it = _map(executor, n_jobs, _run_gene_task, tasks())
    if it is None:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            fits = list(pool.map(_run_gene_task, tasks(), chunksize=1))
    else:
        fits = list(it)
    by_id = {f.gene_id: f for f in fits}
    return EnetCohortResult.from_fits(
        [by_id[g] for g in gene_ids], config=cfg, seed=seed, contig=genotypes.contig, n_train=len(train_idx),
        test_samples=test_samples,
    )  # fmt: skip
