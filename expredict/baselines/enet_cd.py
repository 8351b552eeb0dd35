"""glmnet's elastic-net coordinate descent in numba, every fit of a gene's CV scheme in lockstep.

Why: PredictDB's recipe costs 66 path fits per gene (nested CV 5 x (10 inner folds + refit) plus
the final 10-fold CV + refit), all on subsets of the same few hundred training rows. python-glmnet
spends most of each fit on full sweeps over every SNP at every lambda. Here the fits of one gene
run side by side over the lambda index: one BLAS product ``X' R`` gives every fit's gradient at
once (the KKT check and the sequential strong rule of Tibshirani et al. 2012), and coordinate
descent only visits each fit's working set (ever-active + strong-rule variables), with glmnet's
"covariance" updates (a Gram matrix of the working set, grown as variables join it), its
active-set inner loop and its convergence rule (``max_j (delta b_j)^2 < thresh`` in standardised
units). Gradients are reset exactly from the residuals at every KKT check.

Problem solved for fit ``c`` with fitting rows ``S_c`` (``n_c`` of them), at each ``lambda``::

    (1 / 2 n_c) sum_{i in S_c} (y~_i - sum_j z_ij b_j)^2
        + lambda~ * sum_j (alpha |b_j| + (1 - alpha) / (2 k_j) b_j^2)

with ``z_j`` the column standardised on ``S_c`` (population s.d.), ``y~ = (y - mean) / sd`` on
``S_c`` and ``lambda~ = lambda / sd(y)`` -- glmnet's internal scaling. ``k_j`` is the number of
original SNPs merged into column ``j`` (SNPs in perfect LD, see ``enet._collapse_duplicates``):
``k`` identical columns share their weight equally, which is one column with L2 weight ``1 / k``.

Conventions: ``XT`` is ``float64[p, n]`` (a row per merged SNP: its raw ALT dosages), rows are
individuals ``0..n-1``; coefficients are returned in standardised units (the caller maps them
back to dosages and to the original SNPs).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numpy.typing import NDArray

__all__ = ["lockstep_paths"]


@nb.njit(cache=True, nogil=True, fastmath=True)
def _cd_pass(G, g, b, l2w, lam1, lam2, m) -> float:
    """One coordinate-descent pass over ``b[:m]`` with Gram ``G`` and gradient ``g`` (updated in
    place, all ``m`` entries); returns the largest squared change."""
    dlx = 0.0
    for a in range(m):
        ba = b[a]
        gaa = G[a, a]
        u = g[a] + gaa * ba
        v = abs(u) - lam1
        bnew = 0.0
        if v > 1e-12 * lam1:  # round-off entries at lambda_max stay exact zeros
            bnew = (v if u > 0.0 else -v) / (gaa + lam2 * l2w[a])
        d = bnew - ba
        if d != 0.0:
            col = G[a]
            for e in range(m):
                g[e] -= col[e] * d
            b[a] = bnew
            if d * d > dlx:
                dlx = d * d
    return dlx


@nb.njit(cache=True, nogil=True)
def _solve(c, ws_idx, ws_n, Gm, grad, B, kinv, lam1, lam2, thresh, max_passes) -> int:
    """glmnet's loop for fit ``c``: sweep the working set, iterate its non-zero subset to
    convergence, repeat until a sweep changes nothing. Returns the passes used (-1: too many).

    The inner loop runs on a compact copy of the active Gram block (fewer gradients to update,
    better cache use); the working set's other gradients catch up once it has converged.
    """
    m = ws_n[c]
    Gc = Gm[c]
    g = grad[c]
    b = np.empty(m)
    l2w = np.empty(m)
    for a in range(m):
        b[a] = B[c, ws_idx[c, a]]
        l2w[a] = kinv[ws_idx[c, a]]
    passes = 0
    while True:
        dlx = _cd_pass(Gc, g, b, l2w, lam1, lam2, m)
        passes += 1
        if dlx < thresh:
            break
        na = 0
        act = np.empty(m, dtype=np.int64)
        for a in range(m):
            if b[a] != 0.0:
                act[na] = a
                na += 1
        GA = np.empty((na, na))
        gA = np.empty(na)
        bA = np.empty(na)
        lA = np.empty(na)
        for t in range(na):
            gA[t] = g[act[t]]
            bA[t] = b[act[t]]
            lA[t] = l2w[act[t]]
            for u in range(na):
                GA[t, u] = Gc[act[t], act[u]]
        while True:
            dlx = _cd_pass(GA, gA, bA, lA, lam1, lam2, na)
            passes += 1
            if passes > max_passes:
                return -1
            if dlx < thresh:
                break
        for t in range(na):
            d = bA[t] - b[act[t]]
            if d != 0.0:
                col = Gc[act[t]]
                for e in range(m):
                    g[e] -= col[e] * d
                b[act[t]] = bA[t]
    for a in range(m):
        B[c, ws_idx[c, a]] = b[a]
    return passes


@nb.njit(cache=True, nogil=True)
def _grow2(A, need):
    """``A`` (float64[F, cap, cap] or float64[cap, cap]) reallocated to hold ``need`` entries."""
    cap = A.shape[-1]
    new = max(need, 2 * cap)
    if A.ndim == 3:
        B3 = np.zeros((A.shape[0], new, new))
        B3[:, :cap, :cap] = A
        return B3
    B2 = np.zeros((new, new))
    B2[:cap, :cap] = A
    return B2


@nb.njit(cache=True, nogil=True)
def _grow1(A, need):
    """``A`` (2-D, growing along axis 0... or axis 1 for per-fit rows) reallocated to ``need`` rows."""
    cap = A.shape[0]
    new = max(need, 2 * cap)
    B = np.zeros((new, A.shape[1]))
    B[:cap] = A
    return B


@nb.njit(cache=True, nogil=True)
def _grow_fits(Gm, grad, WO, need):
    """Per-fit working-set buffers reallocated to hold ``need`` variables."""
    F, cap, _ = Gm.shape
    new = max(need, 2 * cap)
    G2 = np.zeros((F, new, new))
    G2[:, :cap, :cap] = Gm
    g2 = np.zeros((F, new))
    g2[:, :cap] = grad
    W2 = np.zeros((F, new, WO.shape[2]))
    W2[:, :cap] = WO
    return G2, g2, W2


@nb.njit(cache=True, nogil=True)
def _admit(c, j, XT, ws_idx, ws_n, pos, out_rows, out_n, WO):
    """Add variable ``j`` to fit ``c``'s working set (with its left-out rows' dosages)."""
    a = ws_n[c]
    pos[c, j] = a
    ws_idx[c, a] = j
    ws_n[c] = a + 1
    for t in range(out_n[c]):
        WO[c, a, t] = XT[j, out_rows[c, t]]


@nb.njit(cache=True, nogil=True, fastmath=True)
def _fit_gram(c, first, ws_idx, ws_n, upos, S, WO, xm, xs, n_fit, Gm):
    """Gram rows/columns of fit ``c``'s working-set positions ``first..ws_n[c]-1``.

    From the shared raw Gram ``S`` over all rows: subtract the fit's left-out rows (``WO[c]``,
    their dosages in working-set order), centre and scale with the fit's means and s.d.s
    (``G = (S - X_out'X_out - n m m') / (n s s')``).
    """
    m = ws_n[c]
    nc = n_fit[c]
    Xo = WO[c]
    no = Xo.shape[1]
    for a in range(first, m):
        j = ws_idx[c, a]
        uj = upos[j]
        xj = Xo[a]
        mj = xm[c, j]
        sj = xs[c, j]
        for e in range(a + 1):
            l = ws_idx[c, e]
            xl = Xo[e]
            acc = 0.0
            for t in range(no):
                acc += xj[t] * xl[t]
            v = (S[uj, upos[l]] - acc - nc * mj * xm[c, l]) / (nc * sj * xs[c, l])
            Gm[c, a, e] = v
            Gm[c, e, a] = v


@nb.njit(cache=True, nogil=True, fastmath=True)
def _residual(c, ws_idx, ws_n, B, XT, xm, xs, Yt, W, R):
    """``R[c] = W[c] * (y~ - sum_j z_j b_j)`` over the fit's non-zero coefficients."""
    n = XT.shape[1]
    r = np.empty(n)
    shift = 0.0
    for i in range(n):
        r[i] = Yt[c, i]
    for a in range(ws_n[c]):
        j = ws_idx[c, a]
        b = B[c, j]
        if b == 0.0:
            continue
        f = b / xs[c, j]
        shift += xm[c, j] * f
        x = XT[j]
        for i in range(n):
            r[i] -= x[i] * f
    w = W[c]
    for i in range(n):
        R[c, i] = w[i] * (r[i] + shift)


@nb.njit(cache=True, nogil=True)
def lockstep_paths(
    XT: NDArray[np.float64],
    xm: NDArray[np.float64],
    xs: NDArray[np.float64],
    kinv: NDArray[np.float64],
    Yt: NDArray[np.float64],
    W: NDArray[np.float64],
    n_fit: NDArray[np.float64],
    lam1: NDArray[np.float64],
    lam2: NDArray[np.float64],
    eval_rows: NDArray[np.int64],
    eval_n: NDArray[np.int64],
    store: NDArray[np.int64],
    thresh: float,
    max_passes: int,
):
    """Solve ``F`` elastic-net paths of ``L`` lambdas each, side by side.

    Parameters
    ----------
    XT : float64[p, n]
        Raw dosages, a row per (merged) SNP.
    xm, xs : float64[F, p]
        Mean and population s.d. of each SNP over each fit's rows; ``xs == 0`` excludes the SNP.
    kinv : float64[p]
        ``1 / k``: L2 weight of each merged column.
    Yt : float64[F, n]
        Standardised targets ``(y - mean) / sd`` on each fit's rows, 0 elsewhere.
    W : float64[F, n]
        1.0 on each fit's rows, 0.0 elsewhere.
    n_fit : float64[F]
        Rows per fit.
    lam1, lam2 : float64[F, L]
        ``alpha * lambda / sd(y)`` and ``(1 - alpha) * lambda / sd(y)``, decreasing along ``L``.
    eval_rows, eval_n : int64[F, m], int64[F]
        Rows at which to predict each fit along the path (held-out rows of a CV fold).
    store : int64[F]
        Slot in the returned coefficient array for fits whose whole path is kept, else -1.

    Returns
    -------
    pred : float64[F, m, L]
        Standardised predictions ``sum_j z_ij b_j`` at ``eval_rows`` (row standardisation of the
        fit), for every lambda.
    coef : float64[n_store, p, L]
        Standardised coefficients of the stored fits.
    passes : int64[F]
        Coordinate-descent passes per fit (``-1``: ``max_passes`` exceeded, result invalid).
    """
    p, n = XT.shape
    F, L = lam1.shape
    n_store = 0
    for c in range(F):
        if store[c] >= 0:
            n_store += 1
    # rows each fit leaves out: its Gram is the shared one minus theirs
    out_rows = np.zeros((F, n), dtype=np.int64)
    out_n = np.zeros(F, dtype=np.int64)
    for c in range(F):
        for i in range(n):
            if W[c, i] == 0.0:
                out_rows[c, out_n[c]] = i
                out_n[c] += 1
    max_out = max(1, out_n.max())
    cap = min(p, 128)
    Gm = np.zeros((F, cap, cap))
    grad = np.zeros((F, cap))
    WO = np.zeros((F, cap, max_out))  # left-out rows' dosages of each working-set variable
    ucap = min(p, 256)
    S = np.zeros((ucap, ucap))  # raw Gram of the union of working sets, all rows
    XU = np.zeros((ucap, n))  # raw rows of the union, in union order
    upos = np.full(p, -1, dtype=np.int64)
    u_n = 0
    R = Yt.copy()
    B = np.zeros((F, p))
    pos = np.full((F, p), -1, dtype=np.int64)
    ws_idx = np.zeros((F, p), dtype=np.int64)
    ws_n = np.zeros(F, dtype=np.int64)
    passes = np.zeros(F, dtype=np.int64)
    pred = np.zeros((F, eval_rows.shape[1], L))
    coef = np.zeros((n_store, p, L))
    G = np.dot(XT, R.T)  # (p, F): x_j . r_c = n_c s_jc * gradient (r_c sums to 0 on the fit's rows)
    todo = np.ones(F, dtype=np.bool_)
    first = np.zeros(F, dtype=np.int64)
    for k in range(L):
        u_first = u_n
        for c in range(F):
            # sequential strong rule: |grad_j| > alpha (2 lambda_k - lambda_{k-1}) joins the working set
            prev = lam1[c, k - 1] if k > 0 else lam1[c, 0]
            cut = 2.0 * lam1[c, k] - prev
            first[c] = ws_n[c]
            for j in range(p):
                if pos[c, j] < 0 and xs[c, j] > 0.0 and abs(G[j, c]) / (n_fit[c] * xs[c, j]) > cut:
                    if ws_n[c] >= Gm.shape[1]:
                        Gm, grad, WO = _grow_fits(Gm, grad, WO, ws_n[c] + 1)
                    if upos[j] < 0:
                        if u_n >= XU.shape[0]:
                            XU = _grow1(XU, u_n + 1)
                        upos[j] = u_n
                        XU[u_n] = XT[j]
                        u_n += 1
                    _admit(c, j, XT, ws_idx, ws_n, pos, out_rows, out_n, WO)
            todo[c] = True
        while True:
            if u_n > u_first:  # shared raw Gram of the new union members (one BLAS call for all fits)
                if u_n > S.shape[0]:
                    S = _grow2(S, u_n)
                blk = np.dot(XU[u_first:u_n], XU[:u_n].T)
                for a in range(u_first, u_n):
                    for e in range(u_n):
                        S[a, e] = blk[a - u_first, e]
                        S[e, a] = blk[a - u_first, e]
                u_first = u_n
            for c in range(F):
                if not todo[c] or passes[c] < 0:
                    continue
                _fit_gram(c, first[c], ws_idx, ws_n, upos, S, WO, xm, xs, n_fit, Gm)
                for a in range(ws_n[c]):  # exact gradients from the last residual
                    j = ws_idx[c, a]
                    grad[c, a] = G[j, c] / (n_fit[c] * xs[c, j])
                used = _solve(c, ws_idx, ws_n, Gm, grad, B, kinv, lam1[c, k], lam2[c, k], thresh,
                              max_passes - passes[c])  # fmt: skip
                passes[c] = -1 if used < 0 else passes[c] + used
                _residual(c, ws_idx, ws_n, B, XT, xm, xs, Yt, W, R)
            G = np.dot(XT, R.T)
            # KKT check on every variable outside the working set
            any_viol = False
            for c in range(F):
                todo[c] = False
                first[c] = ws_n[c]
                if passes[c] < 0:
                    continue
                lim = lam1[c, k] * (1.0 + 1e-9)
                for j in range(p):
                    if pos[c, j] < 0 and xs[c, j] > 0.0 and abs(G[j, c]) / (n_fit[c] * xs[c, j]) > lim:
                        if ws_n[c] >= Gm.shape[1]:
                            Gm, grad, WO = _grow_fits(Gm, grad, WO, ws_n[c] + 1)
                        if upos[j] < 0:
                            if u_n >= XU.shape[0]:
                                XU = _grow1(XU, u_n + 1)
                            upos[j] = u_n
                            XU[u_n] = XT[j]
                            u_n += 1
                        _admit(c, j, XT, ws_idx, ws_n, pos, out_rows, out_n, WO)
                        todo[c] = True
                        any_viol = True
            if not any_viol:
                break
        for c in range(F):
            for t in range(ws_n[c]):
                j = ws_idx[c, t]
                b = B[c, j]
                if b == 0.0:
                    continue
                f = b / xs[c, j]
                mm = xm[c, j]
                for e in range(eval_n[c]):
                    i = eval_rows[c, e]
                    pred[c, e, k] += (XT[j, i] - mm) * f
                if store[c] >= 0:
                    coef[store[c], j, k] = b
    return pred, coef, passes
