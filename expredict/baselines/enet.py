"""PrediXcan's elastic net as PredictDB builds it: one gene's model, its summary and the ``.db`` export.

The PredictDB-facing layer (PredictDB ``gtex_v7_nested_cv_elnet.R``): :func:`fit_enet_gene` takes
one gene's cis genotypes (:mod:`expredict.baselines.cis`) and prepared training targets, chooses
lambda by ``cv.glmnet``'s 10-fold CV and scores the recipe by 5 x 10 nested CV
(:mod:`expredict.baselines.enet_cv`, on the solvers of :mod:`expredict.baselines.enet_path`), and
returns the non-zero weights on the raw dosage scale (PredictDB weights carry no intercept), the
covariance of the model SNPs and the 24-column model summary (:data:`SUMMARY_COLUMNS`).
:class:`EnetCohortResult` gathers the genes of a run and writes the PredictDB ``.db`` and
covariance file. :class:`PrediXcanElasticNet` is the same lambda choice as a scikit-learn estimator.

Settings come from the run's validated :class:`expredict.config.EnetConfig` section; the seed is
the run's, and the window is the caller's (the run fits one section at two windows).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from expredict.baselines.cis import cis_features
from expredict.baselines.enet_cv import (
    _cv_summary,
    _nested_problems,
    _nested_summary,
    _r2,
    cv_enet,
    cv_enet_many,
    make_fold_ids,
    nested_fold_ids,
)
from expredict.baselines.enet_path import resolve_backend
from expredict.config import EnetConfig
from expredict.io.genotypes import GenotypeArrays

__all__ = [
    "EXTRA_SUMMARY_COLUMNS",
    "MIN_TRAIN",
    "SUMMARY_COLUMNS",
    "EnetCohortResult",
    "GeneFit",
    "PrediXcanElasticNet",
    "extra_table",
    "fit_enet_gene",
]

SUMMARY_COLUMNS: tuple[str, ...] = (
    "gene_id", "gene_name", "gene_type", "alpha", "n_snps_in_window", "n_snps_in_model",
    "lambda_min_mse", "test_R2_avg", "test_R2_sd", "cv_R2_avg", "cv_R2_sd", "in_sample_R2",
    "nested_cv_fisher_pval", "rho_avg", "rho_se", "rho_zscore", "rho_avg_squared", "zscore_pval",
    "cv_rho_avg", "cv_rho_se", "cv_rho_avg_squared", "cv_zscore_est", "cv_zscore_pval", "cv_pval_est",
)  # fmt: skip
"""PredictDB model-summary columns, in PredictDB's order."""

EXTRA_SUMMARY_COLUMNS: tuple[str, ...] = ("status", "reason", "backend", "n_train", "n_test", "test_r", "fit_seconds")
"""Columns :func:`fit_enet_gene` adds to the 24 PredictDB ones."""

MIN_TRAIN = 20
"""Fewest training individuals a gene is fitted on (and at least ``n_folds`` and 2 per outer fold)."""


