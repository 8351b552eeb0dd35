"""Vectorised numpy 6-mer tokenizer, id-for-id identical to the Nucleotide Transformer ``EsmTokenizer``.

The stock tokenizer (``transformers.EsmTokenizer`` with the checkpoint's ``vocab.txt``) splits a
sequence greedily, left to right, into non-overlapping 6-mers. ``N`` never sits inside a 6-mer:
each maximal run of ``A/C/G/T`` is cut into ``len // 6`` 6-mers followed by ``len % 6``
single-base tokens; each ``N`` is its own token; each maximal run of any other characters (IUPAC
codes such as ``R``/``Y``, ``-``) becomes **one** ``<unk>``. Only ``<cls>`` is prepended; no EOS.

Id layouts (``A=0, T=1, C=2, G=3`` digit order, ``itertools.product("ATCG", repeat=6)``):

=========  =====================================  ============  ==============  ======  =====
version    specials                               6-mers        single A,T,C,G  N       vocab
=========  =====================================  ============  ==============  ======  =====
``v1``     0 unk, 1 pad, 2 mask, 3 cls            4 ... 4099    4100 ... 4103   4104    4105
``v2``     0 unk, 1 pad, 2 mask, 3 cls, 4 eos,    6 ... 4101    4102 ... 4105   4106    4107
           5 bos
=========  =====================================  ============  ==============  ======  =====

Lowercase (soft-masked) bases are tokenized as their uppercase form (the stock tokenizer would
give ``<unk>``; expredict always uppercases first). Whitespace and non-ASCII characters are
rejected. A token-count guard (``max_tokens``, including ``<cls>``: 1000 for v1, 2048 for v2)
raises :class:`TokenLimitError` before any id reaches the model.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from expredict.errors import ExpredictError, ModelLoadError

__all__ = ["NTTokenizer", "TokenBatch", "TokenLimitError", "nt_vocab"]

NTVersion = Literal["v1", "v2"]

_SPECIALS: dict[str, list[str]] = {
    "v1": ["<unk>", "<pad>", "<mask>", "<cls>"],
    "v2": ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"],
}
_MAX_TOKENS = {"v1": 1000, "v2": 2048}

# byte -> code: 0..3 = A,T,C,G (either case), 4 = N, 5 = other printable (-> <unk>), 6 = forbidden
_CODE = np.full(256, 6, dtype=np.int8)
_CODE[33:127] = 5
for _i, _c in enumerate("ATCGN"):
    _CODE[ord(_c)] = _i
    _CODE[ord(_c.lower())] = _i
_TABLE = _CODE.tobytes()  # for bytes.translate
_POW = (4 ** np.arange(5, -1, -1)).astype(np.int32)


class TokenLimitError(ExpredictError, ValueError):
    """A sequence gives more tokens than the model accepts (or than one window/tile holds)."""


def nt_vocab(version: NTVersion) -> list[str]:
    """Return the NT vocabulary for ``version`` in id order (the lines of the checkpoint's ``vocab.txt``)."""
    _check_version(version)
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=6)]
    return [*_SPECIALS[version], *kmers, "A", "T", "C", "G", "N"]


