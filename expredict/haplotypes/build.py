"""Personal haplotype sequences: windows, validation, kernel calls, projections, deduplication.

Semantics are those of ``bcftools consensus -s S -H 1|2`` (>= 1.20, ``--regions-overlap 1``) on
a region FASTA; see :mod:`expredict.haplotypes.kernels` for the rules. The edge cases (genotype
selection, overlapping records, window edges) are pinned to bcftools' own output in
``tests/unit/test_haplotypes_cases.py`` and checked against pysam's bcftools on random inputs in
``tests/unit/test_haplotypes_oracle.py``. Coordinates are 0-based half-open throughout;
a :class:`~expredict.coords.Region`'s ``anchor`` is the 0-based TSS base.

Output modes
------------
``ragged``
    the exact haplotype of ``[region.start, region.end)``, byte-identical to bcftools.
``center_tss``
    ``L`` bases with the anchor (TSS) base at index ``L // 2`` in every haplotype. Built from one
    ragged window around the anchor, widened until every haplotype has ``L // 2`` bases upstream
    and ``L - L // 2`` downstream of the anchor's haplotype position (the coordinate map). If the
    anchor base is deleted, the next retained base takes its place. ``N`` only past contig ends.
    ``region.start``/``end`` are ignored; ``L`` defaults to ``region.length``.
``left``
    ``L`` bases starting at ``region.start``: the haplotype of a window widened to the right by
    at least the largest possible net deletion, truncated to ``L`` (GenVarLoader ``with_len``).

Policies
--------
``unphased``: ``"ignore"`` (take GT alleles as written, count unphased hets per sample),
``"iupac"`` (bcftools ``-H 1pIu``/``2pIu``: an unphased het SNV becomes its IUPAC code on both
haplotypes; unphased het indels stay as written), ``"error"`` (raise :class:`GenotypeError`).
``ref_mismatch``: ``"error"`` (default; every record touching a requested window is checked
against the FASTA before any kernel runs) or ``"skip"`` (mismatching records are never applied;
counted per haplotype). ``haploid``: ``"ref"`` (bcftools: haplotype 2 of a haploid call is REF)
or ``"duplicate"`` (both haplotypes carry the call; male chrX). ``snv_only``: apply only
equal-length (SNV/MNP) alleles, counting the others as filtered.

Symbolic alleles other than ``<DEL>`` are skipped and counted; ``*``, ``<*>`` and ``<NON_REF>``
are no-ops. Output is uppercase unless the :class:`Reference` keeps case (ALT bases are always
written uppercase).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from expredict.coords import Region
from expredict.errors import GenotypeError, ReferenceMismatchError
from expredict.haplotypes import kernels as K
from expredict.io.genotypes import GenotypeArrays
from expredict.io.reference import Reference

MODES = ("ragged", "center_tss", "left")
STAT_NAMES = (
    "applied",
    "skipped_overlap",
    "missing",
    "skipped_symbolic",
    "skipped_filtered",
    "skipped_ref_mismatch",
)
_COMPLEMENT = bytes.maketrans(b"ACGTRYKMBDHVNacgtrykmbdhvn", b"TGCAYRMKVHDBNtgcayrmkvhdbn")
_IUPAC = {
    frozenset("AC"): "M", frozenset("AG"): "R", frozenset("AT"): "W",
    frozenset("CG"): "S", frozenset("CT"): "Y", frozenset("GT"): "K",
}  # fmt: skip
_EXT_MARGIN = 64


@dataclass
class UniqueHaplotypes:
    """The distinct haplotype sequences of one region and who carries which.

    Attributes
    ----------
    region : Region
        The requested region.
    sequences : list of str
        Distinct sequences (uppercase unless the reference keeps case), minus-strand ones
        reverse-complemented when requested.
    index : ndarray of int32, shape (n_samples, 2)
        ``sequences[index[s, h]]`` is haplotype ``h + 1`` of sample ``s``.
    samples : list of str
        Sample IDs, rows of ``index``.
    stats : dict of str to ndarray of int32, shape (n_samples, 2)
        Per-haplotype counters: ``applied``, ``skipped_overlap``, ``missing``,
        ``skipped_symbolic``, ``skipped_filtered``, ``skipped_ref_mismatch``, ``unphased``
        (unphased het calls of the sample in the window), ``net_length`` (haplotype length minus
        reference length of the built window) and ``tss_index`` (index of the anchor base in the
        output before any reverse complement; ``-1`` without an anchor).
    """

    region: Region
    sequences: list[str]
    index: NDArray[np.int32]
    samples: list[str]
    stats: dict[str, NDArray[np.int32]] = field(default_factory=dict)

    @property
    def n_unique(self) -> int:
        """Number of distinct sequences."""
        return len(self.sequences)

    @property
    def n_haplotypes(self) -> int:
        """Number of haplotypes (2 per sample)."""
        return int(self.index.size)

    @property
    def dedup_factor(self) -> float:
        """Unique / total haplotypes (e.g. 1/39 on the GEUVADIS chr22 6-kb TSS windows)."""
        return self.n_unique / max(self.n_haplotypes, 1)

    def sequence(self, sample: int, hap: int) -> str:
        """Sequence of haplotype ``hap`` (0 or 1) of sample index ``sample``."""
        return self.sequences[int(self.index[sample, hap])]


@dataclass
class RegionHaplotypes:
    """All (not deduplicated) haplotypes of one region; ``sequences[2 * s + h]``."""

    region: Region
    samples: list[str]
    sequences: list[str]
    stats: dict[str, NDArray[np.int32]]

    def sequence(self, sample: int, hap: int) -> str:
        """Sequence of haplotype ``hap`` (0 or 1) of sample index ``sample``."""
        return self.sequences[2 * sample + hap]


@dataclass
class RunStats:
    """Totals over one engine run (pass one to ``iter_unique_haplotypes(run_stats=...)``)."""

    n_regions: int = 0
    n_haplotypes: int = 0
    n_unique: int = 0
    n_bases: int = 0
    unphased_per_sample: NDArray[np.int64] | None = None

    @property
    def dedup_factor(self) -> float:
        """Unique / total haplotypes over the run."""
        return self.n_unique / max(self.n_haplotypes, 1)

    def __str__(self) -> str:
        f = self.dedup_factor
        inv = f"1/{1 / f:.1f}" if f > 0 else "n/a"
        return (
            f"{self.n_regions} regions, {self.n_haplotypes} haplotypes, {self.n_unique} unique "
            f"(dedup factor {f:.4f} = {inv})"
        )


# --------------------------------------------------------------------------------------------
# preparation: per-allele kinds, policies, validation
# --------------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    """Arrays handed to the kernels for one ``GenotypeArrays`` under one set of policies."""

    g: GenotypeArrays
    starts: NDArray[np.int64]
    ref_ends: NDArray[np.int64]
    allele_first: NDArray[np.int64]
    allele_offsets: NDArray[np.int64]
    allele_bytes: NDArray[np.uint8]
    allele_kind: NDArray[np.int8]
    allele_trim: NDArray[np.uint8]
    genotypes: NDArray[np.int8]
    phased: NDArray[np.bool_]
    var_skip: NDArray[np.uint8]
    checked: NDArray[np.bool_]
    max_span: int
    max_allele: int
    cum_del: NDArray[np.int64]
    contig: str
    ref_mismatch: str


def _allele_tables(
    allele_first: NDArray[np.int64], allele_offsets: NDArray[np.int64], allele_bytes: NDArray[np.uint8]
) -> tuple[NDArray[np.int8], NDArray[np.uint8], NDArray[np.uint8]]:
    n_al = allele_offsets.shape[0] - 1
    kind = np.zeros(n_al, np.int8)
    trim = np.zeros(n_al, np.uint8)
    is_snv = np.zeros(n_al, np.uint8)
    if allele_first.shape[0] > 1:
        K.classify_alleles(allele_first, allele_offsets, allele_bytes, kind, trim, is_snv)
    return kind, trim, is_snv


def _iupac_alleles(g: GenotypeArrays) -> GenotypeArrays:
    """Rewrite unphased het SNV calls as IUPAC alleles on both haplotypes (bcftools ``1pIu``)."""
    n, nv = g.n_samples, g.n_variants
    if n == 0 or nv == 0:
        return g
    gt = g.genotypes.reshape(n, 2, nv)
    g0, g1 = gt[:, 0, :].astype(np.int64), gt[:, 1, :].astype(np.int64)
    lens = np.diff(g.allele_offsets)
    single = lens == 1
    n_al = np.diff(g.allele_first)
    het = (~g.phased) & (g0 >= 0) & (g1 >= 0) & (g0 != g1)
    if not het.any():
        return g
    first = g.allele_first[:-1][None, :]
    a0 = np.where(het, first + np.minimum(g0, n_al[None, :] - 1), 0)
    a1 = np.where(het, first + np.minimum(g1, n_al[None, :] - 1), 0)
    het &= single[a0] & single[a1]
    if not het.any():
        return g
    b0 = g.allele_bytes[g.allele_offsets[a0]]
    b1 = g.allele_bytes[g.allele_offsets[a1]]
    acgt = np.isin(b0, np.frombuffer(b"ACGT", np.uint8)) & np.isin(b1, np.frombuffer(b"ACGT", np.uint8))
    het &= acgt
    if not het.any():
        return g
    alleles = [g.alleles(v) for v in range(nv)]
    new_gt = gt.copy()
    s_idx, v_idx = np.nonzero(het)
    for s, v in zip(s_idx.tolist(), v_idx.tolist(), strict=True):
        code = _IUPAC[frozenset((chr(b0[s, v]), chr(b1[s, v])))]
        als = alleles[v]
        if code not in als[1:]:
            als.append(code)
        k = als.index(code, 1)
        new_gt[s, 0, v] = k
        new_gt[s, 1, v] = k
    counts = np.array([len(a) for a in alleles], np.int64)
    first_new = np.zeros(nv + 1, np.int64)
    np.cumsum(counts, out=first_new[1:])
    flat = [a.encode() for als in alleles for a in als]
    offs = np.zeros(len(flat) + 1, np.int64)
    np.cumsum(np.fromiter((len(a) for a in flat), np.int64, len(flat)), out=offs[1:])
    buf = np.frombuffer(b"".join(flat), np.uint8).copy()
    return GenotypeArrays(
        g.path, g.contig, list(g.samples), g.starts, g.ref_ends, g.ids, first_new, offs, buf,
        np.ascontiguousarray(new_gt.reshape(2 * n, nv)), g.phased,
    )  # fmt: skip


def _prepare(g: GenotypeArrays, *, unphased: str, ref_mismatch: str, snv_only: bool, haploid: str) -> _Prepared:
    if unphased not in ("ignore", "iupac", "error"):
        msg = f"unphased must be 'ignore', 'iupac' or 'error'; got {unphased!r}"
        raise ValueError(msg)
    if ref_mismatch not in ("error", "skip", "skip_and_count"):
        msg = f"ref_mismatch must be 'error' or 'skip'; got {ref_mismatch!r}"
        raise ValueError(msg)
    if haploid not in ("ref", "duplicate"):
        msg = f"haploid must be 'ref' or 'duplicate'; got {haploid!r}"
        raise ValueError(msg)
    phased = g.phased
    if unphased == "iupac":
        g = _iupac_alleles(g)
    genotypes = np.ascontiguousarray(g.genotypes, dtype=np.int8)
    if haploid == "duplicate" and genotypes.size:
        h2 = genotypes[1::2]
        fix = h2 == -2
        if fix.any():
            genotypes = genotypes.copy()
            genotypes[1::2] = np.where(fix, genotypes[0::2], h2)
    allele_first = np.ascontiguousarray(g.allele_first, np.int64)
    allele_offsets = np.ascontiguousarray(g.allele_offsets, np.int64)
    allele_bytes = np.ascontiguousarray(g.allele_bytes, np.uint8)
    kind, trim, is_snv = _allele_tables(allele_first, allele_offsets, allele_bytes)
    if snv_only:
        kind = np.where((kind == K.KIND_SEQ) & (is_snv == 0), K.KIND_NOOP, kind).astype(np.int8)
        kind = np.where(kind == K.KIND_DEL, K.KIND_NOOP, kind).astype(np.int8)
    starts = np.ascontiguousarray(g.starts, np.int64)
    ref_ends = np.ascontiguousarray(g.ref_ends, np.int64)
    nv = starts.shape[0]
    lens = np.diff(allele_offsets)
    if nv:
        spans = ref_ends - starts
        max_span = int(spans.max())
        # largest possible net deletion per record (any allele), for widening fixed-length windows
        al_var = np.repeat(np.arange(nv), np.diff(allele_first))
        alt_len = np.where(kind == K.KIND_DEL, 1, lens)
        loss = np.maximum(spans[al_var] - alt_len, 0)
        maxdel = np.zeros(nv, np.int64)
        np.maximum.at(maxdel, al_var, loss)
        max_allele = int(lens.max())
    else:
        max_span, max_allele, maxdel = 0, 0, np.zeros(0, np.int64)
    cum_del = np.zeros(nv + 1, np.int64)
    np.cumsum(maxdel, out=cum_del[1:])
    return _Prepared(
        g, starts, ref_ends, allele_first, allele_offsets, allele_bytes, kind, trim, genotypes,
        np.ascontiguousarray(phased), np.zeros(nv, np.uint8), np.zeros(nv, bool), max_span, max_allele,
        cum_del, g.contig, "skip" if ref_mismatch == "skip_and_count" else ref_mismatch,
    )  # fmt: skip


@dataclass
class _Window:
    region: Region
    mode: str
    start: int  # built window, clipped to the contig
    end: int
    anchor: int  # genomic anchor or -1
    lead_n: int  # N bases before ``start`` (window clipped at the contig start)
    length: int  # fixed output length, 0 for ragged
    vlo: int = 0
    vhi: int = 0


def _variant_range(prep: _Prepared, start: int, end: int) -> tuple[int, int]:
    lo = int(np.searchsorted(prep.starts, start - prep.max_span, side="left"))
    hi = int(np.searchsorted(prep.starts, end, side="left"))
    while lo < hi and prep.ref_ends[lo] <= start:
        lo += 1
    return lo, hi


def _max_loss(prep: _Prepared, start: int, end: int) -> int:
    lo = int(np.searchsorted(prep.starts, start - prep.max_span, side="left"))
    hi = int(np.searchsorted(prep.starts, end, side="left"))
    return int(prep.cum_del[hi] - prep.cum_del[lo])


def _windows(prep: _Prepared, reference: Reference, regions: Sequence[Region], mode: str, length: int | None):
    if mode not in MODES:
        msg = f"mode must be one of {MODES}; got {mode!r}"
        raise ValueError(msg)
    out: list[_Window] = []
    bounds: dict[str, tuple[int, int]] = {}
    g_record = reference.resolve(prep.contig).record if prep.contig else None
    for r in regions:
        if r.contig not in bounds:
            if g_record is not None and reference.resolve(r.contig).record != g_record:
                msg = (
                    f"region {r.name or r.ucsc()} is on {r.contig} but the genotypes are for {prep.contig}; "
                    f"read the genotypes of each contig separately (read_genotypes(path, contig))"
                )
                raise ValueError(msg)
            bounds[r.contig] = reference.contig_bounds(r.contig)
        cb0, cb1 = bounds[r.contig]
        if mode == "ragged":
            if r.start < cb0 or r.end > cb1:
                msg = (
                    f"region {r.name or r.ucsc()} {r.ucsc()} runs off the reference ({r.contig}:{cb0 + 1}-{cb1}); "
                    f"use a fixed-length mode (N past contig ends) or drop it"
                )
                raise ReferenceMismatchError(msg)
            anchor = r.anchor if r.anchor is not None else -1
            w = _Window(r, mode, r.start, r.end, anchor, 0, 0)
        else:
            L = int(length if length is not None else r.length)
            if L <= 0:
                msg = f"region {r.name or r.ucsc()}: fixed length must be > 0; got {L}"
                raise ValueError(msg)
            if mode == "center_tss":
                if r.anchor is None:
                    msg = f"region {r.name or r.ucsc()} has no anchor (TSS); center_tss needs Region.anchor"
                    raise ValueError(msg)
                a = int(r.anchor)
                up, dn = L // 2, L - L // 2
                extra = _EXT_MARGIN + prep.max_allele
                for _ in range(50):
                    lo, hi = a - up - extra, a + dn + extra
                    loss = _max_loss(prep, lo, hi)
                    if loss + _EXT_MARGIN + prep.max_allele <= extra:
                        break
                    extra = loss + _EXT_MARGIN + prep.max_allele
                anchor = a
            else:
                a = r.start
                lo = a
                extra = _EXT_MARGIN + prep.max_allele
                for _ in range(50):
                    hi = a + L + extra
                    loss = _max_loss(prep, lo, hi)
                    if loss + _EXT_MARGIN + prep.max_allele <= extra:
                        break
                    extra = loss + _EXT_MARGIN + prep.max_allele
                anchor = r.anchor if r.anchor is not None else -1
            lead = max(0, cb0 - lo)
            ws, we = max(lo, cb0), min(hi, cb1)
            if we < ws:
                ws = we = min(max(a, cb0), cb1)
            w = _Window(r, mode, ws, we, anchor, lead, L)
        w.vlo, w.vhi = _variant_range(prep, w.start, w.end)
        out.append(w)
    return out


def _validate(prep: _Prepared, reference: Reference, windows: Sequence[_Window], unphased: str) -> None:
    """REF-vs-FASTA (and unphased ``error``) checks over every record touching ``windows``."""
    g = prep.g
    ranges = sorted((w.vlo, w.vhi) for w in windows if w.vhi > w.vlo)
    merged: list[list[int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 256:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    if not merged:
        return
    ref_len = np.diff(prep.allele_offsets)[prep.allele_first[:-1]]
    cb0, cb1 = reference.contig_bounds(prep.contig)
    for lo, hi in merged:
        todo = ~prep.checked[lo:hi]
        if todo.any():
            s0 = int(prep.starts[lo])
            s1 = int((prep.starts[lo:hi] + ref_len[lo:hi]).max())
            f0, f1 = max(s0, cb0), min(s1, cb1)
            chunk = reference.fetch(prep.contig, f0, max(f0, f1)).upper().encode("ascii")
            arr = np.frombuffer(chunk, np.uint8)
            K.check_ref(arr, f0, prep.starts, prep.allele_first, prep.allele_offsets, prep.allele_bytes, lo, hi,
                        prep.var_skip)  # fmt: skip
            prep.checked[lo:hi] = True
        if unphased == "error" and g.n_samples:
            gt = prep.genotypes[:, lo:hi].reshape(g.n_samples, 2, hi - lo)
            unph = (~prep.phased[:, lo:hi]) & (gt[:, 0] >= 0) & (gt[:, 1] >= 0) & (gt[:, 0] != gt[:, 1])
            if unph.any():
                s, v = (int(x[0]) for x in np.nonzero(unph))
                msg = (
                    f"{g.path}: {int(unph.sum())} unphased heterozygous call(s), e.g. {g.record_label(lo + v)} "
                    f"in sample {g.samples[s]}; phase the VCF (e.g. SHAPEIT/Eagle) or use unphased='ignore'/'iupac'"
                )
                raise GenotypeError(msg)
    if prep.ref_mismatch == "error":
        for lo, hi in merged:
            bad = np.nonzero(prep.var_skip[lo:hi])[0]
            if bad.size:
                n_bad = int(sum(int(prep.var_skip[a:b].sum()) for a, b in merged))
                v = lo + int(bad[0])
                s = int(prep.starts[v])
                ref_allele = g.alleles(v)[0]
                fa = reference.fetch(prep.contig, s, s + len(ref_allele), pad=True).upper()
                msg = (
                    f"{g.path}: REF does not match the reference FASTA at {n_bad} record(s), first "
                    f"{g.record_label(v)} (FASTA has {fa}); check that the VCF and FASTA use the same "
                    f"assembly, or pass ref_mismatch='skip' to skip and count such records"
                )
                raise ReferenceMismatchError(msg)


# --------------------------------------------------------------------------------------------
# threads: the kernels release the GIL, so a thread pool over contiguous pair ranges scales
# --------------------------------------------------------------------------------------------

_POOLS: dict[int, ThreadPoolExecutor] = {}


def resolve_threads(threads: int | None) -> int:
    """``None`` -> all cores (``os.cpu_count()``); otherwise ``threads`` (>= 1)."""
    if threads is None:
        return max(1, os.cpu_count() or 1)
    if int(threads) < 1:
        msg = f"threads must be >= 1; got {threads}"
        raise ValueError(msg)
    return int(threads)


def _pool(threads: int) -> ThreadPoolExecutor:
    pool = _POOLS.get(threads)
    if pool is None:
        pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="expredict-hap")
    return pool


def _ranges(cum: NDArray[np.int64], parts: int) -> list[tuple[int, int]]:
    """Split items ``0 .. len(cum) - 2`` (cumulative weights ``cum``) into <= ``parts`` ranges of similar weight."""
    n = cum.shape[0] - 1
    if n <= 0:
        return []
    if parts <= 1 or n == 1:
        return [(0, n)]
    total = int(cum[-1] - cum[0])
    if total <= 0:
        cuts = np.linspace(0, n, parts + 1).astype(np.int64)
    else:
        targets = cum[0] + (np.arange(1, parts, dtype=np.float64) * (total / parts))
        cuts = np.concatenate([[0], np.searchsorted(cum[1:], targets, side="left") + 1, [n]])
        cuts = np.minimum(np.maximum.accumulate(cuts), n)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def _parallel(fn: Callable[[int, int], object], cum: NDArray[np.int64], threads: int) -> None:
    """Run ``fn(lo, hi)`` over ranges of the items of ``cum`` (cumulative weights), on ``threads`` threads."""
    parts = _ranges(cum, 1 if threads <= 1 else 4 * threads)
    if threads <= 1 or len(parts) <= 1:
        for lo, hi in parts:
            fn(lo, hi)
        return
    for f in [_pool(threads).submit(fn, lo, hi) for lo, hi in parts]:
        f.result()


# --------------------------------------------------------------------------------------------
# kernel batches
# --------------------------------------------------------------------------------------------


@dataclass
class _Batch:
    """Kernel output for a batch of windows: pair ``p`` is (``pair_win[p]``, genotype row ``pair_hap[p]``)."""

    windows: list[_Window]
    pair_win: NDArray[np.int64]
    pair_hap: NDArray[np.int64]
    out: NDArray[np.uint8]
    out_off: NDArray[np.int64]
    anchor_out: NDArray[np.int64]
    stats: NDArray[np.int32]
    fixed: NDArray[np.uint8] | None
    fixed_off: NDArray[np.int64] | None

    def sequence_bytes(self, p: int) -> bytes:
        """Bytes of pair ``p`` (fixed-length projection if any, else ragged)."""
        if self.fixed is not None:
            return self.fixed[self.fixed_off[p] : self.fixed_off[p + 1]].tobytes()
        return self.out[self.out_off[p] : self.out_off[p + 1]].tobytes()

    def source(self) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
        """``(buffer, offsets)`` of the output sequences: pair ``p`` is ``buffer[offsets[p] : offsets[p + 1]]``."""
        if self.fixed is not None and self.fixed_off is not None:
            return self.fixed, self.fixed_off
        return self.out, self.out_off


def _window_refs(
    prep: _Prepared, reference: Reference, windows: Sequence[_Window]
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    pieces = [reference.fetch(prep.contig if prep.contig else w.region.contig, w.start, w.end) for w in windows]
    offs = np.zeros(len(pieces) + 1, np.int64)
    np.cumsum(np.fromiter((len(p) for p in pieces), np.int64, len(pieces)), out=offs[1:])
    buf = np.frombuffer("".join(pieces).encode("ascii"), np.uint8)
    return buf, offs


def _run_batch(
    prep: _Prepared,
    reference: Reference,
    windows: list[_Window],
    pair_win: NDArray[np.int64],
    pair_hap: NDArray[np.int64],
    mode: str,
    scratch: dict[str, NDArray[np.uint8]] | None = None,
    threads: int = 1,
) -> _Batch:
    """Length pass, fill pass and (fixed modes) projection for one batch of pairs.

    ``scratch`` keeps output buffers between batches of one run (avoids re-faulting fresh pages);
    the returned arrays are then only valid until the next call with the same ``scratch``.
    With ``threads > 1`` each pass runs over contiguous pair ranges on a thread pool (every pair
    writes only its own slots, so the output is identical to one thread).
    """
    ref, ref_off = _window_refs(prep, reference, windows)
    win_start = np.array([w.start for w in windows], np.int64)
    win_end = np.array([w.end for w in windows], np.int64)
    win_vlo = np.array([w.vlo for w in windows], np.int64)
    win_vhi = np.array([w.vhi for w in windows], np.int64)
    win_anchor = np.array([w.anchor for w in windows], np.int64)
    win_ref_off = ref_off[:-1].copy()
    n_pair = pair_win.shape[0]
    lengths = np.zeros(n_pair, np.int64)
    anchor_out = np.zeros(n_pair, np.int64)
    stats = np.zeros((n_pair, K.N_STATS), np.int32)
    common = (
        prep.starts, prep.ref_ends, prep.allele_first, prep.allele_offsets, prep.allele_bytes, prep.allele_kind,
        prep.allele_trim, prep.var_skip, prep.genotypes,
    )  # fmt: skip
    wref = (ref, win_ref_off, win_start, win_end, win_vlo, win_vhi, win_anchor)
    # work per pair ~ window length + records: balance the ranges on it
    work = np.zeros(n_pair + 1, np.int64)
    if n_pair:
        np.cumsum((win_end - win_start + 8 * (win_vhi - win_vlo) + 64)[pair_win], out=work[1:])

    def lengths_range(lo: int, hi: int) -> None:
        K.haplotype_lengths(*wref, pair_win[lo:hi], pair_hap[lo:hi], *common, lengths[lo:hi], anchor_out[lo:hi],
                            stats[lo:hi])  # fmt: skip

    _parallel(lengths_range, work, threads)
    out_off = np.zeros(n_pair + 1, np.int64)
    np.cumsum(lengths, out=out_off[1:])
    out = _buffer(scratch, "out", int(out_off[-1]))

    def fill_range(lo: int, hi: int) -> None:
        K.haplotype_fill(*wref, pair_win[lo:hi], pair_hap[lo:hi], *common, out, out_off[lo:hi])

    _parallel(fill_range, out_off + work, threads)
    fixed = fixed_off = None
    if mode != "ragged":
        flen = np.array([w.length for w in windows], np.int64)[pair_win]
        lead = np.array([w.lead_n for w in windows], np.int64)[pair_win]
        fixed_off = np.zeros(n_pair + 1, np.int64)
        np.cumsum(flen, out=fixed_off[1:])
        if mode == "center_tss":
            start_virtual = lead + anchor_out - flen // 2
        else:
            start_virtual = np.zeros(n_pair, np.int64)
        fixed = _buffer(scratch, "fixed", int(fixed_off[-1]))

        def project_range(lo: int, hi: int) -> None:
            K.project_fixed(out, out_off[lo : hi + 1], start_virtual[lo:hi], lead[lo:hi], fixed_off[lo : hi + 1], fixed)

        _parallel(project_range, fixed_off, threads)
    return _Batch(windows, pair_win, pair_hap, out, out_off, anchor_out, stats, fixed, fixed_off)


def _buffer(scratch: dict[str, NDArray[np.uint8]] | None, key: str, n: int) -> NDArray[np.uint8]:
    if scratch is None:
        return np.empty(n, np.uint8)
    buf = scratch.get(key)
    if buf is None or buf.shape[0] < n:
        buf = scratch[key] = np.empty(max(n, int(1.25 * buf.shape[0]) if buf is not None else n), np.uint8)
    return buf[:n]


def _batches(windows: list[_Window], n_hap: int, max_pairs: int, max_bytes: int) -> Iterator[list[_Window]]:
    cur: list[_Window] = []
    pairs = 0
    size = 0
    for w in windows:
        wbytes = (w.end - w.start + w.length) * n_hap
        if cur and (pairs + n_hap > max_pairs or size + wbytes > max_bytes):
            yield cur
            cur, pairs, size = [], 0, 0
        cur.append(w)
        pairs += n_hap
        size += wbytes
    if cur:
        yield cur


def _unphased_counts(prep: _Prepared, w: _Window) -> NDArray[np.int32]:
    n = prep.g.n_samples
    if w.vhi <= w.vlo or n == 0:
        return np.zeros(n, np.int32)
    gt = prep.genotypes[:, w.vlo : w.vhi].reshape(n, 2, w.vhi - w.vlo)
    unph = (~prep.phased[:, w.vlo : w.vhi]) & (gt[:, 0] >= 0) & (gt[:, 1] >= 0) & (gt[:, 0] != gt[:, 1])
    return unph.sum(axis=1).astype(np.int32)


def _finish_strings(seqs: list[bytes], w: _Window, reverse_complement_minus: bool) -> list[str]:
    if reverse_complement_minus and w.region.strand == "-":
        return [s.translate(_COMPLEMENT)[::-1].decode("ascii") for s in seqs]
    return [s.decode("ascii") for s in seqs]


def _stats_dict(
    prep: _Prepared, w: _Window, stats: NDArray[np.int32], lengths: NDArray[np.int64], anchors: NDArray[np.int64]
) -> dict[str, NDArray[np.int32]]:
    """Per-haplotype stats dict from per-haplotype rows (hap-major order, 2 * n_samples rows)."""
    n = prep.g.n_samples
    d = {name: np.ascontiguousarray(stats[:, i].reshape(n, 2)) for i, name in enumerate(STAT_NAMES)}
    up = _unphased_counts(prep, w)
    d["unphased"] = np.stack([up, up], axis=1)
    d["net_length"] = (lengths - (w.end - w.start)).astype(np.int32).reshape(n, 2)
    tss = np.full_like(anchors, -1)
    if w.anchor >= 0 and w.start <= w.anchor < w.end:
        if w.mode == "ragged":
            tss = anchors
        elif w.mode == "center_tss":
            tss = np.full_like(anchors, w.length // 2)
        else:
            tss = np.where(anchors + w.lead_n < w.length, anchors + w.lead_n, -1)
    d["tss_index"] = tss.astype(np.int32).reshape(n, 2)
    return d


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def iter_unique_haplotypes(
    genotypes: GenotypeArrays,
    reference: Reference,
    regions: Sequence[Region],
    *,
    mode: str = "center_tss",
    length: int | None = None,
    reverse_complement_minus: bool = False,
    unphased: str = "ignore",
    ref_mismatch: str = "error",
    snv_only: bool = False,
    haploid: str = "ref",
    run_stats: RunStats | None = None,
    max_pairs: int = 16384,
    max_bytes: int = 128 << 20,
    threads: int | None = None,
) -> Iterator[UniqueHaplotypes]:
    """Yield the distinct haplotypes of each region, in region order.

    Haplotypes are grouped by their genotype row over the window's records before anything is
    built, so each distinct allele combination is materialised once; identical sequences from
    different combinations are merged afterwards. All records touching any region are
    validated (REF vs FASTA, unphased policy) before the first kernel runs.

    Parameters
    ----------
    genotypes : GenotypeArrays
        One contig, all samples (see :func:`expredict.io.genotypes.read_genotypes`).
    reference : Reference
        FASTA; contig aliases resolve VCF names (``chr22``) to FASTA names (``22``).
    regions : sequence of Region
        0-based half-open regions on the genotypes' contig; ``anchor`` = 0-based TSS.
    mode : {"center_tss", "ragged", "left"}, default "center_tss"
        Output projection (module docstring).
    length : int, optional
        Fixed output length for ``center_tss``/``left``; default ``region.length``.
    reverse_complement_minus : bool, default False
        Reverse-complement regions with ``strand == "-"`` after cutting.
    unphased, ref_mismatch, haploid, snv_only
        Policies (module docstring).
    run_stats : RunStats, optional
        Accumulates totals (dedup factor) over the run.
    max_pairs, max_bytes : int
        Batch size limits for the kernels (memory bound).
    threads : int, optional
        Threads for the kernels (default: all cores, ``os.cpu_count()``); the output is
        identical for any value.
    """
    prep = _prepare(genotypes, unphased=unphased, ref_mismatch=ref_mismatch, snv_only=snv_only, haploid=haploid)
    windows = _windows(prep, reference, regions, mode, length)
    _validate(prep, reference, windows, unphased)
    n = genotypes.n_samples
    nthreads = resolve_threads(threads)
    if run_stats is not None and run_stats.unphased_per_sample is None:
        run_stats.unphased_per_sample = np.zeros(n, np.int64)
    for gb in _iter_grouped(prep, reference, windows, mode, max_pairs, max_bytes, nthreads, dedup=True):
        b = gb.batch
        src, src_off = b.source()
        lengths = np.diff(b.out_off)
        for wi, w in enumerate(gb.windows):
            p0, p1 = int(gb.win_p0[wi]), int(gb.win_p0[wi + 1])
            inverse = gb.inverse[wi]
            remap = gb.uid[p0:p1]
            new = np.flatnonzero(gb.is_new[p0:p1]) + p0
            uniq = [src[src_off[q] : src_off[q + 1]].tobytes() for q in new.tolist()]
            index = remap[inverse].reshape(n, 2) if n else np.zeros((0, 2), np.int32)
            stats = gb.stats(prep, wi, lengths)
            u = UniqueHaplotypes(w.region, _finish_strings(uniq, w, reverse_complement_minus), index,
                                 list(genotypes.samples), stats)  # fmt: skip
            if run_stats is not None:
                n_bases = int((src_off[new + 1] - src_off[new]).sum())
                _account(run_stats, u.n_haplotypes, u.n_unique, n_bases, stats["unphased"][:, 0])
            yield u


def _account(run_stats: RunStats, n_haplotypes: int, n_unique: int, n_bases: int, unphased: NDArray[np.int32]) -> None:
    run_stats.n_regions += 1
    run_stats.n_haplotypes += n_haplotypes
    run_stats.n_unique += n_unique
    run_stats.n_bases += n_bases
    if run_stats.unphased_per_sample is not None and run_stats.unphased_per_sample.shape[0]:
        run_stats.unphased_per_sample += unphased


@dataclass
class _Grouped:
    """One kernel batch, haplotypes grouped by genotype row: window ``i``'s pairs are ``win_p0[i] .. win_p0[i + 1] - 1``.

    ``inverse[i][row]`` is the pair (relative to ``win_p0[i]``) that builds genotype row ``row``;
    with ``dedup``, ``uid[p]`` is pair ``p``'s distinct-sequence id within its window (first
    appearance order) and ``is_new[p]`` marks the first pair of each id.
    """

    windows: list[_Window]
    batch: _Batch
    win_p0: NDArray[np.int64]
    inverse: list[NDArray[np.int64]]
    uid: NDArray[np.int32]
    is_new: NDArray[np.uint8]

    def stats(self, prep: _Prepared, wi: int, lengths: NDArray[np.int64]) -> dict[str, NDArray[np.int32]]:
        """Per-haplotype stats dict of window ``wi`` (``lengths``: ragged lengths of the batch's pairs)."""
        w = self.windows[wi]
        p0, p1 = int(self.win_p0[wi]), int(self.win_p0[wi + 1])
        inverse = self.inverse[wi]
        b = self.batch
        st = b.stats[p0:p1][inverse]
        st[:, K.ST_MISSING] = (prep.genotypes[:, w.vlo : w.vhi] == -1).sum(axis=1).astype(np.int32)
        return _stats_dict(prep, w, st, lengths[p0:p1][inverse], b.anchor_out[p0:p1][inverse])


def _dedup(
    src: NDArray[np.uint8], src_off: NDArray[np.int64], win_p0: NDArray[np.int64], threads: int
) -> tuple[NDArray[np.int32], NDArray[np.uint8]]:
    """Distinct sequences per window (see :func:`kernels.dedup_windows`): ``(uid, is_new)`` per pair."""
    n_pair = src_off.shape[0] - 1
    hashes = np.empty(n_pair, np.uint64)
    uid = np.zeros(n_pair, np.int32)
    is_new = np.zeros(n_pair, np.uint8)

    def hash_range(lo: int, hi: int) -> None:
        K.hash_sequences(src, src_off[lo : hi + 1], hashes[lo:hi])

    def dedup_range(lo: int, hi: int) -> None:
        K.dedup_windows(src, src_off, hashes, win_p0[lo : hi + 1], uid, is_new)

    _parallel(hash_range, src_off, threads)
    _parallel(dedup_range, src_off[win_p0] + win_p0, threads)
    return uid, is_new


def _iter_grouped(
    prep: _Prepared,
    reference: Reference,
    windows: list[_Window],
    mode: str,
    max_pairs: int,
    max_bytes: int,
    threads: int,
    *,
    dedup: bool,
) -> Iterator[_Grouped]:
    """Kernel batches of a run: one pair per distinct genotype row per window, optionally deduplicated.

    The yielded arrays are reused by the next batch (consume each before advancing).
    """
    n_hap = 2 * prep.g.n_samples
    scratch: dict[str, NDArray[np.uint8]] = {}
    for batch_windows in _batches(windows, n_hap, max_pairs, max_bytes):
        nw = len(batch_windows)

        def group(w: _Window) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
            return _group_rows(prep.genotypes, w.vlo, w.vhi, n_hap)

        if threads > 1 and nw > 1:
            keys = list(_pool(threads).map(group, batch_windows))
        else:
            keys = [group(w) for w in batch_windows]
        counts = np.fromiter((rep.shape[0] for rep, _ in keys), np.int64, nw)
        win_p0 = np.zeros(nw + 1, np.int64)
        np.cumsum(counts, out=win_p0[1:])
        pair_win = np.repeat(np.arange(nw, dtype=np.int64), counts)
        pair_hap = np.concatenate([rep for rep, _ in keys]) if nw else np.zeros(0, np.int64)
        b = _run_batch(prep, reference, batch_windows, pair_win, pair_hap, mode, scratch, threads)
        n_pair = pair_win.shape[0]
        if dedup and n_pair:
            uid, is_new = _dedup(*b.source(), win_p0, threads)
        else:
            uid, is_new = np.zeros(n_pair, np.int32), np.ones(n_pair, np.uint8)
        yield _Grouped(batch_windows, b, win_p0, [inv for _, inv in keys], uid, is_new)


def _group_rows(genotypes: NDArray[np.int8], vlo: int, vhi: int, n_hap: int) -> tuple[NDArray[np.int64], NDArray]:
    """Representative haplotype row per distinct allele vector over records ``vlo..vhi-1``, and the inverse map."""
    if n_hap == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = vhi - vlo
    if k == 0:
        return np.zeros(1, np.int64), np.zeros(n_hap, np.int64)
    key = np.ascontiguousarray(np.maximum(genotypes[:, vlo:vhi], 0))
    void = key.view(np.dtype((np.void, k))).reshape(n_hap)
    _, first, inverse = np.unique(void, return_index=True, return_inverse=True)
    return first.astype(np.int64), inverse.reshape(-1)


def build_haplotypes(
    genotypes: GenotypeArrays,
    reference: Reference,
    regions: Sequence[Region],
    *,
    mode: str = "ragged",
    length: int | None = None,
    reverse_complement_minus: bool = False,
    unphased: str = "ignore",
    ref_mismatch: str = "error",
    snv_only: bool = False,
    haploid: str = "ref",
    threads: int | None = None,
) -> list[RegionHaplotypes]:
    """Every (region, sample, haplotype) sequence, not deduplicated (tests, CLI, small inputs).

    Same parameters as :func:`iter_unique_haplotypes` (default ``mode="ragged"``); returns one
    :class:`RegionHaplotypes` per region with ``sequences[2 * sample + hap]``. ``threads``: kernel
    threads (default all cores; identical output for any value).
    """
    prep = _prepare(genotypes, unphased=unphased, ref_mismatch=ref_mismatch, snv_only=snv_only, haploid=haploid)
    windows = _windows(prep, reference, regions, mode, length)
    _validate(prep, reference, windows, unphased)
    n_hap = 2 * genotypes.n_samples
    nthreads = resolve_threads(threads)
    result: list[RegionHaplotypes] = []
    scratch: dict[str, NDArray[np.uint8]] = {}
    for batch_windows in _batches(windows, n_hap, 16384, 128 << 20):
        nw = len(batch_windows)
        pair_win = np.repeat(np.arange(nw, dtype=np.int64), n_hap)
        pair_hap = np.tile(np.arange(n_hap, dtype=np.int64), nw)
        b = _run_batch(prep, reference, batch_windows, pair_win, pair_hap, mode, scratch, nthreads)
        lengths = np.diff(b.out_off)
        for wi, w in enumerate(batch_windows):
            sl = slice(wi * n_hap, (wi + 1) * n_hap)
            seqs = _finish_strings([b.sequence_bytes(p) for p in range(sl.start, sl.stop)], w, reverse_complement_minus)
            stats = _stats_dict(prep, w, b.stats[sl], lengths[sl], b.anchor_out[sl])
            result.append(RegionHaplotypes(w.region, list(genotypes.samples), seqs, stats))
    return result


def tile_regions(region: Region, tile_length: int) -> list[Region]:
    """Split ``region`` into consecutive tiles ``[start + k * T, start + (k + 1) * T)`` covering it.

    The last tile may run past ``region.end``; each tile is named ``NAME:tileK`` and anchored at
    its own start (use ``mode="left", length=T`` so every tile is exactly ``T`` bp).
    """
    if tile_length <= 0:
        msg = f"tile_length must be > 0; got {tile_length}"
        raise ValueError(msg)
    tiles = []
    for k, s in enumerate(range(region.start, max(region.end, region.start + 1), tile_length)):
        tiles.append(Region(region.contig, s, s + tile_length, f"{region.name}:tile{k}", s, region.strand))
    return tiles


def iter_unique_tiles(
    genotypes: GenotypeArrays,
    reference: Reference,
    regions: Iterable[Region],
    tile_length: int,
    **kwargs: object,
) -> Iterator[UniqueHaplotypes]:
    """Tile mode: each region split into fixed ``tile_length`` tiles, deduplicated per tile.

    Tiles are built with ``mode="left"`` and ``length=tile_length`` (exactly ``T`` bp each,
    extended into real haplotype sequence at the right, ``N`` only past the contig end).
    Keyword arguments go to :func:`iter_unique_haplotypes` (e.g. ``run_stats``).
    """
    tiles = [t for r in regions for t in tile_regions(r, tile_length)]
    kwargs = {k: v for k, v in kwargs.items() if k not in ("mode", "length")}
    yield from iter_unique_haplotypes(genotypes, reference, tiles, mode="left", length=tile_length, **kwargs)  # type: ignore[arg-type]


def haplotype_blocks(
    genotypes: GenotypeArrays,
    reference: Reference,
    region: Region,
    sample: int,
    hap: int,
    **policies: object,
) -> NDArray[np.int64]:
    """Applied records of one ragged haplotype as rows ``(ref_start, ref_end, hap_start, hap_end, anchor)``.

    ``ref_*``: consumed genomic interval (0-based half-open); ``hap_*``: indices of the written
    allele bytes in the haplotype of ``[region.start, region.end)``; ``anchor``: the first
    written byte is the record's shared first base (REF[0] == ALT[0]).
    """
    prep = _prepare(
        genotypes,
        unphased=str(policies.get("unphased", "ignore")),
        ref_mismatch=str(policies.get("ref_mismatch", "error")),
        snv_only=bool(policies.get("snv_only", False)),
        haploid=str(policies.get("haploid", "ref")),
    )
    (w,) = _windows(prep, reference, [region], "ragged", None)
    _validate(prep, reference, [w], str(policies.get("unphased", "ignore")))
    blocks = np.zeros((max(w.vhi - w.vlo, 1), 5), np.int64)
    nb = K.haplotype_blocks(
        w.end - w.start, w.start, w.end, w.vlo, w.vhi, 2 * sample + hap, prep.starts, prep.ref_ends,
        prep.allele_first, prep.allele_offsets, prep.allele_bytes, prep.allele_kind, prep.allele_trim,
        prep.var_skip, prep.genotypes, blocks,
    )  # fmt: skip
    return blocks[:nb]


def coordinate_map(
    genotypes: GenotypeArrays, reference: Reference, region: Region, sample: int, hap: int, **policies: object
) -> NDArray[np.int64]:
    """Reference-to-haplotype map of one ragged haplotype: ``int64[region.length]``.

    Entry ``i`` is the haplotype index of reference base ``region.start + i``, or ``-1`` where
    that base is deleted or replaced by a length-changing allele (as in a chain file's gaps);
    a base under an equal-length allele maps to the substituted base.
    """
    blocks = haplotype_blocks(genotypes, reference, region, sample, hap, **policies)
    out = np.full(region.length, -1, np.int64)
    ref_pos = region.start
    hap_pos = 0
    for rs, re_, hs, he, anc in blocks.tolist():
        n = rs - ref_pos
        out[ref_pos - region.start : rs - region.start] = np.arange(hap_pos, hap_pos + n)
        hap_pos += n
        if re_ - rs == he - hs:
            out[rs - region.start : re_ - region.start] = np.arange(hs, he)
        elif anc and re_ > rs and he > hs:
            out[rs - region.start] = hs
        hap_pos = he
        ref_pos = re_
    n = region.end - ref_pos
    out[ref_pos - region.start :] = np.arange(hap_pos, hap_pos + n)
    return out


def haplotype_chain(
    genotypes: GenotypeArrays, reference: Reference, region: Region, sample: int, hap: int, **policies: object
) -> tuple[str, list[tuple[int, ...]]]:
    """The ``bcftools consensus -c`` chain of one ragged haplotype: ``(header, blocks)``.

    Blocks are ``(ungapped, ref_gap, hap_gap)`` with a final ``(ungapped,)``; gaps follow
    bcftools (an indel's shared anchor base stays in the ungapped block). The header reproduces
    bcftools' fields, including its ``tSize = region end`` quirk for region input.
    """
    blocks = haplotype_blocks(genotypes, reference, region, sample, hap, **policies)
    gaps: list[tuple[int, int, int, int]] = []  # ref_start, ref_len, hap_start, hap_len
    for rs, re_, hs, he, anc in blocks.tolist():
        if re_ - rs == he - hs:
            continue
        if anc:
            gaps.append((rs + 1, re_ - rs - 1, hs + 1, he - hs - 1))
        else:
            gaps.append((rs, re_ - rs, hs, he - hs))
    out: list[tuple[int, ...]] = []
    ref_pos, hap_pos = region.start, 0
    for rs, rl, hs, hl in gaps:
        out.append((rs - ref_pos, rl, hl))
        ref_pos, hap_pos = rs + rl, hs + hl
    out.append((region.end - ref_pos,))
    hap_len = hap_pos + region.end - ref_pos
    score = sum(b[0] for b in out)
    q0 = region.start
    header = (
        f"chain {score} {region.contig} {region.end} + {region.start} {region.end} "
        f"{region.contig} {q0 + hap_len} + {q0} {q0 + hap_len} 1"
    )
    return header, out
