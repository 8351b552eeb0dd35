"""Stage ``embed``: the frozen language model embeds every distinct sequence once into the cache."""

from __future__ import annotations

import logging

from expredict.config import Config
from expredict.run.engine import RunContext, Stage
from expredict.run.layout import RunDir

_log = logging.getLogger(__name__)


def model_source(config: Config, out: RunDir) -> str:
    """Hub id or directory of the language model; builds the tiny random-weight stand-in under ``OUT/models``."""
    emb = config.embedding
    if emb.tiny is None:
        return emb.model
    from expredict.embed.configure import quiet_transformers
    from expredict.embed.model import make_tiny_nt

    quiet_transformers()
    d = out.tiny_model_dir(f"tiny-nt-{emb.tiny}")
    if not (d / "config.json").exists():
        make_tiny_nt(emb.tiny, d)
    return str(d)


def embed_arm(ctx: RunContext, arm: str = "pretrained") -> dict:
    """Embed the distinct sequences of every gene (cache misses only) and record the cache spec of ``arm``:
    ``pretrained`` (the configured model) or ``random`` (its random-weight twin, the pretraining control)."""
    from expredict.embed import embed_sequences, open_embedding_cache
    from expredict.embed.configure import build_embedder

    cfg, out = ctx.config, ctx.out
    twin_seed = cfg.embedding.random_control_seed if arm == "random" else None
    embedder = build_embedder(cfg.embedding, cfg.haplotypes.length, model_source(cfg, out), random_twin_seed=twin_seed)
    cache_dir = cfg.embedding.cache_dir or out.cache_dir("embeddings")
    cache = open_embedding_cache(cache_dir, embedder)
    seqs: list[str] = []
    n_haplotypes = 0
    for gid in ctx.genes()["gene_id"].to_list():
        hap = out.read_gene_haplotypes(gid)
        seqs.extend(hap.sequences)
        n_haplotypes += hap.index.size
    stats = embed_sequences(seqs, cache, embedder, progress=True)
    _log.info(f"[embed] {arm}: {n_haplotypes} haplotypes -> {stats.n_unique} distinct sequences to embed "
              f"(dedup factor {n_haplotypes / max(stats.n_unique, 1):.1f}x)")
    out.write_embedding_spec({"cache_dir": str(cache_dir), "spec": cache.spec, "key": cache.key,
                              "random_weights": bool(stats.random_weights), "weights_label": stats.weights_label}, arm)
    _log.info(f"[embed] {stats.summary()}")
    return {k: v for k, v in stats.to_dict().items() if isinstance(v, int | float | bool)}


def run(ctx: RunContext) -> dict:
    """Embed with the configured model."""
    return embed_arm(ctx, "pretrained")


def _key(config: Config) -> list:
    return [config.embedding.model_dump(mode="json", exclude={"batch_size", "device", "random_control", "random_control_seed"})]


STAGE = Stage(name="embed", run=run, version=2, key_parts=_key, needs=("haplotypes",), outputs=("embedding.json",),
              per_gene=True)
