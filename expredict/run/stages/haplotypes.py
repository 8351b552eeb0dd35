"""Stage ``haplotypes``: each gene's distinct TSS-centred personal sequences, stored per gene."""

from __future__ import annotations

import logging

import polars as pl

from expredict.config import Config
from expredict.run.engine import RunContext, Stage
from expredict.run.layout import GeneHaplotypes

_log = logging.getLogger(__name__)


def run(ctx: RunContext) -> dict:
    """Build the genes not stored yet (``haplotypes/<gene>.npz``), then summarise every gene."""
    from expredict.cache import sequence_hash
    from expredict.haplotypes import tss_haplotypes

    out, cfg = ctx.out, ctx.config
    genes = ctx.genes()
    todo = genes.filter(~pl.col("gene_id").is_in([g for g in genes["gene_id"].to_list() if out.haplotypes_file(g).exists()]))
    cohort = ctx.cohort if todo.height else None
    if cohort is not None:
        for hs in tss_haplotypes(cohort.genotypes, cohort.reference, todo, cfg.haplotypes.length, cfg.haplotypes):
            hashes = [sequence_hash(s) for s in hs.sequences]
            out.write_gene_haplotypes(hs.region.name, GeneHaplotypes(hs.index, hashes, hs.sequences, hs.samples))
    rows = [(g, *out.haplotype_counts(g)) for g in genes["gene_id"].to_list()]
    summary = pl.DataFrame(rows, schema={"gene_id": pl.String, "n_haplotypes": pl.Int64, "n_unique": pl.Int64}, orient="row")
    out.write_parquet(out.path("haplotypes", "summary.parquet"), summary)
    factor = summary["n_haplotypes"].sum() / max(summary["n_unique"].sum(), 1)
    _log.info(f"[haplotypes] {summary['n_haplotypes'].sum()} haplotypes -> {summary['n_unique'].sum()} distinct sequences "
              f"(dedup factor {factor:.1f}x); {todo.height} genes computed now")
    return {"dedup_factor": round(float(factor), 2), "n_unique": int(summary["n_unique"].sum())}


def _key(config: Config) -> list:
    return [config.haplotypes.model_dump(mode="json")]


STAGE = Stage(name="haplotypes", run=run, version=2, key_parts=_key, needs=("prepare",), outputs=("haplotypes",),
              per_gene=True)