class PrediXcanElasticNet(RegressorMixin, BaseEstimator):
    """PrediXcan elastic net: ``cv.glmnet`` as PredictDB calls it, lambda.min by CV MSE, refit on all rows.

    Every fit (each fold and the fit on all rows) computes glmnet's lambda path on its rows; the
    folds are predicted at the all-rows path by glmnet's interpolation, as in R's ``cv.glmnet``.

    Parameters
    ----------
    alpha : float, default=0.5
        glmnet mixing parameter (scikit-learn ``l1_ratio``).
    n_lambda : int, default=100
        Length of the lambda path (see :func:`~expredict.baselines.enet_path.lambda_path`).
    n_folds : int, default=10
        CV folds for choosing lambda.
    backend : {"auto", "numba", "glmnet", "sklearn"}, default="auto"
        Path solver; ``"auto"`` is ``"numba"`` (see :func:`~expredict.baselines.enet_path.resolve_backend`).
    random_state : int, numpy Generator or None, default=None
        Seed of the fold assignment (PredictDB ``cv_seed``).
    lambda_min_ratio : float or None, default=None
        Smallest / largest lambda; None = 0.01 when n < p else 1e-4.
    tol : float or None, default=None
        Solver tolerance (glmnet ``thresh``; scikit-learn duality-gap tolerance); None = the
        backend's default (:data:`~expredict.baselines.enet_path.DEFAULT_TOL`).
    path_stop : bool, default=True
        End each lambda path where glmnet ends its own (:data:`~expredict.baselines.enet_path.PATH_STOP`), as ``cv.glmnet`` does
        when it chooses the lambdas; False solves all ``n_lambda`` values.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Coefficients at lambda.min on the raw scale of ``X``.
    intercept_ : float
    lambda_ : float
        lambda.min.
    lambda_path_ : ndarray of shape (n_lambdas_solved,)
        The path, ended where glmnet would end it when ``path_stop``.
    cv_mse_ : ndarray of shape (n_lambda,)
        Mean fold MSE (folds weighted by size).
    fold_ids_ : ndarray of shape (n_samples,)
    cv_predictions_ : ndarray of shape (n_samples,)
        Out-of-fold predictions at lambda.min.
    backend_ : str
        The backend that ran.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        n_lambda: int = 100,
        n_folds: int = 10,
        backend: str = "auto",
        random_state: int | np.random.Generator | None = None,
        lambda_min_ratio: float | None = None,
        tol: float | None = None,
        path_stop: bool = True,
    ) -> None:
        self.alpha = alpha
        self.n_lambda = n_lambda
        self.n_folds = n_folds
        self.backend = backend
        self.random_state = random_state
        self.lambda_min_ratio = lambda_min_ratio
        self.tol = tol
        self.path_stop = path_stop

    def fit(self, X: Any, y: Any, fold_ids: Any = None) -> PrediXcanElasticNet:
        """Choose lambda by CV and refit on all rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dosages (0..2) or any numeric features.
        y : array-like of shape (n_samples,)
        fold_ids : array-like of shape (n_samples,), optional
            Fold labels; default balanced random folds from ``random_state``.
        """
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        if not 0 <= self.alpha <= 1:
            msg = f"alpha must be in [0, 1]; got {self.alpha}"
            raise ValueError(msg)
        backend = resolve_backend(self.backend)
        rng = np.random.default_rng(self.random_state)
        folds = make_fold_ids(len(y), self.n_folds, rng) if fold_ids is None else np.asarray(fold_ids)
        if folds.shape != (len(y),):
            msg = f"fold_ids must have shape ({len(y)},); got {folds.shape}"
            raise ValueError(msg)
        cv = cv_enet(X, y, fold_ids=folds, alpha=self.alpha, n_lambda=self.n_lambda,
                     lambda_min_ratio=self.lambda_min_ratio, backend=backend, tol=self.tol,
                     path_stop=self.path_stop)  # fmt: skip
        self.coef_ = cv.coef
        self.intercept_ = cv.intercept
        self.lambda_ = cv.lambda_min
        self.lambda_path_ = cv.lambdas
        self.cv_mse_ = cv.cv_mse
        self.fold_ids_ = cv.fold_ids
        self.cv_predictions_ = cv.oof_pred
        self.backend_ = backend
        self.cv_result_ = cv
        return self

    def predict(self, X: Any) -> NDArray[np.float64]:
        """Predicted targets ``X @ coef_ + intercept_``, shape (n_samples,)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X @ self.coef_ + self.intercept_


@dataclass
class GeneFit:
    """Result of :func:`fit_enet_gene`.

    ``reason`` is ``""`` for a fitted gene, otherwise why no model exists ("no variants in
    window", "no variants pass filters", "constant expression", ...). ``summary`` holds the 24
    PredictDB columns plus :data:`EXTRA_SUMMARY_COLUMNS`; ``weights`` the non-zero weights
    (``rsid, gene, weight, ref_allele, eff_allele, varID``); ``covariance`` the training-sample
    covariance of the model variants (``GENE, RSID1, RSID2, VALUE``, upper triangle with diagonal);
    ``test_pred`` predictions for ``test_idx`` (intercept included; NaN when no model).
    """

    gene_id: str
    reason: str
    summary: dict[str, Any]
    weights: pl.DataFrame
    covariance: pl.DataFrame
    test_pred: NDArray[np.float64]
    intercept: float = 0.0


