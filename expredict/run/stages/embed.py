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


def run(ctx: RunContext) -> dict:
    """Embed the distinct sequences of every gene (cache misses only); record the cache spec."""
    from expredict.embed import embed_sequences, open_embedding_cache
    from expredict.embed.configure import build_embedder

    cfg, out = ctx.config, ctx.out
    embedder = build_embedder(cfg.embedding, cfg.haplotypes.length, model_source(cfg, out))
    cache_dir = cfg.embedding.cache_dir or out.cache_dir("embeddings")
    cache = open_embedding_cache(cache_dir, embedder)
    seqs: list[str] = []
    n_haplotypes = 0
    for gid in ctx.genes()["gene_id"].to_list():
        hap = out.read_gene_haplotypes(gid)
        seqs.extend(hap.sequences)
        n_haplotypes += hap.index.size
    stats = embed_sequences(seqs, cache, embedder, progress=True)
    _log.info(f"[embed] {n_haplotypes} haplotypes -> {stats.n_unique} distinct sequences to embed "
              f"(dedup factor {n_haplotypes / max(stats.n_unique, 1):.1f}x)")
    out.write_embedding_spec({"cache_dir": str(cache_dir), "spec": cache.spec, "key": cache.key,
                              "random_weights": bool(stats.random_weights), "weights_label": stats.weights_label})
    _log.info(f"[embed] {stats.summary()}")
    return {k: v for k, v in stats.to_dict().items() if isinstance(v, int | float | bool)}


def _key(config: Config) -> list:
    return [config.embedding.model_dump(mode="json", exclude={"batch_size", "device"})]


STAGE = Stage(name="embed", run=run, version=2, key_parts=_key, needs=("haplotypes",), outputs=("embedding.json",),
              per_gene=True)
