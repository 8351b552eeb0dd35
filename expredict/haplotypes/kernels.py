"""Numba kernels of the haplotype engine: flat arrays in, preallocated arrays out, no IO.

Coordinates are 0-based. A *window* is the reference interval ``[win_start, win_end)`` whose
bases are ``ref[win_ref_off : win_ref_off + win_end - win_start]``; its candidate records are
``win_vlo .. win_vhi - 1`` (sorted by start, in VCF order). A *pair* is one (window, haplotype
row of ``genotypes``). Records are applied exactly as ``bcftools consensus -H h`` (>= 1.20,
``--regions-overlap 1``) does on a region FASTA:

- the allele index of the haplotype row is applied; ``0`` (REF), ``-1`` (missing) and ``-2``
  (no such allele) keep the reference;
- records apply in VCF order; ``frz`` is the last reference base consumed by an applied record,
  and a record starting at or before it is skipped, except an indel with ``REF[0] == ALT[0]``
  (htslib type INDEL) starting exactly at ``frz`` and not following an insertion: it writes
  ``ALT[1:]`` right after the previous allele;
- a record starting before the window is trimmed (``n = win_start - start`` bases off REF and
  ALT); a record running past the window end is truncated, ALT cut to the truncated REF length;
- ``<DEL>`` deletes ``start + 1 .. ref_end - 1`` (``ref_end`` from ``END``).

Allele kinds (``allele_kind``, per allele, REF included): ``KIND_SEQ`` ordinary bases,
``KIND_DEL`` symbolic deletion, ``KIND_SKIP`` unsupported symbolic allele (skipped, counted),
``KIND_NOOP`` no-op (``*``, ``<*>``, ``<NON_REF>``, or filtered out, e.g. indels with
``snv_only``). ``allele_trim`` is bcftools' ``trim_beg``: 1 for INDEL-type alleles whose first
base equals REF's, and for ``<DEL>``.

Each pair also gets ``anchor_out``: the output index of the reference base ``win_anchor`` (or
of the next retained base if it is deleted), which places TSS-centred projections.
"""

from __future__ import annotations

import numpy as np
from numba import njit

KIND_SEQ = 0
KIND_DEL = 1
KIND_SKIP = 2
KIND_NOOP = 3

# per-pair counters (columns of ``stats``)
ST_APPLIED = 0
ST_OVERLAP = 1
ST_MISSING = 2
ST_SYMBOLIC = 3
ST_FILTERED = 4
ST_REF_MISMATCH = 5
N_STATS = 6

N_BYTE = 78  # ord("N")