_WEIGHT_SCHEMA = {"rsid": pl.Utf8, "gene": pl.Utf8, "weight": pl.Float64, "ref_allele": pl.Utf8,
                  "eff_allele": pl.Utf8, "varID": pl.Utf8}  # fmt: skip
_COV_SCHEMA = {"GENE": pl.Utf8, "RSID1": pl.Utf8, "RSID2": pl.Utf8, "VALUE": pl.Float64}


def _gene_seed(seed: int, gene_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, gene id): results do not depend on scheduling."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(gene_id.encode())]))


def fit_enet_gene(
    gene_id: str,
    genotypes: GenotypeArrays,
    y_train: NDArray[np.floating],
    train_idx: NDArray[np.int64],
    test_idx: NDArray[np.int64],
    *,
    config: EnetConfig,
    seed: int,
    y_test: NDArray[np.floating] | None = None,
    gene_name: str = "",
    gene_type: str = "",
    build: str = "b37",
) -> GeneFit:
    """Fit one gene: features, final CV model, nested CV, weights, covariance, test predictions.

    Parameters
    ----------
    gene_id : str
    genotypes : GenotypeArrays
        The gene's cis window (:func:`expredict.baselines.cis.cis_window`, read or sliced with
        :func:`~expredict.baselines.cis.slice_genotypes`), all samples.
    y_train : ndarray of shape (len(train_idx),)
        Prepared targets of the training rows (``expredict.targets.TargetNormalizer``).
    train_idx, test_idx : ndarray of int
        Rows of ``genotypes.samples`` used for training and held out.
    config : expredict.config.EnetConfig
        The run's ``enet`` section (its window is not read here: ``genotypes`` is already the window).
    seed : int
        The run's seed (PredictDB ``cv_seed``); with the gene id it fixes the gene's folds.
    y_test : ndarray of shape (len(test_idx),), optional
        Observed held-out targets; fills ``test_r``.
    gene_name, gene_type : str, optional
        Written to the summary (``gene_name`` defaults to ``gene_id``).
    build : str, default "b37"
        PredictDB variant-key build, ``b37`` or ``b38`` (:func:`expredict.baselines.cis.variant_key`).
    """
    t0 = time.perf_counter()
    backend = resolve_backend(config.backend)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    test_idx = np.asarray(test_idx, dtype=np.int64)
    y = np.asarray(y_train, dtype=np.float64)
    rng = _gene_seed(seed, gene_id)
    summary: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS, None)
    summary.update(gene_id=gene_id, gene_name=gene_name or gene_id, gene_type=gene_type, alpha=config.alpha,
                   n_snps_in_model=0, status="skipped", reason="", backend=backend, n_train=len(train_idx),
                   n_test=len(test_idx), test_r=None)  # fmt: skip
    empty_w = pl.DataFrame(schema=_WEIGHT_SCHEMA)
    empty_c = pl.DataFrame(schema=_COV_SCHEMA)
    nan_pred = np.full(len(test_idx), np.nan)

    def skipped(reason: str, n_window: int) -> GeneFit:
        summary.update(reason=reason, n_snps_in_window=n_window, fit_seconds=time.perf_counter() - t0)
        return GeneFit(gene_id, reason, summary, empty_w, empty_c, nan_pred)

    if len(y) != len(train_idx):
        msg = f"fit_enet_gene({gene_id}): y_train has {len(y)} values for {len(train_idx)} training rows"
        raise ValueError(msg)
    feats = cis_features(genotypes, train_idx, maf_min=config.maf, drop_ambiguous=config.drop_ambiguous, build=build)
    if feats.n_in_window == 0:
        return skipped("no variants in window", 0)
    summary["n_snps_in_window"] = feats.dosages.shape[1]
    if feats.dosages.shape[1] == 0:
        return skipped("no variants pass filters", feats.n_in_window)
    if not np.all(np.isfinite(y)) or np.std(y) <= 1e-12 * max(1.0, float(np.abs(y).max())):
        return skipped("constant expression" if np.all(np.isfinite(y)) else "non-finite expression",
                       feats.dosages.shape[1])  # fmt: skip
    if len(y) < max(MIN_TRAIN, config.n_folds, config.n_outer_folds * 2):
        return skipped(f"too few training individuals ({len(y)})", feats.dosages.shape[1])
    X = feats.dosages[train_idx]
    problems: list[tuple] = []
    if config.nested_cv:
        outer, inners = nested_fold_ids(len(y), config.n_outer_folds, config.n_folds, rng)
        problems = _nested_problems(outer, inners)
    folds = make_fold_ids(len(y), config.n_folds, rng)
    problems.append((np.arange(len(y)), folds))
    try:  # every CV of the gene at once: the numba backend solves them in one lockstep pass
        cvs = cv_enet_many(X, y, problems, alpha=config.alpha, n_lambda=config.n_lambda, backend=backend,
                           path_stop=config.path_stop)  # fmt: skip
    except (RuntimeError, ValueError) as e:
        return skipped(f"solver failed: {e}", feats.dosages.shape[1])
    cv = cvs[-1]
    if cv is None:
        return skipped("solver failed: no convergence", feats.dosages.shape[1])
    if config.nested_cv:
        summary.update(_nested_summary(X, y, outer, cvs[:-1], rng))
    summary.update(_cv_summary(cv, y, rng))
    summary.update(n_snps_in_model=cv.n_nonzero, lambda_min_mse=cv.lambda_min,
                   in_sample_R2=_r2(y, X @ cv.coef + cv.intercept), status="ok")  # fmt: skip
    test_pred = feats.dosages[test_idx] @ cv.coef + cv.intercept
    if y_test is not None and len(test_idx) > 2:
        yt = np.asarray(y_test, dtype=np.float64)
        ok = np.ptp(test_pred) > 0 and np.ptp(yt) > 0
        summary["test_r"] = float(np.corrcoef(test_pred, yt)[0, 1]) if ok else 0.0
    nz = np.flatnonzero(cv.coef)
    weights = pl.DataFrame(
        {"rsid": [feats.rsid[j] for j in nz], "gene": [gene_id] * len(nz), "weight": cv.coef[nz],
         "ref_allele": [feats.ref[j] for j in nz], "eff_allele": [feats.alt[j] for j in nz],
         "varID": [feats.var_id[j] for j in nz]},
        schema=_WEIGHT_SCHEMA,
    )  # fmt: skip
    cov = empty_c
    if len(nz):
        C = np.atleast_2d(np.cov(X[:, nz], rowvar=False, ddof=1))
        iu, ju = np.triu_indices(len(nz))
        cov = pl.DataFrame({"GENE": [gene_id] * len(iu), "RSID1": [feats.rsid[nz[i]] for i in iu],
                            "RSID2": [feats.rsid[nz[j]] for j in ju], "VALUE": C[iu, ju]}, schema=_COV_SCHEMA)  # fmt: skip
    summary["fit_seconds"] = time.perf_counter() - t0
    return GeneFit(gene_id, "", summary, weights, cov, test_pred, cv.intercept)


