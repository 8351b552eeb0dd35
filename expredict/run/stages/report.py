"""Stage ``report``: ``OUT/report.html`` and ``OUT/report.md`` from the metrics and every method's predictions."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from expredict.config import Config, config_to_yaml
from expredict.run.engine import RunContext, Stage

_log = logging.getLogger(__name__)

GENERAL_NOTES = (
    "Metric: Pearson r between predicted and observed expression across the held-out test individuals, per gene "
    "(the same individuals for every method and gene).",
    "Observed values are the configured transform of expression, with covariates regressed out and z-scored "
    "using statistics of the training individuals only.",
    "Gene classes: this cohort is one population, so the new-population class is not available. Per-gene "
    "methods are trained on every gene ('seen genes, new individuals'). Methods with a gene-class breakdown "
    "are trained on the 'seen' genes only; their 'unseen_genes' class holds genes in held-out "
    "contiguous position blocks of the chromosome (splits/genes.tsv), never trained on.",
)


def run(ctx: RunContext) -> dict:
    """Render the report of every method with predictions and write it."""
    from expredict.report import collect_versions, render_report

    out = ctx.out
    from expredict.run.registry import METHODS

    methods = out.methods_with_predictions(METHODS)
    preds = {m: out.read_predictions(m, split="test").select("gene_id", "sample", "prediction") for m in methods}
    labels = {m: out.read_labels(m) for m in methods}
    notes = list(GENERAL_NOTES)
    n_dropped = len(out.read_dropped_genes())
    if n_dropped:
        notes.append(f"{n_dropped} genes were dropped because their sequence window runs off the reference "
                     "(listed in genes_dropped.parquet).")
    prep = out.read_manifest()["stages"].get("prepare", {}).get("stats", {})
    if "unphased_het_calls" in prep:
        notes.append(f"Unphased calls: {prep['unphased_het_calls']:,} of {prep['het_calls']:,} heterozygous calls "
                     f"in the genes' sequence windows were unphased (haplotypes.unphased: {ctx.config.haplotypes.unphased}).")
    notes += [n for m in methods for n in labels[m].notes]
    html, markdown = render_report(
        out.read_per_gene(), preds, out.observed("test"), config_yaml=config_to_yaml(ctx.config),
        provenance=_provenance(ctx), versions=collect_versions(),
        random_weight_methods=[m for m in methods if labels[m].random_weights], notes=notes,
        controls={m: labels[m].control_of for m in methods if labels[m].control_of},
    )
    path = out.write_report(html, markdown)
    _log.info(f"[report] {path}")
    return {"report": str(path)}


def _provenance(ctx: RunContext) -> dict:
    d = ctx.config.data
    prov: dict[str, Any] = {k: str(getattr(d, k)) for k in ("vcf", "fasta", "genes", "expression", "covariates") if getattr(d, k)}
    demo = Path(d.vcf).parent / "provenance.json"
    if demo.exists():
        prov["demo"] = json.loads(demo.read_text())
    stages = ctx.out.read_manifest()["stages"]
    prov["stages"] = {k: {"key": v.get("key"), "elapsed_s": v.get("elapsed_s")} for k, v in stages.items()}
    return prov


def _key(config: Config) -> list:
    return []


STAGE = Stage(name="report", run=run, version=2, key_parts=_key, needs=("evaluate",), outputs=("report.html", "report.md"),
              scores_methods=True)