@njit(nogil=True, cache=True)
def _walk(
    ref: np.ndarray,
    r0: int,
    ws: int,
    we: int,
    vlo: int,
    vhi: int,
    anchor: int,
    hap: int,
    starts: np.ndarray,
    ref_ends: np.ndarray,
    allele_first: np.ndarray,
    allele_offsets: np.ndarray,
    allele_bytes: np.ndarray,
    allele_kind: np.ndarray,
    allele_trim: np.ndarray,
    var_skip: np.ndarray,
    genotypes: np.ndarray,
    out: np.ndarray,
    o0: int,
    write: bool,
    stats: np.ndarray,
    p: int,
) -> tuple[int, int]:
    """Build one haplotype of one window; returns ``(length, anchor_out)``. Writes only if ``write``."""
    cursor = ws
    frz = -1
    prev_ins = False
    o = o0
    anch = -1
    for v in range(vlo, vhi):
        g = genotypes[hap, v]
        if g <= 0:
            if g == -1:
                stats[p, ST_MISSING] += 1
            continue
        s = starts[v]
        e = ref_ends[v]
        if e <= ws or s >= we:
            continue
        ai = allele_first[v] + g
        if ai >= allele_first[v + 1]:
            stats[p, ST_SYMBOLIC] += 1
            continue
        kind = allele_kind[ai]
        if kind == KIND_SKIP:
            stats[p, ST_SYMBOLIC] += 1
            continue
        if kind == KIND_NOOP:
            stats[p, ST_FILTERED] += 1
            continue
        if var_skip[v]:
            stats[p, ST_REF_MISMATCH] += 1
            continue
        if kind == KIND_DEL:
            a0 = allele_offsets[allele_first[v]]
            alen = 1
        else:
            a0 = allele_offsets[ai]
            alen = allele_offsets[ai + 1] - a0
        if s <= frz:
            if s < frz or allele_trim[ai] == 0 or prev_ins:
                stats[p, ST_OVERLAP] += 1
                continue
            skip_alt = 1
            c0 = s + 1
        elif s < ws:
            skip_alt = ws - s
            c0 = ws
        else:
            skip_alt = 0
            c0 = s
        if e > we:  # runs past the window end: truncate REF, cut ALT to its length
            c1 = we
            rlen = we - s
            if alen > rlen:
                alen = rlen
        else:
            c1 = e
            rlen = e - s
        # reference bases up to the record
        n = c0 - cursor
        if anch < 0 and cursor <= anchor < c0:
            anch = o + anchor - cursor
        if write and n > 0:
            src = r0 + cursor - ws
            out[o : o + n] = ref[src : src + n]
        o += n
        # the allele
        wl = alen - skip_alt if alen > skip_alt else 0
        if anch < 0 and c0 <= anchor < c1:
            k = anchor - c0
            anch = o + (k if k < wl else wl)
        if write and wl > 0:
            src = a0 + skip_alt
            out[o : o + wl] = allele_bytes[src : src + wl]
        o += wl
        cursor = c1
        frz = c1 - 1
        prev_ins = alen > rlen
        stats[p, ST_APPLIED] += 1
    n = we - cursor
    if anch < 0 and cursor <= anchor < we:
        anch = o + anchor - cursor
    if write and n > 0:
        src = r0 + cursor - ws
        out[o : o + n] = ref[src : src + n]
    o += n
    if anch < 0:
        anch = o
    return o - o0, anch - o0


@njit(nogil=True, cache=True)
def haplotype_lengths(
    ref: np.ndarray,
    win_ref_off: np.ndarray,
    win_start: np.ndarray,
    win_end: np.ndarray,
    win_vlo: np.ndarray,
    win_vhi: np.ndarray,
    win_anchor: np.ndarray,
    pair_win: np.ndarray,
    pair_hap: np.ndarray,
    starts: np.ndarray,
    ref_ends: np.ndarray,
    allele_first: np.ndarray,
    allele_offsets: np.ndarray,
    allele_bytes: np.ndarray,
    allele_kind: np.ndarray,
    allele_trim: np.ndarray,
    var_skip: np.ndarray,
    genotypes: np.ndarray,
    lengths: np.ndarray,
    anchor_out: np.ndarray,
    stats: np.ndarray,
) -> None:
    """Length pass: fill ``lengths``, ``anchor_out`` (int64[n_pair]) and ``stats`` (int32[n_pair, N_STATS])."""
    dummy = np.empty(0, np.uint8)
    for p in range(pair_win.shape[0]):
        w = pair_win[p]
        n, a = _walk(
            ref, win_ref_off[w], win_start[w], win_end[w], win_vlo[w], win_vhi[w], win_anchor[w], pair_hap[p],
            starts, ref_ends, allele_first, allele_offsets, allele_bytes, allele_kind, allele_trim, var_skip,
            genotypes, dummy, 0, False, stats, p,
        )  # fmt: skip
        lengths[p] = n
        anchor_out[p] = a


@njit(nogil=True, cache=True)
def haplotype_fill(
    ref: np.ndarray,
    win_ref_off: np.ndarray,
    win_start: np.ndarray,
    win_end: np.ndarray,
    win_vlo: np.ndarray,
    win_vhi: np.ndarray,
    win_anchor: np.ndarray,
    pair_win: np.ndarray,
    pair_hap: np.ndarray,
    starts: np.ndarray,
    ref_ends: np.ndarray,
    allele_first: np.ndarray,
    allele_offsets: np.ndarray,
    allele_bytes: np.ndarray,
    allele_kind: np.ndarray,
    allele_trim: np.ndarray,
    var_skip: np.ndarray,
    genotypes: np.ndarray,
    out: np.ndarray,
    out_off: np.ndarray,
) -> None:
    """Fill pass: write pair ``p`` into ``out[out_off[p] : out_off[p + 1]]`` (offsets from the length pass)."""
    scratch = np.zeros((1, N_STATS), np.int32)
    for p in range(pair_win.shape[0]):
        w = pair_win[p]
        _walk(
            ref, win_ref_off[w], win_start[w], win_end[w], win_vlo[w], win_vhi[w], win_anchor[w], pair_hap[p],
            starts, ref_ends, allele_first, allele_offsets, allele_bytes, allele_kind, allele_trim, var_skip,
            genotypes, out, out_off[p], True, scratch, 0,
        )  # fmt: skip


