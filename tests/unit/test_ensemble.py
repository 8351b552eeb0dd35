"""The ensemble's stacking fit: non-negative weights, free intercept, useless members dropped."""

from __future__ import annotations

import numpy as np

from expredict.run.stages.ensemble import fit_stack


def test_recovers_nonnegative_weights_and_intercept():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(200, 2))
    y = 0.5 + 0.7 * p[:, 0] + 0.2 * p[:, 1]
    w, b0 = fit_stack(p, y)
    np.testing.assert_allclose(w, [0.7, 0.2], atol=1e-10)
    assert abs(b0 - 0.5) < 1e-10


def test_anticorrelated_member_gets_zero_weight():
    rng = np.random.default_rng(1)
    good = rng.normal(size=100)
    y = good + 0.1 * rng.normal(size=100)
    p = np.column_stack([good, -y + 0.05 * rng.normal(size=100)])
    w, b0 = fit_stack(p, y)
    assert w[1] == 0.0 and w[0] > 0.5
    # with the second member alone the stack predicts the mean: no member helps
    w1, b1 = fit_stack(p[:, 1:], y)
    assert w1[0] == 0.0 and np.isclose(b1, y.mean())
