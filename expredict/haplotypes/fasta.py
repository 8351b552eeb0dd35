"""Streamed FASTA output of personal haplotypes (the ``expredict haplotypes`` command).

One record per (region, sample, haplotype), header ``>REGION_NAME SAMPLE HAP`` (HAP 1 or 2),
sequence wrapped at 60 columns. With ``unique=True`` each distinct sequence of a region is
written once as ``>REGION_NAME uK`` (K = 0, 1, ...) and a tab-separated table
``<out stem>.index.tsv`` maps ``region, sample, hap`` to ``uK``. Files are written under a
temporary name and renamed when complete, so a crash never leaves a truncated output; regions
are processed one contig at a time and written as they are built.

BED input is 0-based half-open: ``chrom start end [name [score [strand]]]``; a missing name
becomes ``chrom:start-end``. Contig names are the VCF's; ``aliases`` map them to the FASTA's.
For ``center_tss`` the anchor (TSS) is the region's first base on ``+`` (or no strand) and its
last base on ``-``; ``length`` defaults to the region length.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from expredict.coords import Region
from expredict.errors import InputFileError
from expredict.haplotypes.build import RunStats, iter_unique_haplotypes

WIDTH = 60


def read_bed_regions(path: str | os.PathLike[str]) -> list[Region]:
    """Regions of a BED file (0-based half-open), anchored at the strand-aware first base."""
    p = Path(path)
    if not p.exists():
        msg = f"{p}: BED file not found"
        raise InputFileError(msg)
    regions: list[Region] = []
    with p.open() as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.rstrip("\n").split("\t")
            try:
                contig, start, end = f[0], int(f[1]), int(f[2])
            except (IndexError, ValueError) as e:
                msg = f"{p}:{i}: expected 'chrom<TAB>start<TAB>end[<TAB>name...]' with integer start/end; got {line!r}"
                raise InputFileError(msg) from e
            name = f[3] if len(f) > 3 and f[3] else f"{contig}:{start}-{end}"
            strand = f[5] if len(f) > 5 and f[5] in ("+", "-") else "+"
            if end <= start:
                msg = f"{p}:{i}: region {name} has end {end} <= start {start} (BED is 0-based half-open)"
                raise InputFileError(msg)
            anchor = end - 1 if strand == "-" else start
            regions.append(Region(contig, start, end, name, anchor, strand))
    return regions


def _write_record(fh, header: str, seq: str) -> None:
    fh.write(f">{header}\n")
    for i in range(0, len(seq), WIDTH):
        fh.write(seq[i : i + WIDTH])
        fh.write("\n")


def write_haplotypes_fasta(
    vcf: str | os.PathLike[str],
    fasta: str | os.PathLike[str],
    regions: str | os.PathLike[str] | Sequence[Region],
    out: str | os.PathLike[str],
    *,
    samples: list[str] | None = None,
    mode: str = "ragged",
    length: int | None = None,
    unique: bool = False,
    aliases: dict[str, str] | None = None,
    unphased: str = "ignore",
    ref_mismatch: str = "error",
    reverse_complement_minus: bool = False,
) -> RunStats:
    """Write haplotypes of every region to ``out`` (FASTA); return the run's :class:`RunStats`.

    Parameters
    ----------
    vcf, fasta : path
        Indexed VCF/BCF and reference FASTA.
    regions : path or sequence of Region
        BED file (see module docstring) or regions.
    out : path
        Output FASTA; with ``unique`` also ``<out stem>.index.tsv``.
    samples : list of str, optional
        Samples to write, in this order (default: all in the VCF).
    mode, length, unphased, ref_mismatch, reverse_complement_minus
        As in :func:`expredict.haplotypes.iter_unique_haplotypes`.
    unique : bool, default False
        Write each distinct sequence once plus the mapping table.
    aliases : dict, optional
        VCF/BED contig name -> FASTA contig name.
    """
    from expredict.io.genotypes import read_genotypes
    from expredict.io.reference import Reference

    regs = read_bed_regions(regions) if isinstance(regions, str | os.PathLike) else list(regions)
    reference = Reference(fasta, aliases or {})
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    table = out.with_name(out.stem + ".index.tsv")
    table_tmp = table.with_name(table.name + ".tmp")
    stats = RunStats()
    by_contig: dict[str, list[Region]] = {}
    for r in regs:
        by_contig.setdefault(r.contig, []).append(r)
    try:
        with tmp.open("w") as fh, table_tmp.open("w") if unique else open(os.devnull, "w") as th:
            if unique:
                th.write("region\tsample\thap\tsequence\n")
            for contig, cregs in by_contig.items():
                pad = (max((length or 0), max(r.length for r in cregs))) + 10_000
                lo = max(0, min(min(r.start, r.anchor if r.anchor is not None else r.start) for r in cregs) - pad)
                hi = max(r.end for r in cregs) + pad
                g = read_genotypes(vcf, contig, lo, hi, samples=samples)
                for u in iter_unique_haplotypes(
                    g, reference, cregs, mode=mode, length=length, unphased=unphased,
                    ref_mismatch=ref_mismatch, reverse_complement_minus=reverse_complement_minus, run_stats=stats,
                ):  # fmt: skip
                    name = u.region.name or u.region.ucsc()
                    if unique:
                        for k, seq in enumerate(u.sequences):
                            _write_record(fh, f"{name} u{k}", seq)
                        for si, sample in enumerate(u.samples):
                            for h in (0, 1):
                                th.write(f"{name}\t{sample}\t{h + 1}\tu{int(u.index[si, h])}\n")
                    else:
                        for si, sample in enumerate(u.samples):
                            for h in (0, 1):
                                _write_record(fh, f"{name} {sample} {h + 1}", u.sequence(si, h))
        os.replace(tmp, out)
        if unique:
            os.replace(table_tmp, table)
    finally:
        for t in (tmp, table_tmp):
            if t.exists():
                t.unlink()
    return stats
