"""Oracle tests: byte equality with pysam's bcftools 1.24 ``consensus -s S -H h`` (ragged mode).

One bcftools run per (sample, haplotype) over all windows of a case (a region FASTA holding
every window, as a cohort pipeline would run it), so the number of oracle calls stays small.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from builders import (
    bcftools_consensus,
    random_records,
    random_reference,
    region_fasta,
    write_fasta,
    write_vcf,
)

from expredict.coords import Region
from expredict.haplotypes import build_haplotypes, coordinate_map
from expredict.io.genotypes import read_genotypes
from expredict.io.reference import Reference

pysam = pytest.importorskip("pysam")

DATA = Path(__file__).parent.parent / "data"
SAMPLES = ["s0", "s1", "s2"]


def _random_case(d: Path, seed: int, *, bcf: bool = False):
    rng = random.Random(seed)
    ref = random_reference(rng, 2500)
    fa = write_fasta(d / f"ref{seed}.fa", {"chr1": ref})
    recs = random_records(rng, ref, len(SAMPLES), n_records=160, p_haploid=0.03 if seed % 2 else 0.0)
    vcf = write_vcf(d / f"r{seed}.vcf.gz", recs, SAMPLES, {"chr1": len(ref)}, bcf=bcf)
    windows: list[tuple[int, int]] = []
    for _ in range(10):
        s = rng.randint(0, len(ref) - 400)
        windows.append((s, s + rng.randint(1, 400)))
    # windows starting / ending inside records (deletions spanning edges, insertions at the last base)
    for r in rng.sample(recs, 6):
        p0 = r.pos - 1
        windows.append((p0 + 1, min(len(ref), p0 + 60)))
        windows.append((max(0, p0 - 50), p0 + 1))
    windows.append((0, len(ref)))
    return fa, vcf, recs, windows


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_vcfs_match_bcftools(tmp_path: Path, seed: int) -> None:
    fa, vcf, _, windows = _random_case(tmp_path, seed, bcf=seed == 4)
    g = read_genotypes(vcf, "chr1")
    regions = [Region("chr1", s, e, f"w{i}") for i, (s, e) in enumerate(windows)]
    built = build_haplotypes(g, Reference(fa), regions, mode="ragged")
    reg_fa = region_fasta(tmp_path / f"reg{seed}.fa", fa, [("chr1", s, e) for s, e in windows])
    mismatches = []
    n = 0
    for si, sample in enumerate(SAMPLES):
        for h in (1, 2):
            expected = bcftools_consensus(reg_fa, vcf, sample, h)
            assert len(expected) == len(regions)
            for r, exp in zip(built, expected, strict=True):
                n += 1
                got = r.sequence(si, h - 1)
                if got != exp.upper():
                    mismatches.append((r.region, sample, h, got, exp))
    assert n == len(regions) * 6
    assert not mismatches, mismatches[:3]


def _parse_chains(path: Path) -> list[list[tuple[int, ...]]]:
    chains: list[list[tuple[int, ...]]] = []
    for line in path.read_text().splitlines():
        if line.startswith("chain"):
            chains.append([])
        elif line.strip():
            chains[-1].append(tuple(int(x) for x in line.split()))
    return chains


def _map_from_chain(blocks: list[tuple[int, ...]], n_ref: int) -> np.ndarray:
    out = np.full(n_ref, -1, np.int64)
    r = q = 0
    for b in blocks:
        out[r : r + b[0]] = np.arange(q, q + b[0])
        r += b[0]
        q += b[0]
        if len(b) == 3:
            r += b[1]
            q += b[2]
    return out


def test_coordinate_map_agrees_with_chain(tmp_path: Path) -> None:
    fa, vcf, _, windows = _random_case(tmp_path, 7)
    windows = windows[:8] + [windows[-1]]
    g = read_genotypes(vcf, "chr1")
    ref = Reference(fa)
    reg_fa = region_fasta(tmp_path / "reg.fa", fa, [("chr1", s, e) for s, e in windows])
    chain = tmp_path / "x.chain"
    bcftools_consensus(reg_fa, vcf, "s1", 2, chain=chain)
    chains = _parse_chains(chain)
    assert len(chains) == len(windows)
    for (s, e), blocks in zip(windows, chains, strict=True):
        ours = coordinate_map(g, ref, Region("chr1", s, e), 1, 1)
        theirs = _map_from_chain(blocks, e - s)
        kept = theirs >= 0  # bases in ungapped chain blocks map identically
        assert np.array_equal(ours[kept], theirs[kept])


def test_real_records_match_bcftools(tmp_path: Path) -> None:
    vcf = DATA / "geuvadis_slice.vcf.gz"
    fasta = DATA / "grch37_chr22_slice.fa"
    if not vcf.exists() or not fasta.exists():
        pytest.skip("real fixture tests/data/geuvadis_slice.* absent")
    ref = Reference(fasta, {"chr22": "22"})
    samples = ["HG00096", "HG00097", "HG00099"]
    g = read_genotypes(vcf, "chr22", samples=samples)
    tss = [20_004_330, 20_004_536, 20_100_000, 20_200_000]
    regions = [Region("chr22", t - 3000, t + 3000, f"g{i}", t) for i, t in enumerate(tss)]
    built = build_haplotypes(g, ref, regions, mode="ragged")
    # region FASTA named as the VCF contig (chr22:a-b), cut from the offset reference record
    reg_fa = tmp_path / "reg.fa"
    with reg_fa.open("w") as fh:
        for r in regions:
            fh.write(f">chr22:{r.start + 1}-{r.end}\n{ref.fetch('chr22', r.start, r.end)}\n")
    n_alt = 0
    for si, sample in enumerate(samples):
        for h in (1, 2):
            expected = bcftools_consensus(reg_fa, vcf, sample, h)
            for r, exp in zip(built, expected, strict=True):
                assert r.sequence(si, h - 1) == exp.upper()
                n_alt += int(r.stats["applied"][si, h - 1])
    assert n_alt > 20
