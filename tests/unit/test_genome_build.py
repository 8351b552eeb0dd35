"""Genome builds (data.genome_build / the VCF header, PredictDB _b37 / _b38 keys) and chr-prefix matching."""

from __future__ import annotations

import dataclasses
import gzip
import logging
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_enet import make_genotypes  # noqa: E402

from expredict.baselines.cis import cis_features, variant_key  # noqa: E402
from expredict.baselines.enet import fit_enet_gene  # noqa: E402
from expredict.config import EnetConfig, load_config  # noqa: E402
from expredict.errors import ConfigError, InputFileError, ReferenceMismatchError  # noqa: E402
from expredict.io.contigs import (  # noqa: E402
    detect_genome_build,
    indexed_contigs,
    match_contig,
    predictdb_build,
    resolve_genome_build,
)
from expredict.io.predictdb import match_variants, read_predictdb, write_predictdb  # noqa: E402
from expredict.io.reference import Reference  # noqa: E402
from expredict.run.stages.enet import model_prediction  # noqa: E402

REPO = Path(__file__).parents[2]


def _vcf(tmp_path: Path, meta: list[str], name: str = "h.vcf") -> Path:
    p = tmp_path / name
    p.write_text("##fileformat=VCFv4.2\n" + "".join(m + "\n" for m in meta)
                 + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n")  # fmt: skip
    return p


def test_build_read_from_the_header(tmp_path, fixture_paths) -> None:
    assert detect_genome_build(str(fixture_paths["vcf"])) == "GRCh37"  # ##reference=...hs37d5, assembly=b37
    hs37d5 = "##reference=ftp://ftp.1000genomes.ebi.ac.uk/vol1/ftp/technical/reference/phase2_reference_assembly_sequence/hs37d5.fa.gz"
    assert detect_genome_build(str(_vcf(tmp_path, [hs37d5], "demo_like.vcf"))) == "GRCh37"  # the demo VCF's line
    assert (
        detect_genome_build(str(_vcf(tmp_path, ["##contig=<ID=chr1,length=248956422,assembly=GRCh38>"], "a.vcf")))
        == "GRCh38"
    )
    assert detect_genome_build(str(_vcf(tmp_path, ["##reference=file:///ref/hg38.fa"], "b.vcf"))) == "GRCh38"
    both = _vcf(tmp_path, ["##reference=hg19.fa", "##contig=<ID=chr1,assembly=hg38>"], "c.vcf")
    none = _vcf(tmp_path, ["##contig=<ID=1,length=100>"], "d.vcf")
    assert detect_genome_build(str(both)) is None and detect_genome_build(str(none)) is None
    assert resolve_genome_build(none, "GRCh38") == "GRCh38"
    with pytest.raises(
        ConfigError, match=r"d\.vcf: the genome build cannot be read.*set data\.genome_build: GRCh37 or GRCh38"
    ):
        resolve_genome_build(none, None)
    assert predictdb_build("GRCh37") == "b37" and predictdb_build("GRCh38") == "b38"


def test_config_genome_build() -> None:
    cfg = load_config(REPO / "configs/fixture.yaml")
    assert cfg.data.genome_build is None
    with pytest.raises(ConfigError, match="genome_build"):
        load_config(REPO / "configs/fixture.yaml", {"data.genome_build": "hg19"})


def test_variant_keys_follow_the_build() -> None:
    assert variant_key("22", 99, "A", "G") == "22_100_A_G_b37"  # GRCh37: the VCF's contig name as is
    assert variant_key("chr22", 99, "A", "G", "b37") == "chr22_100_A_G_b37"
    assert variant_key("22", 99, "A", "G", "b38") == "chr22_100_A_G_b38"  # GTEx v8 style
    assert variant_key("chr22", 99, "A", "G", "GRCh38") == "chr22_100_A_G_b38"


def test_b38_keys_round_trip_through_predictdb(tmp_path) -> None:
    rng = np.random.default_rng(3)
    starts = np.sort(rng.choice(np.arange(10_000, 60_000, 11), 40, replace=False))
    g = make_genotypes(150, starts, seed=3, contig="1")  # a GRCh38 VCF without the chr prefix
    X = g.alt_dosages().astype(np.float64)
    feats = cis_features(g, np.arange(120), build="b38")
    assert feats.var_id and all(k.startswith("chr1_") and k.endswith("_b38") for k in feats.var_id)
    y = X[:, feats.index[:3]] @ np.array([1.0, -0.8, 0.6]) + rng.normal(0, 0.3, 150)
    cfg = EnetConfig(backend="sklearn", n_lambda=20, drop_ambiguous=False, nested_cv=False)
    fit = fit_enet_gene("G", g, y[:120], np.arange(120), np.arange(120, 150), config=cfg, seed=1, build="b38")
    assert fit.weights.height > 0 and all(k.endswith("_b38") for k in fit.weights["varID"])
    pred, found = model_prediction(g, fit.weights, fit.intercept, "b38")
    assert found == fit.weights.height
    np.testing.assert_allclose(pred[120:], fit.test_pred)
    assert model_prediction(g, fit.weights, fit.intercept, "b37")[1] == 0  # wrong build: nothing matches
    extra = pl.DataFrame({"gene": ["G"], "genename": ["G"], "n.snps.in.model": [fit.weights.height],
                          "pred.perf.R2": [0.5], "pred.perf.pval": [0.01], "pred.perf.qval": [None]})  # fmt: skip
    db = write_predictdb(tmp_path / "m.db", fit.weights, extra)
    back = read_predictdb(db)
    assert back.weights["varID"].to_list() == fit.weights["varID"].to_list()
    m = match_variants(back.weights, g, snp_key="varID")
    assert m.counts().get("direct", 0) == fit.weights.height  # the importer reads the _b38 keys back


def test_match_contig_both_directions_and_ambiguous(caplog) -> None:
    assert match_contig("chr5", {"chr5", "6"}, target="t") == "chr5"
    with caplog.at_level(logging.INFO, logger="expredict.io.contigs"):
        assert match_contig("chr7", {"7", "8"}, target="x.fa") == "7"
        assert match_contig("chr7", {"7", "8"}, target="x.fa") == "7"
        assert match_contig("9", {"chr9"}, target="x.fa") == "chr9"
    logged = [r.getMessage() for r in caplog.records if "matched" in r.getMessage()]
    assert logged == ["contig 'chr7' matched to '7' in x.fa", "contig '9' matched to 'chr9' in x.fa"]
    with pytest.raises(
        ReferenceMismatchError, match=r"x\.fa: contig '3' .*ambiguous: both '3' and 'chr3'.*data\.contig_aliases"
    ):
        match_contig("3", {"3", "chr3"}, target="x.fa")
    with pytest.raises(
        InputFileError, match=r"v\.vcf: contig 'chrY' \(used by g\.bed\) not found, nor 'Y'.*data\.contig_aliases"
    ):
        match_contig("chrY", {"1"}, target="v.vcf", source="g.bed", error=InputFileError)


def test_reference_matches_chr_prefix(tmp_path, fixture_paths) -> None:
    ref = Reference(fixture_paths["fasta"])  # FASTA record 22:19990001-20250000, no alias
    assert ref.contig_bounds("chr22") == (19_990_000, 20_250_000) == ref.contig_bounds("22")
    fa = tmp_path / "c.fa"
    fa.write_text(">chr1\nACGTACGT\n>2\nGGGG\n>chr2\nTTTT\n")
    r = Reference(fa)
    assert r.fetch("1", 0, 4) == "ACGT"  # 1 -> chr1
    with pytest.raises(ReferenceMismatchError, match=r"c\.fa.*contig '2' is ambiguous.*data\.contig_aliases"):
        r.fetch("2", 0, 2)
    assert Reference(fa, {"2": "chr2"}).fetch("2", 0, 2) == "TT"  # an explicit alias wins
    with pytest.raises(ReferenceMismatchError, match=r"contig 'chrX' not found, nor 'X'"):
        r.fetch("chrX", 0, 2)


def test_cohort_vcf_without_chr_prefix(tmp_path, write_config, fixture_paths) -> None:
    """Genes say chr22, the VCF 22, the FASTA 22: matched without any alias, same genotypes."""
    import pysam

    from expredict.cohort import load_cohort

    p = tmp_path / "nochr.vcf"
    with gzip.open(fixture_paths["vcf"], "rt") as fin, p.open("w") as fout:
        for line in fin:
            fout.write(line[3:] if line.startswith("chr22\t") else line)
    pysam.tabix_index(str(p), preset="vcf", force=True)
    vcf = Path(str(p) + ".gz")
    assert indexed_contigs(vcf) == ["22"]
    base = load_cohort(load_config(write_config()))
    co = load_cohort(load_config(write_config(vcf=vcf, contig_aliases={})))
    assert list(co.genotypes) == ["22"] and co.genes["contig"].unique().to_list() == ["22"]
    assert co.genes["gene_id"].to_list() == base.genes["gene_id"].to_list()
    g0, g1 = base.genotypes["chr22"], co.genotypes["22"]
    assert np.array_equal(g0.genotypes, g1.genotypes) and np.array_equal(g0.starts, g1.starts)
    assert dataclasses.replace(g1, contig="chr22").record_label(0) == g0.record_label(0)
