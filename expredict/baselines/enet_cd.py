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
original SNPs merged into column ``j`` (SNPs in perfect LD, see ``enet_path._collapse_duplicates``):
``k`` identical columns share their weight equally, which is one column with L2 weight ``1 / k``.

Precision: each fit's working-set Gram may be stored in float32 (``gram_dtype``; the caller does
so at glmnet's default ``thresh``). Coordinate descent reads one Gram row per coefficient change
and, with 66 Grams of up to a megabyte each, is bound by that memory traffic; half the bytes make a
gene's whole fit ~10 % faster. Everything else stays float64 and the gradients are reset exactly
from the residuals at every KKT check, so the rounding (6e-8 relative) only perturbs the working
set's quadratic, far below what ``thresh`` leaves unconverged: on 8 demo genes (48 ``cv.glmnet``
problems) the CV curves moved by < 1e-8 relative, with the same lambda.min and SNP counts.

Conventions: ``XT`` is ``float64[p, n]`` (a row per merged SNP: its raw ALT dosages), rows are
individuals ``0..n-1``; coefficients are returned in standardised units (the caller maps them
back to dosages and to the original SNPs).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.typed import List
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
            for e in range(m):
                g[e] -= G[a, e] * d
            b[a] = bnew
            if d * d > dlx:
                dlx = d * d
    return dlx


@nb.njit(cache=True, nogil=True)
def _swap(Gc, g, b, l2w, ws, pos, Xo, a, e, m):
    """Exchange working-set positions ``a`` and ``e`` (< ``m``) of one fit (Gram rows and columns too)."""
    for t in range(m):
        Gc[a, t], Gc[e, t] = Gc[e, t], Gc[a, t]
    for t in range(m):
        Gc[t, a], Gc[t, e] = Gc[t, e], Gc[t, a]
    g[a], g[e] = g[e], g[a]
    b[a], b[e] = b[e], b[a]
    l2w[a], l2w[e] = l2w[e], l2w[a]
    for t in range(Xo.shape[1]):
        Xo[a, t], Xo[e, t] = Xo[e, t], Xo[a, t]
    ws[a], ws[e] = ws[e], ws[a]
    pos[ws[a]] = a
    pos[ws[e]] = e


@nb.njit(cache=True, nogil=True)
def _solve(Gc, g, Bc, ws, m, front, pos, Xo, kinv, lam1, lam2, thresh, max_passes):
    """glmnet's loop for one fit: sweep the working set ``ws[:m]`` (Gram ``Gc``, gradients ``g``),
    iterate its non-zero subset to convergence, repeat until a sweep changes nothing.

    Variables that have ever been non-zero are kept at the front of the working set
    (``ws[:front]``), so the inner loop runs on the contiguous block ``Gc[:front, :front]`` and
    only updates those gradients; the others catch up once it has converged. Returns
    ``(passes, front)``; passes is -1 when more than ``max_passes`` were needed.
    """
    b = np.empty(m)
    l2w = np.empty(m)
    for a in range(m):
        b[a] = Bc[ws[a]]
        l2w[a] = kinv[ws[a]]
    passes = 0
    b0 = np.empty(m)
    while True:
        dlx = _cd_pass(Gc, g, b, l2w, lam1, lam2, m)
        passes += 1
        if dlx < thresh:
            break
        for a in range(front, m):  # newly non-zero variables join the front block
            if b[a] != 0.0:
                if a != front:
                    _swap(Gc, g, b, l2w, ws, pos, Xo, a, front, m)
                front += 1
        na = front
        for t in range(na):
            b0[t] = b[t]
        while True:
            dlx = _cd_pass(Gc, g, b, l2w, lam1, lam2, na)
            passes += 1
            if passes > max_passes:
                return -1, front
            if dlx < thresh:
                break
        for t in range(na):  # the rest of the working set catches up with the inner loop's changes
            d = b[t] - b0[t]
            if d != 0.0:
                for e in range(na, m):
                    g[e] -= Gc[t, e] * d
    for a in range(m):
        Bc[ws[a]] = b[a]
    return passes, front


