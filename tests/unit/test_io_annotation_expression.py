"""Gene tables and expression matrices: formats, conventions, bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from expredict.errors import InputFileError, SampleMismatchError
from expredict.io.annotation import read_genes
from expredict.io.expression import read_covariates, read_expression, reconcile_samples, transform


def test_phenotype_bed_tss_is_end_minus_one(fixture_paths):
    genes = read_genes(fixture_paths["bed"])
    first = fixture_paths["bed"].read_text().splitlines()[1].split("\t")
    row = genes.filter(pl.col("gene_id") == first[3]).row(0, named=True)
    assert row["tss"] == int(first[2]) - 1 == int(first[1])
    assert row["strand"] == first[5]
    assert genes.height == 12


def test_gtf_and_tsv(tmp_path):
    gtf = tmp_path / "a.gtf"
    gtf.write_text(
        'chr1\tx\tgene\t101\t200\t.\t+\t.\tgene_id "G1"; gene_name "A";\n'
        'chr1\tx\tgene\t301\t400\t.\t-\t.\tgene_id "G2"; gene_name "B";\n'
        'chr1\tx\texon\t301\t400\t.\t-\t.\tgene_id "G2";\n'
    )
    g = read_genes(gtf)
    assert g["tss"].to_list() == [100, 399]
    assert g["gene_name"].to_list() == ["A", "B"]
    tsv = tmp_path / "a.tsv"
    tsv.write_text("gene_id\tcontig\ttss\tstrand\nG1\tchr1\t5\t-\n")
    assert read_genes(tsv).row(0, named=True)["tss"] == 5


def test_bad_bed(tmp_path):
    bed = tmp_path / "x.bed"
    bed.write_text("#chr\tstart\tend\tgene\nchr1\tabc\t5\tG\n")
    with pytest.raises(InputFileError, match=r"x.bed, line 2: start/end must be integers"):
        read_genes(bed)


def test_expression_bed_and_non_numeric(fixture_paths, tmp_path):
    e = read_expression(fixture_paths["bed"])
    assert e.values.shape == (12, 60) and e.samples[0] == "HG00096"
    lines = fixture_paths["bed"].read_text().splitlines()
    f = lines[3].split("\t")
    f[10] = "high"
    bad = tmp_path / "bad.bed"
    bad.write_text("\n".join([*lines[:3], "\t".join(f), *lines[4:]]) + "\n")
    sample = lines[0].split("\t")[10]
    with pytest.raises(
        InputFileError,
        match=rf"bad.bed, line 4, column '{sample}': non-numeric expression value 'high' for gene {f[3]}",
    ):
        read_expression(bad)


def test_expression_tsv_parquet_roundtrip(tmp_path, fixture_paths):
    e = read_expression(fixture_paths["bed"])
    pq = tmp_path / "e.parquet"
    e.to_polars().write_parquet(pq)
    e2 = read_expression(pq)
    np.testing.assert_array_equal(e.values, e2.values)
    tsv = tmp_path / "e.tsv"
    e.to_polars().write_csv(tsv, separator="\t")
    np.testing.assert_allclose(read_expression(tsv).values, e.values)


def test_transforms():
    x = np.array([[0.0, 1.0, 3.0, 7.0], [5.0, 5.0, 1.0, np.nan]])
    np.testing.assert_allclose(transform(x, "log2p1")[0], [0, 1, 2, 3])
    z = transform(x, "inverse_normal")
    assert np.argsort(z[0]).tolist() == [0, 1, 2, 3] and abs(z[0].sum()) < 1e-12
    assert z[1, 0] == z[1, 1] and np.isnan(z[1, 3])
    with pytest.raises(ValueError, match="negative values"):
        transform(-x, "log1p")


def test_covariates(fixture_paths):
    samples, names, cov = read_covariates(fixture_paths["covariates"])
    assert len(samples) == 60 and cov.shape == (60, 53)
    assert names[0] == "genotypes_1_1_svd_PC1"


def test_reconcile():
    r = reconcile_samples(["a", "b", "c"], ["c", "b"], ["b", "c"])
    assert r.kept == ["b", "c"] and r.only_in_vcf == ["a"]
    with pytest.raises(
        SampleMismatchError, match=r"expr.tsv: 1 sample\(s\) not in in.vcf, e.g. \['z'\].*drop_unmatched_samples"
    ):
        reconcile_samples(["a"], ["a", "z"], expression_path="expr.tsv", vcf_path="in.vcf")
    assert reconcile_samples(["a"], ["a", "z"], drop_unmatched=True).only_in_expression == ["z"]