@njit(nogil=True, cache=True)
def project_fixed(
    out: np.ndarray,
    out_off: np.ndarray,
    start_virtual: np.ndarray,
    lead_n: np.ndarray,
    fixed_off: np.ndarray,
    fixed: np.ndarray,
) -> None:
    """Cut fixed-length sequences: ``fixed[fixed_off[p] + i] = virt_p[start_virtual[p] + i]``.

    ``virt_p`` is ``lead_n[p]`` N bases, then haplotype ``p`` (``out[out_off[p]:out_off[p + 1]]``),
    then N bases forever (past the contig end); pair ``p`` gets ``fixed_off[p + 1] - fixed_off[p]``
    bases.
    """
    for p in range(out_off.shape[0] - 1):
        h0 = out_off[p]
        hl = out_off[p + 1] - h0
        lead = lead_n[p]
        st = start_virtual[p]
        f0 = fixed_off[p]
        for i in range(fixed_off[p + 1] - f0):
            j = st + i - lead
            if j >= 0 and j < hl:
                fixed[f0 + i] = out[h0 + j]
            else:
                fixed[f0 + i] = N_BYTE


@njit(nogil=True, cache=True)
def classify_alleles(
    allele_first: np.ndarray,
    allele_offsets: np.ndarray,
    allele_bytes: np.ndarray,
    allele_kind: np.ndarray,
    allele_trim: np.ndarray,
    allele_is_snv: np.ndarray,
) -> None:
    """Per-allele kind, bcftools ``trim_beg`` flag and SNV/MNP flag (equal-length sequence allele).

    Follows htslib's ``bcf_set_variant_type`` to decide whether an allele is an INDEL: after the
    common prefix, one allele is exhausted (pure insertion/deletion), or after also trimming the
    common suffix the remaining core is a one-sided gap whose boundary bases match.
    """
    n_var = allele_first.shape[0] - 1
    for v in range(n_var):
        r = allele_first[v]
        r0 = allele_offsets[r]
        rl = allele_offsets[r + 1] - r0
        allele_kind[r] = KIND_SEQ
        allele_trim[r] = 0
        allele_is_snv[r] = 1
        for a in range(r + 1, allele_first[v + 1]):
            a0 = allele_offsets[a]
            al = allele_offsets[a + 1] - a0
            allele_trim[a] = 0
            allele_is_snv[a] = 0
            first = allele_bytes[a0] if al > 0 else 0
            if al == 0 or (al == 1 and first == 42):  # "*"
                allele_kind[a] = KIND_NOOP
                continue
            if first == 60:  # "<"
                if al == 5 and allele_bytes[a0 + 1] == 68 and allele_bytes[a0 + 2] == 69 and allele_bytes[a0 + 3] == 76:
                    allele_kind[a] = KIND_DEL  # <DEL>
                    allele_trim[a] = 1
                elif (al == 3 and allele_bytes[a0 + 1] == 42) or al == 9:  # <*>, <NON_REF>
                    allele_kind[a] = KIND_NOOP if (al == 3 or allele_bytes[a0 + 1] == 78) else KIND_SKIP
                else:
                    allele_kind[a] = KIND_SKIP
                continue
            bnd = False
            for i in range(al):
                c = allele_bytes[a0 + i]
                if c == 91 or c == 93 or c == 46:  # "[", "]", "."
                    bnd = True
            if bnd:
                allele_kind[a] = KIND_SKIP
                continue
            allele_kind[a] = KIND_SEQ
            if al == rl:
                allele_is_snv[a] = 1
                continue
            if rl == 0 or allele_bytes[r0] != first:
                continue
            # htslib: strip the common prefix
            i = 0
            while i < rl and i < al and allele_bytes[r0 + i] == allele_bytes[a0 + i]:
                i += 1
            if i == rl or i == al:
                allele_trim[a] = 1  # pure insertion or deletion
                continue
            # strip the common suffix of the remainders
            re_ = rl - 1
            ae = al - 1
            while re_ > i and ae > i and allele_bytes[r0 + re_] == allele_bytes[a0 + ae]:
                re_ -= 1
                ae -= 1
            same = allele_bytes[r0 + re_] == allele_bytes[a0 + ae]
            if (ae == i and re_ != i) or (re_ == i and ae != i):
                if same:
                    allele_trim[a] = 1


