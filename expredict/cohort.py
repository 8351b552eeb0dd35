"""Load a whole cohort from a config: genotypes, reference, genes, expression, covariates.

This is the shared data layer every stage starts from. It validates first (contigs present in the
FASTA, REF alleles against the FASTA, samples matched across inputs, genes whose windows fit the
reference) and reports counts plus the first offenders before any kernel runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from numpy.typing import NDArray

from expredict.config import Config
from expredict.errors import ReferenceMismatchError
from expredict.io.annotation import read_genes
from expredict.io.contigs import indexed_contigs, match_contig, resolve_genome_build
from expredict.io.expression import (
    Expression,
    SampleReport,
    read_covariates,
    read_expression,
    reconcile_samples,
    transform,
)
from expredict.io.genotypes import GenotypeArrays, read_genotypes, vcf_contigs, vcf_samples
from expredict.io.reference import Reference

_log = logging.getLogger(__name__)


@dataclass
class Cohort:
    """Everything a stage needs, aligned on ``samples`` (VCF order, present in the expression)."""

    config: Config
    reference: Reference
    genotypes: dict[str, GenotypeArrays]
    genes: pl.DataFrame
    expression: Expression
    covariates: NDArray[np.float64] | None
    covariate_names: list[str]
    samples: list[str]
    sample_report: SampleReport
    dropped_genes: dict[str, str] = field(default_factory=dict)

    @property
    def n_variants(self) -> int:
        """Total records over all contigs."""
        return sum(g.n_variants for g in self.genotypes.values())


def check_ref_alleles(genotypes: GenotypeArrays, reference: Reference, *, max_report: int = 5) -> tuple[int, list[str]]:
    """Compare every REF allele inside the FASTA's span with the FASTA (case-insensitive, N mismatches).

    Returns ``(n_mismatches, first few record labels)``; records outside the FASTA span are skipped.
    """
    lo, hi = reference.contig_bounds(genotypes.contig)
    inside = np.flatnonzero((genotypes.starts >= lo) & (genotypes.ref_ends <= hi))
    if inside.size == 0:
        return 0, []
    s0, s1 = int(genotypes.starts[inside[0]]), int(genotypes.ref_ends[inside].max())
    ref = reference.fetch_array(genotypes.contig, s0, s1)
    ref = np.where((ref >= 97) & (ref <= 122), ref - 32, ref).astype(np.uint8)
    bad: list[int] = []
    n_bad = 0
    for v in inside:
        a = int(genotypes.allele_first[v])
        allele = genotypes.allele_bytes[genotypes.allele_offsets[a] : genotypes.allele_offsets[a + 1]]
        s = int(genotypes.starts[v]) - s0
        if not np.array_equal(ref[s : s + allele.size], allele):
            n_bad += 1
            if len(bad) < max_report:
                bad.append(v)
    labels = []
    for v in bad:
        s = int(genotypes.starts[v])
        fa = reference.fetch(genotypes.contig, s, int(genotypes.ref_ends[v]))
        labels.append(f"{genotypes.record_label(v)} (FASTA has {fa})")
    return n_bad, labels


def genes_fitting_reference(
    genes: pl.DataFrame, reference: Reference, half_width: int
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Genes whose ``[tss - half_width, tss + half_width)`` lies inside the FASTA; the rest with reasons."""
    keep: list[bool] = []
    dropped: dict[str, str] = {}
    for gid, contig, tss in genes.select("gene_id", "contig", "tss").iter_rows():
        try:
            lo, hi = reference.contig_bounds(contig)
        except ReferenceMismatchError:
            keep.append(False)
            dropped[gid] = f"contig {contig} not in the reference"
            continue
        ok = tss - half_width >= lo and tss + half_width <= hi
        keep.append(ok)
        if not ok:
            dropped[gid] = (
                f"window {contig}:{tss - half_width + 1}-{tss + half_width} runs off the reference ({lo + 1}-{hi})"
            )
    return genes.filter(pl.Series(keep, dtype=pl.Boolean)), dropped


