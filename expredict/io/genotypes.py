"""Phased genotypes from a VCF/BCF, parsed once for all samples into flat arrays.

The only module that sees VCF ``POS``: positions are converted to 0-based starts here
(``start = POS - 1``) and every array below is in that convention.

Layout (GenVarLoader-style data + offsets, haplotype-major genotypes):

- ``starts[v]``: 0-based start of the REF allele of variant ``v``; ``ref_ends[v]`` its 0-based
  exclusive end (``start + len(REF)``, or ``END`` for symbolic alleles with an ``END`` field).
- Alleles of variant ``v`` are ``allele_first[v] .. allele_first[v + 1] - 1`` (allele 0 = REF);
  allele ``a``'s bytes are ``allele_bytes[allele_offsets[a]:allele_offsets[a + 1]]``, uppercase ASCII.
- ``genotypes[hap, v]`` (int8, ``hap = 2 * sample + h`` with ``h`` 0 or 1 for GT allele 1 or 2 as
  written): allele index, ``-1`` missing (``.``), ``-2`` no such allele (haploid call).
- ``phased[sample, v]``: the GT separator was ``|``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from expredict.errors import GenotypeError, InputFileError, SampleMismatchError

MISSING_ALLELE = -1
NO_ALLELE = -2
MAX_ALLELES = 127


@dataclass(frozen=True)
class GenotypeArrays:
    """Genotypes of one contig for a set of samples; see the module docstring for the layout."""

    path: str
    contig: str
    samples: list[str]
    starts: NDArray[np.int64]
    ref_ends: NDArray[np.int64]
    ids: NDArray[np.object_]
    allele_first: NDArray[np.int64]
    allele_offsets: NDArray[np.int64]
    allele_bytes: NDArray[np.uint8]
    genotypes: NDArray[np.int8]
    phased: NDArray[np.bool_]
    _allele_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_variants(self) -> int:
        """Number of records."""
        return int(self.starts.shape[0])

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return len(self.samples)

    def alleles(self, v: int) -> list[str]:
        """Alleles of variant ``v`` as strings, REF first."""
        a0, a1 = int(self.allele_first[v]), int(self.allele_first[v + 1])
        return [
            self.allele_bytes[self.allele_offsets[a] : self.allele_offsets[a + 1]].tobytes().decode()
            for a in range(a0, a1)
        ]

    def n_alleles(self) -> NDArray[np.int64]:
        """Number of alleles (REF included) per variant."""
        return np.diff(self.allele_first)

    def record_label(self, v: int) -> str:
        """``contig:POS REF>ALT`` (1-based POS) for messages."""
        al = self.alleles(v)
        return f"{self.contig}:{int(self.starts[v]) + 1} {al[0]}>{','.join(al[1:])}"

    def slice_region(self, start: int, end: int) -> slice:
        """Slice of variants whose REF span overlaps the 0-based half-open ``[start, end)``.

        Variants are sorted by start; deletions that start before ``start`` and reach into the
        region are included (the longest REF span bounds the look-back).
        """
        max_span = int((self.ref_ends - self.starts).max()) if self.n_variants else 0
        lo = int(np.searchsorted(self.starts, start - max_span, side="left"))
        hi = int(np.searchsorted(self.starts, end, side="left"))
        while lo < hi and self.ref_ends[lo] <= start and self.starts[lo] < start:
            lo += 1
        return slice(lo, hi)

    def heterozygous_calls(self, variants: NDArray[np.int64]) -> tuple[int, int]:
        """``(heterozygous calls, unphased ones)`` over every sample at ``variants`` (calls with a
        missing allele are not heterozygous)."""
        n = self.n_samples
        if variants.size == 0 or n == 0:
            return 0, 0
        gt = self.genotypes[:, variants].reshape(n, 2, variants.size)
        het = (gt[:, 0] >= 0) & (gt[:, 1] >= 0) & (gt[:, 0] != gt[:, 1])
        return int(het.sum()), int((het & ~self.phased[:, variants]).sum())

    def subset_variants(self, sel: slice | NDArray[np.int64] | NDArray[np.bool_]) -> GenotypeArrays:
        """A new ``GenotypeArrays`` with only the selected variants (allele buffers compacted)."""
        idx = np.arange(self.n_variants)[sel]
        firsts = [np.arange(self.allele_first[v], self.allele_first[v + 1]) for v in idx]
        allele_idx = np.concatenate(firsts) if firsts else np.zeros(0, np.int64)
        lens = self.allele_offsets[allele_idx + 1] - self.allele_offsets[allele_idx]
        offsets = np.zeros(len(allele_idx) + 1, np.int64)
        np.cumsum(lens, out=offsets[1:])
        pieces = [self.allele_bytes[self.allele_offsets[a] : self.allele_offsets[a + 1]] for a in allele_idx]
        buf = np.concatenate(pieces) if pieces else np.zeros(0, np.uint8)
        counts = np.diff(self.allele_first)[idx]
        first = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(counts, out=first[1:])
        return GenotypeArrays(
            self.path,
            self.contig,
            list(self.samples),
            self.starts[idx],
            self.ref_ends[idx],
            self.ids[idx],
            first,
            offsets,
            buf,
            np.ascontiguousarray(self.genotypes[:, idx]),
            np.ascontiguousarray(self.phased[:, idx]),
        )

    def subset_samples(self, samples: list[str]) -> GenotypeArrays:
        """A new ``GenotypeArrays`` restricted to ``samples`` (in that order)."""
        pos = {s: i for i, s in enumerate(self.samples)}
        missing = [s for s in samples if s not in pos]
        if missing:
            msg = f"{self.path}: {len(missing)} sample(s) not in the VCF, e.g. {missing[:5]}"
            raise SampleMismatchError(msg)
        si = np.array([pos[s] for s in samples], np.int64)
        hi = np.stack([2 * si, 2 * si + 1], axis=1).reshape(-1)
        return GenotypeArrays(
            self.path,
            self.contig,
            list(samples),
            self.starts,
            self.ref_ends,
            self.ids,
            self.allele_first,
            self.allele_offsets,
            self.allele_bytes,
            np.ascontiguousarray(self.genotypes[hi]),
            np.ascontiguousarray(self.phased[si]),
        )

    def alt_dosages(self) -> NDArray[np.float32]:
        """ALT allele dosage (0..2) per sample and variant, ``float32[n_sample, n_var]``.

        Counts haplotypes carrying any non-REF allele; missing alleles count as the mean ALT
        frequency of that variant (mean imputation, as PrediXcan does).
        """
        g = self.genotypes.reshape(self.n_samples, 2, self.n_variants)
        alt = (g > 0).astype(np.float32)
        miss = g == MISSING_ALLELE
        if miss.any():
            called = (~miss) & (g != NO_ALLELE)
            freq = alt.sum(axis=(0, 1)) / np.maximum(called.sum(axis=(0, 1)), 1)
            alt = np.where(miss, freq[None, None, :], alt)
        return alt.sum(axis=1)


def _index_path(path: Path) -> Path | None:
    for suffix in (".tbi", ".csi"):
        cand = Path(str(path) + suffix)
        if cand.exists():
            return cand
    return None


def check_vcf(path: str | os.PathLike[str], need_index: bool = True) -> Path:
    """Check that a VCF/BCF exists and (when ``need_index``) has a ``.tbi``/``.csi`` index."""
    p = Path(path)
    if not p.exists():
        msg = f"{p}: genotype file not found"
        raise InputFileError(msg)
    if need_index and _index_path(p) is None:
        msg = (
            f"{p}: no index (.tbi or .csi) found next to the VCF/BCF; create one with "
            f"`tabix -p vcf {p}` or `bcftools index {p}` (the file must be bgzip-compressed and sorted)"
        )
        raise InputFileError(msg)
    if p.stat().st_size >= 28 and _is_bgzf(p):
        with p.open("rb") as fh:
            fh.seek(-28, os.SEEK_END)
            if fh.read(28) != _BGZF_EOF:
                msg = (
                    f"{p}: the file is truncated (no BGZF end-of-file marker); re-download or re-create it "
                    f"(`bgzip` / `bcftools view -O b`), then re-index"
                )
                raise InputFileError(msg)
    return p


_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def _is_bgzf(p: Path) -> bool:
    with p.open("rb") as fh:
        head = fh.read(16)
    return head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def vcf_samples(path: str | os.PathLike[str]) -> list[str]:
    """Sample IDs in the VCF header, checked for duplicates."""
    from cyvcf2 import VCF

    p = check_vcf(path, need_index=False)
    header_samples = _text_header_samples(p)
    if header_samples is not None:
        _check_duplicate_samples(p, header_samples)
    try:
        vcf = VCF(str(p), lazy=True)
    except (OSError, Exception) as e:  # cyvcf2 raises bare Exception on unreadable input
        msg = f"{p}: cannot open as VCF/BCF ({e})"
        raise InputFileError(msg) from e
    samples = list(vcf.samples)
    vcf.close()
    _check_duplicate_samples(p, samples)
    return samples


def _check_duplicate_samples(p: Path, samples: list[str]) -> None:
    seen: set[str] = set()
    dups = sorted({s for s in samples if s in seen or seen.add(s)})
    if dups:
        msg = f"{p}: duplicate sample IDs in the header: {dups[:5]}; rename or drop them (bcftools reheader)"
        raise SampleMismatchError(msg)


def _text_header_samples(p: Path) -> list[str] | None:
    """Samples from the ``#CHROM`` line of a text VCF (plain or gzip); None for BCF/unreadable.

    Read without htslib, which refuses duplicate sample names with an opaque header error.
    """
    import gzip

    with p.open("rb") as fh:
        magic = fh.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    try:
        with opener(p, "rt", errors="replace") as fh:
            for line in fh:
                if line.startswith("#CHROM"):
                    return line.rstrip("\n").split("\t")[9:]
                if not line.startswith("#"):
                    return None
    except (OSError, EOFError, UnicodeError):
        return None
    return None


def vcf_contigs(path: str | os.PathLike[str]) -> list[str]:
    """Contigs that carry records, from the index (falls back to the header)."""
    from cyvcf2 import VCF

    p = check_vcf(path)
    vcf = VCF(str(p), lazy=True)
    try:
        names = list(vcf.seqnames)
    finally:
        vcf.close()
    return names


def read_genotypes(
    path: str | os.PathLike[str],
    contig: str | None = None,
    start: int | None = None,
    end: int | None = None,
    samples: list[str] | None = None,
) -> GenotypeArrays:
    """Parse every record of one contig (optionally ``[start, end)``, 0-based) for all samples.

    One pass through cyvcf2; the genotype matrix is filled record by record and transposed once
    to haplotype-major ``int8[2 * n_sample, n_var]``. Raises :class:`InputFileError` for a missing,
    unindexed, unsorted or truncated file, :class:`SampleMismatchError` for unknown or duplicate
    samples, and :class:`GenotypeError` for non-diploid calls or too many alleles.
    """
    from cyvcf2 import VCF

    p = check_vcf(path)
    all_samples = vcf_samples(p)
    if samples is not None:
        missing = [s for s in samples if s not in set(all_samples)]
        if missing:
            msg = f"{p}: {len(missing)} requested sample(s) not in the VCF, e.g. {missing[:5]}"
            raise SampleMismatchError(msg)
    vcf = VCF(str(p), samples=samples, lazy=True, strict_gt=False)
    chosen = list(vcf.samples)
    if samples is not None:
        order = {s: i for i, s in enumerate(chosen)}
        reorder = np.array([order[s] for s in samples], np.int64)
    else:
        reorder = None
    if contig is None and (start is not None or end is not None):
        vcf.close()
        msg = f"{p}: a start/end needs a contig"
        raise ValueError(msg)
    if contig is None:
        query = None  # whole file; it must hold a single contig
    elif start is None and end is None:
        query = contig
    else:
        query = f"{contig}:{(start or 0) + 1}-{end if end is not None else 2**31 - 1}"

    starts: list[int] = []
    ends: list[int] = []
    ids: list[str] = []
    allele_counts: list[int] = []
    allele_strs: list[bytes] = []
    gts: list[NDArray[np.int16]] = []
    n = len(chosen)
    try:
        it = vcf(query) if query is not None else vcf
        for rec in it:
            if contig is None:
                contig = rec.CHROM
            if rec.CHROM != contig:
                if query is None:
                    msg = f"{p}: records on several contigs ({contig}, {rec.CHROM}, ...); name one contig"
                    raise InputFileError(msg)
                continue
            s = rec.POS - 1
            if starts and s < starts[-1]:
                msg = (
                    f"{p}: records are not sorted: {contig}:{rec.POS} comes after {contig}:{starts[-1] + 1}; "
                    f"sort with `bcftools sort` and re-index"
                )
                raise InputFileError(msg)
            ref = rec.REF.upper()
            alts = [a.upper() for a in rec.ALT]
            if len(alts) + 1 > MAX_ALLELES:
                msg = f"{p}: {contig}:{rec.POS} has {len(alts) + 1} alleles (max {MAX_ALLELES})"
                raise GenotypeError(msg)
            end_ = s + len(ref)
            if any(a.startswith("<") for a in alts):
                info_end = rec.INFO.get("END")
                if info_end is not None:
                    end_ = max(end_, int(info_end))
            starts.append(s)
            ends.append(end_)
            ids.append(rec.ID or ".")
            allele_counts.append(len(alts) + 1)
            allele_strs.append(ref.encode())
            allele_strs.extend(a.encode() for a in alts)
            g = rec.genotype.array() if n else np.zeros((0, 3), np.int16)
            if g.shape[1] != 3:
                if g.shape[1] == 2:  # all haploid: pad a "no allele" column
                    g = np.concatenate([g[:, :1], np.full((n, 1), NO_ALLELE, g.dtype), g[:, 1:]], axis=1)
                else:
                    msg = f"{p}: {contig}:{rec.POS}: ploidy {g.shape[1] - 1} is not supported (diploid or haploid only)"
                    raise GenotypeError(msg)
            gts.append(g)
    except (InputFileError, GenotypeError):
        raise
    except Exception as e:  # htslib/cyvcf2 errors on truncated or corrupt input
        last = f" after {contig}:{starts[-1] + 1}" if starts else ""
        msg = f"{p}: failed to read records{last} ({e}); the file may be truncated or corrupt"
        raise InputFileError(msg) from e
    finally:
        vcf.close()

    n_var = len(starts)
    if n_var:
        arr = np.stack(gts)  # (n_var, n_sample, 3)
        if reorder is not None:
            arr = arr[:, reorder]
        alleles = arr[:, :, :2].astype(np.int16)
        alleles = np.where(alleles < -1, NO_ALLELE, alleles)  # cyvcf2: -2 = vector end
        genotypes = np.ascontiguousarray(alleles.transpose(1, 2, 0).reshape(2 * n, n_var).astype(np.int8))
        phased = np.ascontiguousarray(arr[:, :, 2].T.astype(bool))
    else:
        genotypes = np.zeros((2 * n, 0), np.int8)
        phased = np.zeros((n, 0), bool)
    lens = np.fromiter((len(a) for a in allele_strs), np.int64, len(allele_strs))
    offsets = np.zeros(len(allele_strs) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    buf = np.frombuffer(b"".join(allele_strs), np.uint8).copy()
    first = np.zeros(n_var + 1, np.int64)
    np.cumsum(np.array(allele_counts, np.int64), out=first[1:])
    return GenotypeArrays(
        str(p),
        contig or "",
        list(samples) if samples is not None else chosen,
        np.array(starts, np.int64),
        np.array(ends, np.int64),
        np.array(ids, dtype=object),
        first,
        offsets,
        buf,
        genotypes,
        phased,
    )
