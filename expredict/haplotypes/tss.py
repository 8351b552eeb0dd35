"""TSS-centred personal haplotypes for a gene table: the one entry point every stage uses."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import polars as pl

from expredict.config import HaplotypeConfig
from expredict.coords import Region
from expredict.haplotypes.build import UniqueHaplotypes, iter_unique_haplotypes
from expredict.io.genotypes import GenotypeArrays
from expredict.io.reference import Reference


def tss_regions(genes: pl.DataFrame, length: int) -> list[Region]:
    """Windows of ``length`` bp with the TSS at index ``length // 2`` (0-based half-open, clipped at 0)."""
    half = length // 2
    return [
        Region(contig, max(0, tss - half), max(0, tss - half) + length, gid, tss, strand)
        for gid, contig, tss, strand in genes.select("gene_id", "contig", "tss", "strand").iter_rows()
    ]


def tss_haplotypes(
    genotypes: Mapping[str, GenotypeArrays],
    reference: Reference,
    genes: pl.DataFrame,
    length: int,
    config: HaplotypeConfig,
    *,
    threads: int | None = None,
) -> Iterator[UniqueHaplotypes]:
    """Distinct ``center_tss`` haplotypes of each gene, gene by gene in table order within each contig.

    Parameters
    ----------
    genotypes : mapping of contig name to GenotypeArrays
        Phased genotypes per contig (VCF contig names), the individuals to build for.
    reference : Reference
        The FASTA (contig aliases resolve VCF names to FASTA names).
    genes : pl.DataFrame
        ``gene_id, contig, tss, strand`` (``tss`` 0-based).
    length : int
        Window length in bp; the TSS sits at index ``length // 2`` of every sequence.
    config : HaplotypeConfig
        Strand, unphased-call, REF-mismatch and SNV-only policies.
    threads : int, optional
        Kernel threads (default: all cores); identical output for any value.
    """
    for (contig,), part in genes.group_by("contig", maintain_order=True):
        yield from iter_unique_haplotypes(
            genotypes[contig], reference, tss_regions(part, length), mode="center_tss", length=length,
            reverse_complement_minus=config.reverse_complement_minus, unphased=config.unphased,
            ref_mismatch=config.ref_mismatch, snv_only=config.snv_only, threads=threads,
        )  # fmt: skip
