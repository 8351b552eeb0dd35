"""Cross-validation as PredictDB runs it: ``cv.glmnet``'s lambda.min and the nested-CV performance.

Why a layer of its own: PredictDB chooses lambda and reports a model's performance by how it cuts
the training individuals into folds, not by the solver; this module is that procedure, on top of
the paths and solvers of :mod:`expredict.baselines.enet_path` (PredictDB ``gtex_v7_nested_cv_elnet.R``).

- **Folds** (PredictDB ``generate_fold_ids``): balanced ids ``0..k-1`` in random order
  (:func:`make_fold_ids`); nested CV draws the outer ids, then the inner ids of each outer
  training set, in that order from one generator (:func:`nested_fold_ids`).
- **lambda.min** (R's ``cv.glmnet`` called without a ``lambda``, PredictDB's call): the fit on all
  rows and each fold on its training rows compute their own lambda path, each ends where glmnet
  ends a path it computes, and each fold is predicted at the all-rows path by glmnet's linear
  interpolation in lambda (clamped at the fold path's ends). lambda.min is the argmin of the mean
  CV MSE, folds weighted by their size; ties go to the larger lambda. The refit on all rows gives
  the model. ``tests/unit/test_enet_r_glmnet.py`` checks all of it against R's glmnet.
- **Performance** (PredictDB ``nested_cv_elastic_net_perf``): each outer fold's inner-CV model is
  scored on its held-out rows (R2 ``1 - RSS / sum(y^2)`` on scaled targets, Pearson r, Fisher z,
  correlation-test p-value) and the folds are combined (means, s.d.s, Stouffer z, Fisher's method);
  the final model's out-of-fold predictions give the ``cv_*`` statistics the same way.

CV, lambda.min and all statistics are computed here, never by a backend (python-glmnet's own CV
would use the 1-SE rule, R2 and 3 folds by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from expredict.baselines.enet_path import (
    DEFAULT_TOL,
    _interp_lambda,
    _lambda_paths,
    _lockstep_fit,
    dev_ratio,
    enet_path_fit,
    glmnet_path_length,
)

__all__ = [
    "CVResult",
    "cv_enet",
    "cv_enet_many",
    "make_fold_ids",
    "nested_cv_performance",
    "nested_fold_ids",
]


def make_fold_ids(n: int, n_folds: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Balanced fold ids ``0..n_folds-1`` in random order (PredictDB ``generate_fold_ids``)."""
    if n < n_folds:
        msg = f"make_fold_ids: need at least n_folds={n_folds} rows; got {n}"
        raise ValueError(msg)
    base = np.tile(np.arange(n_folds, dtype=np.int64), math.ceil(n / n_folds))[:n]
    return rng.permutation(base)


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
        ``cv.glmnet`` without one, every fit computes its own :func:`~expredict.baselines.enet_path.lambda_path` and the folds are
        predicted at the all-rows path by interpolation (see :func:`cv_enet_many`).
    lambda_min_ratio : float, optional
        Where computed paths end, as a fraction of their lambda_max (glmnet's default: 0.01 when
        a fit has fewer rows than columns, else 1e-4).
    backend : {"numba", "glmnet", "sklearn"}
        Path solver (resolve ``"auto"`` with :func:`~expredict.baselines.enet_path.resolve_backend` first).
    path_stop : bool, optional
        End paths where glmnet would (:data:`~expredict.baselines.enet_path.PATH_STOP`); default: when ``lambdas`` is None,
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
    lambda path (:func:`~expredict.baselines.enet_path.lambda_path` on their rows), each path ends where glmnet would end it
    (:data:`~expredict.baselines.enet_path.PATH_STOP`, unless ``path_stop=False``) and each fold is predicted at the all-rows
    path by glmnet's interpolation in lambda (:func:`~expredict.baselines.enet_path._interp_lambda`). With ``lambdas`` (one path
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
