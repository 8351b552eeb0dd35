"""Haplotype engine: bcftools-exact personal sequences, fixed-length projections, deduplication.

Public entry points (see :mod:`expredict.haplotypes.build`):

- :func:`tss_haplotypes`: distinct TSS-centred sequences of a gene table (what every stage uses);
- :func:`iter_unique_haplotypes`: distinct sequences per region plus the (sample, hap) index;
- :func:`build_haplotypes`: every (region, sample, hap) sequence, not deduplicated;
- :func:`iter_unique_tiles` / :func:`tile_regions`: fixed tiles of long regions, deduplicated per tile;
- :func:`coordinate_map` / :func:`haplotype_chain`: reference-to-haplotype coordinates.
"""

from __future__ import annotations

from expredict.haplotypes.build import (
    MODES,
    STAT_NAMES,
    RegionHaplotypes,
    RunStats,
    UniqueHaplotypes,
    build_haplotypes,
    coordinate_map,
    haplotype_blocks,
    haplotype_chain,
    iter_unique_haplotypes,
    iter_unique_tiles,
    tile_regions,
)

_LAZY = {"tss_haplotypes", "tss_regions"}  # need polars and the config: imported on first use only


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from expredict.haplotypes import tss

        return getattr(tss, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "MODES",
    "STAT_NAMES",
    "RegionHaplotypes",
    "RunStats",
    "UniqueHaplotypes",
    "build_haplotypes",
    "coordinate_map",
    "haplotype_blocks",
    "haplotype_chain",
    "iter_unique_haplotypes",
    "iter_unique_tiles",
    "tile_regions",
    "tss_haplotypes",
    "tss_regions",
]
