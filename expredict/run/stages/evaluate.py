"""Stage ``evaluate``: every method scored per gene on the same test individuals."""

from __future__ import annotations

import logging

import polars as pl

from expredict.config import Config
from expredict.errors import ConfigError
from expredict.run.engine import RunContext, Stage

_log = logging.getLogger(__name__)


def run(ctx: RunContext) -> dict:
    """Per-gene metrics of each method's test predictions; summary and head-to-head tables."""
    from expredict.evaluate import head_to_head_table, per_gene_metrics, summarize_methods
    from expredict.report import check_per_gene_table

    out = ctx.out
    from expredict.run.registry import METHODS

    methods = out.methods_with_predictions(METHODS)
    if not methods:
        msg = f"{out.root}: no method has predictions yet; run a method's stage first (e.g. train or enet)"
        raise ConfigError(msg)
    observed = out.observed("test")
    classes = out.read_gene_classes()
    tables = []
    for m in methods:
        labels = out.read_labels(m)
        preds = out.read_predictions(m, split="test").select("gene_id", "sample", "prediction")
        tables.append(per_gene_metrics(preds, observed, m, annotations=classes if labels.gene_classes else None))
    per_gene = check_per_gene_table(pl.concat(tables, how="diagonal_relaxed"))
    summary = summarize_methods(per_gene)
    out.write_metrics(per_gene, summary, head_to_head_table(per_gene))
    for row in summary.iter_rows(named=True):
        label = " [random weights]" if out.read_labels(row["method"]).random_weights else ""
        _log.info(f"[evaluate] {row['method']}: {row['n_scored']} genes, mean r {row['mean_r']:.3f}, "
                  f"median r {row['median_r']:.3f}, {100 * row['frac_r_negative']:.0f}% r < 0{label}")
    return {"methods": methods, "n_genes": int(per_gene["gene_id"].n_unique())}


def _key(config: Config) -> list:
    return []


STAGE = Stage(name="evaluate", run=run, version=2, key_parts=_key, needs=("prepare",), outputs=("metrics",),
              scores_methods=True)