@njit(nogil=True, cache=True)
def check_ref(
    ref: np.ndarray,
    ref_start: int,
    starts: np.ndarray,
    allele_first: np.ndarray,
    allele_offsets: np.ndarray,
    allele_bytes: np.ndarray,
    vlo: int,
    vhi: int,
    bad: np.ndarray,
) -> None:
    """Flag records ``vlo..vhi-1`` whose REF differs from ``ref`` (covering ``ref_start..``): ``bad[v] = 1``.

    Comparison is byte-wise on uppercase ASCII, so a FASTA ``N`` under an ``A`` is a mismatch;
    a REF running off the fetched span is a mismatch.
    """
    n = ref.shape[0]
    for v in range(vlo, vhi):
        r = allele_first[v]
        r0 = allele_offsets[r]
        rl = allele_offsets[r + 1] - r0
        j = starts[v] - ref_start
        if j < 0 or j + rl > n:
            bad[v] = 1
            continue
        for i in range(rl):
            if allele_bytes[r0 + i] != ref[j + i]:
                bad[v] = 1
                break


@njit(nogil=True, cache=True)
def haplotype_blocks(
    ref_len: int,
    ws: int,
    we: int,
    vlo: int,
    vhi: int,
    hap: int,
    starts: np.ndarray,
    ref_ends: np.ndarray,
    allele_first: np.ndarray,
    allele_offsets: np.ndarray,
    allele_bytes: np.ndarray,
    allele_kind: np.ndarray,
    allele_trim: np.ndarray,
    var_skip: np.ndarray,
    genotypes: np.ndarray,
    blocks: np.ndarray,
) -> int:
    """Applied records of one (window, haplotype) as rows ``(ref_start, ref_end, hap_start, hap_end, anchor)``.

    ``ref_*`` are genomic 0-based half-open (the consumed reference), ``hap_*`` 0-based output
    indices of the written allele bytes, ``anchor`` 1 if the first written byte is the record's
    own anchor base (REF[0] == ALT[0], bcftools' chain convention). ``blocks`` needs
    ``vhi - vlo`` rows; returns the number of rows written.
    """
    cursor = ws
    frz = -1
    prev_ins = False
    o = 0
    nb = 0
    for v in range(vlo, vhi):
        g = genotypes[hap, v]
        if g <= 0:
            continue
        s = starts[v]
        e = ref_ends[v]
        if e <= ws or s >= we:
            continue
        ai = allele_first[v] + g
        if ai >= allele_first[v + 1]:
            continue
        kind = allele_kind[ai]
        if kind == KIND_SKIP or kind == KIND_NOOP or var_skip[v]:
            continue
        if kind == KIND_DEL:
            a0 = allele_offsets[allele_first[v]]
            alen = 1
        else:
            a0 = allele_offsets[ai]
            alen = allele_offsets[ai + 1] - a0
        if s <= frz:
            if s < frz or allele_trim[ai] == 0 or prev_ins:
                continue
            skip_alt = 1
            c0 = s + 1
        elif s < ws:
            skip_alt = ws - s
            c0 = ws
        else:
            skip_alt = 0
            c0 = s
        if e > we:  # runs past the window end: truncate REF, cut ALT to its length
            c1 = we
            rlen = we - s
            if alen > rlen:
                alen = rlen
        else:
            c1 = e
            rlen = e - s
        o += c0 - cursor
        wl = alen - skip_alt if alen > skip_alt else 0
        r0 = allele_offsets[allele_first[v]]
        same_first = 1 if (skip_alt == 0 and wl > 0 and allele_bytes[r0] == allele_bytes[a0]) else 0
        blocks[nb, 0] = c0
        blocks[nb, 1] = c1
        blocks[nb, 2] = o
        blocks[nb, 3] = o + wl
        blocks[nb, 4] = same_first
        nb += 1
        o += wl
        cursor = c1
        frz = c1 - 1
        prev_ins = alen > rlen
    return nb