def _match_gene_contigs(
    genes: pl.DataFrame, vcf, genes_path, aliases: dict[str, str]
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Rename the genes' contigs to the VCF's (``chr22`` <-> ``22`` when unambiguous, logged).

    An alias in ``data.contig_aliases`` whose target is a VCF contig wins; the aliases are extended
    so that the VCF name resolves in the FASTA as the annotation's name did. A contig absent from the
    VCF in both forms is an error when no gene contig matches, else its genes are dropped (WARNING).
    """
    from expredict.errors import InputFileError

    available = indexed_contigs(vcf)
    if available is None:
        available = vcf_contigs(vcf)
    have = set(available)
    mapping: dict[str, str] = {}
    missing: dict[str, InputFileError] = {}
    for c in genes["contig"].unique(maintain_order=True).to_list():
        if c in aliases and aliases[c] in have:
            mapping[c] = aliases[c]
            continue
        try:
            mapping[c] = match_contig(c, have, target=f"{vcf} (VCF)", source=str(genes_path), error=InputFileError)
        except InputFileError as e:
            if "ambiguous" in str(e):
                raise
            missing[c] = e
    if missing and not mapping:
        raise next(iter(missing.values()))
    for c, e in missing.items():
        _log.warning("%s; its %d gene(s) are dropped", e, int((genes["contig"] == c).sum()))
    if missing:
        genes = genes.filter(~pl.col("contig").is_in(list(missing)))
    out = dict(aliases)
    for c, v in mapping.items():
        if c != v and c in aliases and v not in aliases:
            out[v] = aliases[c]
    if any(c != v for c, v in mapping.items()):
        genes = genes.with_columns(pl.col("contig").replace_strict(mapping, default=pl.col("contig"))).sort(
            ["contig", "tss"]
        )
    return genes, out


def load_cohort(config: Config, *, check_ref: bool = True) -> Cohort:
    """Read and cross-check every input named in ``config.data``.

    Logs the sample reconciliation (INFO) and, with ``haplotypes.ref_mismatch: skip``, the REF
    alleles that differ from the FASTA (WARNING).
    """
    d = config.data
    reference = Reference(d.fasta, d.contig_aliases)
    expr = read_expression(d.expression, d.expression_format)
    genes = read_genes(d.genes, d.genes_format)
    genes = genes.filter(pl.col("gene_id").is_in(expr.gene_ids))
    if d.genes_subset:
        genes = genes.filter(pl.col("gene_id").is_in(d.genes_subset))
    cov_samples = cov_names = cov = None
    if d.covariates is not None:
        cov_samples, cov_names, cov = read_covariates(d.covariates)
        if d.covariate_names:
            keep = [i for i, n in enumerate(cov_names) if d.covariate_names in n]
            cov_names, cov = [cov_names[i] for i in keep], cov[:, keep]
        if d.n_covariates is not None:
            cov_names, cov = cov_names[: d.n_covariates], cov[:, : d.n_covariates]
    vs = vcf_samples(d.vcf)
    build = resolve_genome_build(d.vcf, d.genome_build)
    _log.info("genome build: %s (%s)", build, "data.genome_build" if d.genome_build else f"read from {d.vcf}")
    genes, aliases = _match_gene_contigs(genes, d.vcf, d.genes, d.contig_aliases)
    reference.aliases.update(aliases)
    report = reconcile_samples(
        vs,
        expr.samples,
        cov_samples,
        expression_path=str(d.expression),
        vcf_path=str(d.vcf),
        drop_unmatched=d.drop_unmatched_samples,
    )
    _log.info("samples: %s", report.summary())
    samples = report.kept
    genotypes: dict[str, GenotypeArrays] = {}
    for contig in genes["contig"].unique(maintain_order=True).to_list():
        reference.resolve(contig)
        g = read_genotypes(d.vcf, contig, samples=samples)
        if check_ref:
            n_bad, first = check_ref_alleles(g, reference)
            if n_bad and config.haplotypes.ref_mismatch == "error":
                msg = (
                    f"{d.vcf}: {n_bad} REF allele(s) differ from {d.fasta}, e.g. {'; '.join(first)}; "
                    f"check the genome build, or set haplotypes.ref_mismatch: skip to skip and count them"
                )
                raise ReferenceMismatchError(msg)
            if n_bad:
                _log.warning("REF mismatches on %s: %d (skipped), e.g. %s", contig, n_bad, first[0])
        genotypes[contig] = g
    expression = expr.subset(genes["gene_id"].to_list(), samples)
    values = transform(expression.values, config.expression.transform)
    expression = Expression(expression.path, expression.gene_ids, expression.samples, values)
    covariates = None
    if cov is not None:
        pos = {s: i for i, s in enumerate(cov_samples)}
        covariates = cov[[pos[s] for s in samples]]
    if d.max_genes is not None:
        genes = genes.head(d.max_genes)
        expression = expression.subset(genes["gene_id"].to_list())
    return Cohort(config, reference, genotypes, genes, expression, covariates, cov_names or [], samples, report)


def summarize(cohort: Cohort, half_widths: tuple[int, ...] = (2_997, 98_304, 1_000_000)) -> str:
    """Human-readable summary: samples, variants, genes, and genes whose windows fit the reference."""
    lines = [
        f"samples:  {len(cohort.samples)} ({cohort.sample_report.summary()})",
        f"variants: {cohort.n_variants} on {', '.join(f'{c} ({g.n_variants})' for c, g in cohort.genotypes.items())}",
        f"genes:    {cohort.genes.height} with expression and a TSS",
    ]
    for spans in cohort.reference.contigs.values():
        lines.append(f"reference: {cohort.reference.path} covers {spans.record} [{spans.start + 1}-{spans.end}]")
    for w in half_widths:
        fit, _ = genes_fitting_reference(cohort.genes, cohort.reference, w)
        lines.append(f"genes with TSS +/- {w:,} bp inside the reference: {fit.height}")
    return "\n".join(lines)


@dataclass(frozen=True)
class UnphasedCount:
    """Unphased heterozygous calls among the calls of the windows a run uses (each call counted once)."""

    n_unphased: int
    n_het: int
    n_calls: int
    n_variants: int

    @property
    def share(self) -> float:
        """Unphased share of the heterozygous calls (a homozygous call has no phase to lose)."""
        return self.n_unphased / self.n_het if self.n_het else 0.0

    def summary(self) -> str:
        return (
            f"{self.n_unphased:,} of {self.n_het:,} heterozygous calls ({self.share:.1%}) unphased "
            f"({self.n_calls:,} calls at {self.n_variants:,} variants in the windows)"
        )


def count_unphased(genotypes: dict[str, GenotypeArrays], genes: pl.DataFrame, half_width: int) -> UnphasedCount:
    """Count unphased heterozygous calls at the variants of every gene's ``tss +/- half_width`` window."""
    n_unph = n_het = n_calls = n_var = 0
    for contig, cgenes in genes.group_by("contig", maintain_order=True):
        g = genotypes.get(str(contig[0]))
        if g is None or g.n_variants == 0:
            continue
        mask = np.zeros(g.n_variants, bool)
        for tss in cgenes["tss"].to_list():
            mask[g.slice_region(tss - half_width, tss + half_width)] = True
        idx = np.flatnonzero(mask)
        if idx.size == 0 or g.n_samples == 0:
            continue
        het, unphased = g.heterozygous_calls(idx)
        n_het += het
        n_unph += unphased
        n_calls += g.n_samples * idx.size
        n_var += idx.size
    return UnphasedCount(n_unph, n_het, n_calls, n_var)