@nb.njit(cache=True, nogil=True)
def _screen(G, inv, pos, c, cut, out):
    """SNPs outside fit ``c``'s working set whose standardised gradient ``|G[c, j] inv[c, j]|``
    exceeds ``cut`` (SNPs constant in the fit skipped), written to ``out``; returns their count.

    A loop of its own, free of side effects, so that it compiles to a tight scan (inlined in the
    admitting loop it ran ~10x slower and took a fifth of a gene's fit time).
    """
    n = 0
    for j in range(G.shape[1]):
        if pos[c, j] < 0 and inv[c, j] > 0.0 and abs(G[c, j]) * inv[c, j] > cut:
            out[n] = j
            n += 1
    return n


@nb.njit(cache=True, nogil=True)
def _grow_square(A, need):
    """Square ``A`` reallocated (x2, same dtype) to hold at least ``need`` rows and columns; the new
    entries are uninitialised (every reader only looks at positions that were written)."""
    cap = A.shape[0]
    new = max(need, 2 * cap)
    B = np.empty((new, new), A.dtype)
    B[:cap, :cap] = A
    return B


@nb.njit(cache=True, nogil=True)
def _grow_rows(A, need):
    """``A`` reallocated (x2) to hold at least ``need`` rows; the new rows are uninitialised."""
    cap = A.shape[0]
    new = max(need, 2 * cap)
    B = np.empty((new, A.shape[1]))
    B[:cap] = A
    return B


@nb.njit(cache=True, nogil=True, fastmath=True)
def _fit_gram(first, m, ws, upos, S, Xo, xm, xs, nc, Gc):
    """Gram rows/columns of one fit's working-set positions ``first..m-1``.

    From the shared raw Gram ``S`` over all rows: subtract the fit's left-out rows (``Xo``, their
    dosages in working-set order), centre and scale with the fit's means and s.d.s (``G = (S - X_out'X_out - n m m') / (n s s')``).
    """
    no = Xo.shape[1]
    for a in range(first, m):
        j = ws[a]
        uj = upos[j]
        mj = xm[j]
        sj = xs[j]
        for e in range(a + 1):
            l = ws[e]
            acc = 0.0
            for t in range(no):
                acc += Xo[a, t] * Xo[e, t]
            v = (S[uj, upos[l]] - acc - nc * mj * xm[l]) / (nc * sj * xs[l])
            Gc[a, e] = v
            Gc[e, a] = v


