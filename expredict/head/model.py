"""Small transformer encoder over one haplotype's embedding tokens.

Input: the embeddings of the *distinct* haplotypes of a gene, float32 ``(n_unique, n_tokens, d_in)``
(binned token means or tiles from the NT embedding cache), plus an int ``index`` of shape
``(n_individuals, 2)`` mapping each individual's two haplotypes to rows. Each distinct haplotype is
encoded once per forward pass:

``Linear(d_in, d_model)`` -> + learned positional embedding (+ gene embedding in multi-gene mode)
-> ``nn.TransformerEncoder`` (pre-norm) -> masked mean pooling -> ``LayerNorm``.

``combine="average"`` (default): a linear output per haplotype, the two averaged. Each haplotype's
cis-regulatory sequence acts on its own copy of the gene, so an individual's expression is, to a
first approximation, the sum of two per-haplotype contributions; averaging builds in that
additivity, needs no notion of which haplotype comes first (phase order is arbitrary) and lets every
haplotype be scored on its own. ``combine="concat"``: a linear output on the concatenation of the
two pooled vectors, symmetrised over the phase order, ``(f([a, b]) + f([b, a])) / 2``, which can
also express interactions between the two copies (e.g. dominance).

The hyperparameters are those of :class:`expredict.config.HeadConfig`.
"""

from __future__ import annotations

import torch
from torch import nn

from expredict.config import HeadConfig


class HaplotypeHead(nn.Module):
    """Transformer head mapping haplotype embeddings to one expression value per individual.

    Parameters
    ----------
    d_in : int
        Embedding width of the input tokens.
    config : HeadConfig
    n_genes : int, default=0
        ``> 0`` enables multi-gene mode: a learned gene embedding (``n_genes + 1`` rows, row 0 is
        the "unknown gene" used for held-out genes) added to every token.
    """

    def __init__(self, d_in: int, config: HeadConfig, n_genes: int = 0) -> None:
        super().__init__()
        self.config = config
        self.d_in = int(d_in)
        self.n_genes = int(n_genes)
        c = config
        self.proj = nn.Linear(self.d_in, c.d_model)
        self.pos = nn.Parameter(torch.zeros(c.max_tokens, c.d_model))
        nn.init.normal_(self.pos, std=0.02)
        self.gene = None
        if self.n_genes > 0:
            dim = c.gene_embedding_dim or c.d_model
            self.gene = nn.Embedding(self.n_genes + 1, dim)
            nn.init.normal_(self.gene.weight, std=0.02)
            self.gene_proj = nn.Linear(dim, c.d_model) if dim != c.d_model else nn.Identity()
        layer = nn.TransformerEncoderLayer(
            c.d_model, c.n_heads, c.dim_feedforward, c.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.d_model)
        self.out = nn.Linear(2 * c.d_model if c.combine == "concat" else c.d_model, 1)

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None, gene: int | None = None) -> torch.Tensor:
        """Pool each haplotype: ``x`` (n_unique, n_tokens, d_in) -> (n_unique, d_model).

        ``mask`` (n_unique, n_tokens) bool marks real tokens (``None``: all real). ``gene`` is the
        gene's row in the gene embedding (multi-gene mode; ``0`` = unknown gene).
        """
        if x.ndim != 3 or x.shape[-1] != self.d_in:
            msg = f"HaplotypeHead: x must have shape (n_unique, n_tokens, {self.d_in}); got {tuple(x.shape)}"
            raise ValueError(msg)
        n_tokens = x.shape[1]
        if n_tokens > self.config.max_tokens:
            msg = f"HaplotypeHead: {n_tokens} tokens exceed head.max_tokens={self.config.max_tokens}"
            raise ValueError(msg)
        h = self.proj(x) + self.pos[:n_tokens]
        if self.gene is not None:
            g = torch.as_tensor([0 if gene is None else int(gene)], device=x.device)
            h = h + self.gene_proj(self.gene(g))[:, None, :]
        pad = None if mask is None else ~mask.bool()
        h = self.encoder(h, src_key_padding_mask=pad)
        if mask is None:
            pooled = h.mean(1)
        else:
            w = mask.to(h.dtype)[..., None]
            pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        return self.norm(pooled)

    def combine(self, pooled: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Per-individual output from pooled haplotypes (n_unique, d_model) and index (n, 2)."""
        a, b = pooled[index[:, 0]], pooled[index[:, 1]]
        if self.config.combine == "concat":
            return 0.5 * (self.out(torch.cat([a, b], 1)) + self.out(torch.cat([b, a], 1))).squeeze(1)
        return 0.5 * (self.out(a) + self.out(b)).squeeze(1)

    def forward(
        self, x: torch.Tensor, index: torch.Tensor, mask: torch.Tensor | None = None, gene: int | None = None
    ) -> torch.Tensor:
        """Predict ``(n_individuals,)`` from distinct-haplotype embeddings and the index into them."""
        return self.combine(self.encode(x, mask, gene), index)
