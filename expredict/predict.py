"""Cohort prediction: expression of new individuals from a trained run's per-gene heads.

The new individuals' haplotypes are built with the run's exact haplotype settings, embedded with
the run's model into the run's embedding cache (only sequences not seen before are computed), and
passed through each gene's saved head. Predictions are in the run's target units (per-gene
z-scores of the normalised expression of the training individuals).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from expredict.errors import InputFileError


def predict_cohort(
    models: str | os.PathLike[str],
    vcf: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fasta: str | os.PathLike[str] | None = None,
    samples: list[str] | None = None,
    genes: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Predict a gene x individual matrix for the individuals of ``vcf``.

    Parameters
    ----------
    models : path
        Output directory of a run whose ``train`` stage finished (``heads/``, ``embed_spec.json``).
    vcf : path
        Indexed VCF/BCF of the individuals to predict (any individuals, seen in training or not).
    out : path
        Output prefix: writes ``OUT.parquet`` and ``OUT.tsv`` (``gene_id`` then one column per
        individual), each atomically.
    fasta : path, optional
        Reference FASTA; default the run's.
    samples, genes : list of str, optional
        Restrict to these individuals / genes.

    Returns
    -------
    Path
        The parquet file.
    """
    from expredict.atomic import atomic_write_parquet, atomic_write_text
    from expredict.cache import sequence_hash
    from expredict.embed import embed_sequences, open_embedding_cache
    from expredict.haplotypes import iter_unique_haplotypes
    from expredict.head.estimator import HeadRegressor
    from expredict.io.genotypes import read_genotypes
    from expredict.io.reference import Reference
    from expredict.pipeline import _read_run_config, _regions, as_head_input, build_embedder, safe_name

    run = Path(models)
    for need in ("config.yaml", "genes.parquet", "embed_spec.json", "heads"):
        if not (run / need).exists():
            msg = f"{run}: not a trained expredict run (missing {need}); run `expredict run CONFIG` or `expredict train CONFIG` first"
            raise InputFileError(msg)
    cfg = _read_run_config(run)
    table = pl.read_parquet(run / "genes.parquet")
    if genes:
        table = table.filter(pl.col("gene_id").is_in(genes))
    have = [g for g in table["gene_id"].to_list() if (run / "heads" / f"{safe_name(g)}.pt").exists()]
    table = table.filter(pl.col("gene_id").is_in(have))
    if table.height == 0:
        msg = f"{run}/heads: no trained head for the requested genes"
        raise InputFileError(msg)
    spec = json.loads((run / "embed_spec.json").read_text())
    source = spec["spec"].get("model") or cfg.embedding.model
    embedder = build_embedder(cfg, source)
    cache = open_embedding_cache(spec["cache_dir"], embedder)
    if cache.key != spec.get("key", cache.key):
        msg = f"{run}: the embedding model/pooling differs from the one the heads were trained on"
        raise InputFileError(msg)
    reference = Reference(fasta or cfg.data.fasta, cfg.data.contig_aliases)
    hap = cfg.haplotypes
    sets = []
    for contig, part in table.group_by("contig", maintain_order=True):
        g = read_genotypes(vcf, contig[0], samples=samples)
        sets.extend(
            iter_unique_haplotypes(
                g, reference, _regions(part, hap.length), mode="center_tss", length=hap.length,
                reverse_complement_minus=hap.reverse_complement_minus, unphased=hap.unphased,
                ref_mismatch=hap.ref_mismatch, snv_only=hap.snv_only,
            )
        )
    stats = embed_sequences([s for hs in sets for s in hs.sequences], cache, embedder, progress=True)
    log(f"embedded: {stats.summary()}")
    cols: dict[str, list] = {"gene_id": []}
    rows = []
    out_samples = sets[0].samples
    for hs in sets:
        head = HeadRegressor.load(run / "heads" / f"{safe_name(hs.region.name)}.pt")
        e = as_head_input(cache.get([sequence_hash(s) for s in hs.sequences]))
        rows.append(head.predict(e, np.asarray(hs.index)))
        cols["gene_id"].append(hs.region.name)
    matrix = pl.DataFrame({"gene_id": cols["gene_id"]}).hstack(pl.DataFrame(np.vstack(rows), schema=out_samples, orient="row"))
    prefix = Path(out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    pq = prefix.with_name(prefix.name + ".parquet")
    tsv = prefix.with_name(prefix.name + ".tsv")
    atomic_write_parquet(matrix, pq)
    atomic_write_text(tsv, matrix.write_csv(separator="\t"))
    if stats.random_weights:
        log("NOTE: embeddings come from a RANDOM-WEIGHT model: these predictions are a plumbing check")
    log(f"{matrix.height} genes x {len(out_samples)} individuals -> {pq} and {tsv}")
    return pq
