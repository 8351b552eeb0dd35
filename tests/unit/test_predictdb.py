"""PredictDB .db and covariance files: exact schema, round trip, allele matching, older forms."""

from __future__ import annotations

import gzip
import sqlite3
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from builders import fit_enet_cohort  # noqa: E402
from test_enet import _cohort, make_genotypes  # noqa: E402

from expredict.config import EnetConfig  # noqa: E402
from expredict.errors import InputFileError  # noqa: E402
from expredict.io.predictdb import (  # noqa: E402
    allele_dosages,
    match_variants,
    predict_from_predictdb,
    read_covariances,
    read_predictdb,
    write_predictdb,
)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    g, genes, expr, train, test = _cohort(genes=3, seed=11)
    cfg = EnetConfig(backend="sklearn", window=20_000, n_lambda=30, drop_ambiguous=False)
    res = fit_enet_cohort(g, genes, expr, train, test, config=cfg, seed=2, anchor="tss")
    d = tmp_path_factory.mktemp("pdb")
    res.to_predictdb(str(d / "model.db"), str(d / "covariances.txt.gz"), population="synthetic")
    return g, res, d


def _columns(con: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in con.execute(f"PRAGMA table_info(`{table}`)")]


def test_db_opens_with_stock_sqlite3_and_has_exact_schema(fitted) -> None:
    _, res, d = fitted
    con = sqlite3.connect(d / "model.db")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"weights", "extra", "construction", "sample_info", "model_summary"}
    assert _columns(con, "weights") == ["rsid", "gene", "weight", "ref_allele", "eff_allele", "varID"]
    assert _columns(con, "extra") == [
        "gene", "genename", "n.snps.in.model", "pred.perf.R2", "pred.perf.pval", "pred.perf.qval",
    ]  # fmt: skip
    assert _columns(con, "construction") == ["chromosome", "cv_seed"]
    assert _columns(con, "sample_info") == ["n_samples", "population"]
    assert len(_columns(con, "model_summary")) == 24
    idx = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"weights_rsid", "weights_gene", "weights_rsid_gene", "gene_model_summary"} <= idx
    assert con.execute("SELECT chromosome, cv_seed FROM construction").fetchone() == ("chr1", 2)
    assert con.execute("SELECT n_samples FROM sample_info").fetchone() == (len(res.test_samples) * 4,)
    n_extra = con.execute("SELECT count(*) FROM extra").fetchone()[0]
    assert n_extra == res.summary.filter(pl.col("n_snps_in_model") > 0).height == 3
    r2, nsnp = con.execute("SELECT `pred.perf.R2`, `n.snps.in.model` FROM extra WHERE gene='G0'").fetchone()
    row = res.summary.filter(pl.col("gene_id") == "G0")
    assert r2 == pytest.approx(row["rho_avg_squared"][0]) and nsnp == row["n_snps_in_model"][0]
    assert con.execute("SELECT `pred.perf.qval` FROM extra").fetchone()[0] is None
    con.close()
    assert not list(d.glob(".*tmp*"))  # atomic write left nothing behind


def test_round_trip_predictions_equal_weight_times_dosage(fitted) -> None:
    g, res, d = fitted
    model = read_predictdb(d / "model.db")
    assert model.weights.sort(["gene", "rsid"]).equals(res.weights.sort(["gene", "rsid"]))
    pred, report = predict_from_predictdb(model, g)
    assert report["n_matched"].to_list() == report["n_weights"].to_list()
    D = g.alt_dosages().astype(np.float64)
    col = {int(st) + 1: i for i, st in enumerate(g.starts)}  # 1-based POS -> variant
    for gene in ("G0", "G1", "G2"):
        w = model.weights.filter(pl.col("gene") == gene)
        idx = [col[int(r.split("_")[1])] for r in w["rsid"]]  # ids are not rs ids: rsid holds the varID
        expect = D[:, idx] @ w["weight"].to_numpy()
        got = pred.filter(pl.col("gene") == gene).select(g.samples).to_numpy()[0]
        np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-12)
        # and equal to the model's own test predictions up to its intercept
        test_rows = [g.samples.index(s) for s in res.test_samples]
        own = res.test_predictions.filter(pl.col("gene_id") == gene).select(res.test_samples).to_numpy()[0]
        diff = own - got[test_rows]
        np.testing.assert_allclose(diff, diff[0], atol=1e-9)


def test_covariance_file(fitted) -> None:
    g, res, d = fitted
    with gzip.open(d / "covariances.txt.gz", "rt") as fh:
        assert fh.readline() == "GENE RSID1 RSID2 VALUE\n"
    cov = read_covariances(d / "covariances.txt.gz")
    assert cov.height == res.covariances.height
    np.testing.assert_allclose(cov["VALUE"].to_numpy(), res.covariances["VALUE"].to_numpy(), rtol=1e-9)


def _genos():
    alleles = [("A", "G"), ("C", "T"), ("A", "T"), ("G", "A"), ("T", "A")]
    return make_genotypes(30, np.array([99, 199, 299, 399, 499]), seed=4, contig="chr22", alleles=alleles,
                          ids=["rs10", "22_200", "rs30", "rs40", "22_500"])  # fmt: skip


