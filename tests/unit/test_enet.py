"""PrediXcan elastic net: backend agreement, PredictDB-faithful CV, per-gene reasons, cohort runs."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from builders import fit_enet_cohort
from sklearn.base import clone

from expredict.baselines.cis import cis_features, cis_window, slice_genotypes
from expredict.baselines.enet import SUMMARY_COLUMNS, EnetCohortResult, PrediXcanElasticNet, fit_enet_gene
from expredict.baselines.enet_cv import cv_enet, cv_enet_many, make_fold_ids, nested_fold_ids
from expredict.baselines.enet_path import enet_path_fit, glmnet_available, lambda_path
from expredict.config import EnetConfig
from expredict.io.genotypes import GenotypeArrays
from expredict.targets import TargetNormalizer

# -- seeded synthetic cohorts with planted cis effects (shared with test_predictdb.py) ----------

BASES = np.array(list("ACGT"))


def make_genotypes(
    n_samples: int,
    starts: np.ndarray,
    *,
    seed: int = 0,
    contig: str = "chr1",
    ids: list[str] | None = None,
    alleles: list[tuple[str, str]] | None = None,
    maf_low: float = 0.05,
) -> GenotypeArrays:
    """Bi-allelic phased SNPs at 0-based ``starts`` for samples ``S0..``; random allele pairs."""
    rng = np.random.default_rng(seed)
    starts = np.asarray(starts, dtype=np.int64)
    nv = len(starts)
    if alleles is None:
        alleles = []
        for _ in range(nv):
            a, b = rng.choice(4, 2, replace=False)
            alleles.append((str(BASES[a]), str(BASES[b])))
    freq = rng.uniform(maf_low, 0.5, nv)
    gt = (rng.random((2 * n_samples, nv)) < freq).astype(np.int8)
    buf = "".join(r + a for r, a in alleles).encode()
    lens = np.array([len(x) for pair in alleles for x in pair], np.int64)
    offsets = np.zeros(len(lens) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    first = np.arange(0, 2 * nv + 1, 2, dtype=np.int64)
    ref_ends = starts + np.array([len(r) for r, _ in alleles], np.int64)
    if ids is None:
        ids = [f"v{i}" for i in range(nv)]
    return GenotypeArrays(
        "synthetic.vcf.gz", contig, [f"S{i}" for i in range(n_samples)], starts, ref_ends,
        np.array(ids, dtype=object), first, offsets, np.frombuffer(buf, np.uint8).copy(), gt,
        np.ones((n_samples, nv), bool),
    )  # fmt: skip


def planted(X: np.ndarray, n_causal: int, h2: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets ``X @ beta + noise`` with ``n_causal`` planted effects explaining ``h2`` of variance."""
    rng = np.random.default_rng(seed)
    beta = np.zeros(X.shape[1])
    causal = rng.choice(X.shape[1], n_causal, replace=False)
    beta[causal] = rng.normal(size=n_causal)
    g = (X - X.mean(0)) @ beta
    g = g / g.std() * np.sqrt(h2)
    y = g + rng.normal(size=len(g)) * np.sqrt(1 - h2)
    return (y - y.mean()) / y.std(), causal


needs_glmnet = pytest.mark.skipif(not glmnet_available(), reason="python-glmnet not installed")