# --------------------------------------------------------------------------------------------
# output: sequence dedup and byte-level record formatting (no Python object per haplotype)
# --------------------------------------------------------------------------------------------

_H_SEED = np.uint64(0x9E3779B97F4A7C15)
_H_MUL = np.uint64(0xFF51AFD7ED558CCD)


@njit(nogil=True, cache=True)
def hash_sequences(src: np.ndarray, src_off: np.ndarray, hashes: np.ndarray) -> None:
    """64-bit hash of ``src[src_off[p] : src_off[p + 1]]`` into ``hashes[p]`` (8 bytes per step).

    Only a pre-filter: equal hashes are confirmed byte by byte (:func:`dedup_windows`).
    """
    s8 = np.uint64(8)
    s16 = np.uint64(16)
    s24 = np.uint64(24)
    s32 = np.uint64(32)
    s29 = np.uint64(29)
    for p in range(hashes.shape[0]):
        a = src_off[p]
        n = src_off[p + 1] - a
        h = _H_SEED ^ np.uint64(n)
        nw = n // 4
        for i in range(nw):
            j = a + 4 * i
            w = (
                np.uint64(src[j])
                | (np.uint64(src[j + 1]) << s8)
                | (np.uint64(src[j + 2]) << s16)
                | (np.uint64(src[j + 3]) << s24)
            )
            h = (h ^ w) * _H_MUL
            h ^= h >> s29
        for j in range(a + 4 * nw, a + n):
            h = (h ^ (np.uint64(src[j]) << s32)) * _H_MUL
        hashes[p] = h ^ (h >> s29)


@njit(nogil=True, cache=True)
def _same_bytes(src: np.ndarray, src_off: np.ndarray, p: int, q: int) -> bool:
    a = src_off[p]
    n = src_off[p + 1] - a
    b = src_off[q]
    if src_off[q + 1] - b != n:
        return False
    for i in range(n):
        if src[a + i] != src[b + i]:
            return False
    return True


@njit(nogil=True, cache=True)
def dedup_windows(
    src: np.ndarray, src_off: np.ndarray, hashes: np.ndarray, win_p0: np.ndarray, uid: np.ndarray, is_new: np.ndarray
) -> None:
    """Distinct sequences per window, in order of first appearance (a ``dict`` on the bytes).

    Window ``w`` holds pairs ``win_p0[w] .. win_p0[w + 1] - 1`` (``win_p0`` may be a slice of a
    larger offset array; pair indices are absolute). ``uid[p]``: index of pair ``p``'s sequence
    among the window's distinct ones; ``is_new[p] = 1`` at its first appearance.
    """
    for w in range(win_p0.shape[0] - 1):
        lo = win_p0[w]
        k = win_p0[w + 1] - lo
        if k == 0:
            continue
        order = np.argsort(hashes[lo : lo + k], kind="mergesort")
        first = np.empty(k, np.int64)
        i = 0
        while i < k:
            hv = hashes[lo + order[i]]
            j = i + 1
            while j < k and hashes[lo + order[j]] == hv:
                j += 1
            for a in range(i, j):  # stable sort: increasing pair order within the run
                pa = order[a]
                first[pa] = pa
                for b in range(i, a):
                    pb = order[b]
                    if first[pb] == pb and _same_bytes(src, src_off, lo + pa, lo + pb):
                        first[pa] = pb
                        break
            i = j
        nxt = 0
        for a in range(k):
            if first[a] == a:
                uid[lo + a] = nxt
                is_new[lo + a] = 1
                nxt += 1
            else:
                uid[lo + a] = uid[lo + first[a]]
                is_new[lo + a] = 0