# --------------------------------------------------------------------------------------------
# cohort


@dataclass
class EnetCohortResult:
    """All genes of one run, and their PredictDB export.

    ``summary``: one row per gene, :data:`SUMMARY_COLUMNS` + :data:`EXTRA_SUMMARY_COLUMNS`;
    ``weights``: PredictDB weights of every modelled gene; ``covariances``: ``GENE RSID1 RSID2
    VALUE`` rows; ``test_predictions``: ``gene_id`` + one column per test sample (NaN when no
    model); ``config``: the ``enet`` section used; ``seed``: the run's seed (PredictDB ``cv_seed``);
    ``contig``: written as the ``construction`` table's ``chromosome``; ``n_train``: as
    ``sample_info``'s ``n_samples``. :meth:`from_fits` builds one from :class:`GeneFit` results.
    """

    summary: pl.DataFrame
    weights: pl.DataFrame
    covariances: pl.DataFrame
    test_predictions: pl.DataFrame
    config: EnetConfig
    seed: int
    contig: str = ""
    n_train: int = 0
    test_samples: list[str] = field(default_factory=list)

    @classmethod
    def from_fits(
        cls,
        fits: Sequence[GeneFit],
        *,
        config: EnetConfig,
        seed: int,
        contig: str = "",
        n_train: int | None = None,
        test_samples: Sequence[str] = (),
    ) -> EnetCohortResult:
        """Gather :func:`fit_enet_gene` results, in the order given.

        ``test_samples`` names the columns of ``test_predictions`` (each fit's ``test_pred`` must
        have one value per test sample); ``n_train`` defaults to the largest ``n_train`` of the
        fits' summaries (0 without fits).
        """
        test_samples = list(test_samples)
        cols = SUMMARY_COLUMNS + EXTRA_SUMMARY_COLUMNS
        summary = pl.DataFrame(
            [{c: f.summary.get(c) for c in cols} for f in fits], schema=_summary_schema(), orient="row"
        )
        weights = pl.concat([f.weights for f in fits]) if fits else pl.DataFrame(schema=_WEIGHT_SCHEMA)
        covs = pl.concat([f.covariance for f in fits]) if fits else pl.DataFrame(schema=_COV_SCHEMA)
        pred = np.array([f.test_pred for f in fits]).reshape(len(fits), len(test_samples))
        test_pred = pl.DataFrame({"gene_id": [f.gene_id for f in fits]}).hstack(
            pl.DataFrame(pred, schema=test_samples, orient="row")
        )
        if n_train is None:
            n_train = max((int(f.summary.get("n_train") or 0) for f in fits), default=0)
        return cls(summary, weights, covs, test_pred, config, seed, contig, n_train, test_samples)

    def to_predictdb(
        self,
        db_path: str,
        covariance_path: str | None = None,
        *,
        population: str = "",
        release_filter: bool = False,
    ) -> None:
        """Write the PredictDB ``.db`` (and the gzip covariance file) of the modelled genes.

        ``release_filter`` keeps only ``zscore_pval < 0.05 and rho_avg > 0.1`` genes (PredictDB
        ``filter_db.R``; for TWAS export only, never to choose evaluated genes).
        """
        from expredict.io.predictdb import write_covariances, write_predictdb

        summ = self.summary.filter(pl.col("n_snps_in_model") > 0)
        if release_filter:
            summ = summ.filter((pl.col("zscore_pval") < 0.05) & (pl.col("rho_avg") > 0.1))
        genes = summ["gene_id"].to_list()
        w = self.weights.filter(pl.col("gene").is_in(genes))
        write_predictdb(
            db_path, w, extra_table(summ), model_summary=summ.select(SUMMARY_COLUMNS),
            construction={"chromosome": self.contig, "cv_seed": self.seed},
            sample_info={"n_samples": self.n_train, "population": population},
        )  # fmt: skip
        if covariance_path is not None:
            write_covariances(covariance_path, self.covariances.filter(pl.col("GENE").is_in(genes)))


def extra_table(summary: pl.DataFrame) -> pl.DataFrame:
    """PredictDB ``extra`` rows from a model summary (``pred.perf.qval`` left NULL, as PredictDB)."""
    return summary.select(
        pl.col("gene_id").alias("gene"),
        pl.col("gene_name").alias("genename"),
        pl.col("n_snps_in_model").cast(pl.Int64).alias("n.snps.in.model"),
        pl.col("rho_avg_squared").cast(pl.Float64).alias("pred.perf.R2"),
        pl.col("zscore_pval").cast(pl.Float64).alias("pred.perf.pval"),
        pl.lit(None, dtype=pl.Float64).alias("pred.perf.qval"),
    )


def _summary_schema() -> dict[str, pl.DataType]:
    text = {"gene_id", "gene_name", "gene_type", "status", "reason", "backend"}
    ints = {"n_snps_in_window", "n_snps_in_model", "n_train", "n_test"}
    return {c: (pl.Utf8 if c in text else pl.Int64 if c in ints else pl.Float64)
            for c in SUMMARY_COLUMNS + EXTRA_SUMMARY_COLUMNS}  # fmt: skip
