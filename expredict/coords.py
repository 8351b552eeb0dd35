"""Coordinate conventions, in one place.

Internally expredict uses **0-based, half-open** intervals ``[start, end)`` on the reference.

- VCF ``POS`` is 1-based: ``start = POS - 1``.
- BED ``start``/``end`` are already 0-based half-open.
- QTLtools/tensorQTL phenotype BEDs put the **1-based TSS in ``end``** (``start = TSS - 1``);
  the 0-based TSS base is therefore ``end - 1 == start``.
- A "window" around a TSS of half-width ``w`` is ``[tss - w, tss + w)`` so the TSS base sits at
  index ``w`` (= ``L // 2`` for even ``L = 2w``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Region:
    """A named 0-based half-open interval ``[start, end)`` on ``contig``.

    ``anchor`` is an optional 0-based reference position inside the region that fixed-length
    projections keep at a fixed output index (the TSS); ``strand`` is ``"+"`` or ``"-"``.
    """

    contig: str
    start: int
    end: int
    name: str = ""
    anchor: int | None = None
    strand: str = "+"

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            msg = f"region {self.name or ''} {self.contig}:{self.start}-{self.end}: need 0 <= start <= end"
            raise ValueError(msg)

    @property
    def length(self) -> int:
        """Length in bp (``end - start``)."""
        return self.end - self.start

    def ucsc(self) -> str:
        """``contig:start1-end1`` in the 1-based closed convention of samtools/UCSC."""
        return f"{self.contig}:{self.start + 1}-{self.end}"


def vcf_pos_to_start(pos: int) -> int:
    """Convert a 1-based VCF ``POS`` to a 0-based start."""
    return pos - 1


def tss_window(contig: str, tss: int, half_width: int, name: str = "", strand: str = "+") -> Region:
    """Window ``[tss - half_width, tss + half_width)`` around a 0-based TSS, anchored on it."""
    return Region(contig, max(0, tss - half_width), tss + half_width, name, tss, strand)
