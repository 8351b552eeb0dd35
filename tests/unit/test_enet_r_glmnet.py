"""Our elastic net against R's glmnet itself: PredictDB's ``cv.glmnet`` call (see tests/r_glmnet.py).

Every backend here solves glmnet's problem on glmnet's paths and folds; these tests check that the
whole ``cv.glmnet`` procedure -- each fit's own lambda path, glmnet's path termination, the folds
read at the all-rows path by interpolation, lambda.min on the fold-weighted CV MSE, the refit --
is R's. At a tight convergence threshold the two must agree to solver precision; at PredictDB's
(glmnet's default ``thresh`` 1e-7) they must pick the same lambda and SNPs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from expredict.baselines.enet_cv import cv_enet, cv_enet_many, make_fold_ids, nested_fold_ids
from expredict.io.genotypes import read_genotypes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from r_glmnet import r_cv_glmnet, require_r_glmnet  # noqa: E402
from test_enet import _saturating, make_genotypes, planted  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
# tight enough to take solver precision out of the comparison, loose enough for R to converge
# within its maxit on every lambda (at 1e-13 it gives up on the real slice's smallest lambdas)
TIGHT = 1e-11


@pytest.fixture(autouse=True)
def _r() -> None:
    require_r_glmnet()


def _planted(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X = make_genotypes(n, np.arange(p) * 100, seed=seed).alt_dosages().astype(np.float64)
    y, _ = planted(X, 5, 0.4, seed + 1)
    return X, y


def _real_slice() -> tuple[np.ndarray, np.ndarray]:
    """Real data: the fixture's 60 GEUVADIS individuals, their SNPs with MAF >= 0.05 in
    chr22:19.99-20.25 Mb (749) and the real expression of ENSG00000183597, log2(RPKM + 1), a gene
    whose model keeps ~20 SNPs."""
    import polars as pl

    g = read_genotypes(DATA / "geuvadis_slice.vcf.gz", "chr22")
    X = g.alt_dosages().astype(np.float64)
    maf = X.mean(axis=0) / 2
    X = X[:, np.minimum(maf, 1 - maf) >= 0.05]
    bed = pl.read_csv(DATA / "geuvadis_slice.bed", separator="\t")
    row = bed["gene"].to_list().index("ENSG00000183597.11")
    expr = np.asarray(bed.select(list(g.samples)).row(row), dtype=np.float64)
    return X, np.log2(expr + 1)


CASES = {
    "n>p planted": lambda: _planted(200, 80, 1),
    "n<p planted": lambda: _planted(150, 300, 2),
    "n<<p saturating (path ends early)": lambda: _saturating(5),
    "real GEUVADIS slice": _real_slice,
}


def _folds(n: int, seed: int = 7) -> np.ndarray:
    return make_fold_ids(n, 10 if n >= 100 else 5, np.random.default_rng(seed))


@pytest.mark.parametrize("case", list(CASES))
def test_cv_glmnet_equals_r_at_tight_threshold(case: str) -> None:
    X, y = CASES[case]()
    folds = _folds(len(y))
    r = r_cv_glmnet(X, y, folds, thresh=TIGHT)
    ours = cv_enet(X, y, fold_ids=folds, backend="numba", tol=TIGHT)
    assert len(ours.lambdas) == len(r.lambdas)  # the same path, ended at the same lambda
    np.testing.assert_allclose(ours.lambdas, r.lambdas, rtol=1e-12)
    # the whole CV curve; tighter from lambda_max to just past lambda.min (the deep tail is the
    # least converged part: ~1e-3 relative there at PredictDB's thresh)
    np.testing.assert_allclose(ours.cv_mse, r.cvm, rtol=1e-3)
    head = slice(0, r.best_index + 10)
    np.testing.assert_allclose(ours.cv_mse[head], r.cvm[head], rtol=2e-4)
    assert ours.best_index == r.best_index
    assert ours.n_nonzero == np.count_nonzero(r.coef)
    # predictions rather than weights: SNPs in perfect LD share a weight equally in our solution
    # (the exact optimum) and nearly so in R's, whose coordinate descent converges slowly there
    assert np.abs(X @ ours.coef + ours.intercept - (X @ r.coef + r.intercept)).max() <= 1e-4 * y.std()


@pytest.mark.parametrize("case", list(CASES))
def test_predictdb_defaults_pick_rs_lambda_and_snps(case: str) -> None:
    """At glmnet's default thresh (PredictDB's) the solvers stop at slightly different points; the
    model they choose must not differ: the same lambda.min, the same SNPs (but for a weight at
    solver precision) and the same predictions to 2e-3 s.d."""
    X, y = CASES[case]()
    folds = _folds(len(y))
    r = r_cv_glmnet(X, y, folds)
    ours = cv_enet(X, y, fold_ids=folds, backend="numba")
    k = min(len(ours.lambdas), len(r.lambdas))
    # the termination rule compares dev.ratio gains with 1e-5: at thresh 1e-7 it can fire a few
    # lambdas apart (in the saturated tail, far below lambda.min)
    assert abs(len(ours.lambdas) - len(r.lambdas)) <= 3
    np.testing.assert_allclose(ours.lambdas[:k], r.lambdas[:k], rtol=1e-12)
    assert ours.best_index == r.best_index
    # the same SNPs, but for one whose weight is at the solver's precision
    differ = (ours.coef != 0) != (r.coef != 0)
    assert differ.sum() <= 1
    assert np.all(np.abs(ours.coef[differ] - r.coef[differ]) < 2e-3 * np.abs(r.coef).max())
    np.testing.assert_allclose(ours.cv_mse[: r.best_index + 10], r.cvm[: r.best_index + 10], rtol=2e-3)
    pred_r = X @ r.coef + r.intercept
    assert np.abs(X @ ours.coef + ours.intercept - pred_r).max() <= 2e-3 * y.std()  # measured: <= 4.1e-4


def test_nested_cv_problems_equal_r_one_by_one() -> None:
    """A gene's nested CV in one lockstep pass = R's cv.glmnet on each outer training set."""
    X, y = _planted(150, 300, 3)
    outer, inners = nested_fold_ids(len(y), 5, 10, np.random.default_rng(4))
    rows = np.arange(len(y))
    problems = [(rows[outer != f], inner) for f, inner in enumerate(inners)]
    together = cv_enet_many(X, y, problems, backend="numba", tol=TIGHT)
    for (r_rows, fids), cv in zip(problems, together, strict=True):
        r = r_cv_glmnet(X[r_rows], y[r_rows], fids, thresh=TIGHT)
        assert cv is not None and cv.best_index == r.best_index and len(cv.lambdas) == len(r.lambdas)
        np.testing.assert_allclose(cv.cv_mse, r.cvm, rtol=1e-3)
        Xr = X[r_rows]
        assert np.abs(Xr @ cv.coef + cv.intercept - (Xr @ r.coef + r.intercept)).max() <= 1e-4 * y.std()


@pytest.mark.parametrize("backend", ["sklearn", "glmnet"])
def test_reference_backends_follow_the_same_procedure(backend: str) -> None:
    from expredict.baselines.enet_path import glmnet_available

    if backend == "glmnet" and not glmnet_available():
        pytest.skip("python-glmnet not installed")
    X, y = _planted(150, 300, 2)
    folds = _folds(len(y))
    r = r_cv_glmnet(X, y, folds)
    ours = cv_enet(X, y, fold_ids=folds, backend=backend)
    assert ours.best_index == r.best_index
    np.testing.assert_allclose(ours.cv_mse[: r.best_index + 10], r.cvm[: r.best_index + 10], rtol=3e-3)
