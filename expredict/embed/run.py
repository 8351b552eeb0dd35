"""Fill an embedding cache: embed each distinct sequence once, skip cache hits, resume after a crash."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from expredict.cache import ArrayCache, sequence_hash
from expredict.embed.extract import Embedder
from expredict.logs import Progress

__all__ = ["EmbedStats", "embed_sequences", "open_embedding_cache"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedStats:
    """Counters of one :func:`embed_sequences` call.

    Attributes
    ----------
    n_input : int
        Sequences given (with repeats).
    n_unique : int
        Distinct sequences (by :func:`~expredict.cache.sequence_hash`).
    n_cache_hits : int
        Distinct sequences already in the cache.
    n_embedded : int
        Distinct sequences run through the model now.
    dedup_factor : float
        ``n_input / n_unique`` (1.0 for empty input).
    seconds : float
        Wall time of the call.
    weights_label : str
        Model provenance; starts with ``"RANDOM WEIGHTS"`` for untrained models.
    random_weights : bool
        True when the embeddings come from a random-weight (tiny/benchmark) model.
    """

    n_input: int
    n_unique: int
    n_cache_hits: int
    n_embedded: int
    dedup_factor: float
    seconds: float
    weights_label: str
    random_weights: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return asdict(self)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        tag = " [RANDOM WEIGHTS - not biological]" if self.random_weights else ""
        return (
            f"{self.n_input} sequences, {self.n_unique} distinct (dedup x{self.dedup_factor:.2f}): "
            f"{self.n_cache_hits} cache hits, {self.n_embedded} embedded in {self.seconds:.1f} s{tag}"
        )


def open_embedding_cache(root: str | Path, embedder: Embedder, **extra: Any) -> ArrayCache:
    """Open (or create) the cache for ``embedder.spec`` (plus JSON-serialisable ``extra`` keys) under ``root``."""
    return ArrayCache(root, {**embedder.spec, **extra})


def embed_sequences(
    sequences: Iterable[str],
    cache: ArrayCache,
    embedder: Embedder,
    batch_size: int | None = None,
    progress: bool = True,
    *,
    chunk_size: int | None = None,
) -> EmbedStats:
    """Embed the distinct ``sequences`` missing from ``cache`` and append them to it.

    Work is committed to the cache in chunks of ``chunk_size`` sequences (one shard each), so an
    interrupted run loses at most one chunk and a re-run embeds only what is still missing.

    Parameters
    ----------
    sequences : iterable of str
        DNA strings (repeats allowed; e.g. the ``.sequences`` of each unique-haplotype record).
    cache : ArrayCache
        Must have been opened with a spec containing ``embedder.spec`` (see
        :func:`open_embedding_cache`).
    embedder : Embedder
        Model, layers, pooling, device.
    batch_size : int, optional
        Windows per forward pass; default is ``embedder.batch_size``.
    progress : bool
        Report progress over the sequences to embed (:class:`expredict.logs.Progress`: a bar on
        a terminal, log lines otherwise). Default is True.
    chunk_size : int, optional
        Sequences per cache shard. Default is ``max(16 * batch_size, 256)``.

    Returns
    -------
    EmbedStats
        Counters; ``stats.summary()`` is a one-line report.
    """
    t0 = time.perf_counter()
    spec = embedder.spec
    bad = [k for k, v in spec.items() if cache.spec.get(k) != v]
    if bad:
        msg = f"cache {cache.path} was opened for a different model/pooling (keys differ: {bad}); use open_embedding_cache"
        raise ValueError(msg)
    if batch_size is not None:
        if batch_size < 1:
            msg = f"batch_size must be >= 1; got {batch_size}"
            raise ValueError(msg)
        embedder.batch_size = int(batch_size)
    chunk = int(chunk_size or max(16 * embedder.batch_size, 256))
    unique: dict[str, str] = {}
    n_input = 0
    for seq in sequences:
        n_input += 1
        unique.setdefault(sequence_hash(seq), seq)
    hashes = list(unique)
    hit = cache.contains(hashes)
    todo = [hashes[i] for i in np.flatnonzero(~hit)]
    todo.sort(key=lambda h: len(unique[h]), reverse=True)  # similar lengths share chunks: less padding
    with Progress(_log, "embed", len(todo), enabled=progress, unit="seq") as bar:
        for c0 in range(0, len(todo), chunk):
            part = todo[c0 : c0 + chunk]
            values = embedder.embed([unique[h] for h in part])
            cache.put(part, values)
            bar.step(len(part))
    info = embedder.loaded.info
    stats = EmbedStats(
        n_input=n_input,
        n_unique=len(hashes),
        n_cache_hits=int(hit.sum()),
        n_embedded=len(todo),
        dedup_factor=n_input / len(hashes) if hashes else 1.0,
        seconds=time.perf_counter() - t0,
        weights_label=info.weights_label,
        random_weights=info.random_weights,
    )
    _log.info("%s", stats.summary())
    return stats
