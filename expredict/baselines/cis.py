"""Cis-window genotype features of one gene, as PredictDB builds them for its elastic net.

Why a layer of its own: which variants a gene's model may use (the window, the filters, the
identifiers written to the PredictDB ``weights`` table) is decided from the genotypes alone,
before any model is fitted, and the pipeline needs the window to know what to read from the VCF.

- **Window** (:func:`cis_window`, 0-based half-open): by default ``[gene_start - 1 Mb,
  gene_end + 1 Mb)`` (PredictDB's "1 Mb of gene start or end"; the gene body is ``[tss, tss + 1)``
  when only a TSS is known), or ``[tss - w, tss + w)`` to match a sequence model's window. A
  variant is in the window when its 0-based start is.
- **Features** (:func:`cis_features`): ALT dosages (0..2, ``float64[n_sample, n_var]``) of
  bi-allelic variants with MAF >= 0.01 on training individuals (and not constant there); optional
  removal of strand-ambiguous A/T, C/G SNPs, of indels and of variants without an rs id.
- **Identifiers**: PredictDB's ``varID`` ``{contig}_{POS}_{REF}_{ALT}_{build}`` (1-based POS) and
  ``rsid`` (the VCF ID when it is an rs id, else the ``varID``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from expredict.io.genotypes import GenotypeArrays

__all__ = ["CIS_WINDOW", "CisFeatures", "cis_features", "cis_window", "slice_genotypes", "variant_key"]

CIS_WINDOW = 1_000_000
"""PredictDB ``cis_window``: bp on each side of the gene start and end."""

_COMPLEMENT = {"A": "T", "T": "A", "C": "G", "G": "C"}


def cis_window(
    tss: int,
    *,
    start: int | None = None,
    end: int | None = None,
    window: int = CIS_WINDOW,
    anchor: Literal["gene", "tss"] = "gene",
) -> tuple[int, int]:
    """Cis window, 0-based half-open.

    ``anchor="gene"``: ``[start - window, end + window)`` where ``start``/``end`` are the 0-based
    half-open gene body (``[tss, tss + 1)`` if not given; PredictDB's "1 Mb of gene start or end").
    ``anchor="tss"``: ``[tss - window, tss + window)``, to match a sequence model's window
    (half-width ``window``).
    """
    if anchor == "tss":
        lo, hi = tss - window, tss + window
    elif anchor == "gene":
        s = tss if start is None else int(start)
        e = tss + 1 if end is None else int(end)
        lo, hi = min(s, e) - window, max(s, e) + window
    else:
        msg = f"anchor must be 'gene' or 'tss'; got {anchor!r}"
        raise ValueError(msg)
    return max(0, int(lo)), int(hi)


def slice_genotypes(genotypes: GenotypeArrays, start: int, end: int) -> GenotypeArrays:
    """Variants whose 0-based start lies in ``[start, end)``, as a ``GenotypeArrays`` of views.

    O(1) in the number of variants (contiguous slicing of the flat arrays, no per-variant loop),
    unlike ``GenotypeArrays.subset_variants``; the allele buffers keep their original offsets
    rebased to the slice.
    """
    lo = int(np.searchsorted(genotypes.starts, start, side="left"))
    hi = int(np.searchsorted(genotypes.starts, end, side="left"))
    a0, a1 = int(genotypes.allele_first[lo]), int(genotypes.allele_first[hi])
    b0, b1 = int(genotypes.allele_offsets[a0]), int(genotypes.allele_offsets[a1])
    return GenotypeArrays(
        genotypes.path, genotypes.contig, list(genotypes.samples), genotypes.starts[lo:hi], genotypes.ref_ends[lo:hi],
        genotypes.ids[lo:hi], genotypes.allele_first[lo : hi + 1] - a0, genotypes.allele_offsets[a0 : a1 + 1] - b0,
        genotypes.allele_bytes[b0:b1], genotypes.genotypes[:, lo:hi], genotypes.phased[:, lo:hi],
    )  # fmt: skip


@dataclass(frozen=True)
class CisFeatures:
    """Model-ready cis features of one gene.

    ``dosages`` is ``float64[n_sample, n_kept]`` (ALT dosage 0..2, every sample of the genotype
    slice); ``index`` the kept variants' positions in that slice; ``rsid``/``var_id``/``ref``/
    ``alt`` their PredictDB identifiers (``var_id = contig_POS_REF_ALT_build``, 1-based POS; ``rsid``
    is the VCF ID when it starts with ``rs``, else ``var_id``). ``n_in_window`` counts variants
    before any filter.
    """

    dosages: NDArray[np.float64]
    index: NDArray[np.int64]
    rsid: list[str]
    var_id: list[str]
    ref: list[str]
    alt: list[str]
    n_in_window: int


def variant_key(contig: str, start: int, ref: str, alt: str, build: str = "b37") -> str:
    """PredictDB ``varID`` ``{contig}_{POS}_{REF}_{ALT}_{build}`` from a 0-based ``start``.

    ``build`` is ``b37``/``GRCh37`` (the VCF's contig name as is) or ``b38``/``GRCh38`` (GTEx v8 style:
    the contig always ``chr``-prefixed, ``chr1_12345_A_G_b38``).
    """
    suffix = {"GRCh37": "b37", "GRCh38": "b38"}.get(build, build)
    if suffix == "b38" and not contig.startswith("chr"):
        contig = "chr" + contig
    return f"{contig}_{start + 1}_{ref}_{alt}_{suffix}"


def cis_features(
    genotypes: GenotypeArrays,
    train_idx: NDArray[np.int64],
    *,
    maf_min: float = 0.01,
    drop_ambiguous: bool = False,
    snps_only: bool = False,
    require_rsid: bool = False,
    build: str = "b37",
) -> CisFeatures:
    """Filter the variants of a (window-sliced) genotype set and return their ALT dosages.

    Keeps bi-allelic variants with MAF >= ``maf_min`` among ``train_idx`` (and non-constant
    there); ``drop_ambiguous`` removes A/T and C/G SNPs, ``snps_only`` indels and ``require_rsid``
    variants whose VCF ID is not an ``rs`` id (PredictDB's filters).
    """
    nv = genotypes.n_variants
    if nv == 0:
        return CisFeatures(np.zeros((genotypes.n_samples, 0)), np.zeros(0, np.int64), [], [], [], [], 0)
    keep = genotypes.n_alleles() == 2
    refs: list[str] = []
    alts: list[str] = []
    for v in range(nv):
        al = genotypes.alleles(v)
        refs.append(al[0])
        alts.append(al[1] if len(al) > 1 else "")
    if snps_only or drop_ambiguous:
        snp = np.array([len(r) == 1 and len(a) == 1 for r, a in zip(refs, alts, strict=True)])
        if snps_only:
            keep &= snp
        if drop_ambiguous:
            amb = np.array([_COMPLEMENT.get(r) == a for r, a in zip(refs, alts, strict=True)])
            keep &= ~(snp & amb)
    ids = [str(i) for i in genotypes.ids]
    if require_rsid:
        keep &= np.array([i.startswith("rs") for i in ids])
    D = genotypes.alt_dosages()
    Dt = D[np.asarray(train_idx)]
    af = Dt.mean(axis=0, dtype=np.float64) / 2
    maf = np.minimum(af, 1 - af)
    keep &= (maf >= maf_min) & (Dt.std(axis=0) > 0)
    idx = np.flatnonzero(keep).astype(np.int64)
    var_id = [variant_key(genotypes.contig, int(genotypes.starts[v]), refs[v], alts[v], build) for v in idx]
    rsid = [ids[v] if ids[v].startswith("rs") else var_id[k] for k, v in enumerate(idx)]
    return CisFeatures(
        dosages=D[:, idx].astype(np.float64), index=idx, rsid=rsid, var_id=var_id,
        ref=[refs[v] for v in idx], alt=[alts[v] for v in idx], n_in_window=nv,
    )  # fmt: skip
