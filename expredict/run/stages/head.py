"""Stage ``train``: the expression head on cached embeddings; methods ``nt_head`` and ``nt_head_multigene``.

``nt_head`` is one transformer head per gene, trained on the training individuals and early-stopped
on the validation individuals. ``nt_head_multigene`` is one head shared by every gene (with a
learned gene embedding), trained on the "seen" genes of ``splits/genes.tsv`` only and scored on
every gene, the held-out "unseen" genes included. Both predict every individual.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import polars as pl

from expredict.config import Config
from expredict.errors import ConfigError, InputFileError
from expredict.run.engine import RunContext, Stage
from expredict.run.layout import MethodLabels, RunDir, safe_name
from expredict.run.method import Method, NewCohort

_log = logging.getLogger(__name__)
PER_GENE, MULTI_GENE = "nt_head", "nt_head_multigene"


def _embedding_cache(out: RunDir, arm: str = "pretrained"):
    from expredict.cache import ArrayCache

    info = out.read_embedding_spec(arm)
    return ArrayCache(info["cache_dir"], info["spec"]), bool(info["random_weights"])


def train_gene_task(out_dir: str, method: str, arm: str, gene_id: str) -> dict:
    """Worker: train one gene's head of ``method`` on the embeddings of ``arm``, from the run folder;
    writes its checkpoint, predictions and record."""
    import torch

    from expredict.device import resolve_device
    from expredict.embed.configure import head_input
    from expredict.head.estimator import train_gene

    torch.set_num_threads(1)
    out = RunDir(out_dir)
    cfg = out.read_config()
    cache, random_weights = _embedding_cache(out, arm)
    hap = out.read_gene_haplotypes(gene_id)
    samples, split, targets = out.read_targets()
    if samples != hap.samples:
        msg = f"{out.root}: haplotype samples of {gene_id} differ from the targets' samples; rerun the haplotypes stage"
        raise ConfigError(msg)
    fit = train_gene(gene_id, head_input(cache.get(hap.hashes)), hap.index, targets[gene_id].to_numpy(), split, cfg.head,
                     samples=samples, random_weights_embeddings=random_weights,
                     device=str(resolve_device(cfg.head.device)), seed=cfg.seed)
    name = safe_name(gene_id)
    fit.estimator.save(out.trained(method, f"{name}.pt"))
    frame = fit.predictions.select(pl.lit(gene_id).alias("gene_id"), "sample", "split", pl.col("y_pred").alias("prediction"))
    out.write_parquet(out.trained(method, f"{name}.predictions.parquet"), frame)
    out.write_json(out.trained(method, f"{name}.json"), fit.record)  # written last: the gene is done
    return fit.record


def train_per_gene(ctx: RunContext, method: str, arm: str, control_of: str | None = None) -> None:
    """One head per gene of ``method`` on the ``arm`` embeddings, through the executor; its predictions."""
    out = ctx.out
    genes = ctx.genes()["gene_id"].to_list()
    todo = [g for g in genes if not out.trained(method, f"{safe_name(g)}.json").exists()]
    _log.info(f"[{method}] {len(genes)} genes, {len(genes) - len(todo)} already trained")
    with ctx.executor() as ex:
        for rec in ex.map_unordered(functools.partial(train_gene_task, str(out.root), method, arm), todo):
            _log.info(f"[{method}] {rec['gene_id']}: val r {rec['val_r']:.3f}, test r {rec['test_r']:.3f}, "
                      f"{rec['epochs']} epochs, {rec['seconds']:.1f} s")
    records = [out.read_json(out.trained(method, f"{safe_name(g)}.json")) for g in genes]
    out.write_parquet(out.trained(method, "records.parquet"), pl.DataFrame(records))
    random_weights = bool(out.read_embedding_spec(arm)["random_weights"])
    if genes:
        frames = [pl.read_parquet(out.trained(method, f"{safe_name(g)}.predictions.parquet")) for g in genes]
        out.write_predictions(method, pl.concat(frames), MethodLabels(random_weights=random_weights, control_of=control_of))


def run(ctx: RunContext) -> dict:
    """One head per gene through the executor, then (with ``head.multi_gene``) the shared head."""
    genes = ctx.genes()["gene_id"].to_list()
    train_per_gene(ctx, PER_GENE, "pretrained")
    if ctx.config.head.multi_gene and ctx.partial:
        _log.info("[train] multi-gene head skipped: it needs every gene (no --chunk / --genes)")
    elif ctx.config.head.multi_gene:
        _train_multi_gene(ctx, genes)
    return {"n_genes": len(genes)}


def _train_multi_gene(ctx: RunContext, genes: list[str]) -> None:
    from expredict.embed.configure import head_input
    from expredict.head.estimator import GeneData, train_multi_gene

    out, cfg = ctx.out, ctx.config
    cache, random_weights = _embedding_cache(out)
    samples, split, targets = out.read_targets()
    data = {}
    for g in genes:
        hap = out.read_gene_haplotypes(g)
        data[g] = GeneData(head_input(cache.get(hap.hashes)), hap.index, targets[g].to_numpy())
    classes = dict(out.read_gene_classes().iter_rows())
    est, records = train_multi_gene(data, split, classes, cfg.head, random_weights_embeddings=random_weights, seed=cfg.seed)
    est.save(out.trained(MULTI_GENE, "model.pt"))
    out.write_parquet(out.trained(MULTI_GENE, "records.parquet"), pl.DataFrame(records))
    labels = np.array(split)
    train = np.flatnonzero(labels == "train")
    rows = []
    for rec in records:
        d = data[rec["gene_id"]]
        idx = np.asarray(d.index, np.int64)
        pred = est.predict(rec["gene_id"], d.embeddings, idx, reference_index=idx[train])
        rows.append(pl.DataFrame({"gene_id": rec["gene_id"], "sample": samples, "split": split, "prediction": pred}))
    if rows:
        out.write_predictions(MULTI_GENE, pl.concat(rows), MethodLabels(random_weights=random_weights, gene_classes=True))
    unseen = [r for r in records if r["gene_class"] == "unseen"]
    _log.info(f"[train] multi-gene head: {len(records) - len(unseen)} seen and {len(unseen)} unseen genes evaluated")


def predict_new(out: RunDir, cohort: NewCohort) -> pl.DataFrame:
    """Expression of new individuals from the per-gene heads: their haplotypes are built with the run's
    settings, embedded into the run's cache (new sequences only) and passed through each gene's head."""
    from expredict.cache import sequence_hash
    from expredict.embed import embed_sequences, open_embedding_cache
    from expredict.embed.configure import build_embedder, head_input
    from expredict.haplotypes import tss_haplotypes
    from expredict.head.estimator import HeadRegressor
    from expredict.io.genotypes import read_genotypes
    from expredict.io.reference import Reference

    cfg = out.read_config()
    table = out.read_genes()
    if cohort.genes:
        table = table.filter(pl.col("gene_id").is_in(cohort.genes))
    have = [g for g in table["gene_id"].to_list() if out.trained(PER_GENE, f"{safe_name(g)}.pt").exists()]
    table = table.filter(pl.col("gene_id").is_in(have))
    if table.height == 0:
        msg = f"{out.trained(PER_GENE)}: no trained head for the requested genes; run the train stage first"
        raise InputFileError(msg)
    spec = out.read_embedding_spec()
    embedder = build_embedder(cfg.embedding, cfg.haplotypes.length, spec["spec"].get("model") or cfg.embedding.model)
    cache = open_embedding_cache(spec["cache_dir"], embedder)
    if cache.key != spec.get("key", cache.key):
        msg = f"{out.root}: the embedding model/pooling differs from the one the heads were trained on"
        raise InputFileError(msg)
    reference = Reference(cohort.fasta or cfg.data.fasta, cfg.data.contig_aliases)
    genotypes = {c: read_genotypes(cohort.vcf, c, samples=cohort.samples) for c in table["contig"].unique(maintain_order=True)}
    sets = list(tss_haplotypes(genotypes, reference, table, cfg.haplotypes.length, cfg.haplotypes))
    stats = embed_sequences([s for hs in sets for s in hs.sequences], cache, embedder, progress=True)
    _log.info(f"embedded: {stats.summary()}")
    rows = []
    for hs in sets:
        head = HeadRegressor.load(out.trained(PER_GENE, f"{safe_name(hs.region.name)}.pt"))
        e = head_input(cache.get([sequence_hash(s) for s in hs.sequences]))
        rows.append(head.predict(e, np.asarray(hs.index)))
    return pl.DataFrame({"gene_id": [hs.region.name for hs in sets]}).hstack(
        pl.DataFrame(np.vstack(rows), schema=sets[0].samples, orient="row"))


def _key(config: Config) -> list:
    return [config.head.model_dump(mode="json", exclude={"device"}), config.seed]


STAGE = Stage(
    name="train", run=run, version=2, key_parts=_key, needs=("embed",), outputs=(f"trained/{PER_GENE}", f"trained/{MULTI_GENE}"),
    methods=(
        Method(PER_GENE, "a transformer head per gene on the language model's embeddings", predict_new),
        Method(MULTI_GENE, "one transformer head for all genes (gene embedding), trained on the seen genes"),
    ),
    per_gene=True,
)
