"""Genotype reader on the real GEUVADIS slice and on hand-written VCFs."""

from __future__ import annotations

import gzip

import numpy as np
import pysam
import pytest

from expredict.errors import InputFileError, SampleMismatchError
from expredict.io.genotypes import NO_ALLELE, read_genotypes, vcf_samples


def test_reads_real_slice_haplotype_major(fixture_paths):
    g = read_genotypes(fixture_paths["vcf"])
    assert g.contig == "chr22"
    assert g.n_samples == 60 and g.n_variants == 755
    assert g.genotypes.shape == (120, 755) and g.genotypes.dtype == np.int8
    assert g.genotypes.flags.c_contiguous
    assert g.phased.all()
    assert (np.diff(g.starts) >= 0).all()
    # cross-check sample 0 and 7 at a few records against pysam's independent parser
    with pysam.VariantFile(str(fixture_paths["vcf"])) as vf:
        for v, rec in enumerate(vf):
            assert rec.pos - 1 == g.starts[v]
            assert [rec.ref, *rec.alts] == g.alleles(v)
            for s in (0, 7, 59):
                gt = rec.samples[s]["GT"]
                assert (g.genotypes[2 * s, v], g.genotypes[2 * s + 1, v]) == gt


def test_sample_selection_and_region(fixture_paths):
    all_ = read_genotypes(fixture_paths["vcf"])
    want = [all_.samples[5], all_.samples[2]]
    g = read_genotypes(fixture_paths["vcf"], "chr22", 20_000_000, 20_100_000, samples=want)
    assert g.samples == want
    sl = all_.slice_region(20_000_000, 20_100_000)
    sub = all_.subset_variants(sl).subset_samples(want)
    np.testing.assert_array_equal(g.genotypes, sub.genotypes)
    np.testing.assert_array_equal(g.starts, sub.starts)
    assert g.starts.min() >= 20_000_000 and g.starts.max() < 20_100_000


def test_dosages(fixture_paths):
    g = read_genotypes(fixture_paths["vcf"])
    d = g.alt_dosages()
    assert d.shape == (60, 755)
    np.testing.assert_array_equal(d, (g.genotypes[0::2] > 0).astype(np.float32) + (g.genotypes[1::2] > 0))


def _write_vcf(path, body: str, samples=("S1", "S2"), index=True):
    header = (
        "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=1000>\n"
        '##INFO=<ID=END,Number=1,Type=Integer,Description="End">\n'
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples) + "\n"
    )
    plain = path.with_suffix("")
    plain.write_text(header + body)
    if index:
        pysam.tabix_index(str(plain), preset="vcf", force=True)
    else:
        pysam.tabix_compress(str(plain), str(path), force=True)
    return path


def test_multiallelic_missing_haploid_unphased(tmp_path):
    body = (
        "chr1\t5\t.\tA\tC,G\t.\t.\t.\tGT\t1|2\t./1\n"
        "chr1\t9\t.\tAC\tA\t.\t.\t.\tGT\t1\t0/1\n"
        "chr1\t20\t.\tT\t<DEL>\t.\t.\tEND=30\tGT\t0|1\t1|1\n"
    )
    g = read_genotypes(_write_vcf(tmp_path / "x.vcf.gz", body))
    assert g.alleles(0) == ["A", "C", "G"] and g.alleles(1) == ["AC", "A"]
    assert g.genotypes[:, 0].tolist() == [1, 2, -1, 1]
    assert g.genotypes[:, 1].tolist() == [1, NO_ALLELE, 0, 1]
    assert g.phased[:, 0].tolist() == [True, False]
    assert g.phased[1, 1] == np.False_
    assert g.ref_ends.tolist() == [5, 10, 30]


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_genotypes(tmp_path / "nope.vcf.gz")


def test_no_index(tmp_path):
    p = _write_vcf(tmp_path / "x.vcf.gz", "chr1\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n", index=False)
    with pytest.raises(InputFileError, match=r"no index \(.tbi or .csi\).*tabix -p vcf"):
        read_genotypes(p)


def test_unsorted(tmp_path):
    body = "chr1\t50\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\nchr1\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n"
    p = _write_vcf(tmp_path / "x.vcf.gz", body, index=False)
    (tmp_path / "x.vcf.gz.csi").write_bytes(b"")  # pretend an index exists: read the whole file
    p2 = tmp_path / "y.vcf.gz"
    p2.write_bytes(p.read_bytes())
    pysam.tabix_index  # noqa: B018 - tabix refuses unsorted input, so read without a region
    (tmp_path / "y.vcf.gz.tbi").write_bytes(b"")
    with pytest.raises(InputFileError, match=r"not sorted: chr1:5 comes after chr1:50.*bcftools sort"):
        read_genotypes(p2)


def test_truncated(tmp_path, fixture_paths):
    data = fixture_paths["vcf"].read_bytes()
    p = tmp_path / "t.vcf.gz"
    p.write_bytes(data[: len(data) // 2])
    (tmp_path / "t.vcf.gz.tbi").write_bytes(fixture_paths["vcf"].with_suffix(".gz.tbi").read_bytes())
    with pytest.raises(InputFileError, match="truncated"):
        read_genotypes(p)


def test_duplicate_samples(tmp_path):
    p = _write_vcf(tmp_path / "x.vcf.gz", "chr1\t5\t.\tA\tC\t.\t.\t.\tGT\t0|1\t1|1\n", samples=("S1", "S1"))
    with pytest.raises(SampleMismatchError, match="duplicate sample IDs.*S1"):
        vcf_samples(p)


def test_unknown_sample(fixture_paths):
    with pytest.raises(SampleMismatchError, match="not in the VCF.*NOBODY"):
        read_genotypes(fixture_paths["vcf"], samples=["NOBODY"])


def test_gzip_header_is_bgzf(fixture_paths):
    with gzip.open(fixture_paths["vcf"], "rt") as fh:
        assert fh.readline().startswith("##fileformat=VCF")