def _ranks(counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """Return ``concatenate([arange(c) for c in counts])`` without a Python loop."""
    total = int(counts.sum())
    ends = np.cumsum(counts)
    return np.arange(total, dtype=np.int64) - np.repeat(ends - counts, counts)


def _check_version(version: str) -> None:
    if version not in _SPECIALS:
        msg = f"NT tokenizer version must be 'v1' or 'v2'; got {version!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class TokenBatch:
    """A padded batch of token ids.

    Attributes
    ----------
    input_ids : ndarray of int64, shape (B, T)
        ``<cls>`` first, right-padded with ``pad_id``; ``T`` = longest sequence in the batch.
    attention_mask : ndarray of int64, shape (B, T)
        1 for real tokens (``<cls>`` included), 0 for padding.
    lengths : ndarray of int64, shape (B,)
        Real tokens per row, ``<cls>`` included.
    """

    input_ids: NDArray[np.int64]
    attention_mask: NDArray[np.int64]
    lengths: NDArray[np.int64]


class NTTokenizer:
    """Nucleotide Transformer 6-mer tokenizer (numpy, vectorised over a whole batch).

    Parameters
    ----------
    version : {"v1", "v2"}
        Id layout (see module docstring).
    max_tokens : int, optional
        Largest accepted token count per sequence, ``<cls>`` included. Default is the model's
        trained context: 1000 (v1) or 2048 (v2).
    """

    pad_id = 1
    mask_id = 2
    cls_id = 3
    unk_id = 0

    def __init__(self, version: NTVersion, max_tokens: int | None = None) -> None:
        _check_version(version)
        self.version: NTVersion = version
        self.max_tokens = int(max_tokens) if max_tokens is not None else _MAX_TOKENS[version]
        if self.max_tokens < 2:
            msg = f"max_tokens must be >= 2 (cls + one token); got {self.max_tokens}"
            raise ValueError(msg)
        n_special = len(_SPECIALS[version])
        self.kmer_offset = n_special
        self.single_offset = n_special + 4096
        self.n_id = self.single_offset + 4
        self.vocab_size = self.n_id + 1

    def __repr__(self) -> str:
        return f"NTTokenizer(version={self.version!r}, max_tokens={self.max_tokens})"

    @classmethod
    def from_pretrained(cls, path: str | Path, version: NTVersion | None = None) -> NTTokenizer:
        """Build the tokenizer for a checkpoint directory, checking its ``vocab.txt``.

        Raises
        ------
        ModelLoadError
            ``vocab.txt`` is missing or is not exactly the v1 or v2 NT vocabulary.
        """
        vocab_file = Path(path) / "vocab.txt"
        try:
            lines = vocab_file.read_text().splitlines()
        except OSError as exc:
            msg = f"{vocab_file}: cannot read the tokenizer vocabulary ({exc})"
            raise ModelLoadError(msg) from exc
        found = next((v for v in ("v1", "v2") if lines == nt_vocab(v)), None)  # type: ignore[arg-type]
        if found is None or (version is not None and found != version):
            want = version or "v1 or v2"
            msg = (
                f"{vocab_file}: {len(lines)} entries, not the NT {want} 6-mer vocabulary "
                f"(expected {4105 if version != 'v2' else 4107} lines in itertools.product('ATCG') order)"
            )
            raise ModelLoadError(msg)
        max_tokens = _MAX_TOKENS[found]
        return cls(found, max_tokens)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ core
    def encode_flat(self, sequences: Sequence[str | bytes]) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """Tokenize without ``<cls>`` and without the length guard.

        Returns
        -------
        ids : ndarray of int32, shape (n_tokens_total,)
            Token ids of all sequences, concatenated.
        offsets : ndarray of int64, shape (n_sequences + 1,)
            Sequence ``i`` owns ``ids[offsets[i]:offsets[i + 1]]``.
        """
        try:
            raw = [s.encode("ascii") if isinstance(s, str) else bytes(s) for s in sequences]
        except UnicodeEncodeError as exc:
            msg = f"DNA sequences must be ASCII; got {exc.object[exc.start : exc.end]!r} at position {exc.start}"
            raise ValueError(msg) from exc
        n_seq = len(raw)
        starts = np.zeros(n_seq + 1, dtype=np.int64)
        np.cumsum(np.fromiter((len(r) for r in raw), dtype=np.int64, count=n_seq), out=starts[1:])
        n = int(starts[-1])
        codes = np.frombuffer(b"".join(raw).translate(_TABLE), dtype=np.int8)
        breaks = np.flatnonzero(codes >= 4)
        if breaks.size and (codes[breaks] == 6).any():
            pos = int(breaks[codes[breaks] == 6][0])
            seq_i = int(np.searchsorted(starts, pos, side="right") - 1)
            msg = (
                f"sequence {seq_i} has a whitespace or control character at position "
                f"{pos - int(starts[seq_i])}; DNA sequences must be letters (A/C/G/T/N or IUPAC)"
            )
            raise ValueError(msg)
        # Cut [0, n) into intervals that are either one non-ACGT character or a maximal ACGT run
        # inside one sequence; each interval emits its tokens contiguously, in order.
        cuts = np.unique(np.concatenate([starts, breaks, breaks + 1]))
        lo, hi = cuts[:-1], cuts[1:]
        lo_code = codes[np.minimum(lo, max(n - 1, 0))] if n else np.zeros(0, np.int8)
        is_run = lo_code < 4
        run_len = np.where(is_run, hi - lo, 0)
        n_kmer = run_len // 6
        n_single = run_len % 6
        # a non-ACGT interval: N -> 1 token; other -> 1 token only at the start of a run of others
        prev_other = np.zeros(lo.size, dtype=bool)
        inner = lo > 0
        prev_other[inner] = codes[lo[inner] - 1] == 5
        seq_start = np.zeros(lo.size, dtype=bool)
        seq_start[np.searchsorted(lo, starts[:-1])[starts[:-1] < n]] = True
        emits = (lo_code == 4) | ((lo_code == 5) & ~(prev_other & ~seq_start))
        n_tok = n_kmer + n_single + (~is_run & emits)
        out_start = np.zeros(lo.size + 1, dtype=np.int64)
        np.cumsum(n_tok, out=out_start[1:])
        ids = np.empty(int(out_start[-1]), dtype=np.int32)

        k_rank = _ranks(n_kmer)
        k_pos = np.repeat(lo, n_kmer) + 6 * k_rank
        kval = np.zeros(k_pos.size, dtype=np.int32)
        for j in range(6):
            kval += codes[k_pos + j].astype(np.int32) * _POW[j]
        ids[np.repeat(out_start[:-1], n_kmer) + k_rank] = kval + self.kmer_offset
        s_rank = _ranks(n_single)
        s_pos = np.repeat(lo + 6 * n_kmer, n_single) + s_rank
        ids[np.repeat(out_start[:-1] + n_kmer, n_single) + s_rank] = codes[s_pos].astype(np.int32) + self.single_offset
        brk = np.flatnonzero(~is_run & emits)
        ids[out_start[brk]] = np.where(lo_code[brk] == 4, self.n_id, self.unk_id)
        offsets = out_start[np.searchsorted(cuts, starts)]
        return ids, offsets

    def count_tokens(self, sequences: Sequence[str | bytes]) -> NDArray[np.int64]:
        """Return the number of tokens per sequence, ``<cls>`` included, shape ``(n,)``."""
        _, offsets = self.encode_flat(sequences)
        return np.diff(offsets) + 1

    def check_lengths(self, counts: NDArray[np.int64], *, limit: int | None = None, what: str = "") -> None:
        """Raise :class:`TokenLimitError` if any count (``<cls>`` included) exceeds ``limit``."""
        limit = self.max_tokens if limit is None else limit
        over = np.flatnonzero(counts > limit)
        if over.size:
            i = int(over[0])
            msg = (
                f"{over.size} sequence(s) exceed the NT {self.version} limit of {limit} tokens incl. <cls>"
                f"{what}; first: sequence {i} gives {int(counts[i])} tokens. A N-free sequence of "
                f"{6 * (limit - 1):,} bp fits exactly; shorten the window or use tile pooling"
            )
            raise TokenLimitError(msg)

    def encode(self, sequences: Sequence[str | bytes]) -> list[NDArray[np.int64]]:
        """Tokenize each sequence to an int64 id array with ``<cls>`` first (length-guarded)."""
        ids, offsets = self.encode_flat(sequences)
        self.check_lengths(np.diff(offsets) + 1)
        out = []
        for a, b in zip(offsets[:-1], offsets[1:], strict=True):
            row = np.empty(b - a + 1, dtype=np.int64)
            row[0] = self.cls_id
            row[1:] = ids[a:b]
            out.append(row)
        return out

    def batch(self, sequences: Sequence[str | bytes], *, pad_to: int | None = None) -> TokenBatch:
        """Tokenize and right-pad a batch to its longest member (or ``pad_to``), length-guarded."""
        ids, offsets = self.encode_flat(sequences)
        return self.pad(ids, offsets, pad_to=pad_to)

    def pad(
        self, ids: NDArray[np.int32], offsets: NDArray[np.int64], *, pad_to: int | None = None, limit: int | None = None
    ) -> TokenBatch:
        """Pad flat ids (from :meth:`encode_flat`, no ``<cls>``) into a :class:`TokenBatch`, ``<cls>`` prepended."""
        counts = np.diff(offsets)
        lengths = counts + 1
        self.check_lengths(lengths, limit=limit)
        width = int(lengths.max(initial=1)) if pad_to is None else int(pad_to)
        if width < int(lengths.max(initial=1)):
            msg = f"pad_to={pad_to} is shorter than the longest sequence ({int(lengths.max())} tokens)"
            raise ValueError(msg)
        b = counts.size
        input_ids = np.full((b, width), self.pad_id, dtype=np.int64)
        input_ids[:, 0] = self.cls_id
        rows = np.repeat(np.arange(b), counts)
        cols = np.arange(ids.size, dtype=np.int64) - np.repeat(offsets[:-1], counts) + 1
        input_ids[rows, cols] = ids
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        return TokenBatch(input_ids, mask, lengths.astype(np.int64))

    def save_vocab(self, directory: str | Path) -> Path:
        """Write ``vocab.txt`` for this layout into ``directory`` and return its path."""
        path = Path(directory) / "vocab.txt"
        path.write_text("\n".join(nt_vocab(self.version)) + "\n")
        return path
