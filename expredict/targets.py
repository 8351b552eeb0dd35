"""Per-gene target normalisation fitted on training individuals only.

:class:`TargetNormalizer` is the per-split step that keeps held-out individuals out of every
fitted statistic: the inverse-normal reference distribution, covariate coefficients, mean and sd
are fitted on the rows passed to :meth:`TargetNormalizer.fit` — the training individuals — and
then applied unchanged to validation, test and new individuals. Matrix-wide transforms that use no other individual
(``log1p``) belong to the expression reader.

Steps, in order, each per gene (column):

1. optional inverse-normal transform (Blom, ``(r - 3/8) / (n + 1/4)``): a value ``x`` gets the
   rank ``#{train < x} + (#{train == x} + 1) / 2`` among the training values, so training values
   get their usual (tie-averaged) ranks and new values interpolate between them;
2. optional covariate regression: ordinary least squares of the targets on ``[1, covariates]``
   over training rows; ``y - (c - mean_train(c)) @ beta`` is used for every row;
3. z-score with the training mean and sd (population sd, ``ddof=0``).

A gene constant among the training individuals maps to exactly 0 on every row that holds that
value (no covariate regression, its value as the mean, sd 1): never NaN or inf, and never the
round-off of a mean and sd computed from equal values.

Missing targets (NaN) are ignored when fitting and stay NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr, ndtri
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted


def _as_2d(y: NDArray, name: str) -> tuple[NDArray[np.float64], bool]:
    a = np.asarray(y, dtype=np.float64)
    if a.ndim == 1:
        return a[:, None], True
    if a.ndim != 2:
        msg = f"TargetNormalizer: {name} must have shape (n_individuals,) or (n_individuals, n_genes); got {a.shape}"
        raise ValueError(msg)
    return a, False


def _covs(covariates: NDArray, n: int) -> NDArray[np.float64]:
    c = np.asarray(covariates, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    if c.shape[0] != n:
        msg = f"TargetNormalizer: covariates has {c.shape[0]} rows for {n} individuals"
        raise ValueError(msg)
    if not np.isfinite(c).all():
        msg = "TargetNormalizer: covariates contain NaN or inf"
        raise ValueError(msg)
    return c


class TargetNormalizer(TransformerMixin, BaseEstimator):
    """Per-gene inverse-normal / covariate regression / z-score, fitted on training individuals.

    Parameters
    ----------
    inverse_normal : bool, default=False
        Apply the rank-based inverse-normal transform first (reference: training values).
    regress_covariates : bool, default=True
        Regress out the ``covariates`` given to ``fit``/``transform`` (ignored when none are given
        to ``fit``). Coefficients are fitted on training rows only.

    Attributes
    ----------
    n_genes_ : int
    ref_sorted_ : list of ndarray
        Sorted training values per gene (inverse-normal reference; empty when not used).
    cov_mean_ : ndarray of shape (n_covariates,)
        Training mean of the covariates (empty without covariates).
    coef_ : ndarray of shape (n_covariates, n_genes)
        Covariate coefficients (OLS with intercept on training rows; zero rows without covariates).
    mean_, scale_ : ndarray of shape (n_genes,)
        Training mean and sd of the (residualised) targets; without covariates, the mean and sd of
        the (inverse-normal transformed) training targets.
    """

    def __init__(self, inverse_normal: bool = False, regress_covariates: bool = True) -> None:
        self.inverse_normal = inverse_normal
        self.regress_covariates = regress_covariates

    # -- steps ---------------------------------------------------------------------------------
    def _int(self, y: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.full_like(y, np.nan)
        for j, ref in enumerate(self.ref_sorted_):
            col = y[:, j]
            ok = np.isfinite(col)
            n = len(ref)
            if n == 0:
                continue
            lo = np.searchsorted(ref, col[ok], side="left")
            hi = np.searchsorted(ref, col[ok], side="right")
            rank = lo + (hi - lo + 1) / 2.0
            out[ok, j] = ndtri((rank - 0.375) / (n + 0.25))
        return out

    def _inverse_int(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.full_like(z, np.nan)
        for j, ref in enumerate(self.ref_sorted_):
            n = len(ref)
            ok = np.isfinite(z[:, j])
            rank = ndtr(z[ok, j]) * (n + 0.25) + 0.375
            out[ok, j] = np.interp(rank, np.arange(1, n + 1), ref)
        return out

    def _uses_covariates(self) -> bool:
        return self.coef_.shape[0] > 0

    # -- API -----------------------------------------------------------------------------------
    def fit(self, y: NDArray, covariates: NDArray | None = None) -> TargetNormalizer:
        """Fit on training individuals: ``y`` (n_train,) or (n_train, n_genes), float."""
        a, _ = _as_2d(y, "y")
        n, g = a.shape
        self.n_genes_ = g
        self.ref_sorted_ = [np.sort(a[np.isfinite(a[:, j]), j]) for j in range(g)] if self.inverse_normal else []
        if self.inverse_normal:
            a = self._int(a)
        use = self.regress_covariates and covariates is not None
        c = _covs(covariates, n) if use else np.zeros((n, 0))
        self.cov_mean_ = c.mean(0)
        cc = c - self.cov_mean_
        x = np.hstack([np.ones((n, 1)), cc])
        coef = np.zeros((x.shape[1], g))
        ok_all = np.isfinite(a)
        const = np.array([np.ptp(a[ok_all[:, j], j]) == 0 if ok_all[:, j].any() else True for j in range(g)], bool)
        if use:
            for j in range(g):
                ok = ok_all[:, j]
                if ok.sum() > 0 and not const[j]:  # a constant gene: nothing to regress
                    coef[:, j] = np.linalg.lstsq(x[ok], a[ok, j], rcond=None)[0]
        self.coef_ = coef[1:]
        resid = a - cc @ self.coef_
        mean = np.zeros(g)
        sd = np.ones(g)
        for j in range(g):
            col = resid[ok_all[:, j], j]
            if len(col) and const[j]:  # exactly 0 after centring (a mean of equal values may round)
                mean[j] = col[0]
            elif len(col):
                mean[j], sd[j] = col.mean(), col.std()
        self.mean_ = mean
        self.scale_ = np.where(sd > 1e-12, sd, 1.0)
        return self

    def transform(self, y: NDArray, covariates: NDArray | None = None) -> NDArray[np.float64]:
        """Normalise any individuals' targets with the training fit; returns float64, same shape."""
        check_is_fitted(self, "coef_")
        a, flat = _as_2d(y, "y")
        if a.shape[1] != self.n_genes_:
            msg = f"TargetNormalizer: fitted on {self.n_genes_} genes; got {a.shape[1]}"
            raise ValueError(msg)
        if self.inverse_normal:
            a = self._int(a)
        if self._uses_covariates() and covariates is None:
            msg = "TargetNormalizer: fitted with covariates; transform needs the same covariates"
            raise ValueError(msg)
        if self._uses_covariates():
            a = a - (_covs(covariates, a.shape[0]) - self.cov_mean_) @ self.coef_
        out = (a - self.mean_) / self.scale_
        return out[:, 0] if flat else out

    def fit_transform(self, y: NDArray, covariates: NDArray | None = None) -> NDArray[np.float64]:  # noqa: D102
        return self.fit(y, covariates).transform(y, covariates)

    def inverse_transform(self, z: NDArray, covariates: NDArray | None = None) -> NDArray[np.float64]:
        """Map normalised values back to target units.

        Without covariates, covariates are taken at their training mean; the inverse-normal step
        is undone by interpolating training quantiles.
        """
        check_is_fitted(self, "coef_")
        a, flat = _as_2d(z, "z")
        out = a * self.scale_ + self.mean_
        if covariates is not None and self._uses_covariates():
            out = out + (_covs(covariates, a.shape[0]) - self.cov_mean_) @ self.coef_
        if self.inverse_normal:
            out = self._inverse_int(out)
        return out[:, 0] if flat else out

    def get_state(self) -> dict:
        """Fitted state as plain lists (for checkpoints loadable with ``weights_only=True``)."""
        check_is_fitted(self, "coef_")
        return {
            "inverse_normal": bool(self.inverse_normal),
            "regress_covariates": bool(self.regress_covariates),
            "n_genes": int(self.n_genes_),
            "ref_sorted": [r.tolist() for r in self.ref_sorted_],
            "cov_mean": self.cov_mean_.tolist(),
            "coef": self.coef_.tolist(),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict) -> TargetNormalizer:
        """Rebuild a fitted normaliser from :meth:`get_state`."""
        obj = cls(inverse_normal=state["inverse_normal"], regress_covariates=state["regress_covariates"])
        obj.n_genes_ = int(state["n_genes"])
        obj.ref_sorted_ = [np.asarray(r, dtype=np.float64) for r in state["ref_sorted"]]
        obj.cov_mean_ = np.asarray(state["cov_mean"], dtype=np.float64)
        obj.coef_ = np.asarray(state["coef"], dtype=np.float64).reshape(len(obj.cov_mean_), obj.n_genes_)
        obj.mean_ = np.asarray(state["mean"], dtype=np.float64)
        obj.scale_ = np.asarray(state["scale"], dtype=np.float64)
        return obj
