"""Batched frozen-encoder inference with hooked layers and fp32 pooling.

Hidden state numbering follows HF ``hidden_states[k]``: ``0`` = embedding output, ``1..L-1`` =
output of block ``k`` (before the final LayerNorm), ``L`` (or ``-1``) = final output (after
``emb_layer_norm_after``). Each requested state is captured by a forward hook and pooled inside
the hook, so no ``output_hidden_states`` and no (L+1) x B x T x H tensor stack.

Pooling (``Pooling.mode``), per layer, over **real tokens only** (padding is masked):

- ``"mean"``: mean over the window -> ``(H,)``; ``<cls>`` included when ``include_cls`` (the
  NT model-card recipe).
- ``"bins"``: means over consecutive groups of ``bin_tokens`` tokens after ``<cls>``;
  ``n_bins`` is fixed (default ``ceil((max_tokens - 1) / bin_tokens)``) so outputs stack ->
  ``(n_bins, H)``; bins past the sequence end are NaN.
- ``"tiles"``: for sequences longer than one window: the token stream is cut into tiles of
  ``tile_tokens`` tokens (default ``max_tokens - 1``), each run as its own window with ``<cls>``
  and mean-pooled -> ``(n_tiles, H)``; tiles past the sequence end are NaN.

Output of :meth:`Embedder.embed`: float32 array ``(n_sequences, n_layers, H)`` for ``mean``,
``(n_sequences, n_layers, n_bins | n_tiles, H)`` otherwise (layer order as given).

Precision: fp32 on CPU; on CUDA ``precision="auto"`` runs the encoder under bf16 autocast while
pooling sums accumulate in fp32. Attention uses SDPA (set at load time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from expredict.device import resolve_device
from expredict.embed.adapter import LoadedModel
from expredict.embed.tokenizer import TokenLimitError

__all__ = ["Embedder", "Pooling", "resolve_device"]

PoolMode = Literal["mean", "bins", "tiles"]


@dataclass(frozen=True)
class Pooling:
    """Pooling specification (see module docstring).

    Attributes
    ----------
    mode : {"mean", "bins", "tiles"}
        Default is ``"mean"``.
    include_cls : bool
        Include ``<cls>`` in window/tile means. Default is True. Bins never include it.
    bin_tokens : int
        Tokens per bin (``"bins"``; 6 bp per 6-mer token). Default is 100.
    n_bins : int or None
        Number of bins; None = enough for one full window.
    tile_tokens : int or None
        Tokens per tile excluding ``<cls>`` (``"tiles"``); None = ``max_tokens - 1``.
    n_tiles : int
        Tiles per sequence (``"tiles"``). Default is 2.
    """

    mode: PoolMode = "mean"
    include_cls: bool = True
    bin_tokens: int = 100
    n_bins: int | None = None
    tile_tokens: int | None = None
    n_tiles: int = 2

    def __post_init__(self) -> None:
        if self.mode not in ("mean", "bins", "tiles"):
            msg = f"pooling mode must be 'mean', 'bins' or 'tiles'; got {self.mode!r}"
            raise ValueError(msg)
        for name in ("bin_tokens", "n_tiles"):
            if getattr(self, name) < 1:
                msg = f"pooling {name} must be >= 1; got {getattr(self, name)}"
                raise ValueError(msg)
        for name in ("n_bins", "tile_tokens"):
            val = getattr(self, name)
            if val is not None and val < 1:
                msg = f"pooling {name} must be >= 1 or None; got {val}"
                raise ValueError(msg)


class Embedder:
    """Frozen encoder + hooked layers + pooling; turns DNA strings into fixed-shape float32 arrays.

    Parameters
    ----------
    loaded : LoadedModel
        From :func:`expredict.embed.model.load_nt` (or another adapter).
    layers : sequence of int
        Hidden states to keep (HF numbering; ``-1`` = final output). Default is ``(-1,)``.
    pooling : Pooling or str
        Default is ``Pooling("mean")``.
    device : str or torch.device
        ``"auto"`` (default), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
    precision : {"auto", "fp32", "bf16"}
        ``"auto"`` = bf16 autocast on CUDA, fp32 elsewhere.
    batch_size : int
        Windows per forward pass. Default is 8.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        layers: Sequence[int] = (-1,),
        pooling: Pooling | str = "mean",
        device: str | torch.device = "auto",
        precision: Literal["auto", "fp32", "bf16"] = "auto",
        batch_size: int = 8,
    ) -> None:
        self.loaded = loaded
        self.pooling = Pooling(pooling) if isinstance(pooling, str) else pooling
        n_layers = loaded.info.n_layers
        norm = []
        for k in layers:
            kk = n_layers if k == -1 else int(k)
            if not 0 <= kk <= n_layers:
                msg = f"layer {k} out of range for a {n_layers}-layer model (use 0..{n_layers} or -1)"
                raise ValueError(msg)
            norm.append(kk)
        if not norm or len(set(norm)) != len(norm):
            msg = f"layers must be non-empty and distinct; got {list(layers)}"
            raise ValueError(msg)
        self.layers = tuple(norm)
        self.device = resolve_device(device)
        if precision not in ("auto", "fp32", "bf16"):
            msg = f"precision must be 'auto', 'fp32' or 'bf16'; got {precision!r}"
            raise ValueError(msg)
        self.precision = ("bf16" if self.device.type == "cuda" else "fp32") if precision == "auto" else precision
        if batch_size < 1:
            msg = f"batch_size must be >= 1; got {batch_size}"
            raise ValueError(msg)
        self.batch_size = int(batch_size)
        tok = loaded.tokenizer
        p = self.pooling
        self.tile_tokens = p.tile_tokens or tok.max_tokens - 1
        if p.mode == "tiles" and self.tile_tokens + 1 > tok.max_tokens:
            msg = f"tile_tokens {self.tile_tokens} + <cls> exceeds the model limit of {tok.max_tokens} tokens"
            raise ValueError(msg)
        self.n_bins = p.n_bins or math.ceil((tok.max_tokens - 1) / p.bin_tokens)
        loaded.model.to(self.device)

    # ------------------------------------------------------------------ description
    @property
    def item_shape(self) -> tuple[int, ...]:
        """Shape of one sequence's output: ``(n_layers, H)`` or ``(n_layers, n_bins|n_tiles, H)``."""
        h = self.loaded.info.hidden_size
        n = len(self.layers)
        if self.pooling.mode == "mean":
            return (n, h)
        return (n, self.n_bins if self.pooling.mode == "bins" else self.pooling.n_tiles, h)

    @property
    def spec(self) -> dict[str, Any]:
        """Everything that changes the output values (for :class:`expredict.cache.ArrayCache`)."""
        info = self.loaded.info
        pool = asdict(self.pooling)
        if self.pooling.mode == "bins":
            pool.update(n_bins=self.n_bins, tile_tokens=None, n_tiles=None)
        elif self.pooling.mode == "tiles":
            pool.update(tile_tokens=self.tile_tokens, bin_tokens=None, n_bins=None)
        else:
            pool.update(bin_tokens=None, n_bins=None, tile_tokens=None, n_tiles=None)
        return {
            "kind": "embedding",
            "family": info.family,
            "model": info.source,
            "version": info.version,
            "weights_hash": info.weights_hash,
            "weights_label": info.weights_label,
            "random_weights": info.random_weights,
            "layers": list(self.layers),
            "pooling": pool,
            "max_tokens": self.loaded.tokenizer.max_tokens,
            "precision": self.precision,
            "item_shape": list(self.item_shape),
        }

    # ------------------------------------------------------------------ windows
    def _windows(self, sequences: Sequence[str]) -> tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.int64]]:
        """Tokenize into windows: flat ids, window offsets, owning (sequence, slot) pairs (n_win, 2)."""
        tok = self.loaded.tokenizer
        ids, offsets = tok.encode_flat(sequences)
        counts = np.diff(offsets)
        n = counts.size
        if self.pooling.mode != "tiles":
            over = np.flatnonzero(counts + 1 > tok.max_tokens)
            if over.size:
                i = int(over[0])
                msg = (
                    f"{over.size} sequence(s) exceed the model limit of {tok.max_tokens} tokens incl. <cls>; "
                    f"first: sequence {i} ({len(sequences[i]):,} bp) gives {int(counts[i]) + 1} tokens. "
                    f"Shorten the window (an N-free sequence of {6 * (tok.max_tokens - 1):,} bp fits) "
                    f"or use pooling mode 'tiles'"
                )
                raise TokenLimitError(msg)
            if self.pooling.mode == "bins" and (counts > self.n_bins * self.pooling.bin_tokens).any():
                i = int(np.flatnonzero(counts > self.n_bins * self.pooling.bin_tokens)[0])
                msg = (
                    f"sequence {i} gives {int(counts[i])} tokens after <cls>, more than n_bins={self.n_bins} x "
                    f"bin_tokens={self.pooling.bin_tokens}; raise pooling.n_bins (or leave it None)"
                )
                raise TokenLimitError(msg)
            owner = np.stack([np.arange(n), np.zeros(n, np.int64)], axis=1)
            return ids, offsets, owner
        t = self.tile_tokens
        n_tiles = np.maximum(1, -(-counts // t))
        over = np.flatnonzero(n_tiles > self.pooling.n_tiles)
        if over.size:
            i = int(over[0])
            msg = (
                f"{over.size} sequence(s) need more than n_tiles={self.pooling.n_tiles} tiles of {t} tokens; "
                f"first: sequence {i} ({len(sequences[i]):,} bp, {int(counts[i])} tokens). Raise pooling.n_tiles"
            )
            raise TokenLimitError(msg)
        seq_idx = np.repeat(np.arange(n), n_tiles)
        slot = np.arange(seq_idx.size) - np.repeat(np.cumsum(n_tiles) - n_tiles, n_tiles)
        w_start = offsets[seq_idx] + slot * t
        w_end = np.minimum(w_start + t, offsets[seq_idx + 1])
        win_offsets = np.concatenate([w_start, w_end[-1:]]) if seq_idx.size else np.zeros(1, np.int64)
        # tiles are contiguous in `ids`, so consecutive starts/ends line up: offsets = starts + last end
        return ids, win_offsets, np.stack([seq_idx, slot], axis=1)

    # ------------------------------------------------------------------ forward
    def _pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pool one captured state ``h`` (B, T, H) with real-token mask (B, T) in fp32."""
        h = h.float()
        if self.pooling.mode == "bins":
            b, t, d = h.shape
            k = self.pooling.bin_tokens
            pos = torch.arange(t, device=h.device)
            idx = ((pos - 1) // k).clamp(min=0).expand(b, t).clone()
            valid = mask.bool() & (pos >= 1)
            idx[~valid] = self.n_bins  # dump bin
            idx = idx.clamp(max=self.n_bins)
            sums = torch.zeros(b, self.n_bins + 1, d, device=h.device, dtype=torch.float32)
            sums.scatter_add_(1, idx.unsqueeze(-1).expand(b, t, d), h)
            cnt = torch.zeros(b, self.n_bins + 1, device=h.device, dtype=torch.float32)
            cnt.scatter_add_(1, idx, valid.float())
            out = sums[:, : self.n_bins] / cnt[:, : self.n_bins, None]
            return out  # 0/0 -> NaN for empty bins
        w = mask.float()
        if not self.pooling.include_cls:
            w = w.clone()
            w[:, 0] = 0
        return torch.einsum("bth,bt->bh", h, w) / w.sum(1, keepdim=True).clamp(min=1)

    @torch.inference_mode()
    def embed(self, sequences: Sequence[str]) -> NDArray[np.float32]:
        """Embed DNA strings (uppercased by the tokenizer) -> float32 ``(n, *item_shape)``.

        Windows are sorted by token count and padded to the longest in each batch; outputs are
        returned in input order.

        Raises
        ------
        TokenLimitError
            A sequence is longer than one window (``mean``/``bins``) or than ``n_tiles`` tiles.
        """
        sequences = list(sequences)
        out = np.full((len(sequences), *self.item_shape), np.nan, dtype=np.float32)
        if not sequences:
            return out
        tok = self.loaded.tokenizer
        ids, w_off, owner = self._windows(sequences)
        w_len = np.diff(w_off)
        order = np.argsort(-w_len, kind="stable")
        model = self.loaded.model
        captured: dict[int, torch.Tensor] = {}
        state: dict[str, torch.Tensor] = {}

        def make_hook(k: int):  # noqa: ANN202
            def hook(_mod: torch.nn.Module, _inp: Any, output: Any) -> None:
                hs = output[0] if isinstance(output, tuple) else output
                with torch.autocast(self.device.type, enabled=False):  # pool in fp32 even under bf16
                    captured[k] = self._pool(hs, state["mask"])

            return hook

        handles = [self.loaded.hook_points[k].register_forward_hook(make_hook(k)) for k in self.layers]
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        try:
            for b0 in range(0, order.size, self.batch_size):
                sel = order[b0 : b0 + self.batch_size]
                sub_ids = np.concatenate([ids[w_off[i] : w_off[i + 1]] for i in sel])
                sub_off = np.zeros(sel.size + 1, dtype=np.int64)
                np.cumsum(w_len[sel], out=sub_off[1:])
                batch = tok.pad(sub_ids, sub_off)
                input_ids = torch.from_numpy(batch.input_ids).to(self.device, non_blocking=True)
                mask = torch.from_numpy(batch.attention_mask).to(self.device, non_blocking=True)
                state["mask"] = mask
                captured.clear()
                with autocast:
                    model(input_ids=input_ids, attention_mask=mask)
                for j, k in enumerate(self.layers):
                    pooled = captured[k].float().cpu().numpy()
                    if self.pooling.mode == "tiles":
                        out[owner[sel, 0], j, owner[sel, 1]] = pooled
                    else:
                        out[owner[sel, 0], j] = pooled
        finally:
            for h in handles:
                h.remove()
        return out
