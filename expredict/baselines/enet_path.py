"""Elastic-net lambda paths and the solvers that fit them (glmnet's problem, three backends).

Why a layer of its own: everything above it (cross-validation, the PredictDB recipe) asks one
question, "the coefficients along this lambda path", and must get glmnet's answer whichever solver
runs. This module holds glmnet's conventions that make the answer glmnet's.

- **Objective** (glmnet, gaussian), on predictors standardised with the population s.d. of the
  fitting rows::

      (1 / 2n) * ||y - b0 - X b||^2 + lambda * ((1 - alpha) / 2 * ||b||_2^2 + alpha * ||b||_1)

  glmnet also scales ``y`` by its population s.d. ``s_y`` internally (solving with ``lambda / s_y``
  and multiplying the coefficients back), which every backend reproduces so all solve the same
  problem. Coefficients come back on the raw dosage scale with a separate intercept.
- **lambda paths** (glmnet's formula): ``lambda_max = max_j |x_j' (y - mean y)| / (n * alpha)``
  over standardised ``x_j``; ``n_lambda`` values log-spaced down to ``ratio * lambda_max`` with
  ``ratio = 0.01`` when ``n < p`` else ``1e-4`` (:func:`lambda_path`). A path glmnet computes itself
  ends at ``dev.ratio`` above 0.999 or gaining less than 1e-5 of itself, after 5 values
  (:data:`PATH_STOP`, :func:`glmnet_path_length`); another path's values are read at a lambda by
  glmnet's linear interpolation in lambda (:func:`_interp_lambda`).
- **Backends**: ``"numba"`` (glmnet's coordinate descent, covariance updates, sequential strong
  rules and KKT checks, in numba; many fits on row subsets of one design run in lockstep so one BLAS
  product checks all of them at once: :mod:`expredict.baselines.enet_cd`), ``"glmnet"``
  (python-glmnet, the glmnet Fortran core, through ``glmnet.ElasticNet(lambda_path=..., n_splits=0)``)
  and ``"sklearn"`` (``enet_path`` inside a glmnet-style strong-rule working set with a KKT check on
  every feature). ``"auto"`` is ``"numba"``: the same lambda.min as glmnet on 24/24 demo genes, 3.2x
  faster with nested CV (benchmarks/RESULTS.md); glmnet and scikit-learn stay as references. numba
  and glmnet merge SNPs in perfect LD exactly (see :func:`_glmnet_path`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_TOL",
    "GRAM32_MIN_TOL",
    "PATH_STOP",
    "dev_ratio",
    "enet_path_fit",
    "glmnet_available",
    "glmnet_path_length",
    "lambda_path",
    "resolve_backend",
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