@njit(nogil=True, cache=True)
def _put_item(buf: np.ndarray, o: int, data: np.ndarray, offsets: np.ndarray, i: int) -> int:
    """Copy item ``i`` of a ragged byte array (``data[offsets[i]:offsets[i + 1]]``) to ``buf[o:]``; the next offset."""
    a = offsets[i]
    n = offsets[i + 1] - a
    buf[o : o + n] = data[a : a + n]
    return o + n


@njit(nogil=True, cache=True)
def _put_int(buf: np.ndarray, o: int, x: int) -> int:
    n = 1
    y = x
    while y >= 10:
        y //= 10
        n += 1
    for i in range(n - 1, -1, -1):
        buf[o + i] = 48 + x % 10
        x //= 10
    return o + n


@njit(nogil=True, cache=True)
def fasta_records(
    buf: np.ndarray,
    rec_off: np.ndarray,
    rec_win: np.ndarray,
    rec_sample: np.ndarray,
    rec_tag: np.ndarray,
    rec_pair: np.ndarray,
    unique: bool,
    name_bytes: np.ndarray,
    name_off: np.ndarray,
    sample_bytes: np.ndarray,
    sample_off: np.ndarray,
    win_rc: np.ndarray,
    src: np.ndarray,
    src_off: np.ndarray,
    lut: np.ndarray,
    width: int,
    r0: int,
    r1: int,
) -> None:
    """FASTA records ``r0 .. r1 - 1`` into ``buf[rec_off[r] - rec_off[0] : ...]``.

    Header ``>NAME SAMPLE TAG`` (or ``>NAME uTAG`` when ``unique``), then the sequence of pair
    ``rec_pair[r]`` (``src[src_off[p] : src_off[p + 1]]``; reverse-complemented through ``lut``
    when ``win_rc[rec_win[r]]``) wrapped at ``width`` columns, each line ending in ``\\n``.
    """
    base = rec_off[0]
    for r in range(r0, r1):
        o = rec_off[r] - base
        w = rec_win[r]
        buf[o] = 62  # ">"
        o += 1
        o = _put_item(buf, o, name_bytes, name_off, w)
        buf[o] = 32
        o += 1
        if unique:
            buf[o] = 117  # "u"
            o = _put_int(buf, o + 1, rec_tag[r])
        else:
            o = _put_item(buf, o, sample_bytes, sample_off, rec_sample[r])
            buf[o] = 32
            o = _put_int(buf, o + 1, rec_tag[r])
        buf[o] = 10
        o += 1
        p = rec_pair[r]
        a = src_off[p]
        n = src_off[p + 1] - a
        if win_rc[w] != 0:
            i = 0
            while i < n:
                m = n - i if n - i < width else width
                e = a + n - 1 - i
                for k in range(m):
                    buf[o + k] = lut[src[e - k]]
                o += m
                buf[o] = 10
                o += 1
                i += m
        else:
            full = n // width
            for line in range(full):  # plain loops: LLVM turns them into memcpy-like copies
                s0 = a + line * width
                for k in range(width):
                    buf[o + k] = src[s0 + k]
                buf[o + width] = 10
                o += width + 1
            m = n - full * width
            if m:
                s0 = a + full * width
                for k in range(m):
                    buf[o + k] = src[s0 + k]
                buf[o + m] = 10


@njit(nogil=True, cache=True)
def table_rows(
    buf: np.ndarray,
    row_off: np.ndarray,
    row_win: np.ndarray,
    row_sample: np.ndarray,
    row_hap: np.ndarray,
    row_uid: np.ndarray,
    name_bytes: np.ndarray,
    name_off: np.ndarray,
    sample_bytes: np.ndarray,
    sample_off: np.ndarray,
) -> None:
    """Index-table rows ``NAME\\tSAMPLE\\tHAP\\tuUID\\n`` into ``buf[row_off[r] - row_off[0] : ...]``."""
    base = row_off[0]
    for r in range(row_win.shape[0]):
        o = row_off[r] - base
        w = row_win[r]
        o = _put_item(buf, o, name_bytes, name_off, w)
        buf[o] = 9
        o = _put_item(buf, o + 1, sample_bytes, sample_off, row_sample[r])
        buf[o] = 9
        o = _put_int(buf, o + 1, row_hap[r])
        buf[o] = 9
        buf[o + 1] = 117
        o = _put_int(buf, o + 2, row_uid[r])
        buf[o] = 10
