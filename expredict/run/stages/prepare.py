"""Stage ``prepare``: the genes whose window fits the reference, the split, and leak-free targets."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from expredict.config import Config
from expredict.errors import GenotypeError, ReferenceMismatchError
from expredict.run.engine import RunContext, Stage, file_fingerprint

_log = logging.getLogger(__name__)


def _key(config: Config) -> list:
    d = config.data
    inputs = [file_fingerprint(p) for p in (d.vcf, d.fasta, d.genes, d.expression, d.covariates, d.populations)]
    # genome_build left out while unset, so that runs from before the setting keep their keys
    data = d.model_dump(mode="json", exclude={"genes_subset", "max_genes"} | ({"genome_build"} if d.genome_build is None else set()))
    return [inputs, data, config.expression.model_dump(mode="json"), config.split.model_dump(mode="json"),
            config.seed, d.max_genes, config.haplotypes.length]


def run(ctx: RunContext) -> dict:
    """Keep genes whose sequence window fits the FASTA; split individuals and genes; normalise targets
    with statistics of the training individuals only."""
    from expredict.cohort import genes_fitting_reference
    from expredict.splits import make_gene_split, make_individual_split
    from expredict.targets import TargetNormalizer

    cfg, cohort = ctx.config, ctx.cohort
    half = cfg.haplotypes.length // 2
    genes, dropped = genes_fitting_reference(cohort.genes, cohort.reference, half)
    explicit = [g for g in (cfg.data.genes_subset or ctx.genes_subset or []) if g in dropped]
    if explicit:
        msg = f"{cfg.data.fasta}: requested gene {explicit[0]}: {dropped[explicit[0]]}; choose another gene or a larger reference"
        raise ReferenceMismatchError(msg)
    if genes.height == 0:
        msg = f"{cfg.data.fasta}: no gene's +/-{half} bp window fits inside the reference (e.g. {next(iter(dropped.items()), ('', ''))})"
        raise ReferenceMismatchError(msg)
    _log.info(f"[prepare] {genes.height} genes with a +/-{half:,} bp window inside the reference; {len(dropped)} dropped")
    unphased = _check_unphased(ctx, genes, half)
    ctx.out.write_genes(genes, dropped)
    populations = None
    if cfg.data.populations is not None:
        pops = pl.read_csv(cfg.data.populations, separator="\t")
        populations = dict(zip(pops["sample"].to_list(), pops["population"].to_list(), strict=True))
    individuals = make_individual_split(
        cohort.samples, seed=cfg.seed, fractions=cfg.split.fractions,
        populations=populations if cfg.split.kind == "population" else None,
        test_populations=cfg.split.test_populations,
    )
    gene_split = make_gene_split(genes, seed=cfg.seed, heldout_fraction=cfg.split.gene_heldout_fraction, n_blocks=cfg.split.gene_blocks)
    ctx.out.write_splits(individuals, gene_split)
    labels = dict(zip(individuals["sample"].to_list(), individuals["split"].to_list(), strict=True))
    train = np.array([labels[s] == "train" for s in cohort.samples])
    expr = cohort.expression.subset(genes["gene_id"].to_list())
    y = expr.values.T  # (n_samples, n_genes)
    cov = cohort.covariates if cfg.expression.regress_covariates else None
    norm = TargetNormalizer(inverse_normal=False, regress_covariates=cov is not None)
    norm.fit(y[train], covariates=None if cov is None else cov[train])
    targets = norm.transform(y, covariates=cov)
    df = pl.DataFrame({"sample": cohort.samples, "split": [labels[s] for s in cohort.samples]}).hstack(
        pl.DataFrame(targets, schema=expr.gene_ids, orient="row")
    )
    ctx.out.write_targets(df)
    counts = {k: int(sum(v == k for v in labels.values())) for k in ("train", "val", "test")}
    _log.info(f"[prepare] individuals: {counts}; targets normalised on the {counts['train']} training individuals only")
    return {"n_genes": genes.height, "n_dropped": len(dropped), **counts,
            "unphased_het_calls": unphased.n_unphased, "het_calls": unphased.n_het, "calls_in_windows": unphased.n_calls}


MAX_UNPHASED_SHARE = 0.01


def _check_unphased(ctx: RunContext, genes: pl.DataFrame, half: int):
    """Count unphased het calls in the genes' windows; stop when over 1 % of the het calls are unphased
    and ``haplotypes.unphased`` was left at its default (an explicit setting is the user's decision)."""
    from expredict.cohort import count_unphased

    cfg = ctx.config
    count = count_unphased(ctx.cohort.genotypes, genes, half)
    explicit = "unphased" in cfg.haplotypes.model_fields_set
    _log.info(f"[prepare] {cfg.data.vcf}: {count.summary()}"
              + (f"; haplotypes.unphased: {cfg.haplotypes.unphased}" if count.n_unphased else ""))
    if count.share > MAX_UNPHASED_SHARE and not explicit:
        msg = (
            f"{cfg.data.vcf}: {count.n_unphased:,} of {count.n_het:,} heterozygous calls ({count.share:.1%}) in the "
            f"+/-{half:,} bp windows of {genes.height} genes are unphased (more than {MAX_UNPHASED_SHARE:.0%}); haplotype "
            f"sequences built from unphased calls are not meaningful. Phase the VCF first (e.g. SHAPEIT5, Eagle2 or "
            f"Beagle), or set haplotypes.unphased explicitly in the config (ignore: alleles as written; iupac: IUPAC "
            f"codes for unphased het SNVs; error: refuse)"
        )
        raise GenotypeError(msg)
    return count


STAGE = Stage(
    name="prepare", run=run, version=3, key_parts=_key,
    outputs=("genes.parquet", "genes_dropped.parquet", "splits", "targets.parquet"),
)
