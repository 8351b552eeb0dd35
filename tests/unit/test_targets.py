"""TargetNormalizer: every statistic comes from the training individuals only."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm, rankdata

from expredict.targets import TargetNormalizer

RNG = np.random.default_rng(0)
Y = RNG.lognormal(size=(50, 3))
TRAIN, TEST = np.arange(35), np.arange(35, 50)


def test_zscore_uses_train_statistics_only():
    t = TargetNormalizer().fit(Y[TRAIN])
    z = t.transform(Y[TRAIN])
    assert np.allclose(z.mean(0), 0) and np.allclose(z.std(0), 1)
    # test values never change the fit, and are mapped with the training mean/sd
    corrupted = Y.copy()
    corrupted[TEST] = 1e6
    t2 = TargetNormalizer().fit(corrupted[TRAIN])
    assert np.array_equal(t.mean_, t2.mean_) and np.array_equal(t.scale_, t2.scale_)
    assert np.allclose(t.transform(Y[TEST]), (Y[TEST] - Y[TRAIN].mean(0)) / Y[TRAIN].std(0))
    assert np.allclose(t.inverse_transform(t.transform(Y)), Y)
    assert TargetNormalizer().fit(Y[TRAIN, 0]).transform(Y[TEST, 0]).shape == (15,)


def test_inverse_normal_matches_blom_on_train_and_interpolates_new_values():
    t = TargetNormalizer(inverse_normal=True).fit(Y[TRAIN])
    ranks = rankdata(Y[TRAIN], axis=0)
    blom = norm.ppf((ranks - 0.375) / (35 + 0.25))
    z = t.transform(Y[TRAIN])
    assert np.allclose(z, (blom - blom.mean(0)) / blom.std(0))
    zt = t.transform(Y[TEST])
    assert np.isfinite(zt).all()
    # monotone in the raw value, and inverse maps back within the training range
    o = np.argsort(Y[TEST, 0])
    assert (np.diff(zt[o, 0]) >= 0).all()
    back = t.inverse_transform(z)
    assert np.allclose(back, Y[TRAIN])


def test_covariates_fitted_on_train_and_applied_to_all():
    c = RNG.normal(size=(50, 2))
    y = Y + 3 * c[:, :1]
    t = TargetNormalizer().fit(y[TRAIN], c[TRAIN])
    z = t.transform(y, c)
    for j in range(3):  # residuals on train are orthogonal to covariates
        assert abs(np.corrcoef(z[TRAIN, j], c[TRAIN, 0])[0, 1]) < 1e-8
    with pytest.raises(ValueError, match="covariates"):
        t.transform(y)
    assert np.allclose(t.inverse_transform(z, c), y)


def test_nan_targets_ignored_and_state_roundtrip():
    y = Y.copy()
    y[0, 0] = np.nan
    t = TargetNormalizer(inverse_normal=True).fit(y[TRAIN])
    z = t.transform(y)
    assert np.isnan(z[0, 0]) and np.isfinite(z[1:]).all()
    t2 = TargetNormalizer.from_state(t.get_state())
    assert np.array_equal(t2.transform(y), z, equal_nan=True)


@pytest.mark.parametrize("inverse_normal", [False, True])
def test_constant_gene_maps_to_zeros(inverse_normal):
    """A gene constant among training individuals: exact zeros, never NaN/inf or round-off noise."""
    c = RNG.normal(size=(50, 2))
    y = np.column_stack([np.full(50, 0.1), np.full(50, 1e6 / 3), np.zeros(50), Y[:, 0]])
    for cov in (None, c):
        t = TargetNormalizer(inverse_normal=inverse_normal).fit(y[TRAIN], None if cov is None else cov[TRAIN])
        z = t.transform(y, cov)
        assert np.isfinite(z).all()
        assert np.array_equal(z[:, :3], np.zeros((50, 3)))
        assert np.allclose(z[TRAIN, 3].std(), 1)  # other genes normalised as usual


def test_covariate_fit_ignores_test_rows():
    """Covariate coefficients, mean and sd come from training rows: changing test rows changes nothing."""
    c = RNG.normal(size=(50, 2))
    y = c @ [2.0, -1.0] + RNG.normal(size=50) * 0.1
    z = TargetNormalizer().fit(y[TRAIN], c[TRAIN]).transform(y, c)
    assert z[TRAIN].mean() == pytest.approx(0, abs=1e-12) and z[TRAIN].std() == pytest.approx(1)
    y2 = y.copy()
    y2[TEST] += 100.0
    z2 = TargetNormalizer().fit(y2[TRAIN], c[TRAIN]).transform(y2, c)
    np.testing.assert_array_equal(z2[TRAIN], z[TRAIN])
