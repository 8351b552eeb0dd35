"""Reference FASTA access through pyfaidx, in 0-based half-open genomic coordinates.

Handles three things real references do to you:

- **contig aliases**: an explicit map (``{"chr22": "22"}``) from the names used by the VCF/BED to
  the FASTA's; without one, ``chr22`` and ``22`` are matched when exactly one form is in the FASTA
  (logged), and refused when both or neither are.
- **offset records**: a header ``>22:20000001-21000000`` (as written by ``samtools faidx``) is
  contig ``22`` whose first base is genomic position 20,000,000 (0-based).
- **case**: sequence is uppercased by default (soft-masked bases would otherwise become ``<unk>``
  tokens and fail REF comparisons); ``uppercase=False`` keeps it.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from expredict.atomic import atomic_path
from expredict.errors import InputFileError, ReferenceMismatchError

_OFFSET_RE = re.compile(r"^(?P<name>.+):(?P<start>\d+)-(?P<end>\d+)$")


@dataclass(frozen=True, slots=True)
class ContigSpan:
    """Where a genomic contig lives in the FASTA: record name and 0-based genomic ``[start, end)``."""

    record: str
    start: int
    end: int


class Reference:
    """Random access to a (b)gzip-indexed or plain FASTA.

    Parameters
    ----------
    path : str or PathLike
        FASTA file (plain or BGZF; a plain-gzip file must be decompressed first).
    aliases : dict, optional
        Map from a contig name used elsewhere (VCF, BED) to the FASTA's contig name.
    uppercase : bool, default True
        Uppercase every fetched base.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        aliases: dict[str, str] | None = None,
        *,
        uppercase: bool = True,
    ) -> None:
        import pyfaidx

        self.path = Path(path)
        self.aliases = dict(aliases or {})
        self.uppercase = uppercase
        if not self.path.exists():
            msg = f"{self.path}: reference FASTA not found"
            raise InputFileError(msg)
        if _is_plain_gzip(self.path):
            msg = (
                f"{self.path}: plain gzip FASTA cannot be indexed; decompress it (`gunzip -k`) "
                f"or recompress with `bgzip`"
            )
            raise InputFileError(msg)
        try:
            self._fa = pyfaidx.Fasta(str(self.path), as_raw=True, sequence_always_upper=uppercase)
        except Exception as e:
            msg = f"{self.path}: cannot open or index the FASTA ({e})"
            raise InputFileError(msg) from e
        self.contigs: dict[str, ContigSpan] = {}
        self._matched: dict[str, str] = {}
        for name in self._fa.keys():
            length = len(self._fa[name])
            m = _OFFSET_RE.match(name)
            if m and int(m["end"]) - int(m["start"]) + 1 == length:
                self.contigs[m["name"]] = ContigSpan(name, int(m["start"]) - 1, int(m["end"]))
            else:
                self.contigs[name] = ContigSpan(name, 0, length)

    def resolve(self, contig: str) -> ContigSpan:
        """The FASTA span for ``contig``: an explicit alias first, else the same name or, when only that
        is present, its ``chr``-prefix twin (``chr22`` <-> ``22``, logged once); an error naming the fix
        when the contig is absent or both forms are present."""
        name = self.aliases.get(contig)
        if name is None:
            name = self._matched.get(contig)
        if name is None:
            from expredict.io.contigs import match_contig

            name = match_contig(contig, self.contigs, target=f"{self.path} (reference FASTA)")
            self._matched[contig] = name
        span = self.contigs.get(name)
        if span is None:
            msg = (
                f"{self.path}: contig '{contig}' not in the reference (alias '{name}' in data.contig_aliases; "
                f"the FASTA has {sorted(self.contigs)[:5]}); fix data.contig_aliases"
            )
            raise ReferenceMismatchError(msg)
        return span

    def contig_bounds(self, contig: str) -> tuple[int, int]:
        """0-based half-open genomic ``[start, end)`` covered by the FASTA for ``contig``."""
        span = self.resolve(contig)
        return span.start, span.end

    def fetch(self, contig: str, start: int, end: int, *, pad: bool = False) -> str:
        """Bases of the 0-based half-open ``[start, end)``.

        With ``pad=False`` a range outside the FASTA's span is an error; with ``pad=True`` the
        part outside is filled with ``N`` (used only past contig ends).
        """
        span = self.resolve(contig)
        if end < start:
            msg = f"{contig}:{start}-{end}: end before start"
            raise ValueError(msg)
        if not pad and (start < span.start or end > span.end):
            msg = (
                f"{self.path}: {contig}:{start + 1}-{end} runs off the reference, which covers "
                f"{contig}:{span.start + 1}-{span.end}; drop the gene or use a larger reference"
            )
            raise ReferenceMismatchError(msg)
        lo, hi = max(start, span.start), min(end, span.end)
        seq = str(self._fa[span.record][lo - span.start : hi - span.start]) if hi > lo else ""
        if pad:
            left = max(0, min(span.start, end) - start)
            right = max(0, end - max(span.end, start))
            seq = "N" * left + seq + "N" * right
        return seq

    def fetch_array(self, contig: str, start: int, end: int, *, pad: bool = False) -> NDArray[np.uint8]:
        """:meth:`fetch` as ASCII bytes in a ``uint8`` array."""
        return np.frombuffer(self.fetch(contig, start, end, pad=pad).encode("ascii"), np.uint8).copy()

    def close(self) -> None:
        """Close the underlying file handle."""
        self._fa.close()


def _is_plain_gzip(path: Path) -> bool:
    """True for a gzip file that is not BGZF (no ``BC`` extra subfield)."""
    with path.open("rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return False
    return not (len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC")


def decompress_if_gzip(src: Path, dest: Path) -> Path:
    """Write a plain copy of a gzip FASTA to ``dest`` (atomic); return the readable path."""
    if not _is_plain_gzip(src):
        return src
    with atomic_path(dest) as tmp, gzip.open(src, "rb") as fin, tmp.open("wb") as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)
    return dest
