"""Hand-written edge cases on a 60-bp toy reference, expected outputs taken from ``bcftools consensus
-s S -H 1|2`` (1.16 and 1.24 agree unless a row says otherwise): genotype selection, variant types
and overlaps, region edges, the chain file."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import Rec, write_fasta, write_vcf

from expredict.coords import Region
from expredict.errors import GenotypeError, ReferenceMismatchError
from expredict.haplotypes import build_haplotypes, haplotype_chain, iter_unique_haplotypes
from expredict.io.genotypes import read_genotypes
from expredict.io.reference import Reference

REF = "ACGTACGTACGGGGGTTTTTCCCCCAAAAATGCATGCATGTTTTTGGGGGAAAAACCCCC"
WHOLE = Region("chr1", 0, 60, "whole")


def _sub(pos1: int, base: str, seq: str = REF) -> str:
    return seq[: pos1 - 1] + base + seq[pos1:]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("toy")
    write_fasta(d / "ref.fa", {"chr1": REF})
    return d


def _build(d: Path, name: str, recs: list[Rec], regions=(WHOLE,), fasta: str = "ref.fa", **kw):
    vcf = write_vcf(d / f"{name}.vcf.gz", recs, ["S"], {"chr1": 60})
    g = read_genotypes(vcf, "chr1")
    out = build_haplotypes(g, Reference(d / fasta, uppercase=kw.pop("uppercase", True)), list(regions), **kw)
    return [(r.sequences[0], r.sequences[1]) for r in out], out


# genotype selection, one SNV chr1:2 C>T: (GT, H1, H2, H1 with 1pIu, H2 with 1pIu)
GT_ROWS = [
    ("0|1", "C", "T", "C", "T"),
    ("1|0", "T", "C", "T", "C"),
    ("0/1", "C", "T", "Y", "Y"),
    ("./.", "C", "C", "C", "C"),
    (".|1", "C", "T", "C", "T"),
    ("1/1", "T", "T", "T", "T"),
    ("1", "T", "C", "T", "C"),
    (".", "C", "C", "C", "C"),
]


@pytest.mark.parametrize(("gt", "h1", "h2", "i1", "i2"), GT_ROWS)
def test_genotype_selection(toy: Path, gt: str, h1: str, h2: str, i1: str, i2: str) -> None:
    rec = [Rec(2, "C", ["T"], [gt])]
    (got,), _ = _build(toy, "gt", rec)
    assert got == (_sub(2, h1), _sub(2, h2))
    (got,), _ = _build(toy, "gt", rec, unphased="iupac")
    assert got == (_sub(2, i1), _sub(2, i2))


def test_haploid_duplicate(toy: Path) -> None:
    (got,), _ = _build(toy, "hap", [Rec(2, "C", ["T"], ["1"])], haploid="duplicate")
    assert got == (_sub(2, "T"), _sub(2, "T"))


def test_unphased_counts_and_error(toy: Path) -> None:
    recs = [Rec(2, "C", ["T"], ["0/1"]), Rec(22, "C", ["A"], ["1/1"]), Rec(31, "T", ["G"], ["1|0"])]
    _, out = _build(toy, "unph", recs)
    assert out[0].stats["unphased"].tolist() == [[1, 1]]
    with pytest.raises(GenotypeError, match=r"chr1:2 C>T.*sample S"):
        _build(toy, "unph", recs, unphased="error")


def test_missing_counted(toy: Path) -> None:
    _, out = _build(toy, "miss", [Rec(2, "C", ["T"], [".|1"]), Rec(22, "C", ["A"], ["./."])])
    assert out[0].stats["missing"].tolist() == [[2, 1]]


# variant types and overlaps: (case, records, H1, H2); None = REF
B_ROWS = [
    (
        "B1",
        [Rec(5, "A", ["AGG"], ["1|0"]), Rec(12, "GGG", ["G"], ["0|1"]), Rec(31, "T", ["TAAA"], ["1|1"])],
        "ACGTAGGCGTACGGGGGTTTTTCCCCCAAAAATAAAGCATGCATGTTTTTGGGGGAAAAACCCCC",
        "ACGTACGTACGGGTTTTTCCCCCAAAAATAAAGCATGCATGTTTTTGGGGGAAAAACCCCC",
    ),
    (
        "B2",
        [Rec(41, "TTTTTG", ["T"], ["1|0"]), Rec(43, "T", ["C"], ["1|1"])],
        "ACGTACGTACGGGGGTTTTTCCCCCAAAAATGCATGCATGTGGGGAAAAACCCCC",
        "ACGTACGTACGGGGGTTTTTCCCCCAAAAATGCATGCATGTTCTTGGGGGAAAAACCCCC",
    ),
    (
        "B3",
        [Rec(31, "T", ["G"], ["1|1"]), Rec(31, "T", ["TAA"], ["1|0"]), Rec(32, "G", ["C"], ["1|1"])],
        "ACGTACGTACGGGGGTTTTTCCCCCAAAAAGAACCATGCATGTTTTTGGGGGAAAAACCCCC",
        "ACGTACGTACGGGGGTTTTTCCCCCAAAAAGCCATGCATGTTTTTGGGGGAAAAACCCCC",
    ),
    (
        "B4",
        [Rec(31, "T", ["TAA"], ["1|0"]), Rec(31, "T", ["G"], ["1|1"])],
        "ACGTACGTACGGGGGTTTTTCCCCCAAAAATAAGCATGCATGTTTTTGGGGGAAAAACCCCC",
        "ACGTACGTACGGGGGTTTTTCCCCCAAAAAGGCATGCATGTTTTTGGGGGAAAAACCCCC",
    ),
    (
        "B5",
        [Rec(12, "GGG", ["G"], ["1|1"]), Rec(14, "G", ["GCC"], ["0|1"]), Rec(15, "G", ["A"], ["1|0"])],
        "ACGTACGTACGGATTTTTCCCCCAAAAATGCATGCATGTTTTTGGGGGAAAAACCCCC",
        "ACGTACGTACGGCCGTTTTTCCCCCAAAAATGCATGCATGTTTTTGGGGGAAAAACCCCC",
    ),
    (
        "B6",
        [Rec(22, "C", ["A"], ["1|0"]), Rec(22, "C", ["G"], ["1|0"])],
        "ACGTACGTACGGGGGTTTTTCACCCAAAAATGCATGCATGTTTTTGGGGGAAAAACCCCC",
        None,
    ),
    (
        "B7",
        [Rec(21, "CCCCC", ["C"], ["1|0"]), Rec(23, "CCCA", ["C"], ["1|1"])],
        "ACGTACGTACGGGGGTTTTTCAAAAATGCATGCATGTTTTTGGGGGAAAAACCCCC",
        "ACGTACGTACGGGGGTTTTTCCCAAAATGCATGCATGTTTTTGGGGGAAAAACCCCC",
    ),
    (
        "C1",
        [
            Rec(22, "C", ["A", "G"], ["1|2"]),
            Rec(26, "A", ["AT", "ATT"], ["2|1"]),
            Rec(36, "GC", ["G", "TC"], ["1|2"]),
        ],
        "ACGTACGTACGGGGGTTTTTCACCCATTAAAATGCATGATGTTTTTGGGGGAAAAACCCCC",
        "ACGTACGTACGGGGGTTTTTCGCCCATAAAATGCATTCATGTTTTTGGGGGAAAAACCCCC",
    ),
    (
        "C2-DEL",
        [Rec(45, "T", ["<DEL>"], ["1|0"], info="END=50;SVTYPE=DEL")],
        "ACGTACGTACGGGGGTTTTTCCCCCAAAAATGCATGCATGTTTTTAAAAACCCCC",
        None,
    ),
    # bcftools writes a literal "*" on H2; expredict treats "*" as a no-op (rule 4)
    ("C2-star", [Rec(57, "C", ["*"], ["0|1"])], None, None),
    (
        "C3",
        [Rec(21, "CCCCC", ["C"], ["1|0"]), Rec(23, "C", ["A", "*"], ["2|1"])],
        "ACGTACGTACGGGGGTTTTTCAAAAATGCATGCATGTTTTTGGGGGAAAAACCCCC",
        "ACGTACGTACGGGGGTTTTTCCACCAAAAATGCATGCATGTTTTTGGGGGAAAAACCCCC",
    ),
    (
        "C6",
        [Rec(2, "c", ["t"], ["1|1"])],
        "ATGTACGTACGGGGGTTTTTCCCCCAAAAATGCATGCATGTTTTTGGGGGAAAAACCCCC",
        "ATGTACGTACGGGGGTTTTTCCCCCAAAAATGCATGCATGTTTTTGGGGGAAAAACCCCC",
    ),
    (
        "E1",
        [
            Rec(5, "A", ["AGG"], ["1|0"]),
            Rec(12, "GGG", ["G"], ["1|1"]),
            Rec(22, "C", ["A"], ["1|1"]),
            Rec(41, "TTTTTG", ["T"], ["1|0"]),
        ],
        "ACGTAGGCGTACGGGTTTTTCACCCAAAAATGCATGCATGTGGGGAAAAACCCCC",
        "ACGTACGTACGGGTTTTTCACCCAAAAATGCATGCATGTTTTTGGGGGAAAAACCCCC",
    ),
]


@pytest.mark.parametrize(("case", "recs", "h1", "h2"), B_ROWS, ids=[r[0] for r in B_ROWS])
def test_variant_types(toy: Path, case: str, recs: list[Rec], h1: str | None, h2: str | None) -> None:
    (got,), _ = _build(toy, case, recs)
    assert got == (h1 or REF, h2 or REF)


def test_overlap_and_applied_counters(toy: Path) -> None:
    _, out = _build(toy, "b2", B_ROWS[1][1])
    st = out[0].stats
    assert st["applied"].tolist() == [[1, 1]]
    assert st["skipped_overlap"].tolist() == [[1, 0]]
    assert st["net_length"].tolist() == [[-5, 0]]
    _, out = _build(toy, "star", [Rec(57, "C", ["*"], ["0|1"])])
    assert out[0].stats["skipped_filtered"].tolist() == [[0, 1]]


@pytest.mark.parametrize("alt", ["<INV>", "<INS>", "<DUP>"])
def test_other_symbolic_skipped_and_counted(toy: Path, alt: str) -> None:
    (got,), out = _build(toy, "sym", [Rec(45, "T", [alt], ["1|0"], info="END=50")])
    assert got == (REF, REF)  # bcftools aborts the whole run (exit 255); expredict skips and counts
    assert out[0].stats["skipped_symbolic"].tolist() == [[1, 0]]


def test_ref_mismatch_error_and_skip(toy: Path) -> None:
    recs = [Rec(3, "A", ["T"], ["1|1"])]  # FASTA has G at 3
    with pytest.raises(ReferenceMismatchError, match=r"chr1:3 A>T.*FASTA has G.*ref_mismatch='skip'"):
        _build(toy, "c5", recs)
    (got,), out = _build(toy, "c5", recs, ref_mismatch="skip")
    assert got == (REF, REF)
    assert out[0].stats["skipped_ref_mismatch"].tolist() == [[1, 1]]


def test_ref_mismatch_checked_even_when_ref_allele_chosen(toy: Path) -> None:
    # C5b: bcftools is silent with -H 1 here; expredict checks every record in the window (stricter)
    with pytest.raises(ReferenceMismatchError):
        _build(toy, "c5b", [Rec(3, "A", ["T"], ["0|1"])])


def test_fasta_n_is_a_mismatch(toy: Path) -> None:
    write_fasta(toy / "refn.fa", {"chr1": REF[:21] + "N" + REF[22:]})
    with pytest.raises(ReferenceMismatchError, match="chr1:22 C>A"):
        _build(toy, "en", [Rec(22, "C", ["A"], ["1|1"])], fasta="refn.fa")


def test_soft_masked_reference_keeps_case(toy: Path) -> None:
    write_fasta(toy / "soft.fa", {"chr1": REF[:20].lower() + REF[20:]})
    (got,), _ = _build(toy, "esoft", B_ROWS[-1][1], fasta="soft.fa", uppercase=False)
    assert got[0].upper() == B_ROWS[-1][2]
    assert got[0].startswith("acgt") and "CACCC" in got[0]


# region edges, bcftools >= 1.20 default (--regions-overlap 1); window chr1:11-20
EDGE_ROWS = [
    (
        "D1",
        [
            Rec(9, "ACGGG", ["A"], ["1|0"]),
            Rec(11, "G", ["T"], ["0|1"]),
            Rec(20, "T", ["TAA"], ["1|1"]),
            Rec(21, "C", ["G"], ["1|1"]),
        ],
        "GGTTTTTAA",
        "TGGGGTTTTTAA",
    ),
    ("D2", [Rec(18, "TTTCC", ["T"], ["1|0"])], "GGGGGTTT", "GGGGGTTTTT"),
    ("D3", [Rec(10, "CGG", ["C"], ["1|1"])], "GGGTTTTT", "GGGTTTTT"),
    ("D4", [Rec(10, "C", ["CTTT"], ["1|1"])], "GGGGGTTTTT", "GGGGGTTTTT"),
]


@pytest.mark.parametrize(("case", "recs", "h1", "h2"), EDGE_ROWS, ids=[r[0] for r in EDGE_ROWS])
def test_region_edges(toy: Path, case: str, recs: list[Rec], h1: str, h2: str) -> None:
    (got,), _ = _build(toy, case, recs, regions=[Region("chr1", 10, 20, case)])
    assert got == (h1, h2)


def test_many_windows_one_run(toy: Path) -> None:
    e1 = B_ROWS[-1][1]
    got, _ = _build(toy, "multi", e1, regions=[Region("chr1", 10, 20), Region("chr1", 10, 30)])
    assert [g[0] for g in got] == ["GGGTTTTT", "GGGTTTTTCACCCAAAAA"]


@pytest.mark.filterwarnings("ignore:no intervals found")
def test_contig_absent_from_vcf_is_reference(toy: Path) -> None:
    write_fasta(toy / "two.fa", {"chr1": REF, "chr2": "ACGTACGTAA"})
    vcf = write_vcf(toy / "e1b.vcf.gz", B_ROWS[-1][1], ["S"], {"chr1": 60, "chr2": 10})
    g = read_genotypes(vcf, "chr2", samples=["S"])
    (r,) = build_haplotypes(g, Reference(toy / "two.fa"), [Region("chr2", 0, 8)])
    assert r.sequences == ["ACGTACGT", "ACGTACGT"]


def test_chain_matches_bcftools(toy: Path) -> None:
    vcf = write_vcf(toy / "e1c.vcf.gz", B_ROWS[-1][1], ["S"], {"chr1": 60})
    g = read_genotypes(vcf, "chr1")
    ref = Reference(toy / "ref.fa")
    header, blocks = haplotype_chain(g, ref, WHOLE, 0, 0)
    assert header == "chain 53 chr1 60 + 0 60 chr1 55 + 0 55 1"
    assert blocks == [(5, 0, 2), (7, 2, 0), (27, 5, 0), (14,)]
    header, blocks = haplotype_chain(g, ref, Region("chr1", 10, 30), 0, 0)
    assert header == "chain 18 chr1 30 + 10 30 chr1 28 + 10 28 1"
    assert blocks == [(2, 2, 0), (16,)]


def test_unique_matches_build(toy: Path) -> None:
    recs = [Rec(5, "A", ["AGG"], ["1|0", "0|0", "1|1"]), Rec(22, "C", ["A"], ["1|1", "0|1", "0|0"])]
    vcf = write_vcf(toy / "u.vcf.gz", recs, ["a", "b", "c"], {"chr1": 60})
    g = read_genotypes(vcf, "chr1")
    ref = Reference(toy / "ref.fa")
    (u,) = iter_unique_haplotypes(g, ref, [WHOLE], mode="ragged")
    (b,) = build_haplotypes(g, ref, [WHOLE])
    assert u.index.shape == (3, 2)
    assert [u.sequence(s, h) for s in range(3) for h in range(2)] == b.sequences
    assert u.n_unique == len(set(b.sequences)) == 4


def test_tss_index_per_mode(toy: Path) -> None:
    recs = B_ROWS[0][1]  # B1: +2 at 5 on H1, -2 at 12-13 on H2, +3 at 31 on both
    anchored = Region("chr1", 0, 60, "a", 20)
    _, (r,) = _build(toy, "tss", recs, regions=[anchored])
    assert r.stats["tss_index"].tolist() == [[22, 18]]
    assert r.sequences[0][22] == r.sequences[1][18] == REF[20]
    _, (c,) = _build(toy, "tss", recs, regions=[anchored], mode="center_tss", length=21)
    assert c.stats["tss_index"].tolist() == [[10, 10]]
    assert c.sequences[0][10] == REF[20] and len(c.sequences[0]) == 21
    _, (left,) = _build(toy, "tss", recs, regions=[Region("chr1", 2, 40, "l", 20)], mode="left", length=30)
    assert left.stats["tss_index"].tolist() == [[20, 16]]
