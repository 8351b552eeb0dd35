"""Per-gene metrics, summaries and head-to-head tests against scipy/numpy on small hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from expredict.evaluate import (
    PER_GENE_COLUMNS,
    canonical_gene_class,
    head_to_head,
    head_to_head_table,
    per_gene_metrics,
    per_gene_wide,
    summarize_methods,
    to_long,
)

SAMPLES = [f"S{i}" for i in range(8)]


def _long(values: dict[str, list[float | None]], name: str, samples=SAMPLES) -> pl.DataFrame:
    rows = [(g, s, v) for g, vals in values.items() for s, v in zip(samples, vals, strict=True)]
    return pl.DataFrame(rows, schema={"gene_id": pl.String, "sample": pl.String, name: pl.Float64}, orient="row")


OBS = {
    "G1": [0.1, -1.2, 0.5, 2.0, -0.3, 0.8, 1.1, -0.7],
    "G2": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
    "G3": [0.3, 0.2, -0.4, 1.5, -2.0, 0.0, 0.9, 0.4],
}
PRED = {
    "G1": [0.3, -0.8, 0.1, 1.2, 0.2, 0.4, 0.5, -0.1],
    "G2": [8.0, 6.0, 7.0, 5.0, 3.0, 4.0, 1.0, 2.0],  # strongly negative
    "G3": [1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 1.0],  # ties, for Spearman
}


def test_metrics_match_scipy_and_numpy():
    pg = per_gene_metrics(_long(PRED, "prediction"), _long(OBS, "observed"), "m")
    assert pg.columns == list(PER_GENE_COLUMNS)
    assert pg["gene_id"].to_list() == ["G1", "G2", "G3"]
    assert pg["method"].to_list() == ["m"] * 3
    for row in pg.iter_rows(named=True):
        x, y = np.array(PRED[row["gene_id"]]), np.array(OBS[row["gene_id"]])
        pr = stats.pearsonr(x, y)
        sr = stats.spearmanr(x, y)
        assert row["pearson_r"] == pytest.approx(pr.statistic, abs=1e-12)
        assert row["p_value"] == pytest.approx(pr.pvalue, rel=1e-6)
        assert row["spearman_r"] == pytest.approx(sr.statistic, abs=1e-12)
        assert row["r2"] == pytest.approx(1 - np.sum((y - x) ** 2) / np.sum((y - y.mean()) ** 2), abs=1e-12)
        assert row["n_test"] == 8


def test_wide_input_equals_long_input():
    wide_pred = pl.DataFrame({"gene_id": list(PRED), **{s: [PRED[g][i] for g in PRED] for i, s in enumerate(SAMPLES)}})
    a = per_gene_metrics(wide_pred, _long(OBS, "observed"), "m")
    b = per_gene_metrics(_long(PRED, "prediction"), _long(OBS, "observed"), "m")
    assert a.equals(b)
    assert to_long(wide_pred, "prediction").height == 24


def test_constant_predictions_give_nan_r_but_keep_n():
    pred = _long({"G1": [0.1] * 8, "G2": PRED["G2"]}, "prediction")
    obs = _long({"G1": OBS["G1"], "G2": [2.0] * 8}, "observed")
    pg = per_gene_metrics(pred, obs, "m").sort("gene_id")
    g1, g2 = pg.row(0, named=True), pg.row(1, named=True)
    # constant prediction: no cross-individual signal, R2 still defined
    assert math.isnan(g1["pearson_r"]) and math.isnan(g1["spearman_r"]) and math.isnan(g1["p_value"])
    assert g1["n_test"] == 8
    y = np.array(OBS["G1"])
    assert g1["r2"] == pytest.approx(1 - np.sum((y - 0.1) ** 2) / np.sum((y - y.mean()) ** 2))
    # constant observed: r and R2 undefined
    assert math.isnan(g2["pearson_r"]) and math.isnan(g2["r2"]) and g2["n_test"] == 8


def test_missing_values_and_unmatched_samples_are_dropped():
    vals = list(PRED["G1"])
    vals[0] = None
    vals[1] = float("nan")
    pred = _long({"G1": vals}, "prediction")
    obs = _long({"G1": OBS["G1"][:7]}, "observed", SAMPLES[:7])  # S7 never observed
    pg = per_gene_metrics(pred, obs, "m")
    assert pg["n_test"].to_list() == [5]
    x, y = np.array(PRED["G1"][2:7]), np.array(OBS["G1"][2:7])
    assert pg["pearson_r"][0] == pytest.approx(stats.pearsonr(x, y).statistic)


def test_too_few_individuals_and_no_overlap():
    pred = pl.concat(
        [
            _long({"G1": PRED["G1"][:2]}, "prediction", SAMPLES[:2]),
            _long({"G9": [1.0, 2.0, 3.0]}, "prediction", ["X1", "X2", "X3"]),
        ]
    )
    pg = per_gene_metrics(pred, _long(OBS, "observed"), "m").sort("gene_id")
    assert pg["gene_id"].to_list() == ["G1", "G9"]
    assert pg["n_test"].to_list() == [2, 0]
    assert pg["pearson_r"].is_nan().all()
    assert pg.filter(pl.col("gene_id") == "G9")["r2"].is_nan().all()


def test_duplicate_pairs_rejected():
    pred = pl.concat([_long(PRED, "prediction"), _long({"G1": PRED["G1"]}, "prediction")])
    with pytest.raises(ValueError, match="duplicated"):
        per_gene_metrics(pred, _long(OBS, "observed"), "m")


def test_annotations_classes_and_ceiling():
    ann = pl.DataFrame(
        {
            "gene_id": ["G1", "G2", "G3"],
            "gene_class": ["seen", "unseen", "new_population"],
            "cis_h2": [0.09, 0.25, -0.01],
        }
    )
    pg = per_gene_metrics(_long(PRED, "prediction"), _long(OBS, "observed"), "m", annotations=ann)
    assert pg.columns[: len(PER_GENE_COLUMNS)] == list(PER_GENE_COLUMNS)
    assert pg["gene_class"].to_list() == ["seen_genes_new_individuals", "unseen_genes", "new_population"]
    assert pg["r_ceiling"][0] == pytest.approx(0.3)
    assert pg["r_ceiling"][1] == pytest.approx(0.5)
    assert math.isnan(pg["r_ceiling"][2])
    assert canonical_gene_class("buffer") == "buffer"


def _two_methods() -> pl.DataFrame:
    rng = np.random.default_rng(1)
    genes = [f"G{i}" for i in range(12)]
    obs = {g: list(rng.normal(size=8)) for g in genes}
    good = {g: list(np.array(v) + 0.5 * rng.normal(size=8)) for g, v in obs.items()}
    bad = {g: list(rng.normal(size=8)) for g in genes}
    bad["G0"] = [1.0] * 8  # NaN r: excluded from r statistics and from head-to-head
    ann = pl.DataFrame({"gene_id": genes, "gene_class": ["seen"] * 8 + ["unseen"] * 4, "cis_h2": [0.16] * 12})
    o = _long(obs, "observed")
    return pl.concat(
        [
            per_gene_metrics(_long(good, "prediction"), o, "good", annotations=ann),
            per_gene_metrics(_long(bad, "prediction"), o, "bad", annotations=ann),
        ]
    )


def test_summarize_methods_by_hand():
    pg = _two_methods()
    s = summarize_methods(pg)
    assert s["method"].to_list() == ["good", "bad"]
    for m in ("good", "bad"):
        r = pg.filter(pl.col("method") == m)["pearson_r"].to_numpy()
        r = r[np.isfinite(r)]
        row = s.filter(pl.col("method") == m).row(0, named=True)
        assert row["n_genes"] == 12
        assert row["n_scored"] == r.size
        assert row["mean_r"] == pytest.approx(r.mean())
        assert row["median_r"] == pytest.approx(np.median(r))
        assert row["mean_abs_r"] == pytest.approx(np.abs(r).mean())
        assert row["frac_r_negative"] == pytest.approx(np.mean(r < 0))
        assert row["mean_r_ceiling"] == pytest.approx(0.4)
        cls = pg.filter((pl.col("method") == m) & (pl.col("gene_class") == "unseen_genes"))["pearson_r"].to_numpy()
        assert row["mean_r[unseen_genes]"] == pytest.approx(np.nanmean(cls))
        assert row["n_scored[unseen_genes]"] == 4
    assert s.filter(pl.col("method") == "bad")["n_scored"][0] == 11
    assert "mean_r[new_population]" not in s.columns
    wide = per_gene_wide(pg)
    assert wide.columns[-2:] == ["pearson_r[good]", "pearson_r[bad]"]
    assert wide.height == 12


def test_summary_of_all_nan_method_is_nan_not_error():
    pred = _long({"G1": [0.0] * 8, "G2": [1.0] * 8}, "prediction")
    s = summarize_methods(per_gene_metrics(pred, _long(OBS, "observed"), "flat"))
    row = s.row(0, named=True)
    assert row["n_genes"] == 2 and row["n_scored"] == 0
    assert math.isnan(row["mean_r"]) and math.isnan(row["frac_r_negative"])


def test_head_to_head_wins_and_wilcoxon():
    pg = _two_methods()
    h = head_to_head(pg, "good", "bad")
    a = pg.filter(pl.col("method") == "good").sort("gene_id")["pearson_r"].to_numpy()
    b = pg.filter(pl.col("method") == "bad").sort("gene_id")["pearson_r"].to_numpy()
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    assert h.n_shared == 11
    assert h.wins_a == int(np.sum(a > b)) and h.wins_b == int(np.sum(a < b)) and h.ties == 0
    assert h.wins_a + h.wins_b + h.ties == h.n_shared
    ref = stats.wilcoxon(a, b)
    assert h.p_value == pytest.approx(ref.pvalue)
    assert h.wilcoxon_stat == pytest.approx(ref.statistic)
    assert h.mean_diff == pytest.approx(np.mean(a - b))
    # symmetric
    h2 = head_to_head(pg, "bad", "good")
    assert (h2.wins_a, h2.wins_b) == (h.wins_b, h.wins_a)
    assert h2.p_value == pytest.approx(h.p_value)


def test_head_to_head_identical_methods_and_errors():
    pg = _two_methods()
    same = pl.concat(
        [
            pg.filter(pl.col("method") == "good"),
            pg.filter(pl.col("method") == "good").with_columns(pl.lit("copy").alias("method")),
        ]
    )
    h = head_to_head(same, "good", "copy")
    assert h.ties == h.n_shared == 12 and h.wins_a == 0 and math.isnan(h.p_value)
    with pytest.raises(ValueError, match="no rows for method 'nope'"):
        head_to_head(pg, "good", "nope")
    three = pl.concat([pg, same.filter(pl.col("method") == "copy")])
    t = head_to_head_table(three)
    assert t.height == 3
    assert t.select("method_a", "method_b").rows() == [("good", "bad"), ("good", "copy"), ("bad", "copy")]
