"""Stage ``enformer``: Enformer's expression-track readout on the same personal sequences; method ``enformer``.

Without tuning the readout fits nothing, so only the test individuals are run; with
``enformer.tuned`` the training individuals are run too, for a linear map over all tracks.
"""

from __future__ import annotations

import logging

import polars as pl

from expredict.config import Config
from expredict.run.engine import RunContext, Stage
from expredict.run.layout import MethodLabels, RunDir
from expredict.run.method import Method

_log = logging.getLogger(__name__)
RANDOM_WEIGHTS_NOTE = "random weights: plumbing check, not a scientific result"


def model_source(config: Config, out: RunDir) -> str:
    """Hub id or directory of Enformer; builds the tiny random-weight stand-in under ``OUT/models``."""
    enf = config.enformer
    if not enf.tiny:
        return enf.model
    from expredict.baselines.enformer import make_tiny_enformer

    d = out.tiny_model_dir("tiny-enformer")
    if not (d / "config.json").exists():
        make_tiny_enformer(d)
    return str(d)


def run(ctx: RunContext) -> dict:
    """Predict the CAGE track at the TSS bins from each individual's two haplotypes (averaged)."""
    from expredict.baselines.enformer import estimate_cpu_seconds, load_enformer, predict_enformer, tuned_enformer
    from expredict.cohort import genes_fitting_reference
    from expredict.haplotypes import tss_haplotypes

    cfg, out = ctx.config, ctx.out
    enf = cfg.enformer
    samples, split, targets = out.read_targets()
    keep = {"test", "train"} if enf.tuned else {"test"}
    chosen = [s for s, k in zip(samples, split, strict=True) if k in keep]
    genes, dropped = genes_fitting_reference(ctx.genes(), ctx.cohort.reference, enf.length // 2)
    if enf.max_genes is not None:
        genes = genes.head(enf.max_genes)
    model = load_enformer(model_source(cfg, out), device=enf.device)
    if model.device.type == "cpu" and not model.random_weights:
        est = estimate_cpu_seconds(genes.height * 2 * len(chosen), enf.length, full_size=True)
        _log.warning(f"[enformer] full-size Enformer on CPU: roughly {est / 3600:.1f} h for at most "
                     f"{genes.height * 2 * len(chosen)} haplotypes; use a GPU, a tiny model or fewer genes")
    _log.info(f"[enformer] {genes.height} genes at {enf.length:,} bp ({len(dropped)} do not fit), {len(chosen)} individuals"
              + (f" [{RANDOM_WEIGHTS_NOTE}]" if model.random_weights else ""))
    genotypes = {c: g.subset_samples(chosen) for c, g in ctx.cohort.genotypes.items()}
    sets = tss_haplotypes(genotypes, ctx.cohort.reference, genes, enf.length, cfg.haplotypes)
    res = predict_enformer(
        sets, model, out.cache_dir("enformer"), track=enf.track, n_center_bins=enf.n_center_bins,
        target_length=None if enf.tiny else enf.target_length, rc_average=enf.rc_average, batch_size=enf.batch_size,
        return_features=enf.tuned,
    )
    preds = res.predictions
    if enf.tuned:
        long = targets.drop("split").unpivot(index="sample", variable_name="gene_id", value_name="expression")
        train = [s for s, k in zip(samples, split, strict=True) if k == "train"]
        preds = tuned_enformer(res.features, long, train, target_col="expression", random_state=cfg.seed)
    label = dict(zip(samples, split, strict=True))
    test = [s for s in samples if label[s] == "test"]
    frame = preds.filter(pl.col("sample").is_in(test)).with_columns(
        pl.col("sample").replace_strict(label, return_dtype=pl.String).alias("split"))
    meta = res.metadata
    out.write_json(out.trained("enformer", "metadata.json"), meta)
    note = (f"Enformer: {meta.get('n_genes')} genes, input length {meta.get('lengths')}, track {meta.get('track')}, "
            f"{meta.get('n_center_bins')} centre bins; test individuals only (the readout is not fitted).")
    out.write_predictions("enformer", frame, MethodLabels(random_weights=bool(model.random_weights), notes=(note,)))
    return {"n_genes": genes.height, "random_weights": bool(model.random_weights), "n_distinct": int(meta.get("n_distinct", 0))}


def _key(config: Config) -> list:
    hap = config.haplotypes.model_dump(mode="json")
    return [config.enformer.model_dump(mode="json", exclude={"batch_size", "device"}),
            {x: hap[x] for x in ("reverse_complement_minus", "unphased", "ref_mismatch", "snv_only")}]


STAGE = Stage(
    name="enformer", run=run, version=2, key_parts=_key, needs=("prepare",), outputs=("trained/enformer",),
    methods=(Method("enformer", "Enformer's CAGE readout at the TSS bins, haplotypes averaged"),),
    per_gene=True, enabled=lambda config: config.enformer.enabled,
)