def _xy(n: int, p: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    g = make_genotypes(n, np.arange(p) * 100, seed=seed)
    X = g.alt_dosages().astype(np.float64)
    y, _ = planted(X, 5, 0.4, seed + 1)
    return X, y


@needs_glmnet
@pytest.mark.parametrize(("n", "p", "dup"), [(200, 80, False), (150, 300, False), (150, 100, True)])
def test_backends_agree_on_same_path_and_folds(n: int, p: int, dup: bool) -> None:
    X, y = _xy(n, p)
    if dup:  # perfect LD, same and opposite coding: glmnet and numba collapse them, sklearn does not
        X = np.hstack([X, X[:, :30], 2 - X[:, 10:40]])
    # the whole path for every backend: where glmnet's termination rule fires depends on dev.ratio
    # to solver precision (sklearn at tol 1e-4 may end one lambda earlier); the solvers are compared here
    fits = {b: PrediXcanElasticNet(backend=b, random_state=3, path_stop=False).fit(X, y)
            for b in ("glmnet", "sklearn", "numba")}  # fmt: skip
    a = fits["glmnet"]
    for other in ("sklearn", "numba"):
        s = fits[other]
        np.testing.assert_array_equal(a.lambda_path_, s.lambda_path_)
        np.testing.assert_array_equal(a.fold_ids_, s.fold_ids_)
        assert a.lambda_ == s.lambda_, other
        assert np.count_nonzero(a.coef_) == np.count_nonzero(s.coef_) > 0
        np.testing.assert_allclose(a.coef_, s.coef_, atol=1e-3)
        np.testing.assert_allclose(a.predict(X), s.predict(X), atol=1e-3)
    cv_r2 = {b: 1 - f.cv_mse_[np.argmin(f.cv_mse_)] / np.mean(y**2) for b, f in fits.items()}
    assert cv_r2["glmnet"] == pytest.approx(cv_r2["sklearn"], abs=1e-3)
    assert cv_r2["glmnet"] == pytest.approx(cv_r2["numba"], abs=1e-4)
    assert cv_r2["glmnet"] > 0.15  # the planted signal is found
    # same CV curve; both stop coordinate descent at glmnet's thresh, so the far end agrees less tightly
    head = slice(0, int(np.argmin(a.cv_mse_)) + 10)
    np.testing.assert_allclose(a.cv_mse_[head], fits["numba"].cv_mse_[head], rtol=5e-4)
    np.testing.assert_allclose(a.cv_mse_, fits["numba"].cv_mse_, rtol=1e-2)


def _kkt_gap(X: np.ndarray, y: np.ndarray, coef: np.ndarray, icpt: float, lam: float, alpha: float = 0.5) -> float:
    """Largest violation of the elastic-net optimality conditions, in glmnet's standardised units."""
    xm, xs, sy = X.mean(0), X.std(0), y.std()
    Z = (X - xm) / xs
    b = coef * xs / sy  # standardised coefficients
    r = (y - X @ coef - icpt) / sy
    g = Z.T @ r / len(y) - lam / sy * (1 - alpha) * b  # gradient of the smooth part
    l1 = lam / sy * alpha
    zero = b == 0
    return float(max(np.max(np.abs(g[zero]) - l1, initial=0.0),
                     np.max(np.abs(g[~zero] - l1 * np.sign(b[~zero])), initial=0.0)))  # fmt: skip


@pytest.mark.parametrize(("n", "p"), [(120, 40), (90, 400)])
def test_numba_path_satisfies_kkt_conditions(n: int, p: int) -> None:
    X, y = _xy(n, p, seed=7)
    X = np.hstack([X, X[:, :10], 2 - X[:, 5:15]])  # LD copies: the equal split must be optimal too
    lam = lambda_path(X, y)
    coef, icpt = enet_path_fit(X, y, lam, backend="numba", tol=1e-12)
    for k in (0, 10, 40, 99):
        assert _kkt_gap(X, y, coef[:, k], icpt[k], lam[k]) < 1e-5, k
    # SNPs in perfect LD share the weight equally (opposite coding: opposite sign)
    np.testing.assert_allclose(coef[:10, 60], coef[p : p + 10, 60], atol=1e-10)
    np.testing.assert_allclose(coef[5:15, 60], -coef[p + 10 :, 60], atol=1e-10)
    assert np.count_nonzero(coef[:, 0]) == 0 and np.count_nonzero(coef[:, -1]) > 10


def test_lockstep_nested_cv_equals_problem_by_problem() -> None:
    """Solving a gene's 6 CV problems (66 fits) in one lockstep pass changes nothing."""
    X, y = _xy(110, 150, seed=11)
    rng = np.random.default_rng(2)
    outer, inners = nested_fold_ids(len(y), 5, 10, rng)
    rows = np.arange(len(y))
    problems = [(rows[outer != f], inner) for f, inner in enumerate(inners)]
    problems.append((rows, make_fold_ids(len(y), 10, rng)))
    # converged tightly: SNPs merged over all rows vs over each subset is the same optimum
    together = cv_enet_many(X, y, problems, backend="numba", tol=1e-14)
    for (r, fids), cv in zip(problems, together, strict=True):
        alone = cv_enet(X[r], y[r], fold_ids=fids, backend="numba", tol=1e-14)
        assert cv is not None and cv.best_index == alone.best_index
        np.testing.assert_allclose(cv.cv_mse, alone.cv_mse, rtol=1e-5)
        np.testing.assert_allclose(cv.coef, alone.coef, atol=1e-6)


def test_float32_gram_at_default_thresh_keeps_what_cv_keeps(monkeypatch) -> None:
    """The numba backend's float32 working-set Grams (default thresh) against float64 ones."""
    import expredict.baselines.enet_cd as enet_cd
    import expredict.baselines.enet_path as enet_path

    X, y = _xy(150, 600, seed=5)
    X = np.hstack([X, X[:, :40]])  # LD copies: merged columns with L2 weight 1/2
    fids = make_fold_ids(len(y), 10, np.random.default_rng(0))
    dtypes = []
    real = enet_cd.lockstep_paths

    def spy(*args):
        dtypes.append(args[-1].dtype)
        return real(*args)

    monkeypatch.setattr(enet_cd, "lockstep_paths", spy)
    f32 = cv_enet(X, y, fold_ids=fids, backend="numba")
    monkeypatch.setattr(enet_path, "GRAM32_MIN_TOL", np.inf)
    f64 = cv_enet(X, y, fold_ids=fids, backend="numba")
    assert dtypes == [np.float32, np.float64]
    assert f32.best_index == f64.best_index and f32.n_nonzero == f64.n_nonzero > 0
    np.testing.assert_array_equal(f32.lambdas, f64.lambdas)
    # far below what glmnet's thresh 1e-7 leaves unconverged (numba vs glmnet agree to ~5e-4 here)
    np.testing.assert_allclose(f32.cv_mse, f64.cv_mse, rtol=1e-6)
    np.testing.assert_allclose(f32.coef, f64.coef, atol=1e-5)
    cv_enet(X, y, fold_ids=fids, backend="numba", tol=1e-11)  # a tight thresh keeps float64
    assert dtypes[-1] == np.float64


@needs_glmnet
def test_lambda_path_is_glmnets_and_native_cv_picks_same_lambda() -> None:
    import glmnet

    X, y = _xy(200, 120, seed=5)
    auto = glmnet.ElasticNet(alpha=0.5, n_splits=0, min_lambda_ratio=1e-4).fit(X, y)
    ours = lambda_path(X, y)
    k = int(auto.n_lambda_)
    np.testing.assert_allclose(auto.lambda_path_[:k], ours[:k], rtol=1e-10)
    assert lambda_path(X[:, :50][:40], y[:40])[-1] / lambda_path(X[:, :50][:40], y[:40])[0] == pytest.approx(0.01)
    # python-glmnet's own CV, with its defaults overridden (1-SE rule, R2, 3 folds), agrees with ours
    est = PrediXcanElasticNet(backend="glmnet", random_state=0).fit(X, y)
    native = glmnet.ElasticNet(
        alpha=0.5, lambda_path=est.lambda_path_, cut_point=0.0, scoring="mean_squared_error", n_splits=10
    ).fit(X, y, groups=est.fold_ids_)
    assert native.lambda_max_ == pytest.approx(est.lambda_)
    np.testing.assert_allclose(-native.cv_mean_score_, est.cv_mse_, rtol=5e-3)  # equal folds: same mean


def test_collapse_duplicates_groups_ld_columns() -> None:
    from expredict.baselines.enet_path import _collapse_duplicates

    X = np.array([[0, 2, 1, 0, 1], [1, 1, 1, 1, 2], [2, 0, 1, 2, 0]], dtype=float)
    rep, group, sign = _collapse_duplicates(X)
    assert group[2] == -1  # constant
    assert group[0] == group[1] == group[3] != group[4]
    assert sign[0] == sign[3] == -sign[1]
    assert len(rep) == 2


def test_fold_ids_balanced_and_seeded() -> None:
    f = make_fold_ids(103, 10, np.random.default_rng(7))
    counts = np.bincount(f)
    assert len(counts) == 10 and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(f, make_fold_ids(103, 10, np.random.default_rng(7)))


def test_estimator_contract_and_sklearn_backend() -> None:
    est = PrediXcanElasticNet(alpha=0.5, n_folds=5, backend="sklearn", random_state=1)
    assert clone(est).get_params() == est.get_params()
    X, y = _xy(120, 40, seed=3)
    assert est.fit(X, y) is est
    assert est.coef_.shape == (40,) and np.isfinite(est.intercept_)
    assert est.lambda_ in est.lambda_path_
    assert est.predict(X).shape == (120,)
    with pytest.raises(ValueError, match="backend"):
        PrediXcanElasticNet(backend="R").fit(X, y)


def test_cv_min_on_mean_fold_mse_ties_to_larger_lambda() -> None:
    X, y = _xy(100, 30, seed=9)
    folds = make_fold_ids(100, 10, np.random.default_rng(0))
    cv = cv_enet(X, y, fold_ids=folds, backend="sklearn")
    assert cv.best_index == int(np.argmin(cv.cv_mse))
    assert cv.cv_mse[cv.best_index] <= cv.cv_mse.min() + 0
    assert cv.oof_pred.shape == (100,)


def test_cis_window_and_feature_filters() -> None:
    assert cis_window(5_000_000, start=4_900_000, end=5_000_001) == (3_900_000, 6_000_001)
    assert cis_window(500, window=1000) == (0, 1501)
    assert cis_window(10_000, window=100, anchor="tss") == (9_900, 10_100)
    alleles = [("A", "T"), ("C", "G"), ("A", "G"), ("AT", "A"), ("C", "T")]
    ids = ["rs1", "x2", "rs3", "x4", "rs5"]
    g = make_genotypes(60, np.arange(5) * 10, seed=2, alleles=alleles, ids=ids)
    train = np.arange(50)
    f = cis_features(g, train, maf_min=0.0)
    assert f.n_in_window == 5 and f.dosages.shape == (60, 5)
    assert f.rsid == ["rs1", "chr1_11_C_G_b37", "rs3", "chr1_31_AT_A_b37", "rs5"]
    assert f.var_id[0] == "chr1_1_A_T_b37"
    assert cis_features(g, train, maf_min=0.0, drop_ambiguous=True).rsid == ["rs3", "chr1_31_AT_A_b37", "rs5"]
    assert cis_features(g, train, maf_min=0.0, snps_only=True).alt == ["T", "G", "G", "T"]
    assert cis_features(g, train, maf_min=0.0, require_rsid=True).rsid == ["rs1", "rs3", "rs5"]
    # MAF computed on training individuals only
    gt = g.genotypes.copy()
    gt[:, 4] = 0
    gt[100:, 4] = 1  # ALT only in test individuals (rows 50..59)
    g2 = type(g)(**{**{k: getattr(g, k) for k in g.__dataclass_fields__ if k != "_allele_cache"}, "genotypes": gt})
    assert "rs5" not in cis_features(g2, train, maf_min=0.01).rsid
    sl = slice_genotypes(g, 10, 31)
    assert list(sl.ids) == ["x2", "rs3", "x4"] and sl.alleles(2) == ["AT", "A"]


def _cohort(n: int = 120, genes: int = 3, seed: int = 0):
    """Genotypes, genes, expression, train and test samples of a synthetic cohort: genes G0.. with
    planted cis effects, NOVAR (no variant in its window) and CONST. A third of the random allele
    pairs are strand-ambiguous: fit with ``drop_ambiguous=False`` to keep the planted SNPs."""
    starts = np.sort(np.random.default_rng(seed).choice(np.arange(100_000, 400_000, 7), 150, replace=False))
    g = make_genotypes(n, starts, seed=seed)
    X = g.alt_dosages().astype(np.float64)
    samples = g.samples
    rows = {"gene_id": [], "contig": [], "tss": [], "strand": []}
    expr = {}
    for j in range(genes):
        tss = int(starts[30 + 40 * j])
        near = np.flatnonzero(np.abs(starts - tss) < 20_000)
        y, _ = planted(X[:, near], 3, 0.5, seed + j)
        rows["gene_id"].append(f"G{j}")
        rows["contig"].append("chr1")
        rows["tss"].append(tss)
        rows["strand"].append("+")
        expr[f"G{j}"] = y
    # a gene with no variants in its window and a constant gene
    for gid, tss, y in (
        ("NOVAR", 5_000_000, np.random.default_rng(1).normal(size=n)),
        ("CONST", int(starts[10]), np.ones(n)),
    ):
        rows["gene_id"].append(gid)
        rows["contig"].append("chr1")
        rows["tss"].append(tss)
        rows["strand"].append("-")
        expr[gid] = y
    genes_table = pl.DataFrame(rows)
    expression = pl.DataFrame({"gene_id": list(expr)}).hstack(
        pl.DataFrame(np.array(list(expr.values())), schema=samples, orient="row")
    )
    return g, genes_table, expression, samples[: int(0.8 * n)], samples[int(0.8 * n) :]


def test_cohort_reasons_summary_and_gene_order() -> None:
    g, genes, expr, train, test = _cohort()
    cfg = EnetConfig(backend="sklearn", window=20_000, n_lambda=30, drop_ambiguous=False)
    res = fit_enet_cohort(g, genes, expr, train, test, config=cfg, seed=4, anchor="tss")
    s = res.summary
    assert s.columns[:24] == list(SUMMARY_COLUMNS)
    reasons = dict(zip(s["gene_id"], s["reason"], strict=True))
    assert reasons["NOVAR"] == "no variants in window"
    assert reasons["CONST"] == "constant expression"
    ok = s.filter(pl.col("status") == "ok")
    assert ok.height == 3
    assert ok["n_snps_in_model"].min() > 0
    assert ok["rho_avg"].mean() > 0.3 and ok["test_r"].mean() > 0.3
    for c in ("rho_avg_squared", "zscore_pval", "cv_R2_avg", "in_sample_R2", "test_R2_avg", "rho_se"):
        assert ok[c].is_not_null().all()
    np.testing.assert_allclose(ok["rho_avg_squared"], ok["rho_avg"] ** 2)
    assert res.weights["gene"].unique().sort().to_list() == ["G0", "G1", "G2"]
    assert res.test_predictions.columns == ["gene_id", *test]
    assert res.test_predictions.filter(pl.col("gene_id") == "NOVAR").row(0)[1] != res.test_predictions.row(0)[1]
    # covariance rows: upper triangle with diagonal, per gene
    k = ok.filter(pl.col("gene_id") == "G0")["n_snps_in_model"][0]
    assert res.covariances.filter(pl.col("GENE") == "G0").height == k * (k + 1) // 2
    # a gene's fit depends only on the seed and its id, never on the other genes or their order
    rev = fit_enet_cohort(g, genes.reverse(), expr, train, test, config=cfg, seed=4, anchor="tss")
    order = rev.summary["gene_id"].to_list()[::-1]
    assert order == s["gene_id"].to_list()
    assert rev.weights.sort(["gene", "rsid"]).equals(res.weights.sort(["gene", "rsid"]))
    assert rev.summary.reverse().drop("fit_seconds").equals(s.drop("fit_seconds"))


def test_cohort_without_nested_cv() -> None:
    g, genes, expr, train, test = _cohort(genes=2, seed=3)
    cfg = EnetConfig(backend="sklearn", window=20_000, n_lambda=20, nested_cv=False, drop_ambiguous=False)
    a = fit_enet_cohort(g, genes, expr, train, test, config=cfg, seed=0, anchor="tss")
    assert a.summary["rho_avg"].is_null().all()  # nested CV off
    assert a.summary.filter(pl.col("status") == "ok")["cv_rho_avg"].is_not_null().all()
    assert a.weights.height > 0


def test_fit_enet_gene_direct_and_covariates() -> None:
    g, genes, expr, train, test = _cohort(genes=1, seed=5)
    cov = np.random.default_rng(0).normal(size=(len(train) + len(test), 2))
    cfg = EnetConfig(backend="sklearn", window=20_000, n_lambda=20, nested_cv=False, drop_ambiguous=False)
    res = fit_enet_cohort(g, genes.head(1), expr, train, test, covariates=cov, config=cfg, seed=1, anchor="tss")
    assert res.summary["status"][0] == "ok"
    tss = genes["tss"][0]
    sl = slice_genotypes(g, *cis_window(tss, window=20_000, anchor="tss"))
    n_train = len(train)
    y = expr.filter(pl.col("gene_id") == "G0").select(g.samples).to_numpy()[0]
    y = TargetNormalizer().fit(y[:n_train], cov[:n_train]).transform(y, cov)
    train_idx, test_idx = np.arange(n_train), np.arange(n_train, len(g.samples))
    fit = fit_enet_gene("G0", sl, y[:n_train], train_idx, test_idx, config=cfg, seed=1, y_test=y[n_train:])
    assert fit.reason == ""
    assert fit.weights.equals(res.weights)
    np.testing.assert_allclose(fit.test_pred, res.test_predictions.select(test).to_numpy()[0])
    # the cohort gathers the fits as they are
    one = EnetCohortResult.from_fits([fit], config=cfg, seed=1, test_samples=test)
    assert one.n_train == n_train and one.seed == 1 and one.test_samples == list(test)
    assert one.summary.drop("fit_seconds").equals(res.summary.drop("fit_seconds"))
    with pytest.raises(ValueError, match="y_train"):
        fit_enet_gene("G0", sl, y[:5], np.arange(n_train), np.arange(3), config=cfg, seed=1)


# -- glmnet's path termination (cv.glmnet without a lambda argument) ---------------------------


def _saturating(seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """n << p with a strong signal: the path explains > 99.9 % of the variance before 0.01 lambda_max."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, (40, 300)).astype(np.float64)
    y = X[:, :30] @ rng.normal(size=30) + 0.01 * rng.normal(size=40)
    return X, y


def test_glmnet_path_length_rule() -> None:
    from expredict.baselines.enet_path import glmnet_path_length

    assert glmnet_path_length([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) == 7  # still gaining: all kept
    assert glmnet_path_length([0.0, 0.5, 0.9, 0.95, 0.9995, 0.9999]) == 5  # dev.ratio > 0.999
    assert glmnet_path_length([0.0, 0.9, 0.99999, 0.999991, 0.999991]) == 5  # gain < 1e-5 counts from the 5th
    assert glmnet_path_length([0.0, 0.2, 0.4, 0.5, 0.6, 0.6 + 1e-7, 0.7]) == 6


@pytest.mark.parametrize("backend", ["numba", "sklearn", pytest.param("glmnet", marks=needs_glmnet)])
def test_path_ends_where_glmnet_ends_it(backend: str) -> None:
    """cv.glmnet without a lambda: every fit ends its own path; folds are read at the all-rows path."""
    from expredict.baselines.enet_path import _interp_lambda, dev_ratio, glmnet_path_length

    X, y = _saturating()
    folds = make_fold_ids(len(y), 5, np.random.default_rng(0))
    full = cv_enet(X, y, fold_ids=folds, backend=backend, path_stop=False)
    assert len(full.lambdas) == 100
    lam = full.lambdas
    coef, icpt = enet_path_fit(X, y, lam, backend=backend)
    n_keep = glmnet_path_length(dev_ratio(X, y, coef, icpt))
    assert 5 <= n_keep < 100
    # numba merges SNPs in perfect LD over all rows in cv_enet, over a fold's rows when fitting it
    # alone: the same optimum, so compare converged solutions
    tol = 1e-13 if backend == "numba" else None
    cut = cv_enet(X, y, fold_ids=folds, backend=backend, tol=tol)  # computed paths: each ends as glmnet's does
    assert len(cut.lambdas) == n_keep
    np.testing.assert_array_equal(cut.lambdas, lam[:n_keep])
    # the same CV curve from the pieces: each fold's own path, ended by the rule, interpolated
    master, sq, fold_lengths = cut.lambdas, np.zeros(n_keep), []
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        lam_f = lambda_path(X[tr], y[tr])
        cf, ic = enet_path_fit(X[tr], y[tr], lam_f, backend=backend, tol=tol)
        k = glmnet_path_length(dev_ratio(X[tr], y[tr], cf, ic))
        fold_lengths.append(k)
        pred = _interp_lambda(master, lam_f[:k], X[te] @ cf[:, :k] + ic[:k])
        sq += ((pred - y[te, None]) ** 2).sum(axis=0)
    assert min(fold_lengths) < 100  # the folds' own rule fired too
    np.testing.assert_allclose(cut.cv_mse, sq / len(y), rtol=1e-5, atol=1e-9)
    # an explicit lambda sequence is solved whole by every fit, as glmnet does with a user lambda
    user = cv_enet(X, y, fold_ids=folds, backend=backend, lambdas=lam)
    assert len(user.lambdas) == 100


def test_cv_rejects_fold_ids_of_the_wrong_length() -> None:
    X, y = _xy(30, 20)
    with pytest.raises(ValueError, match="30 rows but fold ids of shape"):
        cv_enet(X, y, fold_ids=np.arange(29) % 5)


def test_interp_lambda_is_glmnets_lambda_interp() -> None:
    """Linear in lambda between path values, exact on the path, clamped at both ends."""
    from expredict.baselines.enet_path import _interp_lambda

    lam_from = np.array([1.0, 0.5, 0.25])
    vals = np.array([[0.0, 2.0, 3.0], [1.0, 1.0, 5.0]])
    out = _interp_lambda(np.array([2.0, 1.0, 0.75, 0.5, 0.3, 0.25, 0.1]), lam_from, vals)
    np.testing.assert_allclose(out[0], [0.0, 0.0, 1.0, 2.0, 2.8, 3.0, 3.0])
    np.testing.assert_allclose(out[1], [1.0, 1.0, 1.0, 1.0, 4.2, 5.0, 5.0])
    np.testing.assert_array_equal(_interp_lambda(lam_from, lam_from, vals), vals)  # bit-exact on the path
    np.testing.assert_array_equal(_interp_lambda(np.array([3.0, 0.1]), lam_from[:1], vals[:, :1]), [[0.0, 0.0], [1.0, 1.0]])


@needs_glmnet
def test_path_length_equals_python_glmnets_own_path() -> None:
    """python-glmnet computing its own path (flmin < 1) stops at the same lambda as ours.

    The rule compares dev.ratio with 0.999, so a solver difference at glmnet's thresh (dev.ratio
    differs by ~5e-6 here) can move the end by one lambda when a value lies that close to 0.999
    (seed 6: ours 0.999001, glmnet's 0.998996).
    """
    import glmnet

    diffs = []
    for seed in (4, 5, 6):
        X, y = _saturating(seed)
        own = glmnet.ElasticNet(alpha=0.5, n_splits=0, min_lambda_ratio=0.01, n_lambda=100, tol=1e-7).fit(X, y)
        folds = make_fold_ids(len(y), 5, np.random.default_rng(0))
        ours = cv_enet(X, y, fold_ids=folds, backend="numba")
        assert 5 < int(own.n_lambda_) < 100
        k = min(len(ours.lambdas), int(own.n_lambda_))
        np.testing.assert_allclose(own.lambda_path_[:k], ours.lambdas[:k], rtol=1e-10)
        diffs.append(len(ours.lambdas) - int(own.n_lambda_))
    assert max(map(abs, diffs)) <= 1 and diffs.count(0) >= 2, diffs


def test_lockstep_nested_cv_with_path_stop_equals_problem_by_problem() -> None:
    X, y = _saturating(7)
    X, y = np.vstack([X, X[:20] + 0]), np.concatenate([y, y[:20] + 0.05])  # 60 rows, n << p still
    rng = np.random.default_rng(3)
    outer, inners = nested_fold_ids(len(y), 5, 5, rng)
    rows = np.arange(len(y))
    problems = [(rows[outer != f], inner) for f, inner in enumerate(inners)]
    together = cv_enet_many(X, y, problems, backend="numba", tol=1e-14)
    lengths = set()
    for (r, fids), cv in zip(problems, together, strict=True):
        alone = cv_enet(X[r], y[r], fold_ids=fids, backend="numba", tol=1e-14)
        assert cv is not None and len(cv.lambdas) == len(alone.lambdas) and cv.best_index == alone.best_index
        np.testing.assert_allclose(cv.cv_mse, alone.cv_mse, rtol=1e-5)
        lengths.add(len(cv.lambdas))
    assert max(lengths) < 100  # the rule fired, per problem
