"""Small transformer encoder over one haplotype's embedding tokens, and its configuration.

Input: the embeddings of the *distinct* haplotypes of a gene, float32 ``(n_unique, n_tokens, d_in)``
(binned token means or tiles from the NT embedding cache), plus an int ``index`` of shape
``(n_individuals, 2)`` mapping each individual's two haplotypes to rows. Each distinct haplotype is
encoded once per forward pass:

``Linear(d_in, d_model)`` -> + learned positional embedding (+ gene embedding in multi-gene mode)
-> ``nn.TransformerEncoder`` (pre-norm) -> masked mean pooling -> ``LayerNorm``.

``combine="average"`` (default, science.md §4): a linear output per haplotype, the two averaged.
``combine="concat"``: a linear output on the concatenation of the two pooled vectors, symmetrised
over the (arbitrary) phase order, ``(f([a, b]) + f([b, a])) / 2``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

import torch
from torch import nn

from expredict.errors import ConfigError


@dataclass(frozen=True)
class HeadConfig:
    """Every hyperparameter of the expression head, with its default.

    Model
    -----
    d_model, n_layers, n_heads, dim_feedforward, dropout : transformer width, depth, attention
        heads, feed-forward width and dropout (``d_model % n_heads == 0``).
    max_tokens : size of the learned positional table (n_tokens must not exceed it).
    combine : ``"average"`` (per-haplotype output, averaged) or ``"concat"``.
    input_standardize : ``"token"`` (centre and scale every (token, feature) over the training
        individuals' haplotypes, which exposes the small between-haplotype differences of frozen
        embeddings), ``"feature"`` (per feature over all tokens) or ``"none"``.
    input_scale_floor : floor on the per-(token, feature) sd, as a fraction of that feature's sd
        over all tokens (``"token"`` mode only), so invariant positions are not blown up.
    gene_embedding_dim : multi-gene mode only: gene embedding added to every token (``0`` = d_model).
    gene_dropout : multi-gene mode: probability of replacing a training gene's id by the
        "unknown gene" id, which is what held-out genes use.

    Training
    --------
    mse_weight, pairwise_weight : loss = mse_weight * MSE + pairwise_weight * mean over pairs of
        ((y_i - y_j) - (yhat_i - yhat_j))^2; pairwise-dominant by default (science.md §5). The
        z-score-only negative control is ``pairwise_weight=0, mse_weight=1``.
    lr, weight_decay : AdamW.
    max_epochs, patience, min_delta : early stopping on validation individuals (``patience``
        epochs without an improvement larger than ``min_delta``).
    early_stopping_metric : ``"loss"`` (the training loss on validation individuals) or ``"r"``
        (Pearson r on validation individuals).
    batch_size : individuals per step; ``None`` (or ``0``, stored as ``None``) = all training
        individuals in one batch.
    genes_per_step : multi-gene mode: genes per optimiser step.
    grad_clip : max gradient norm (``0`` = off).
    seed : torch / numpy seed for initialisation, dropout and shuffling.
    inverse_normal : inverse-normal transform the targets before the z-score (fitted on train).
    """

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    dim_feedforward: int = 128
    dropout: float = 0.1
    max_tokens: int = 1024
    combine: str = "average"
    input_standardize: str = "token"
    input_scale_floor: float = 0.05
    gene_embedding_dim: int = 0
    gene_dropout: float = 0.1
    mse_weight: float = 0.1
    pairwise_weight: float = 1.0
    lr: float = 1e-3
    weight_decay: float = 1e-2
    max_epochs: int = 300
    patience: int = 30
    min_delta: float = 1e-4
    early_stopping_metric: str = "loss"
    batch_size: int | None = None
    genes_per_step: int = 8
    grad_clip: float = 1.0
    seed: int = 0
    inverse_normal: bool = False

    def __post_init__(self) -> None:
        """Validate; errors name the key as ``head.<field>``."""

        def bad(key: str, rule: str) -> None:
            msg = f"head.{key}: {rule}; got {getattr(self, key)!r}"
            raise ConfigError(msg)

        for key in ("d_model", "n_layers", "n_heads", "dim_feedforward", "max_tokens", "max_epochs", "genes_per_step"):
            if int(getattr(self, key)) < 1:
                bad(key, "must be >= 1")
        if self.d_model % self.n_heads:
            bad("d_model", f"must be divisible by head.n_heads ({self.n_heads})")
        if not 0 <= self.dropout < 1:
            bad("dropout", "must be in [0, 1)")
        if not 0 <= self.gene_dropout < 1:
            bad("gene_dropout", "must be in [0, 1)")
        if self.combine not in ("average", "concat"):
            bad("combine", "must be 'average' or 'concat'")
        if self.input_standardize not in ("token", "feature", "none"):
            bad("input_standardize", "must be 'token', 'feature' or 'none'")
        if self.early_stopping_metric not in ("loss", "r"):
            bad("early_stopping_metric", "must be 'loss' or 'r'")
        if self.mse_weight < 0 or self.pairwise_weight < 0 or self.mse_weight + self.pairwise_weight <= 0:
            bad("pairwise_weight", "mse_weight and pairwise_weight must be >= 0 and not both 0")
        if self.lr <= 0:
            bad("lr", "must be > 0")
        if self.patience < 1:
            bad("patience", "must be >= 1")
        if self.batch_size == 0:
            object.__setattr__(self, "batch_size", None)  # 0 = all training individuals, as None
        if self.batch_size is not None and self.batch_size < 2:
            bad("batch_size", "must be >= 2 (pairs need two individuals), or 0/null for one batch")
        if self.gene_embedding_dim < 0:
            bad("gene_embedding_dim", "must be >= 0")

    def to_dict(self) -> dict:
        """Plain dict of every field (JSON/YAML-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> HeadConfig:
        """Build from a (YAML) mapping; unknown keys are a :class:`ConfigError` naming them."""
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            msg = f"head: unknown keys {unknown}; valid keys are {sorted(names)}"
            raise ConfigError(msg)
        return cls(**d)


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