@nb.njit(cache=True, nogil=True, fastmath=True)
def _residual(ws, m, Bc, XT, xm, xs, yt, w, r, ev, n_ev, pred):
    """``r = w * (y~ - sum_j z_j b_j)`` over one fit's non-zero coefficients, and the standardised
    predictions ``sum_j z_ij b_j`` at its held-out rows ``ev[:n_ev]`` (where ``y~ = 0``)."""
    n = XT.shape[1]
    tmp = np.empty(n)
    shift = 0.0
    for i in range(n):
        tmp[i] = yt[i]
    for a in range(m):
        j = ws[a]
        b = Bc[j]
        if b == 0.0:
            continue
        f = b / xs[j]
        shift += xm[j] * f
        for i in range(n):
            tmp[i] -= XT[j, i] * f
    for i in range(n):
        r[i] = w[i] * (tmp[i] + shift)
    for e in range(n_ev):
        pred[e] = -(tmp[ev[e]] + shift)


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
    leader: NDArray[np.int64],
    fdev: float,
    devmax: float,
    mnlam: int,
    gram_dtype: NDArray,
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
    leader : int64[F]
        Fit whose path decides where this fit's path ends (glmnet's path termination, applied as
        ``cv.glmnet`` does: the fit on all of a problem's rows ends its own path and its folds stop
        there too), or -1 for the full path. A leader stops after lambda ``k`` (0-based) when
        ``k + 1 >= mnlam`` and its fraction of variance explained ``rsq`` (glmnet's dev.ratio)
        exceeds ``devmax`` or gained less than ``fdev * rsq`` over lambda ``k - 1``.
    fdev, devmax, mnlam : float, float, int
        glmnet's ``glmnet.control`` values (the caller passes ``enet.PATH_STOP``).
    gram_dtype : float32[0] or float64[0]
        An empty array whose dtype the fits' working-set Grams are stored in (see the module
        docstring; gradients, residuals and coefficients are float64 either way).

    Returns
    -------
    pred : float64[F, L, m]
        Standardised predictions ``sum_j z_ij b_j`` at ``eval_rows`` (row standardisation of the
        fit), for every lambda.
    coef : float64[n_store, p, L]
        Standardised coefficients of the stored fits.
    passes : int64[F]
        Coordinate-descent passes per fit (``-1``: ``max_passes`` exceeded, result invalid).
    n_used : int64[F]
        Lambdas solved per fit (``L`` unless its leader ended the path earlier).
    """
    p, n = XT.shape
    F, L = lam1.shape
    n_store = 0
    for c in range(F):
        if store[c] >= 0:
            n_store += 1
    # 1 / (n_c s_jc): turns x_j . r_c into the standardised gradient (0 for SNPs constant in the fit)
    inv = np.zeros((F, p))
    for c in range(F):
        for j in range(p):
            if xs[c, j] > 0.0:
                inv[c, j] = 1.0 / (n_fit[c] * xs[c, j])
    # per fit: rows left out (its Gram is the shared one minus theirs), Gram, gradients, their dosages
    out_rows = List()
    Gl = List()
    gl = List()
    XOl = List()
    cap0 = min(p, 256)
    for c in range(F):
        rows = np.flatnonzero(W[c] == 0.0)
        out_rows.append(rows)
        Gl.append(np.zeros((cap0, cap0), gram_dtype.dtype))
        gl.append(np.zeros(cap0))
        XOl.append(np.zeros((cap0, len(rows))))  # zero columns for a fit on all rows
    ucap = min(p, 256)
    S = np.zeros((ucap, ucap))  # raw Gram of the union of working sets over all rows
    XU = np.zeros((ucap, n))  # raw rows of the union, in union order
    upos = np.full(p, -1, dtype=np.int64)
    u_n = 0
    R = Yt.copy()
    B = np.zeros((F, p))
    pos = np.full((F, p), -1, dtype=np.int64)
    ws_idx = np.zeros((F, p), dtype=np.int64)
    ws_n = np.zeros(F, dtype=np.int64)
    passes = np.zeros(F, dtype=np.int64)
    pred = np.zeros((F, L, eval_rows.shape[1]))
    coef = np.zeros((n_store, p, L))
    G = np.dot(R, XT.T)  # (F, p): x_j . r_c (r_c sums to 0 on the fit's rows)
    cand = np.empty(p, dtype=np.int64)  # SNPs a screen admits to one fit's working set
    todo = np.ones(F, dtype=np.bool_)
    first = np.zeros(F, dtype=np.int64)
    front = np.zeros(F, dtype=np.int64)  # working-set positions [0, front) hold ever-non-zero SNPs
    n_used = np.full(F, L, dtype=np.int64)
    live = np.ones(F, dtype=np.bool_)  # still on its path
    rsq_prev = np.zeros(F)
    for k in range(L):
        u_first = u_n
        for c in range(F):
            first[c] = ws_n[c]
            todo[c] = live[c]
            if not live[c]:
                continue
            # sequential strong rule: |grad_j| > alpha (2 lambda_k - lambda_{k-1}) joins the working set
            cut = 2.0 * lam1[c, k] - (lam1[c, k - 1] if k > 0 else lam1[c, 0])
            for t in range(_screen(G, inv, pos, c, cut, cand)):
                u_n, XU = _admit(c, cand[t], XT, ws_idx, ws_n, pos, out_rows, Gl, gl, XOl, upos, u_n, XU)
        while True:
            if u_n > u_first:  # shared raw Gram of the new union members: one BLAS call for all fits
                if u_n > S.shape[0]:
                    S = _grow_square(S, u_n)
                blk = np.dot(XU[u_first:u_n], XU[:u_n].T)
                for a in range(u_first, u_n):
                    for e in range(u_n):
                        S[a, e] = blk[a - u_first, e]
                        S[e, a] = blk[a - u_first, e]
                u_first = u_n
            for c in range(F):
                if not todo[c] or passes[c] < 0:
                    continue
                m = ws_n[c]
                ws = ws_idx[c]
                Gc = Gl[c]
                g = gl[c]
                _fit_gram(first[c], m, ws, upos, S, XOl[c], xm[c], xs[c], n_fit[c], Gc)
                for a in range(m):  # exact gradients from the last residual
                    g[a] = G[c, ws[a]] * inv[c, ws[a]]
                used, front[c] = _solve(Gc, g, B[c], ws, m, front[c], pos[c], XOl[c], kinv, lam1[c, k], lam2[c, k],
                                        thresh, max_passes - passes[c])  # fmt: skip
                passes[c] = -1 if used < 0 else passes[c] + used
                _residual(ws, m, B[c], XT, xm[c], xs[c], Yt[c], W[c], R[c], eval_rows[c], eval_n[c], pred[c, k])
            G = np.dot(R, XT.T)
            # KKT check on every variable outside the working set
            any_viol = False
            for c in range(F):
                todo[c] = False
                first[c] = ws_n[c]
                if passes[c] < 0 or not live[c]:
                    continue
                lim = lam1[c, k] * (1.0 + 1e-9)
                nv = _screen(G, inv, pos, c, lim, cand)
                for t in range(nv):
                    u_n, XU = _admit(c, cand[t], XT, ws_idx, ws_n, pos, out_rows, Gl, gl, XOl, upos, u_n, XU)
                if nv:
                    todo[c] = True
                    any_viol = True
            if not any_viol:
                break
        _terminate(k, R, n_fit, leader, live, n_used, rsq_prev, fdev, devmax, mnlam)
        for c in range(F):
            if store[c] >= 0:
                for t in range(ws_n[c]):
                    coef[store[c], ws_idx[c, t], k] = B[c, ws_idx[c, t]]
            if k + 1 < L:  # fits that need no work at the next lambda still carry their predictions
                for e in range(eval_n[c]):
                    pred[c, k + 1, e] = pred[c, k, e]
        if not live.any():
            break
    return pred, coef, passes, n_used


@nb.njit(cache=True, nogil=True)
def _terminate(k, R, n_fit, leader, live, n_used, rsq_prev, fdev, devmax, mnlam):
    """glmnet's path termination after lambda ``k``: a leader whose ``rsq`` exceeds ``devmax`` or
    gained less than ``fdev * rsq`` (from lambda ``mnlam - 1`` on) ends its path and its followers'.

    The same rule as ``enet.glmnet_path_length``, applied as the path is solved so that the fits
    stop working; tests check the two agree."""
    F, n = R.shape
    for c in range(F):
        if leader[c] != c or not live[c]:
            continue
        rss = 0.0
        for i in range(n):
            rss += R[c, i] * R[c, i]
        rsq = 1.0 - rss / n_fit[c]  # targets are standardised on the fit's rows: TSS = n_fit
        if k + 1 >= mnlam and (rsq - rsq_prev[c] < fdev * rsq or rsq > devmax):
            for f in range(F):
                if leader[f] == c:
                    live[f] = False
                    n_used[f] = k + 1
        rsq_prev[c] = rsq


@nb.njit(cache=True, nogil=True)
def _admit(c, j, XT, ws_idx, ws_n, pos, out_rows, Gl, gl, XOl, upos, u_n, XU):
    """Add SNP ``j`` to fit ``c``'s working set (growing that fit's buffers when full) and to the
    union of working sets; returns the new union size and buffer."""
    a = ws_n[c]
    if a >= Gl[c].shape[0]:
        Gl[c] = _grow_square(Gl[c], a + 1)
        g2 = np.zeros(Gl[c].shape[0])
        g2[:a] = gl[c][:a]
        gl[c] = g2
        XOl[c] = _grow_rows(XOl[c], a + 1)
    pos[c, j] = a
    ws_idx[c, a] = j
    ws_n[c] = a + 1
    orow = out_rows[c]
    xo = XOl[c][a]
    for t in range(len(orow)):
        xo[t] = XT[j, orow[t]]
    if upos[j] < 0:
        if u_n >= XU.shape[0]:
            XU = _grow_rows(XU, u_n + 1)
        upos[j] = u_n
        XU[u_n] = XT[j]
        u_n += 1
    return u_n, XU
