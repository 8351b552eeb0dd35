"""PrediXcan/PredictDB-faithful elastic net on cis genotype dosages.

Recipe (science.md §2.1; PredictDB ``gtex_v7_nested_cv_elnet.R``):

- **Features**: ALT dosages (0..2, ``float64[n_sample, n_var]``) of bi-allelic variants whose
  0-based start lies in the cis window; default ``[gene_start - 1 Mb, gene_end + 1 Mb)`` (0-based
  half-open; the gene body is ``[tss, tss + 1)`` when only a TSS is known) or ``[tss - w, tss + w)``
  to match a sequence model's window. MAF >= 0.01 on training individuals, optional removal of
  strand-ambiguous A/T, C/G SNPs.
- **Objective** (glmnet, gaussian, ``alpha = 0.5``), on predictors standardised with the
  population s.d. of the fitting rows::

      (1 / 2n) * ||y - b0 - X b||^2 + lambda * ((1 - alpha) / 2 * ||b||_2^2 + alpha * ||b||_1)

  glmnet also scales ``y`` by its population s.d. ``s_y`` internally (solving with ``lambda / s_y``
  and multiplying the coefficients back), which the scikit-learn backend reproduces so both
  backends solve the same problem.
- **lambda paths** (ours, glmnet's formula): ``lambda_max = max_j |x_j' (y - mean y)| / (n * alpha)``
  over standardised ``x_j``; ``n_lambda`` values log-spaced down to ``ratio * lambda_max`` with
  ``ratio = 0.01`` when ``n < p`` else ``1e-4``. As in R's ``cv.glmnet`` called without a
  ``lambda`` (PredictDB's call), every fit computes its own: the fit on all rows and each fold on
  its training rows. Each ends where glmnet ends a path it computes (``dev.ratio`` above 0.999 or
  gaining less than 1e-5 of itself, after 5 values: :data:`PATH_STOP`), and each fold is
  predicted at the all-rows path by glmnet's linear interpolation in lambda (``lambda.interp``,
  clamped at the fold path's ends). ``tests/unit/test_enet_r_glmnet.py`` checks all of it against
  R's glmnet.
- **Folds** (ours, PredictDB ``generate_fold_ids``): balanced ids ``0..k-1`` in random order.
- **lambda.min**: argmin over the path of the mean CV MSE, folds weighted by their size (as
  ``cv.glmnet``); ties go to the larger lambda. Refit on all rows; coefficients on the raw dosage
  scale, intercept ``b0`` separate (PredictDB weights carry no intercept).
- **Nested CV** (5 outer x 10 inner) and the final model's CV give the 24-column model summary
  (:data:`SUMMARY_COLUMNS`). ``R2`` is PredictDB's ``1 - RSS / sum(y^2)`` on scaled targets.

Backends, all given the same paths and folds: ``"numba"`` (glmnet's coordinate descent, covariance
updates, sequential strong rules and KKT checks, in numba; a gene's 66 nested-CV fits run in lockstep
so one BLAS product checks all of them at once: :mod:`expredict.baselines.enet_cd`), ``"glmnet"``
(python-glmnet, the glmnet Fortran core, through ``glmnet.ElasticNet(lambda_path=..., n_splits=0)``)
and ``"sklearn"`` (``enet_path`` inside a glmnet-style strong-rule working set with a KKT check on
every feature). ``"auto"`` is ``"numba"``: the same lambda.min as glmnet on 24/24 demo genes, 3.2x faster
with nested CV (benchmarks/RESULTS.md); glmnet and scikit-learn stay as references. numba and glmnet
merge SNPs in perfect LD exactly (see :func:`_glmnet_path`). CV, lambda.min and all statistics are
computed here, not by the backend (python-glmnet's own CV would use the 1-SE rule, R2 and 3 folds
by default).
"""

from __future__ import annotations

import math
import multiprocessing
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
from numpy.typing import NDArray
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from expredict.io.genotypes import GenotypeArrays

__all__ = [
    "SUMMARY_COLUMNS",
    "CVResult",
    "CisFeatures",
    "EnetCohortResult",
    "PATH_STOP",
    "EnetConfig",
    "GeneFit",
    "PrediXcanElasticNet",
    "cis_features",
    "cis_window",
    "cv_enet",
    "cv_enet_many",
    "enet_path_fit",
    "extra_table",
    "fit_enet_gene",
    "fit_enet_genes",
    "dev_ratio",
    "glmnet_available",
    "glmnet_path_length",
    "lambda_path",
    "make_fold_ids",
    "nested_cv_performance",
    "nested_fold_ids",
    "prepare_targets",
    "resolve_backend",
    "slice_genotypes",
]

Backend = Literal["auto", "numba", "glmnet", "sklearn"]

DEFAULT_TOL = {"numba": 1e-7, "glmnet": 1e-7, "sklearn": 1e-4}
"""Solver tolerance when ``tol=None``: glmnet's ``thresh`` as in R; scikit-learn's default
duality-gap tolerance (1e-7 there took ~12x longer on a real 5,000-SNP chr22 window)."""

GRAM32_MIN_TOL = 1e-9
"""From this ``thresh`` up the numba backend stores its working-set Grams in float32 (a ~10 % faster
fit, see :mod:`expredict.baselines.enet_cd`); tighter thresholds, which ask for more digits than
float32's 6e-8 rounding leaves, keep them in float64."""

PATH_STOP = (1e-5, 0.999, 5)
"""glmnet's path termination (``glmnet.control``: ``fdev``, ``devmax``, ``mnlam``). When glmnet
computes its own lambda sequence (as in PredictDB's ``cv.glmnet`` call) it ends the path after at
least ``mnlam`` values at the first lambda whose fraction of deviance explained (``dev.ratio``)
exceeds ``devmax`` or gained less than ``fdev`` times itself; the CV folds then use that shorter
sequence. With a user-given lambda sequence glmnet computes all of it."""

CIS_WINDOW = 1_000_000
"""PredictDB ``cis_window``: bp on each side of the gene start and end."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "gene_id", "gene_name", "gene_type", "alpha", "n_snps_in_window", "n_snps_in_model",
    "lambda_min_mse", "test_R2_avg", "test_R2_sd", "cv_R2_avg", "cv_R2_sd", "in_sample_R2",
    "nested_cv_fisher_pval", "rho_avg", "rho_se", "rho_zscore", "rho_avg_squared", "zscore_pval",
    "cv_rho_avg", "cv_rho_se", "cv_rho_avg_squared", "cv_zscore_est", "cv_zscore_pval", "cv_pval_est",
)  # fmt: skip
"""PredictDB model-summary columns, in PredictDB's order (science.md §2.2)."""

EXTRA_SUMMARY_COLUMNS: tuple[str, ...] = ("status", "reason", "backend", "n_train", "n_test", "test_r", "fit_seconds")
"""Columns :func:`fit_enet_genes` appends to the 24 PredictDB ones."""

_COMPLEMENT = {"A": "T", "T": "A", "C": "G", "G": "C"}


# --------------------------------------------------------------------------------------------
# backends


def glmnet_available() -> bool:
    """Whether python-glmnet (import name ``glmnet``) imports."""
    try:
        import glmnet  # noqa: F401
    except Exception:  # a broken wheel raises ImportError or OSError
        return False
    return True


def resolve_backend(backend: str) -> str:
    """Validate a backend name; ``"auto"`` is ``"numba"`` (always available, the fastest)."""
    if backend == "auto":
        return "numba"
    if backend not in ("numba", "glmnet", "sklearn"):
        msg = f"backend must be 'auto', 'numba', 'glmnet' or 'sklearn'; got {backend!r}"
        raise ValueError(msg)
    if backend == "glmnet" and not glmnet_available():
        msg = "backend='glmnet' needs python-glmnet (`pip install python-glmnet`); use backend='numba' or 'sklearn'"
        raise ImportError(msg)
    return backend


