"""Fixed-length projections, deduplication, tiles and the FASTA writer."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from builders import (
    Rec,
    bcftools_consensus,
    parse_fasta,
    random_records,
    random_reference,
    region_fasta,
    write_fasta,
    write_vcf,
)

from expredict.coords import Region
from expredict.haplotypes import (
    RunStats,
    build_haplotypes,
    coordinate_map,
    iter_unique_haplotypes,
    iter_unique_tiles,
    tile_regions,
)
from expredict.haplotypes.fasta import read_bed_regions, write_haplotypes_fasta
from expredict.io.genotypes import read_genotypes
from expredict.io.reference import Reference

SAMPLES = ["s0", "s1", "s2", "s3"]


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("fixed")
    rng = random.Random(11)
    ref = random_reference(rng, 3000)
    fa = write_fasta(d / "ref.fa", {"chr1": ref})
    recs = random_records(rng, ref, len(SAMPLES), n_records=200, p_same_pos=0.15)
    vcf = write_vcf(d / "r.vcf.gz", recs, SAMPLES, {"chr1": len(ref)})
    return d, ref, fa, vcf, recs, read_genotypes(vcf, "chr1"), Reference(fa)


def _comp(s: str) -> str:
    return s.translate(str.maketrans("ACGTN", "TGCAN"))[::-1]


@pytest.mark.parametrize("L", [100, 101, 250])
def test_center_tss_length_and_anchor(case, L: int) -> None:
    d, ref, fa, vcf, recs, g, reference = case
    rng = random.Random(L)
    anchors = [rng.randint(0, len(ref) - 1) for _ in range(12)] + [0, 5, len(ref) - 3, len(ref) - 1]
    regions = [Region("chr1", a, a + 1, f"t{i}", a) for i, a in enumerate(anchors)]
    fixed = build_haplotypes(g, reference, regions, mode="center_tss", length=L)
    for r in fixed:
        a = r.region.anchor
        # the same haplotype, built ragged over a wide window, cut at the anchor's haplotype position
        lo, hi = max(0, a - L - 200), min(len(ref), a + L + 200)
        (wide,) = build_haplotypes(g, reference, [Region("chr1", lo, hi, "", a)], mode="ragged")
        for si in range(len(SAMPLES)):
            for h in (0, 1):
                seq = r.sequence(si, h)
                assert len(seq) == L
                w = wide.sequence(si, h)
                t = int(wide.stats["tss_index"][si, h])
                left_n = "N" * L if lo == 0 else ""
                right_n = "N" * L if hi == len(ref) else ""
                up = (left_n + w[:t])[len(left_n + w[:t]) - L // 2 :]
                dn = (w[t:] + right_n)[: L - L // 2]
                assert seq == up + dn


def test_center_tss_halves_match_bcftools(case, tmp_path: Path) -> None:
    """Upstream half = suffix of bcftools on [TSS - L/2 - pad, TSS); downstream = prefix on [TSS, ...)."""
    d, ref, fa, vcf, recs, g, reference = case
    L, pad = 200, 120
    # TSSs away from records (so the split windows and the single window agree exactly)
    busy = set()
    for r in recs:
        busy.update(range(r.pos - 1 - 25, r.pos - 1 + len(r.ref) + 25))
    anchors: list[int] = []
    for a in range(300, len(ref) - 300):
        if a not in busy and (not anchors or a - anchors[-1] > 300):
            anchors.append(a)
    assert len(anchors) >= 3
    regions = [Region("chr1", a - 10, a + 10, f"t{i}", a) for i, a in enumerate(anchors)]
    built = build_haplotypes(g, reference, regions, mode="center_tss", length=L)
    wins = []
    for a in anchors:
        wins += [("chr1", a - L // 2 - pad, a), ("chr1", a, a + L // 2 + pad)]
    reg = region_fasta(tmp_path / "halves.fa", fa, wins)
    for si, s in enumerate(SAMPLES[:2]):
        for h in (1, 2):
            exp = bcftools_consensus(reg, vcf, s, h)
            for k, r in enumerate(built):
                assert r.sequence(si, h - 1) == exp[2 * k][-(L // 2) :] + exp[2 * k + 1][: L - L // 2]


def test_left_matches_truncated_bcftools(case, tmp_path: Path) -> None:
    d, ref, fa, vcf, recs, g, reference = case
    L = 300
    starts = [0, 17, 400, 1234, 2000, len(ref) - 100]
    regions = [Region("chr1", s, s + 10, f"l{i}") for i, s in enumerate(starts)]
    built = build_haplotypes(g, reference, regions, mode="left", length=L)
    reg = region_fasta(tmp_path / "left.fa", fa, [("chr1", s, min(len(ref), s + L + 200)) for s in starts])
    for si, s in enumerate(SAMPLES):
        for h in (1, 2):
            exp = bcftools_consensus(reg, vcf, s, h)
            for r, e in zip(built, exp, strict=True):
                assert r.sequence(si, h - 1) == (e + "N" * L)[:L]


def test_snv_only_is_plain_substitution(tmp_path: Path) -> None:
    rng = random.Random(5)
    ref = random_reference(rng, 800)
    fa = write_fasta(tmp_path / "ref.fa", {"chr1": ref})
    pos = sorted(rng.sample(range(1, 799), 60))
    recs = [
        Rec(p + 1, ref[p], [rng.choice([b for b in "ACGT" if b != ref[p]])], [rng.choice(["0|1", "1|0", "1|1", "0|0"])])
        for p in pos
    ]
    vcf = write_vcf(tmp_path / "snv.vcf.gz", recs, ["S"], {"chr1": 800})
    g = read_genotypes(vcf, "chr1")
    regions = [Region("chr1", 100, 700, "r", 400)]
    for mode in ("ragged", "center_tss", "left"):
        (r,) = build_haplotypes(g, Reference(fa), regions, mode=mode, length=600)
        for h in (0, 1):
            seq = list(ref)
            for rec in recs:
                if rec.gts[0].split("|")[h] == "1":
                    seq[rec.pos - 1] = rec.alts[0]
            assert r.sequence(0, h) == "".join(seq)[100:700]


def test_snv_only_policy_drops_indels(case) -> None:
    d, ref, fa, vcf, recs, g, reference = case
    (r,) = build_haplotypes(g, reference, [Region("chr1", 0, len(ref), "all", 1500)], snv_only=True)
    assert all(len(s) == len(ref) for s in r.sequences)
    assert r.stats["skipped_filtered"].sum() > 0


def test_reverse_complement_minus(case) -> None:
    d, ref, fa, vcf, recs, g, reference = case
    plus = Region("chr1", 990, 1010, "p", 1000, "+")
    minus = Region("chr1", 990, 1010, "m", 1000, "-")
    (p, m) = build_haplotypes(g, reference, [plus, minus], mode="center_tss", length=64, reverse_complement_minus=True)
    assert m.sequences == [_comp(s) for s in p.sequences]


@pytest.mark.parametrize("mode", ["ragged", "center_tss", "left"])
def test_unique_index_reconstructs_all(case, mode: str) -> None:
    d, ref, fa, vcf, recs, g, reference = case
    regions = [Region("chr1", s, s + 150, f"r{s}", s + 75) for s in range(0, 2800, 350)]
    full = build_haplotypes(g, reference, regions, mode=mode, length=120)
    stats = RunStats()
    uniq = list(iter_unique_haplotypes(g, reference, regions, mode=mode, length=120, run_stats=stats))
    for f, u in zip(full, uniq, strict=True):
        assert [u.sequence(s, h) for s in range(len(SAMPLES)) for h in (0, 1)] == f.sequences
        assert len(set(u.sequences)) == u.n_unique
        for k in f.stats:
            assert np.array_equal(f.stats[k], u.stats[k]), k
    assert stats.n_haplotypes == len(regions) * 2 * len(SAMPLES)
    assert 0 < stats.dedup_factor <= 1
    assert stats.n_unique == sum(u.n_unique for u in uniq)


def test_dedup_groups_identical_rows(tmp_path: Path) -> None:
    ref = random_reference(random.Random(3), 200)
    fa = write_fasta(tmp_path / "ref.fa", {"chr1": ref})
    gts = ["0|0"] * 30 + ["1|0"] * 5 + ["0|1"] * 5
    samples = [f"x{i}" for i in range(len(gts))]
    recs = [Rec(50, ref[49], ["A" if ref[49] != "A" else "C"], gts)]
    vcf = write_vcf(tmp_path / "d.vcf.gz", recs, samples, {"chr1": 200})
    g = read_genotypes(vcf, "chr1")
    (u,) = iter_unique_haplotypes(g, Reference(fa), [Region("chr1", 0, 200, "r", 100)], length=120)
    assert u.n_unique == 2
    assert u.dedup_factor == pytest.approx(2 / 80)


def test_tiles(case) -> None:
    d, ref, fa, vcf, recs, g, reference = case
    region = Region("chr1", 100, 1100, "big")
    tiles = tile_regions(region, 300)
    assert [(t.start, t.end) for t in tiles] == [(100, 400), (400, 700), (700, 1000), (1000, 1300)]
    stats = RunStats()
    uniq = list(iter_unique_tiles(g, reference, [region], 300, run_stats=stats))
    full = build_haplotypes(g, reference, tiles, mode="left", length=300)
    assert [u.region.name for u in uniq] == ["big:tile0", "big:tile1", "big:tile2", "big:tile3"]
    for u, f in zip(uniq, full, strict=True):
        assert all(len(s) == 300 for s in u.sequences)
        assert [u.sequence(s, h) for s in range(len(SAMPLES)) for h in (0, 1)] == f.sequences
    assert stats.n_regions == 4


def test_coordinate_map_ragged(case) -> None:
    d, ref, fa, vcf, recs, g, reference = case
    region = Region("chr1", 500, 900, "m", 700)
    (r,) = build_haplotypes(g, reference, [region])
    for si in range(len(SAMPLES)):
        for h in (0, 1):
            m = coordinate_map(g, reference, region, si, h)
            seq = r.sequence(si, h)
            kept = m >= 0
            assert np.all(np.diff(m[kept]) > 0)
            # unchanged bases map onto themselves
            same = [i for i in np.nonzero(kept)[0] if seq[m[i]] == ref[region.start + i]]
            assert len(same) > 0.9 * kept.sum()


def test_fasta_writer_and_unique_table(case, tmp_path: Path) -> None:
    d, ref, fa, vcf, recs, g, reference = case
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t100\t400\tgA\t0\t+\nchr1\t1000\t1600\tgB\t0\t-\n")
    regions = read_bed_regions(bed)
    assert regions[1].anchor == 1599 and regions[1].strand == "-"
    out = tmp_path / "out.fa"
    stats = write_haplotypes_fasta(vcf, fa, bed, out, mode="ragged")
    recs_out = parse_fasta(out.read_text())
    assert len(recs_out) == 2 * len(SAMPLES) * 2
    assert recs_out[0][0] == "gA s0 1" and recs_out[-1][0] == "gB s3 2"
    full = build_haplotypes(g, reference, regions)
    assert [s for _, s in recs_out] == [s for r in full for s in r.sequences]
    assert stats.n_haplotypes == 16
    out_u = tmp_path / "u.fa"
    write_haplotypes_fasta(vcf, fa, bed, out_u, mode="center_tss", length=200, unique=True, samples=["s2", "s0"])
    seqs = dict(parse_fasta(out_u.read_text()))
    rows = (tmp_path / "u.index.tsv").read_text().splitlines()
    assert rows[0] == "region\tsample\thap\tsequence"
    assert len(rows) == 1 + 2 * 2 * 2
    fixed = build_haplotypes(g.subset_samples(["s2", "s0"]), reference, regions, mode="center_tss", length=200)
    for row in rows[1:]:
        name, sample, hap, uid = row.split("\t")
        r = fixed[0 if name == "gA" else 1]
        assert seqs[f"{name} {uid}"] == r.sequence(["s2", "s0"].index(sample), int(hap) - 1)
    assert not list(tmp_path.glob("*.tmp"))
