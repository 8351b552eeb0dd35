"""Embedding engine: frozen DNA language models (Nucleotide Transformer v1/v2) over distinct sequences.

Typical use::

    from expredict.cache import ArrayCache
    from expredict.embed import Embedder, Pooling, embed_sequences, load_nt, open_embedding_cache

    loaded = load_nt("InstaDeepAI/nucleotide-transformer-500m-1000g")   # or a local directory
    embedder = Embedder(loaded, layers=(20, -1), pooling=Pooling("mean"), device="auto")
    cache = open_embedding_cache("cache/embeddings", embedder)
    stats = embed_sequences(sequences, cache, embedder, batch_size=16)
    X = cache.get([sequence_hash(s) for s in sequences])   # (n, 2, 1280) float32

Outputs of random-weight models (``make_tiny_nt``, ``random_nt``) carry
``info.random_weights = True`` and a ``"RANDOM WEIGHTS ..."`` label in the cache spec and stats.
"""

from __future__ import annotations

from expredict.embed.adapter import LoadedModel, ModelAdapter, ModelInfo, get_adapter, register_adapter
from expredict.embed.extract import Embedder, Pooling, resolve_device
from expredict.embed.model import NT_ARCHITECTURES, NTAdapter, load_nt, make_tiny_nt, nt_config, random_nt, random_twin
from expredict.embed.run import EmbedStats, embed_sequences, open_embedding_cache
from expredict.embed.tokenizer import NTTokenizer, TokenBatch, TokenLimitError, nt_vocab

__all__ = [
    "NT_ARCHITECTURES",
    "EmbedStats",
    "Embedder",
    "LoadedModel",
    "ModelAdapter",
    "ModelInfo",
    "NTAdapter",
    "NTTokenizer",
    "Pooling",
    "TokenBatch",
    "TokenLimitError",
    "embed_sequences",
    "get_adapter",
    "load_nt",
    "make_tiny_nt",
    "nt_config",
    "nt_vocab",
    "open_embedding_cache",
    "random_nt",
    "random_twin",
    "register_adapter",
    "resolve_device",
]