def lambda_path(
    X: NDArray[np.floating],
    y: NDArray[np.floating],
    *,
    alpha: float = 0.5,
    n_lambda: int = 100,
    lambda_min_ratio: float | None = None,
) -> NDArray[np.float64]:
    """glmnet's lambda sequence for ``X`` (n, p) and ``y`` (n,), decreasing.

    ``lambda_max = max_j |sum_i z_ij (y_i - mean y)| / (n * max(alpha, 1e-3))`` with ``z`` the
    columns standardised by their population s.d. (constant columns ignored), then ``n_lambda``
    log-spaced values down to ``lambda_min_ratio * lambda_max`` (default 0.01 when ``n < p`` else
    1e-4). Equals glmnet's own path (its first value as R/python-glmnet report it).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return _lambda_paths(X, y, [np.arange(len(y))], alpha, n_lambda, lambda_min_ratio)[0]


def _lambda_paths(
    X: NDArray[np.float64],
    y: NDArray[np.float64],
    row_sets: Sequence[NDArray[np.int64]],
    alpha: float,
    n_lambda: int,
    lambda_min_ratio: float | None,
) -> list[NDArray[np.float64]]:
    """:func:`lambda_path` of ``X[rows], y[rows]`` for every ``rows`` of ``row_sets``, in three
    matrix products (a gene's 66 CV fits each compute their own path, as in ``cv.glmnet``)."""
    p = X.shape[1]
    W, n_fit, Xc, _, xs = _fit_moments(X, row_sets)
    ym = (W @ y) / n_fit
    Rc = W * (y[None, :] - ym[:, None])  # sums to 0 over each fit's rows: the column means drop out
    usable = xs > 0
    g = np.where(usable, np.abs(Rc @ Xc) / np.where(usable, xs, 1.0), 0.0)
    lmax = g.max(axis=1, initial=0.0) / (n_fit * max(alpha, 1e-3))
    paths = []
    for c in range(len(row_sets)):
        ratio = lambda_min_ratio if lambda_min_ratio is not None else (0.01 if n_fit[c] < p else 1e-4)
        lm = float(lmax[c]) if np.isfinite(lmax[c]) and lmax[c] > 0 else 1e-8
        paths.append(lm * np.power(ratio, np.arange(n_lambda) / max(n_lambda - 1, 1)))
    return paths


def _fit_moments(X: NDArray[np.float64], row_sets: Sequence[NDArray[np.int64]]) -> tuple[NDArray[np.float64], ...]:
    """Column means and population s.d.s of ``X`` (n, p) over each row subset, in matrix products.

    Returns ``(W, n_fit, Xc, xm, xs)``: ``W`` (F, n) is 1 on each fit's rows, ``n_fit`` (F,) their
    count, ``Xc = X - X.mean(axis=0)`` (centred first so that one-pass variances stay accurate),
    ``xm``, ``xs`` (F, p) the means and s.d.s on each fit's rows; ``xs`` is 0 where a column is
    constant on the fit's rows (variance below 1e-12 of its squared range), as glmnet drops it.
    """
    n, p = X.shape
    W = np.zeros((len(row_sets), n))
    for c, rows in enumerate(row_sets):
        W[c, rows] = 1.0
    n_fit = W.sum(axis=1)
    shift = X.mean(axis=0) if n else np.zeros(p)
    Xc = X - shift
    xm_c = (W @ Xc) / n_fit[:, None]
    var = (W @ (Xc * Xc)) / n_fit[:, None] - xm_c**2
    scale = np.maximum(np.abs(Xc).max(axis=0), 1e-300) if n else np.ones(p)
    xs = np.where(var > 1e-12 * scale**2, np.sqrt(np.maximum(var, 0.0)), 0.0)
    return W, n_fit, Xc, xm_c + shift, xs


def _interp_lambda(
    lam_to: NDArray[np.float64], lam_from: NDArray[np.float64], values: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Values along a path at other lambdas, as glmnet's ``predict(fit, s = lam_to)`` (``lambda.interp``).

    ``values`` is ``(m, len(lam_from))`` with ``lam_from`` decreasing: linear interpolation in lambda
    between the two neighbouring path values, clamped to the path's first and last lambda. Exact at
    the path's own lambdas. ``cv.glmnet`` predicts each fold this way at the lambdas of the fit on
    all rows, each fold having computed (and perhaps ended early) a path of its own.
    """
    k = len(lam_from)
    if k == 1:
        return np.repeat(values[:, :1], len(lam_to), axis=1)
    s = np.clip(lam_to, lam_from[-1], lam_from[0])
    left = np.clip(np.searchsorted(-lam_from, -s, side="right") - 1, 0, k - 2)
    right = left + 1
    gap = lam_from[left] - lam_from[right]
    w = np.where(gap > 0, (s - lam_from[right]) / np.where(gap > 0, gap, 1.0), 1.0)
    return values[:, left] * w + values[:, right] * (1.0 - w)


def glmnet_path_length(dev_ratio: Sequence[float] | NDArray[np.float64]) -> int:
    """How many values of a computed path glmnet keeps, from the ``dev.ratio`` along it (:data:`PATH_STOP`)."""
    fdev, devmax, mnlam = PATH_STOP
    prev = 0.0
    for k, r in enumerate(np.asarray(dev_ratio, dtype=np.float64)):
        if k + 1 >= mnlam and (r - prev < fdev * r or r > devmax):
            return k + 1
        prev = float(r)
    return len(dev_ratio)


def dev_ratio(
    X: NDArray[np.float64], y: NDArray[np.float64], coef: NDArray[np.float64], intercept: NDArray[np.float64]
) -> NDArray[np.float64]:
    """glmnet's ``dev.ratio`` (gaussian: ``1 - RSS / TSS``) of each column of a path ``coef`` (p, L)."""
    tss = float(np.sum((y - y.mean()) ** 2))
    if tss == 0:
        return np.zeros(coef.shape[1])
    active = np.flatnonzero(np.any(coef != 0, axis=1))  # a few hundred of the window's SNPs
    rss = ((y[:, None] - X[:, active] @ coef[active] - intercept[None, :]) ** 2).sum(axis=0)
    return 1.0 - rss / tss


def make_fold_ids(n: int, n_folds: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Balanced fold ids ``0..n_folds-1`` in random order (PredictDB ``generate_fold_ids``)."""
    if n < n_folds:
        msg = f"make_fold_ids: need at least n_folds={n_folds} rows; got {n}"
        raise ValueError(msg)
    base = np.tile(np.arange(n_folds, dtype=np.int64), math.ceil(n / n_folds))[:n]
    return rng.permutation(base)


def enet_path_fit(
    X: NDArray[np.floating],
    y: NDArray[np.floating],
    lambdas: NDArray[np.float64],
    *,
    alpha: float = 0.5,
    backend: str = "numba",
    tol: float | None = None,
    max_iter: int = 100_000,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Fit the elastic-net path at ``lambdas`` (decreasing); coefficients on the raw scale of ``X``.

    Returns ``coef`` ``float64[p, n_lambda]`` and ``intercept`` ``float64[n_lambda]`` such that the
    prediction at ``lambdas[k]`` is ``X @ coef[:, k] + intercept[k]``. ``backend`` is ``"numba"``,
    ``"glmnet"`` or ``"sklearn"`` (resolve ``"auto"`` first); ``tol`` is glmnet's ``thresh`` or scikit-learn's
    duality-gap ``tol``, default :data:`DEFAULT_TOL`.
    """
    lambdas = np.asarray(lambdas, dtype=np.float64)
    if tol is None:
        tol = DEFAULT_TOL.get(backend, 1e-7)
    if backend == "numba":
        return _numba_path(X, y, lambdas, alpha, tol, max_iter)
    if backend == "glmnet":
        coef, icpt = _glmnet_path(X, y, lambdas, alpha, tol, max_iter)
    elif backend == "sklearn":
        coef, icpt = _sklearn_path(X, y, lambdas, alpha, tol, max_iter)
    else:
        msg = f"enet_path_fit: backend must be 'numba', 'glmnet' or 'sklearn'; got {backend!r}"
        raise ValueError(msg)
    # round-off "entries" (|standardised coef| <= 1e-12 s.d.(y), e.g. at lambda_max) are zeros
    X = np.asarray(X, dtype=np.float64)
    tiny = np.abs(coef) * X.std(axis=0)[:, None] <= 1e-12 * max(float(np.std(y)), 1e-300)
    if np.any(tiny & (coef != 0)):
        coef = np.where(tiny, 0.0, coef)
        icpt = float(np.mean(y)) - X.mean(axis=0) @ coef
    return coef, icpt


def _collapse_duplicates(X: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Group columns equal up to the dosage flip ``x -> 2 - x`` (SNPs in perfect LD).

    Returns ``(rep, group, sign)``: representative column of each group, the group of every
    column and ``sign[j] = -1`` for flipped members. Constant columns get group ``-1``.
    """
    p = X.shape[1]
    const = np.all(X == X[:1], axis=0)
    d = X - 1.0
    first = np.argmax(d != 0, axis=0)
    flip = d[first, np.arange(p)] > 0
    C = np.where(flip, 2.0 - X, X)
    Ct = np.ascontiguousarray(C.T)
    keys = Ct.view(np.dtype((np.void, Ct.dtype.itemsize * Ct.shape[1]))).ravel()
    group = np.full(p, -1, np.int64)
    keep = np.flatnonzero(~const)
    _, rep_local, inv = np.unique(keys[keep], return_index=True, return_inverse=True)
    group[keep] = inv.ravel()
    return keep[rep_local], group, np.where(flip, -1.0, 1.0)


def _glmnet_path(X, y, lambdas, alpha, tol, max_iter):
    """python-glmnet on the same problem, with columns in perfect LD collapsed exactly.

    ``k`` identical standardised columns share one coefficient split equally (the ridge term is
    strictly convex), which is one column with L1 weight 1 and L2 weight ``1 / k``. glmnet's
    penalty factors scale both terms, so the merged column is fed as ``k * z`` with penalty factor
    ``k`` (``standardize=False`` on columns we standardise), and lambda is rescaled for glmnet's
    normalisation of the factors to sum to the number of columns. Same optimum, fewer and better
    conditioned columns (~1.7x faster on 1000 Genomes cis windows).
    """
    import glmnet

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, p = X.shape
    L = len(lambdas)
    rep, group, sign = _collapse_duplicates(X)
    coef = np.zeros((p, L))
    ym = float(np.mean(y))
    if len(rep) == 0 or float(np.std(y)) == 0:
        return coef, np.full(L, ym)
    xm = X.mean(axis=0)
    xs = X.std(axis=0)
    k = np.bincount(group[group >= 0], minlength=len(rep)).astype(np.float64)
    Z = (X[:, rep] - xm[rep]) / xs[rep] * k
    p_used = float(k.sum())
    m = glmnet.ElasticNet(
        alpha=alpha, lambda_path=np.asarray(lambdas) * p_used / len(rep), standardize=False, fit_intercept=True,
        n_splits=0, tol=tol, max_iter=max_iter, cut_point=0.0, scoring="mean_squared_error",
    )  # fmt: skip
    m.fit(Z, y, relative_penalties=k.copy())
    kk = min(int(m.n_lambda_), L)  # never below L with a user path; guard anyway
    bz = np.zeros((len(rep), L))
    bz[:, :kk] = m.coef_path_[:, :kk]
    if kk < L:  # hold the last solution (as glmnet's predict clips lambda)
        bz[:, kk:] = bz[:, [kk - 1]]
    members = np.flatnonzero(group >= 0)
    # coefficient of merged column on z_g is k * b'; each member's standardised coefficient is b'
    coef[members] = bz[group[members]] * (sign[members] * sign[rep][group[members]] / xs[members])[:, None]
    icpt = ym - xm @ coef
    return coef, icpt


def _sklearn_path(X, y, lambdas, alpha, tol, max_iter):
    """scikit-learn coordinate descent on glmnet's scaled problem, with a glmnet-style working set.

    Per lambda (warm-started from the previous one): solve on the ever-active set plus the
    sequential strong-rule set, then check the KKT conditions on every feature and re-solve with
    the violators until there are none; the optimum is that of the full problem. Predictors are
    standardised (population s.d.) and ``y`` is centred and divided by its population s.d. ``s_y``
    with ``lambda / s_y``, exactly as glmnet does internally.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import enet_path

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, p = X.shape
    xm = X.mean(axis=0)
    xs = X.std(axis=0)
    xs_safe = np.where(xs > 0, xs, 1.0)
    Z = np.asfortranarray((X - xm) / xs_safe)
    ym = float(y.mean())
    sy = float(y.std())
    L = len(lambdas)
    if sy == 0:
        return np.zeros((p, L)), np.full(L, ym)
    yc = (y - ym) / sy
    lam = np.asarray(lambdas, dtype=np.float64) / sy
    coefs = np.zeros((p, L))
    b = np.zeros(p)
    r = yc.copy()
    ever = np.zeros(p, dtype=bool)
    usable = xs > 0
    lam_prev = float(np.abs(Z.T @ yc).max()) / (n * max(alpha, 1e-3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k in range(L):
            grad = np.abs(Z.T @ r) / n
            work = ever | ((grad > alpha * (2 * lam[k] - lam_prev)) & usable)
            while True:
                idx = np.flatnonzero(work)
                if len(idx):
                    Zs = np.asfortranarray(Z[:, idx])
                    kw: dict[str, Any] = {"precompute": False}
                    if len(idx) < n:
                        kw = {"precompute": Zs.T @ Zs, "Xy": Zs.T @ yc}
                    _, c, _ = enet_path(
                        Zs, yc, l1_ratio=alpha, alphas=[lam[k]], coef_init=b[idx], tol=tol, max_iter=max_iter,
                        check_input=False, **kw,
                    )  # fmt: skip
                    b[:] = 0.0
                    b[idx] = c[:, 0]
                    r = yc - Zs @ c[:, 0]
                viol = (~work) & usable & (np.abs(Z.T @ r) / n > alpha * lam[k] * (1 + 1e-9))
                if not viol.any():
                    break
                work |= viol
            ever |= b != 0
            coefs[:, k] = b
            lam_prev = lam[k]
    coef = coefs * (sy / xs_safe)[:, None]
    coef[~usable] = 0.0
    icpt = ym - xm @ coef
    return coef, icpt


@dataclass(frozen=True)
class _Lockstep:
    """What :func:`_lockstep_fit` returns: raw-scale held-out predictions and stored coefficients."""

    pred: list[NDArray[np.float64]]  # per fit: (n_eval, L) predictions on the fit's eval rows
    coef: list[NDArray[np.float64] | None]  # per fit: (p, L) raw-scale coefficients when stored
    intercept: list[NDArray[np.float64] | None]  # per fit: (L,) when stored
    failed: NDArray[np.bool_]  # per fit: max_iter exceeded
    n_used: NDArray[np.int64]  # per fit: lambdas solved (its path may end early, see ``_lockstep_fit``)


def _lockstep_fit(
    X: NDArray[np.float64],
    y: NDArray[np.float64],
    fits: Sequence[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], bool, int]],
    alpha: float,
    tol: float,
    max_iter: int,
) -> _Lockstep:
    """Solve many paths on row subsets of one design with :func:`enet_cd.lockstep_paths`.

    ``fits``: ``(fit_rows, eval_rows, lambdas, store, leader)`` per fit, rows indexing ``X``/``y``;
    ``leader`` is the index of the fit whose path, ended by glmnet's termination rule
    (:data:`PATH_STOP`), ends this one too, or -1 for the whole path. Returned predictions and
    coefficients cover the lambdas solved (``n_used``).
    Columns in perfect LD over all rows of ``X`` are merged once (they stay merged on any subset);
    columns constant on a fit's rows are left out of that fit, as glmnet does.
    """
    from expredict.baselines.enet_cd import lockstep_paths

    n, p = X.shape
    F = len(fits)
    L = max(len(f[2]) for f in fits)
    rep, group, sign = _collapse_duplicates(X)
    pu = len(rep)
    k = np.bincount(group[group >= 0], minlength=pu).astype(np.float64)
    Xu = X[:, rep]
    W, n_fit, _, xm, xs = _fit_moments(Xu, [f[0] for f in fits])
    ym = (W @ y) / n_fit
    sy = np.sqrt(np.maximum((W @ (y * y)) / n_fit - ym**2, 0.0))
    sy_safe = np.where(sy > 1e-12 * max(1.0, float(np.abs(y).max(initial=0.0))), sy, 0.0)
    Yt = np.where(W > 0, (y[None, :] - ym[:, None]), 0.0) / np.where(sy_safe > 0, sy_safe, 1.0)[:, None]
    Yt[sy_safe == 0] = 0.0
    lam = np.zeros((F, L))
    for c, f in enumerate(fits):
        lam[c, : len(f[2])] = f[2]
        lam[c, len(f[2]) :] = f[2][-1]
    inv_sy = 1.0 / np.where(sy_safe > 0, sy_safe, 1.0)
    lam1 = alpha * lam * inv_sy[:, None]
    lam2 = (1.0 - alpha) * lam * inv_sy[:, None]
    m = max(1, max(len(f[1]) for f in fits))
    eval_rows = np.zeros((F, m), dtype=np.int64)
    eval_n = np.zeros(F, dtype=np.int64)
    store = np.full(F, -1, dtype=np.int64)
    leader = np.array([f[4] for f in fits], dtype=np.int64)
    for c, (_, ev, _, keep, _) in enumerate(fits):
        eval_rows[c, : len(ev)] = ev
        eval_n[c] = len(ev)
        if keep:
            store[c] = int((store >= 0).sum())
    gram_dtype = np.empty(0, np.float32 if tol >= GRAM32_MIN_TOL else np.float64)
    pred, coef, passes, n_used = lockstep_paths(
        np.ascontiguousarray(Xu.T), xm, xs, 1.0 / k, Yt, W, n_fit, lam1, lam2, eval_rows, eval_n, store,
        float(tol), int(max_iter), leader, *PATH_STOP, gram_dtype,
    )  # fmt: skip
    n_used = np.minimum(n_used, [len(f[2]) for f in fits])  # paths shorter than L were padded
    members = np.flatnonzero(group >= 0)
    gm = group[members]
    preds, coefs, icpts = [], [], []
    for c in range(F):
        nl = int(n_used[c])
        preds.append(ym[c] + sy_safe[c] * pred[c, :nl, : eval_n[c]].T)
        if store[c] < 0:
            coefs.append(None)
            icpts.append(None)
            continue
        bs = coef[store[c], :, :nl]  # standardised, merged
        with np.errstate(divide="ignore", invalid="ignore"):
            per = np.where(xs[c] > 0, sy_safe[c] / (k * np.where(xs[c] > 0, xs[c], 1.0)), 0.0)
        full = np.zeros((p, nl))
        full[members] = bs[gm] * (per[gm] * sign[members] * sign[rep][gm])[:, None]
        # raw means of every original column on the fit's rows: members are rep or 2 - rep
        xm_full = np.zeros(p)
        xm_full[members] = np.where(sign[members] * sign[rep][gm] > 0, xm[c, gm], 2.0 - xm[c, gm])
        coefs.append(full)
        icpts.append(ym[c] - xm_full @ full)
    return _Lockstep(preds, coefs, icpts, passes < 0, n_used)


def _numba_path(X, y, lambdas, alpha, tol, max_iter):
    """One path through :func:`_lockstep_fit` (a single fit on all rows, coefficients kept)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    rows = np.arange(len(y))
    res = _lockstep_fit(X, y, [(rows, rows[:0], np.asarray(lambdas, dtype=np.float64), True, -1)], alpha, tol, max_iter)
    if res.failed[0]:
        msg = f"numba elastic net: no convergence within max_iter={max_iter} passes"
        raise RuntimeError(msg)
    return res.coef[0], res.intercept[0]


# --------------------------------------------------------------------------------------------
# cross-validation


@dataclass(frozen=True)
class CVResult:
    """One ``cv.glmnet``-style fit: path, fold MSEs, lambda.min and the refit at it.

    ``oof_pred`` are out-of-fold predictions at lambda.min (``cv.glmnet(keep=TRUE)$fit.preval``);
    ``coef``/``intercept`` come from the refit on all rows (raw dosage scale).
    """

    lambdas: NDArray[np.float64]
    fold_ids: NDArray[np.int64]
    fold_mse: NDArray[np.float64]  # (n_folds, n_lambda)
    cv_mse: NDArray[np.float64]  # (n_lambda,)
    best_index: int
    coef: NDArray[np.float64]
    intercept: float
    nonzero_path: NDArray[np.int64]
    oof_pred: NDArray[np.float64]

    @property
    def lambda_min(self) -> float:
        """The selected lambda (lambda.min)."""
        return float(self.lambdas[self.best_index])

    @property
    def n_nonzero(self) -> int:
        """Non-zero coefficients at lambda.min."""
        return int(np.count_nonzero(self.coef))


def cv_enet(
    X: NDArray[np.floating],
    y: NDArray[np.floating],
    *,
    fold_ids: NDArray[np.int64],
    alpha: float = 0.5,
    n_lambda: int = 100,
    lambdas: NDArray[np.float64] | None = None,
    lambda_min_ratio: float | None = None,
    backend: str = "numba",
    tol: float | None = None,
    max_iter: int = 100_000,
    path_stop: bool | None = None,
) -> CVResult:
    """K-fold CV as ``cv.glmnet``: lambda.min on the mean fold MSE along the all-rows path, refit on all rows.

    Parameters
    ----------
    X : ndarray of shape (n, p)
        Dosages (raw scale).
    y : ndarray of shape (n,)
        Targets.
    fold_ids : ndarray of shape (n,)
        Fold of each row (any integer labels); use :func:`make_fold_ids`.
    lambdas : ndarray, optional
        Decreasing path solved by every fit (``cv.glmnet(lambda = ...)``); default: as
        ``cv.glmnet`` without one, every fit computes its own :func:`lambda_path` and the folds are
        predicted at the all-rows path by interpolation (see :func:`cv_enet_many`).
    lambda_min_ratio : float, optional
        Where computed paths end, as a fraction of their lambda_max (glmnet's default: 0.01 when
        a fit has fewer rows than columns, else 1e-4).
    backend : {"numba", "glmnet", "sklearn"}
        Path solver (resolve ``"auto"`` with :func:`resolve_backend` first).
    path_stop : bool, optional
        End paths where glmnet would (:data:`PATH_STOP`); default: when ``lambdas`` is None,
        as ``cv.glmnet`` without a ``lambda`` argument.
    """
    res = cv_enet_many(X, y, [(np.arange(len(y)), np.asarray(fold_ids))], alpha=alpha, n_lambda=n_lambda,
                       lambdas=None if lambdas is None else [lambdas], lambda_min_ratio=lambda_min_ratio,
                       backend=backend, tol=tol, max_iter=max_iter, path_stop=path_stop)  # fmt: skip
    if res[0] is None:
        msg = f"elastic net ({backend}): no convergence within max_iter={max_iter} passes"
        raise RuntimeError(msg)
    return res[0]


def _cv_from_paths(
    y: NDArray[np.float64],
    fold_ids: NDArray[np.int64],
    lambdas: NDArray[np.float64],
    fold_preds: list[NDArray[np.float64]],
    coef: NDArray[np.float64],
    icpt: NDArray[np.float64],
) -> CVResult:
    """lambda.min and the refit at it from each fold's held-out predictions along the path."""
    folds = np.unique(fold_ids)
    fold_mse = np.empty((len(folds), len(lambdas)))
    preval = np.empty((len(y), len(lambdas)))
    sizes = np.empty(len(folds))
    for i, f in enumerate(folds):
        test = fold_ids == f
        preval[test] = fold_preds[i]
        fold_mse[i] = ((fold_preds[i] - y[test, None]) ** 2).mean(axis=0)
        sizes[i] = test.sum()
    cv_mse = (fold_mse * sizes[:, None]).sum(axis=0) / sizes.sum()
    best = int(np.argmin(cv_mse))  # first minimum = largest lambda among ties (R which.min)
    return CVResult(
        lambdas=np.asarray(lambdas, dtype=np.float64), fold_ids=fold_ids.astype(np.int64), fold_mse=fold_mse,
        cv_mse=cv_mse, best_index=best, coef=coef[:, best].copy(), intercept=float(icpt[best]),
        nonzero_path=np.count_nonzero(coef, axis=0).astype(np.int64), oof_pred=preval[:, best].copy(),
    )  # fmt: skip


def cv_enet_many(
    X: NDArray[np.floating],
    y: NDArray[np.floating],
    problems: Sequence[tuple[NDArray[np.int64], NDArray[np.int64]]],
    *,
    alpha: float = 0.5,
    n_lambda: int = 100,
    lambdas: Sequence[NDArray[np.float64]] | None = None,
    lambda_min_ratio: float | None = None,
    backend: str = "numba",
    tol: float | None = None,
    max_iter: int = 100_000,
    path_stop: bool | None = None,
) -> list[CVResult | None]:
    """Several :func:`cv_enet` problems on row subsets of one design, e.g. a gene's nested CV.

    ``problems``: ``(rows, fold_ids)`` pairs, ``rows`` indexing ``X``/``y`` and ``fold_ids`` the
    fold of each of those rows. Without ``lambdas`` this is R's ``cv.glmnet`` (``lambda = NULL``,
    what PredictDB calls): the fit on all of a problem's rows and each fold's fit compute their own
    lambda path (:func:`lambda_path` on their rows), each path ends where glmnet would end it
    (:data:`PATH_STOP`, unless ``path_stop=False``) and each fold is predicted at the all-rows
    path by glmnet's interpolation in lambda (:func:`_interp_lambda`). With ``lambdas`` (one path
    per problem, ``cv.glmnet(lambda = ...)``) every fit solves that path; ``path_stop=True`` then
    ends it where the all-rows fit's path would end. The ``"numba"`` backend solves every fit of
    every problem in one lockstep pass (:mod:`expredict.baselines.enet_cd`); the others fit one
    by one. Returns a :class:`CVResult` per problem, or None where the solver did not converge.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if tol is None:
        tol = DEFAULT_TOL.get(backend, 1e-7)
    own = lambdas is None  # glmnet computes the paths: every fit its own
    if path_stop is None:
        path_stop = own
    # per problem: its rows, fold ids, fits ((fit rows, eval rows): its folds, then all its rows) and their paths
    problems = [(np.asarray(rows), np.asarray(fids)) for rows, fids in problems]
    for q, (rows, fids) in enumerate(problems):
        if fids.shape != rows.shape:
            msg = (f"cv_enet: problem {q} has {len(rows)} rows but fold ids of shape {fids.shape}; "
                   "give one fold id per row (make_fold_ids(n, n_folds, rng))")  # fmt: skip
            raise ValueError(msg)
    fit_sets = [[(r[f_ != f], r[f_ == f]) for f in np.unique(f_)] + [(r, r[:0])] for r, f_ in problems]
    if own:  # one pass over the design for every fit's path
        flat = iter(_lambda_paths(X, y, [fr for fits in fit_sets for fr, _ in fits], alpha, n_lambda, lambda_min_ratio))
        paths = [[next(flat) for _ in fits] for fits in fit_sets]
    else:
        paths = [[np.asarray(lambdas[q], dtype=np.float64)] * len(fits) for q, fits in enumerate(fit_sets)]
    plan = [(rows, fids, fits, ps) for (rows, fids), fits, ps in zip(problems, fit_sets, paths, strict=True)]
    out: list[CVResult | None] = []
    if backend == "numba":
        spec = []
        for _, _, fits, paths in plan:
            base, last = len(spec), len(spec) + len(fits) - 1
            for i, ((fr, ev), lam) in enumerate(zip(fits, paths, strict=True)):
                lead = -1 if not path_stop else (base + i if own else last)
                spec.append((fr, ev, lam, i == len(fits) - 1, lead))
        res = _lockstep_fit(X, y, spec, alpha, tol, max_iter)
        c = 0
        for rows, fids, fits, paths in plan:
            sl = slice(c, c + len(fits))
            c += len(fits)
            if res.failed[sl].any():
                out.append(None)
                continue
            used = res.n_used[sl]
            master = paths[-1][: int(used[-1])]
            preds = [_interp_lambda(master, lam[: int(k)], pr)
                     for lam, k, pr in zip(paths[:-1], used[:-1], res.pred[sl.start : sl.stop - 1], strict=True)]  # fmt: skip
            out.append(_cv_from_paths(y[rows], fids, master, preds, res.coef[sl.stop - 1], res.intercept[sl.stop - 1]))
        return out
    for rows, fids, fits, paths in plan:
        try:
            solved = []  # (lambdas kept, coef, intercept) per fit, the fit on all rows first
            for i in [len(fits) - 1, *range(len(fits) - 1)]:
                fr = fits[i][0]
                lam = paths[i] if own or not solved else solved[0][0]
                Xf, yf = X[fr], y[fr]
                coef, icpt = enet_path_fit(Xf, yf, lam, alpha=alpha, backend=backend, tol=tol, max_iter=max_iter)
                if path_stop and (own or not solved):  # glmnet ends a path it computes (or the user's, here)
                    n_keep = glmnet_path_length(dev_ratio(Xf, yf, coef, icpt))
                    lam, coef, icpt = lam[:n_keep], coef[:, :n_keep], icpt[:n_keep]
                solved.append((lam, coef, icpt))
        except RuntimeError:  # glmnet's fatal error flags
            out.append(None)
            continue
        master, coef, icpt = solved[0]
        preds = []
        for (_, ev), (lam, cf, ic) in zip(fits[:-1], solved[1:], strict=True):
            active = np.flatnonzero(np.any(cf != 0, axis=1))  # a few hundred of p: cheap predictions
            preds.append(_interp_lambda(master, lam, X[np.ix_(ev, active)] @ cf[active] + ic))
        out.append(_cv_from_paths(y[rows], fids, master, preds, coef, icpt))
    return out


def _r2(y: NDArray[np.float64], pred: NDArray[np.float64]) -> float:
    """PredictDB ``calc_R2``: ``1 - sum((y - pred)^2) / sum(y^2)`` (targets are centred)."""
    tss = float(np.sum(y**2))
    return float("nan") if tss == 0 else 1.0 - float(np.sum((y - pred) ** 2)) / tss


def _fold_stats(
    y: NDArray[np.float64], pred: NDArray[np.float64], rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """(R2, r, Fisher z, p-value) of one fold, with PredictDB's rules for constant predictions."""
    r2 = _r2(y, pred)
    n = len(y)
    if np.ptp(pred) > 0 and np.ptp(y) > 0 and n > 2:
        r = float(np.clip(np.corrcoef(pred, y)[0, 1], -1.0, 1.0))
        t = r * math.sqrt((n - 2) / max(1e-300, 1 - r * r))
        p = float(2 * stats.t.sf(abs(t), n - 2))
    else:
        r, p = 0.0, float(rng.uniform())
    rz = float(np.clip(r, -0.999999, 0.999999))
    z = math.atanh(rz) * math.sqrt(max(n - 3, 0))
    return r2, r, z, p


def _combine(folds: list[tuple[float, float, float, float]]) -> dict[str, float]:
    a = np.array(folds, dtype=np.float64)
    k = len(a)
    r2, r, z, p = a.T
    zest = float(z.sum() / math.sqrt(k))
    fisher = float(stats.chi2.sf(-2 * np.log(np.maximum(p, 1e-300)).sum(), 2 * k))
    return {
        "R2_avg": float(r2.mean()), "R2_sd": float(r2.std(ddof=1)) if k > 1 else float("nan"),
        "rho_avg": float(r.mean()), "rho_se": float(r.std(ddof=1)) if k > 1 else float("nan"),
        "rho_avg_squared": float(r.mean() ** 2), "zscore": zest,
        "zscore_pval": float(2 * stats.norm.sf(abs(zest))), "fisher_pval": fisher,
    }  # fmt: skip


def nested_fold_ids(
    n: int, n_outer: int, n_inner: int, rng: np.random.Generator
) -> tuple[NDArray[np.int64], list[NDArray[np.int64]]]:
    """PredictDB's nested folds: outer ids over ``n`` rows, then inner ids over each outer
    training set (drawn in that order from ``rng``)."""
    outer = make_fold_ids(n, n_outer, rng)
    return outer, [make_fold_ids(int((outer != f).sum()), n_inner, rng) for f in range(n_outer)]


def _nested_problems(outer: NDArray[np.int64], inners: list[NDArray[np.int64]]) -> list[tuple]:
    rows = np.arange(len(outer))
    return [(rows[outer != f], inner) for f, inner in enumerate(inners)]


def _nested_summary(
    X: NDArray[np.float64],
    y: NDArray[np.float64],
    outer: NDArray[np.int64],
    cvs: Sequence[CVResult | None],
    rng: np.random.Generator,
) -> dict[str, float]:
    """Score each outer fold's inner-CV model on its held-out rows and combine (PredictDB)."""
    folds = []
    for f, cv in enumerate(cvs):
        test = outer == f
        if cv is None:  # solver failure: predict the training mean, as PredictDB does on glmnet errors
            pred = np.full(int(test.sum()), float(y[~test].mean()))
        else:
            pred = X[test] @ cv.coef + cv.intercept
        folds.append(_fold_stats(y[test], pred, rng))
    c = _combine(folds)
    return {
        "test_R2_avg": c["R2_avg"], "test_R2_sd": c["R2_sd"], "nested_cv_fisher_pval": c["fisher_pval"],
        "rho_avg": c["rho_avg"], "rho_se": c["rho_se"], "rho_zscore": c["zscore"],
        "rho_avg_squared": c["rho_avg_squared"], "zscore_pval": c["zscore_pval"],
    }  # fmt: skip


def nested_cv_performance(
    X: NDArray[np.floating],
    y: NDArray[np.floating],
    *,
    rng: np.random.Generator,
    alpha: float = 0.5,
    n_outer: int = 5,
    n_inner: int = 10,
    n_lambda: int = 100,
    backend: str = "numba",
    tol: float | None = None,
    path_stop: bool = True,
) -> dict[str, float]:
    """PredictDB ``nested_cv_elastic_net_perf``: outer folds test a model tuned by inner CV.

    Returns ``test_R2_avg``, ``test_R2_sd``, ``rho_avg``, ``rho_se``, ``rho_zscore`` (Stouffer
    ``sum z / sqrt(k)`` of the folds' Fisher z), ``rho_avg_squared`` (``pred.perf.R2``),
    ``zscore_pval`` (two-sided, ``pred.perf.pval``) and ``nested_cv_fisher_pval`` (Fisher's method
    over the folds' correlation-test p-values). A fold whose predictions are constant counts
    ``r = 0`` and a uniform random p-value, as in PredictDB.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    outer, inners = nested_fold_ids(len(y), n_outer, n_inner, rng)
    cvs = cv_enet_many(X, y, _nested_problems(outer, inners), alpha=alpha, n_lambda=n_lambda, backend=backend,
                       tol=tol, path_stop=path_stop)  # fmt: skip
    return _nested_summary(X, y, outer, cvs, rng)


def _cv_summary(cv: CVResult, y: NDArray[np.float64], rng: np.random.Generator) -> dict[str, float]:
    """The ``cv_*`` columns from the final model's out-of-fold predictions at lambda.min."""
    folds = [_fold_stats(y[cv.fold_ids == f], cv.oof_pred[cv.fold_ids == f], rng) for f in np.unique(cv.fold_ids)]
    c = _combine(folds)
    return {
        "cv_R2_avg": c["R2_avg"], "cv_R2_sd": c["R2_sd"], "cv_rho_avg": c["rho_avg"], "cv_rho_se": c["rho_se"],
        "cv_rho_avg_squared": c["rho_avg_squared"], "cv_zscore_est": c["zscore"],
        "cv_zscore_pval": c["zscore_pval"], "cv_pval_est": c["fisher_pval"],
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# estimator


class PrediXcanElasticNet(RegressorMixin, BaseEstimator):
    """PrediXcan elastic net: ``cv.glmnet`` as PredictDB calls it, lambda.min by CV MSE, refit on all rows.

    Every fit (each fold and the fit on all rows) computes glmnet's lambda path on its rows; the
    folds are predicted at the all-rows path by glmnet's interpolation, as in R's ``cv.glmnet``.

    Parameters
    ----------
    alpha : float, default=0.5
        glmnet mixing parameter (scikit-learn ``l1_ratio``).
    n_lambda : int, default=100
        Length of the lambda path (see :func:`lambda_path`).
    n_folds : int, default=10
        CV folds for choosing lambda.
    backend : {"auto", "numba", "glmnet", "sklearn"}, default="auto"
        Path solver; ``"auto"`` is ``"numba"`` (see :func:`resolve_backend`).
    random_state : int, numpy Generator or None, default=None
        Seed of the fold assignment (PredictDB ``cv_seed``).
    lambda_min_ratio : float or None, default=None
        Smallest / largest lambda; None = 0.01 when n < p else 1e-4.
    tol : float or None, default=None
        Solver tolerance (glmnet ``thresh``; scikit-learn duality-gap tolerance); None = the
        backend's default (:data:`DEFAULT_TOL`).
    path_stop : bool, default=True
        End each lambda path where glmnet ends its own (:data:`PATH_STOP`), as ``cv.glmnet`` does
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


# --------------------------------------------------------------------------------------------
# targets and features


def prepare_targets(
    expression: NDArray[np.floating],
    train_idx: NDArray[np.int64],
    covariates: NDArray[np.floating] | None = None,
    *,
    scale: bool = True,
) -> NDArray[np.float64]:
    """Regress covariates out and scale, with every parameter fitted on training rows only.

    Parameters
    ----------
    expression : ndarray of shape (n_samples,) or (n_samples, n_genes)
        Already-normalised expression (e.g. log2(x + 1), inverse-normal).
    train_idx : ndarray of int
        Rows of the training individuals.
    covariates : ndarray of shape (n_samples, n_covariates), optional
        Regressed out by OLS with an intercept (PredictDB ``lm``), coefficients from training rows.
    scale : bool, default=True
        Centre and divide by the training s.d. (ddof=1, as R ``scale``); a constant gene stays 0.

    Returns
    -------
    ndarray of the input's shape, float64: residuals for every row (test rows use the training fit).
    """
    Y = np.asarray(expression, dtype=np.float64)
    one = Y.ndim == 1
    Y = Y[:, None] if one else Y
    train_idx = np.asarray(train_idx)
    n = Y.shape[0]
    design = np.ones((n, 1))
    if covariates is not None:
        C = np.asarray(covariates, dtype=np.float64)
        if C.shape[0] != n:
            msg = f"prepare_targets: covariates have {C.shape[0]} rows; expression has {n}"
            raise ValueError(msg)
        design = np.hstack([design, C])
    beta, *_ = np.linalg.lstsq(design[train_idx], Y[train_idx], rcond=None)
    R = Y - design @ beta
    if scale:
        mu = R[train_idx].mean(axis=0)
        sd = R[train_idx].std(axis=0, ddof=1) if len(train_idx) > 1 else np.ones(Y.shape[1])
        sd = np.where(sd > 1e-12 * np.maximum(1.0, np.abs(Y[train_idx]).max(axis=0)), sd, np.inf)
        R = (R - mu) / sd
    return R[:, 0] if one else R


def cis_window(
    tss: int,
    *,
    start: int | None = None,
    end: int | None = None,
    window: int = CIS_WINDOW,
    anchor: Literal["gene", "tss"] = "gene",
) -> tuple[int, int]:
    """Cis window, 0-based half-open.

    ``anchor="gene"``: ``[start - window, end + window)`` where ``start``/``end`` are the 0-based
    half-open gene body (``[tss, tss + 1)`` if not given; PredictDB's "1 Mb of gene start or end").
    ``anchor="tss"``: ``[tss - window, tss + window)``, to match a sequence model's window
    (half-width ``window``).
    """
    if anchor == "tss":
        lo, hi = tss - window, tss + window
    elif anchor == "gene":
        s = tss if start is None else int(start)
        e = tss + 1 if end is None else int(end)
        lo, hi = min(s, e) - window, max(s, e) + window
    else:
        msg = f"anchor must be 'gene' or 'tss'; got {anchor!r}"
        raise ValueError(msg)
    return max(0, int(lo)), int(hi)


def slice_genotypes(genotypes: GenotypeArrays, start: int, end: int) -> GenotypeArrays:
    """Variants whose 0-based start lies in ``[start, end)``, as a ``GenotypeArrays`` of views.

    O(1) in the number of variants (contiguous slicing of the flat arrays, no per-variant loop),
    unlike ``GenotypeArrays.subset_variants``; the allele buffers keep their original offsets
    rebased to the slice.
    """
    lo = int(np.searchsorted(genotypes.starts, start, side="left"))
    hi = int(np.searchsorted(genotypes.starts, end, side="left"))
    a0, a1 = int(genotypes.allele_first[lo]), int(genotypes.allele_first[hi])
    b0, b1 = int(genotypes.allele_offsets[a0]), int(genotypes.allele_offsets[a1])
    return GenotypeArrays(
        genotypes.path, genotypes.contig, list(genotypes.samples), genotypes.starts[lo:hi], genotypes.ref_ends[lo:hi],
        genotypes.ids[lo:hi], genotypes.allele_first[lo : hi + 1] - a0, genotypes.allele_offsets[a0 : a1 + 1] - b0,
        genotypes.allele_bytes[b0:b1], genotypes.genotypes[:, lo:hi], genotypes.phased[:, lo:hi],
    )  # fmt: skip


@dataclass(frozen=True)
class CisFeatures:
    """Model-ready cis features of one gene.

    ``dosages`` is ``float64[n_sample, n_kept]`` (ALT dosage 0..2, every sample of the genotype
    slice); ``index`` the kept variants' positions in that slice; ``rsid``/``var_id``/``ref``/
    ``alt`` their PredictDB identifiers (``var_id = contig_POS_REF_ALT_build``, 1-based POS; ``rsid``
    is the VCF ID when it starts with ``rs``, else ``var_id``). ``n_in_window`` counts variants
    before any filter.
    """

    dosages: NDArray[np.float64]
    index: NDArray[np.int64]
    rsid: list[str]
    var_id: list[str]
    ref: list[str]
    alt: list[str]
    n_in_window: int


def variant_key(contig: str, start: int, ref: str, alt: str, build: str = "b37") -> str:
    """PredictDB ``varID`` ``{contig}_{POS}_{REF}_{ALT}_{build}`` from a 0-based ``start``."""
    return f"{contig}_{start + 1}_{ref}_{alt}_{build}"


def cis_features(
    genotypes: GenotypeArrays,
    train_idx: NDArray[np.int64],
    *,
    maf_min: float = 0.01,
    drop_ambiguous: bool = False,
    snps_only: bool = False,
    require_rsid: bool = False,
    build: str = "b37",
) -> CisFeatures:
    """Filter the variants of a (window-sliced) genotype set and return their ALT dosages.

    Keeps bi-allelic variants with MAF >= ``maf_min`` among ``train_idx`` (and non-constant
    there); ``drop_ambiguous`` removes A/T and C/G SNPs, ``snps_only`` indels and ``require_rsid``
    variants whose VCF ID is not an ``rs`` id (PredictDB's filters).
    """
    nv = genotypes.n_variants
    if nv == 0:
        return CisFeatures(np.zeros((genotypes.n_samples, 0)), np.zeros(0, np.int64), [], [], [], [], 0)
    keep = genotypes.n_alleles() == 2
    refs: list[str] = []
    alts: list[str] = []
    for v in range(nv):
        al = genotypes.alleles(v)
        refs.append(al[0])
        alts.append(al[1] if len(al) > 1 else "")
    if snps_only or drop_ambiguous:
        snp = np.array([len(r) == 1 and len(a) == 1 for r, a in zip(refs, alts, strict=True)])
        if snps_only:
            keep &= snp
        if drop_ambiguous:
            amb = np.array([_COMPLEMENT.get(r) == a for r, a in zip(refs, alts, strict=True)])
            keep &= ~(snp & amb)
    ids = [str(i) for i in genotypes.ids]
    if require_rsid:
        keep &= np.array([i.startswith("rs") for i in ids])
    D = genotypes.alt_dosages()
    Dt = D[np.asarray(train_idx)]
    af = Dt.mean(axis=0, dtype=np.float64) / 2
    maf = np.minimum(af, 1 - af)
    keep &= (maf >= maf_min) & (Dt.std(axis=0) > 0)
    idx = np.flatnonzero(keep).astype(np.int64)
    var_id = [variant_key(genotypes.contig, int(genotypes.starts[v]), refs[v], alts[v], build) for v in idx]
    rsid = [ids[v] if ids[v].startswith("rs") else var_id[k] for k, v in enumerate(idx)]
    return CisFeatures(
        dosages=D[:, idx].astype(np.float64), index=idx, rsid=rsid, var_id=var_id,
        ref=[refs[v] for v in idx], alt=[alts[v] for v in idx], n_in_window=nv,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# per gene


@dataclass(frozen=True)
class EnetConfig:
    """Every setting of the elastic-net baseline, PredictDB's defaults."""

    alpha: float = 0.5
    n_lambda: int = 100
    n_folds: int = 10
    n_outer_folds: int = 5
    nested_cv: bool = True
    maf_min: float = 0.01
    drop_ambiguous: bool = False
    snps_only: bool = False
    require_rsid: bool = False
    backend: str = "auto"
    tol: float | None = None
    seed: int = 0
    build: str = "b37"
    window: int = CIS_WINDOW
    anchor: str = "gene"
    covariance: bool = True
    min_train: int = 20
    path_stop: bool = True


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
    config: EnetConfig | None = None,
    y_test: NDArray[np.floating] | None = None,
    gene_name: str = "",
    gene_type: str = "",
) -> GeneFit:
    """Fit one gene: features, final CV model, nested CV, weights, covariance, test predictions.

    Parameters
    ----------
    gene_id : str
    genotypes : GenotypeArrays
        The gene's cis window (see :func:`slice_genotypes`), all samples.
    y_train : ndarray of shape (len(train_idx),)
        Prepared targets of the training rows (:func:`prepare_targets`).
    train_idx, test_idx : ndarray of int
        Rows of ``genotypes.samples`` used for training and held out.
    config : EnetConfig, optional
    y_test : ndarray of shape (len(test_idx),), optional
        Observed held-out targets; fills ``test_r``.
    """
    cfg = config or EnetConfig()
    t0 = time.perf_counter()
    backend = resolve_backend(cfg.backend)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    test_idx = np.asarray(test_idx, dtype=np.int64)
    y = np.asarray(y_train, dtype=np.float64)
    rng = _gene_seed(cfg.seed, gene_id)
    summary: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS, None)
    summary.update(gene_id=gene_id, gene_name=gene_name or gene_id, gene_type=gene_type, alpha=cfg.alpha,
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
    feats = cis_features(genotypes, train_idx, maf_min=cfg.maf_min, drop_ambiguous=cfg.drop_ambiguous,
                         snps_only=cfg.snps_only, require_rsid=cfg.require_rsid, build=cfg.build)  # fmt: skip
    if feats.n_in_window == 0:
        return skipped("no variants in window", 0)
    summary["n_snps_in_window"] = feats.dosages.shape[1]
    if feats.dosages.shape[1] == 0:
        return skipped("no variants pass filters", feats.n_in_window)
    if not np.all(np.isfinite(y)) or np.std(y) <= 1e-12 * max(1.0, float(np.abs(y).max())):
        return skipped("constant expression" if np.all(np.isfinite(y)) else "non-finite expression",
                       feats.dosages.shape[1])  # fmt: skip
    if len(y) < max(cfg.min_train, cfg.n_folds, cfg.n_outer_folds * 2):
        return skipped(f"too few training individuals ({len(y)})", feats.dosages.shape[1])
    X = feats.dosages[train_idx]
    problems: list[tuple] = []
    if cfg.nested_cv:
        outer, inners = nested_fold_ids(len(y), cfg.n_outer_folds, cfg.n_folds, rng)
        problems = _nested_problems(outer, inners)
    folds = make_fold_ids(len(y), cfg.n_folds, rng)
    problems.append((np.arange(len(y)), folds))
    try:  # every CV of the gene at once: the numba backend solves them in one lockstep pass
        cvs = cv_enet_many(X, y, problems, alpha=cfg.alpha, n_lambda=cfg.n_lambda, backend=backend, tol=cfg.tol,
                           path_stop=cfg.path_stop)  # fmt: skip
    except (RuntimeError, ValueError) as e:
        return skipped(f"solver failed: {e}", feats.dosages.shape[1])
    cv = cvs[-1]
    if cv is None:
        return skipped("solver failed: no convergence", feats.dosages.shape[1])
    if cfg.nested_cv:
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
    if cfg.covariance and len(nz):
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
    """All genes of one run.

    ``summary``: one row per gene, :data:`SUMMARY_COLUMNS` + :data:`EXTRA_SUMMARY_COLUMNS`;
    ``weights``: PredictDB weights of every modelled gene; ``covariances``: ``GENE RSID1 RSID2
    VALUE`` rows; ``test_predictions``: ``gene_id`` + one column per test sample (NaN when no
    model); ``config``: the :class:`EnetConfig` used (``seed`` = PredictDB ``cv_seed``).
    """

    summary: pl.DataFrame
    weights: pl.DataFrame
    covariances: pl.DataFrame
    test_predictions: pl.DataFrame
    config: EnetConfig
    contig: str = ""
    n_train: int = 0
    test_samples: list[str] = field(default_factory=list)

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
            construction={"chromosome": self.contig, "cv_seed": self.config.seed},
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


def _run_gene_task(task: tuple) -> GeneFit:
    """Process-pool entry point: ``(geno, y_train, y_test, train_idx, test_idx, cfg, name, type, gene_id)``."""
    from threadpoolctl import threadpool_limits

    geno, y_train, y_test, train_idx, test_idx, cfg, gene_name, gene_type, gene_id = task
    with threadpool_limits(1):
        return fit_enet_gene(gene_id, geno, y_train, train_idx, test_idx, config=cfg, y_test=y_test,
                             gene_name=gene_name, gene_type=gene_type)  # fmt: skip


def _map(executor: Any, n_jobs: int, fn: Callable[[tuple], GeneFit], tasks: Iterable[tuple]) -> Iterable[GeneFit]:
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
        training rows only (:func:`prepare_targets`).
    config : EnetConfig, optional
        Window, filters, solver, seed.
    n_jobs : int, default=1
        Processes when no ``executor`` is given (1 = in-process). Each fit is single-threaded.
    executor : object, optional
        An ``expredict.executor`` executor (``map_unordered``) or anything with
        ``map(fn, iterable)`` (``concurrent.futures.Executor``, a Dask client's ``get_executor()``).
        Tasks are tuples ending in the gene id and carry the gene's genotype slice.
    prepare : bool, default=True
        Apply :func:`prepare_targets` (covariates, training-only scaling); False uses
        ``expression`` as given.
    """
    cfg = config or EnetConfig()
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
        Y = prepare_targets(Y, train_idx, C) if len(gene_ids) else Y
    tss = genes["tss"].to_list()
    starts = genes["start"].to_list() if "start" in genes.columns else [None] * len(tss)
    ends = genes["end"].to_list() if "end" in genes.columns else [None] * len(tss)
    names = genes["gene_name"].to_list() if "gene_name" in genes.columns else [""] * len(tss)
    types = genes["gene_type"].to_list() if "gene_type" in genes.columns else [""] * len(tss)

    def tasks() -> Iterable[tuple]:
        for j, gid in enumerate(gene_ids):
            lo, hi = cis_window(int(tss[j]), start=starts[j], end=ends[j], window=cfg.window, anchor=cfg.anchor)  # type: ignore[arg-type]
            sl = slice_genotypes(geno, lo, hi)
            yield (sl, Y[train_idx, j], Y[test_idx, j], train_idx, test_idx, cfg, names[j] or "", types[j] or "", gid)

    it = _map(executor, n_jobs, _run_gene_task, tasks())
    if it is None:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            fits = list(pool.map(_run_gene_task, tasks(), chunksize=1))
    else:
        fits = list(it)
    by_id = {f.gene_id: f for f in fits}
    fits = [by_id[g] for g in gene_ids]
    cols = SUMMARY_COLUMNS + EXTRA_SUMMARY_COLUMNS
    summary = pl.DataFrame([{c: f.summary.get(c) for c in cols} for f in fits], schema=_summary_schema(), orient="row")
    weights = pl.concat([f.weights for f in fits]) if fits else pl.DataFrame(schema=_WEIGHT_SCHEMA)
    covs = pl.concat([f.covariance for f in fits]) if fits else pl.DataFrame(schema=_COV_SCHEMA)
    pred = np.array([f.test_pred for f in fits]).reshape(len(fits), len(test_idx))
    test_pred = pl.DataFrame({"gene_id": gene_ids}).hstack(pl.DataFrame(pred, schema=test_samples, orient="row"))
    return EnetCohortResult(summary, weights, covs, test_pred, cfg, genotypes.contig, len(train_idx), test_samples)


def _summary_schema() -> dict[str, pl.DataType]:
    text = {"gene_id", "gene_name", "gene_type", "status", "reason", "backend"}
    ints = {"n_snps_in_window", "n_snps_in_model", "n_train", "n_test"}
    return {c: (pl.Utf8 if c in text else pl.Int64 if c in ints else pl.Float64)
            for c in SUMMARY_COLUMNS + EXTRA_SUMMARY_COLUMNS}  # fmt: skip


def config_dict(config: EnetConfig) -> dict[str, Any]:
    """The config as a plain dict (for logs and ``construction`` metadata)."""
    return asdict(config)
