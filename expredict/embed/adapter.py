"""Pluggable model-family interface: tokenization, loading and context length behind one adapter.

The extractor (:mod:`expredict.embed.extract`), the cache and the pipeline only see a
:class:`LoadedModel`: an encoder module whose blocks can be hooked, a tokenizer with the small
:class:`TokenizerLike` surface, and a :class:`ModelInfo` record. Adding another DNA language model
from ``transformers`` (DNABERT-6 k-mers, DNABERT-2 or GROVER BPE) means writing one
:class:`ModelAdapter` subclass and calling :func:`register_adapter`; nothing else changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray
from torch import nn

__all__ = [
    "LoadedModel",
    "ModelAdapter",
    "ModelInfo",
    "TokenizerLike",
    "get_adapter",
    "register_adapter",
    "registered_families",
]


class TokenizerLike(Protocol):
    """What the extractor needs from a tokenizer (see :class:`expredict.embed.tokenizer.NTTokenizer`)."""

    max_tokens: int  # largest accepted sequence length in tokens, special tokens included
    pad_id: int
    cls_id: int

    def encode_flat(self, sequences: Sequence[str | bytes]) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """Token ids without specials, concatenated, plus ``(n + 1,)`` offsets."""
        ...

    def pad(
        self, ids: NDArray[np.int32], offsets: NDArray[np.int64], *, pad_to: int | None = None, limit: int | None = None
    ) -> Any:
        """Return a batch with ``input_ids``, ``attention_mask`` (B, T) and ``lengths`` (B,)."""
        ...


@dataclass(frozen=True)
class ModelInfo:
    """Identity and provenance of a loaded model; recorded in every cache spec and report.

    Attributes
    ----------
    family : str
        Adapter family, e.g. ``"nt"``.
    source : str
        Hub id (``owner/name@revision``) or absolute local directory.
    version : str
        Architecture variant within the family (``"v1"``/``"v2"`` for NT).
    weights_hash : str
        Digest of the weight files (the hub's LFS sha256 when available), or ``"random-init"``.
    weights_label : str
        Human-readable provenance; starts with ``"RANDOM WEIGHTS"`` for untrained models.
    random_weights : bool
        True for tiny test models and random-init benchmark models: results are not biology.
    n_layers, hidden_size, max_tokens, n_params : int
        Encoder depth, width, context (tokens incl. specials) and parameter count.
    """

    family: str
    source: str
    version: str
    weights_hash: str
    weights_label: str
    random_weights: bool
    n_layers: int
    hidden_size: int
    max_tokens: int
    n_params: int
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


@dataclass
class LoadedModel:
    """A frozen encoder ready for extraction.

    Attributes
    ----------
    model : nn.Module
        Encoder in eval mode, ``requires_grad`` off; ``model(input_ids=..., attention_mask=...)``
        runs it.
    tokenizer : TokenizerLike
        Matching tokenizer.
    info : ModelInfo
        Provenance.
    hook_points : list of nn.Module
        ``hook_points[k]``'s output is hidden state ``k`` (HF ``hidden_states[k]`` numbering):
        ``[0]`` embeddings, ``[1..L-1]`` block outputs, ``[L]`` final output (after the last norm).
    """

    model: nn.Module
    tokenizer: TokenizerLike
    info: ModelInfo
    hook_points: list[nn.Module]


class ModelAdapter(ABC):
    """One model family: how to load it from a hub id or directory, and how to tokenize for it."""

    family: ClassVar[str]

    @abstractmethod
    def load(self, source: str | Path, *, revision: str | None = None) -> LoadedModel:
        """Load exactly (raising :class:`~expredict.errors.ModelLoadError` on any weight problem)."""


_REGISTRY: dict[str, ModelAdapter] = {}


def register_adapter(adapter: ModelAdapter) -> None:
    """Register ``adapter`` under ``adapter.family`` (replacing an earlier one)."""
    _REGISTRY[adapter.family] = adapter


def get_adapter(family: str) -> ModelAdapter:
    """Return the adapter registered for ``family``."""
    try:
        return _REGISTRY[family]
    except KeyError:
        msg = f"unknown embedding model family {family!r}; registered: {sorted(_REGISTRY)}"
        raise ValueError(msg) from None


def registered_families() -> list[str]:
    """Names of the registered families."""
    return sorted(_REGISTRY)