def test_allele_swaps_and_strand_flips() -> None:
    g = _genos()
    D = g.alt_dosages().astype(np.float64)
    w = pl.DataFrame({
        "rsid": ["rs10", "chr22_200_T_C_b37", "x", "rs40", "nope"],
        "gene": ["A", "A", "B", "B", "B"],
        "weight": [0.5, -0.25, 1.0, 2.0, 3.0],
        "ref_allele": ["A", "T", "A", "C", "A"],  # row 2 swapped, row 4 on the other strand
        "eff_allele": ["G", "C", "T", "T", "C"],
        "varID": [None, None, "22_300_A_T_b37", None, None],
    })  # fmt: skip
    m = match_variants(w, g)
    assert m.status == ["direct", "swapped", "direct", "unmatched", "unmatched"]
    np.testing.assert_allclose(allele_dosages(g, np.array([1]), np.array([0]))[:, 0], 2 - D[:, 1])
    mf = match_variants(w, g, strand_flip=True)
    assert mf.status[3] == "flipped"  # C>T on the other strand is G>A
    assert mf.variant[3] == 3
    w_sw = w.with_columns(
        pl.Series("ref_allele", ["A", "T", "A", "T", "A"]), pl.Series("eff_allele", ["G", "C", "T", "C", "C"])
    )
    assert match_variants(w_sw, g, strand_flip=True).status[3] == "flipped_swapped"
    pred, report = predict_from_predictdb_frame(w, g)
    a = pred.filter(pl.col("gene") == "A").select(g.samples).to_numpy()[0]
    np.testing.assert_allclose(a, 0.5 * D[:, 0] - 0.25 * (2 - D[:, 1]))
    b = pred.filter(pl.col("gene") == "B").select(g.samples).to_numpy()[0]
    np.testing.assert_allclose(b, 1.0 * D[:, 2])
    assert report.filter(pl.col("gene") == "A")["n_swapped"][0] == 1
    pred_f, report_f = predict_from_predictdb_frame(w, g, strand_flip=True)
    b = pred_f.filter(pl.col("gene") == "B").select(g.samples).to_numpy()[0]
    np.testing.assert_allclose(b, 1.0 * D[:, 2] + 2.0 * D[:, 3])
    assert report_f.filter(pl.col("gene") == "B")["n_flipped"][0] == 1


def predict_from_predictdb_frame(w: pl.DataFrame, g, **kw):
    from expredict.io.predictdb import PredictDBModel

    return predict_from_predictdb(PredictDBModel("mem", w, pl.DataFrame(), ("weights", "extra")), g, **kw)


def test_strand_ambiguous_never_flipped() -> None:
    g = _genos()
    w = pl.DataFrame({"rsid": ["rs30"], "gene": ["B"], "weight": [1.0], "ref_allele": ["T"], "eff_allele": ["A"]})
    # A/T site: T>A in the model is a swap of A>T, never treated as a strand flip
    assert match_variants(w, g, strand_flip=True).status == ["swapped"]


def test_reads_older_forms_and_rejects_bad_files(tmp_path: Path) -> None:
    p = tmp_path / "old.db"
    con = sqlite3.connect(p)
    con.executescript("""
        CREATE TABLE weights (rsid TEXT, gene TEXT, weight DOUBLE, ref_allele CHARACTER, eff_allele CHARACTER,
                              pval DOUBLE, N INTEGER, cis INTEGER);
        CREATE TABLE extra (gene TEXT, genename TEXT, R2 DOUBLE, `n.snps` INTEGER);
        INSERT INTO weights VALUES ('rs10', 'ENSG1', 0.3, 'A', 'G', 0.01, 100, 1);
        INSERT INTO extra VALUES ('ENSG1', 'GENE1', 0.12, 1);
    """)
    con.commit()
    con.close()
    m = read_predictdb(p)
    assert m.extra.columns == [
        "gene",
        "genename",
        "n.snps.in.model",
        "pred.perf.R2",
        "pred.perf.pval",
        "pred.perf.qval",
    ]
    assert m.extra.row(0) == ("ENSG1", "GENE1", 1, 0.12, None, None)
    assert m.weights["varID"].is_null().all()
    pred, _ = predict_from_predictdb(m, _genos())
    np.testing.assert_allclose(pred.select(_genos().samples).to_numpy()[0], 0.3 * _genos().alt_dosages()[:, 0])
    with pytest.raises(InputFileError, match="not found"):
        read_predictdb(tmp_path / "missing.db")
    (tmp_path / "junk.db").write_text("not sqlite at all, definitely not" * 10)
    with pytest.raises(InputFileError):
        read_predictdb(tmp_path / "junk.db")


def test_write_requires_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing columns"):
        write_predictdb(tmp_path / "x.db", pl.DataFrame({"rsid": ["a"]}), pl.DataFrame({"gene": ["g"]}))
    assert not (tmp_path / "x.db").exists()
