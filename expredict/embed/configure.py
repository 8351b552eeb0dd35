"""The configured embedder and the head's view of cached embeddings.

``build_embedder`` turns the ``embedding`` config section into a frozen :class:`Embedder`
(layers, pooling into bins over the window's tokens, device, batch size); ``head_input``
reshapes cache items into the token sequences the expression head reads.
"""

from __future__ import annotations

import math

import numpy as np

from expredict.config import EmbeddingConfig

NT_KMER = 6
"""Bases per Nucleotide Transformer token (non-overlapping 6-mers)."""


def quiet_transformers() -> None:
    """Silence transformers' per-load tables and progress bars (our loader does its own strict check)."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def build_embedder(config: EmbeddingConfig, window_length: int, source: str, *, random_twin_seed: int | None = None):
    """The frozen NT embedder for sequences of ``window_length`` bp, loaded from ``source`` (hub id or directory).

    With ``random_twin_seed`` the model's architecture gets fresh random weights from that seed
    (:func:`expredict.embed.model.random_twin`, the pretraining control).

    ``pooling: bins`` averages the window's ``ceil(window_length / 6)`` tokens into ``n_bins``
    consecutive bins; ``mean`` averages all tokens. Layers are ``(intermediate_layer, layer)`` or ``(layer,)``.
    """
    from expredict.embed import Embedder, Pooling, load_nt, random_twin

    quiet_transformers()
    layers = (config.layer,) if config.intermediate_layer is None else (config.intermediate_layer, config.layer)
    if config.pooling == "bins":
        n_tokens = math.ceil(window_length / NT_KMER)
        pooling = Pooling("bins", bin_tokens=math.ceil(n_tokens / config.n_bins), n_bins=config.n_bins)
    else:
        pooling = Pooling("mean")
    loaded = load_nt(source, revision=config.revision)
    if random_twin_seed is not None:
        loaded = random_twin(loaded, seed=random_twin_seed)
    return Embedder(loaded, layers=layers, pooling=pooling,
                    device=config.device, batch_size=config.batch_size)


def head_input(values: np.ndarray) -> np.ndarray:
    """Cache items ``(n, n_layers[, n_bins], H)`` -> head input ``(n, n_tokens, n_layers * H)`` float32."""
    if values.ndim == 3:  # mean pooling: one token
        values = values[:, :, None, :]
    n, n_layers, n_bins, h = values.shape
    return np.ascontiguousarray(values.transpose(0, 2, 1, 3).reshape(n, n_bins, n_layers * h), dtype=np.float32)
