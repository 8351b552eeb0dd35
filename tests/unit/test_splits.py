"""Splits by individual and gene classes: deterministic, disjoint, saved atomically."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from expredict.errors import ConfigError, InputFileError, SampleMismatchError
from expredict.splits import (
    make_gene_split,
    make_individual_split,
    read_splits,
    split_indices,
    write_splits,
)

SAMPLES = [f"HG{i:05d}" for i in range(100)]


def test_random_split_counts_order_and_determinism():
    a = make_individual_split(SAMPLES, seed=3)
    assert a.columns == ["sample", "split"]
    assert a["sample"].to_list() == SAMPLES
    counts = a["split"].value_counts().sort("split")
    assert dict(zip(counts["split"], counts["count"], strict=True)) == {"test": 20, "train": 70, "val": 10}
    assert a.equals(make_individual_split(SAMPLES, seed=3))
    assert not a.equals(make_individual_split(SAMPLES, seed=4))


def test_small_split_gives_every_nonzero_fraction_a_member():
    s = make_individual_split(SAMPLES[:5], seed=0, fractions=(0.8, 0.05, 0.15))
    assert set(s["split"]) == {"train", "val", "test"}


def test_population_split_holds_out_whole_populations():
    pops = ["CEU"] * 40 + ["YRI"] * 30 + ["FIN"] * 30
    s = make_individual_split(SAMPLES, seed=1, populations=pops, test_populations=["YRI"])
    test = s.filter(pl.col("split") == "test")["sample"].to_list()
    assert test == SAMPLES[40:70]
    rest = s.filter(pl.col("split") != "test")
    assert set(rest["split"]) == {"train", "val"}
    # seeded automatic choice: whole populations, at least the test fraction, never all of them
    auto = make_individual_split(SAMPLES, seed=2, populations=dict(zip(SAMPLES, pops, strict=True)))
    is_test = np.array(auto["split"].to_list()) == "test"
    by_pop = {p: set(is_test[np.array(pops) == p]) for p in set(pops)}
    assert all(len(v) == 1 for v in by_pop.values())
    assert 20 <= is_test.sum() < 100


def test_split_errors():
    with pytest.raises(SampleMismatchError, match="duplicate"):
        make_individual_split(["a", "b", "a"], seed=0)
    with pytest.raises(ConfigError, match="fractions"):
        make_individual_split(SAMPLES, seed=0, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match="absent"):
        make_individual_split(SAMPLES, seed=0, populations=["A"] * 100, test_populations=["B"])
    with pytest.raises(ConfigError, match="population labels"):
        make_individual_split(SAMPLES, seed=0, test_populations=["B"])


def _genes_one_contig(n=60):
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {"gene_id": [f"G{i}" for i in range(n)], "contig": ["22"] * n, "tss": np.sort(rng.integers(16e6, 51e6, n))}
    )


def test_gene_split_one_contig_contiguous_blocks():
    genes = _genes_one_contig()
    g = make_gene_split(genes, seed=5, n_blocks=10, heldout_fraction=0.2)
    assert g.columns == ["gene_id", "contig", "tss", "block", "gene_class"]
    assert g.equals(make_gene_split(genes.reverse(), seed=5, n_blocks=10, heldout_fraction=0.2))
    unseen = g.filter(pl.col("gene_class") == "unseen")
    assert unseen["block"].n_unique() == 2 and unseen.height == 12
    # blocks are contiguous in TSS order and every block is wholly seen or unseen
    assert (np.diff(g["block"].to_numpy()) >= 0).all()
    assert (g.group_by("block").agg(pl.col("gene_class").n_unique())["gene_class"] == 1).all()


def test_gene_split_buffer_and_heldout_contigs():
    genes = _genes_one_contig()
    g = make_gene_split(genes, seed=5, buffer_bp=2_000_000)
    unseen_tss = g.filter(pl.col("gene_class") == "unseen")["tss"].to_numpy()
    for row in g.filter(pl.col("gene_class") == "buffer").iter_rows(named=True):
        assert np.abs(unseen_tss - row["tss"]).min() <= 2_000_000
    for row in g.filter(pl.col("gene_class") == "seen").iter_rows(named=True):
        assert np.abs(unseen_tss - row["tss"]).min() > 2_000_000
    two = pl.concat([genes, genes.with_columns(pl.lit("21").alias("contig"), (pl.col("gene_id") + "b"))])
    h = make_gene_split(two, seed=0, heldout_contigs=["21"])
    assert set(h.filter(pl.col("gene_class") == "unseen")["contig"]) == {"21"}
    assert set(h.filter(pl.col("gene_class") == "seen")["contig"]) == {"22"}
    auto = make_gene_split(two, seed=0)
    assert auto.group_by("contig").agg(pl.col("gene_class").n_unique())["gene_class"].to_list() == [1, 1]
    with pytest.raises(ConfigError, match="lacks columns"):
        make_gene_split(genes.drop("tss"), seed=0)


def test_write_read_roundtrip_atomic(tmp_path):
    ind = make_individual_split(SAMPLES, seed=0)
    genes = make_gene_split(_genes_one_contig(), seed=0)
    d = write_splits(tmp_path, ind, genes)
    assert d == tmp_path / "splits"
    assert sorted(p.name for p in d.iterdir()) == ["genes.tsv", "individuals.tsv"]  # no temp files left
    assert (d / "individuals.tsv").read_text().splitlines()[0] == "sample\tsplit"
    back = read_splits(tmp_path)
    assert back.individuals.equals(ind)
    assert back.genes.equals(genes)
    assert read_splits(d).individuals.equals(ind)
    with pytest.raises(InputFileError):
        read_splits(tmp_path / "missing")


def test_split_indices_follow_sample_order():
    ind = make_individual_split(SAMPLES, seed=0)
    order = SAMPLES[::-1] + ["NEW1"]
    rows = split_indices(ind, order)
    lab = dict(zip(ind["sample"], ind["split"], strict=True))
    for k, idx in rows.items():
        assert all(lab[order[i]] == k for i in idx)
    assert sum(len(v) for v in rows.values()) == 100  # the new individual is in no split
