"""Streamed FASTA output of personal haplotypes (the ``expredict haplotypes`` command).

One record per (region, sample, haplotype), header ``>REGION_NAME SAMPLE HAP`` (HAP 1 or 2),
sequence wrapped at 60 columns. With ``unique=True`` each distinct sequence of a region is
written once as ``>REGION_NAME uK`` (K = 0, 1, ...) and a tab-separated table
``<out stem>.index.tsv`` maps ``region, sample, hap`` to ``uK`` (a ``.gz`` suffix is ignored
for the table's name; the table is plain text). Output names ending in ``.gz`` are compressed
(BGZF through pysam when available, else gzip). Files are written under a temporary sibling
name and renamed when complete (:mod:`expredict.atomic`), so an interrupted run never leaves a
truncated output; regions are processed one contig at a time and written as they are built.

Records are formatted by numba kernels straight from the haplotype kernels' byte buffers
(headers, line wrapping and reverse complements included), batch by batch on all cores, and
written in large blocks by a background thread while the next batch is built; no Python object
is made per haplotype.

BED input is 0-based half-open: ``chrom start end [name [score [strand]]]``; a missing name
becomes ``chrom:start-end``. Contig names are the VCF's; ``aliases`` map them to the FASTA's.
For ``center_tss`` the anchor (TSS) is the region's first base on ``+`` (or no strand) and its
last base on ``-``; ``length`` defaults to the region length.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from expredict.atomic import atomic_path
from expredict.coords import Region
from expredict.errors import InputFileError
from expredict.haplotypes import build as B
from expredict.haplotypes import kernels as K
from expredict.haplotypes.build import RunStats
from expredict.io.genotypes import GenotypeArrays

WIDTH = 60
_LUT = np.frombuffer(bytes(range(256)).translate(B._COMPLEMENT), np.uint8).copy()


def read_bed_regions(path: str | os.PathLike[str]) -> list[Region]:
    """Regions of a BED file (0-based half-open), anchored at the strand-aware first base."""
    p = Path(path)
    if not p.exists():
        msg = f"{p}: BED file not found"
        raise InputFileError(msg)
    regions: list[Region] = []
    with p.open() as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.rstrip("\n").split("\t")
            try:
                contig, start, end = f[0], int(f[1]), int(f[2])
            except (IndexError, ValueError) as e:
                msg = f"{p}:{i}: expected 'chrom<TAB>start<TAB>end[<TAB>name...]' with integer start/end; got {line!r}"
                raise InputFileError(msg) from e
            name = f[3] if len(f) > 3 and f[3] else f"{contig}:{start}-{end}"
            strand = f[5] if len(f) > 5 and f[5] in ("+", "-") else "+"
            if end <= start:
                msg = f"{p}:{i}: region {name} has end {end} <= start {start} (BED is 0-based half-open)"
                raise InputFileError(msg)
            anchor = end - 1 if strand == "-" else start
            regions.append(Region(contig, start, end, name, anchor, strand))
    return regions


def index_table_path(out: str | os.PathLike[str]) -> Path:
    """``<out stem>.index.tsv`` next to ``out`` (``h.fa`` and ``h.fa.gz`` -> ``h.index.tsv``)."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix == ".gz" else out
    return out.with_name(base.stem + ".index.tsv")


def _open_sink(path: Path, compress: bool) -> BinaryIO:
    if not compress:
        return path.open("wb", buffering=0)
    try:
        from pysam import BGZFile
    except ImportError:  # pragma: no cover - pysam is a dependency; plain gzip otherwise
        import gzip

        return gzip.open(path, "wb", compresslevel=6)  # type: ignore[return-value]
    return BGZFile(str(path), "wb")  # type: ignore[return-value]


class _Sink:
    """Writes byte blocks to a file on a background thread (overlapping the next batch's build).

    Blocks are numpy buffers from a small pool: :meth:`buffer` hands one out (blocking while all
    are queued), :meth:`write` queues it and returns it to the pool once written. An error on the
    writer thread is raised by the next call; :meth:`close` drains the queue and closes the file.
    """

    def __init__(self, path: Path, compress: bool, n_buffers: int = 2) -> None:
        self._fh = _open_sink(path, compress)
        self._bytes_only = compress
        self._q: queue.Queue = queue.Queue()
        self._free: queue.Queue = queue.Queue()
        for _ in range(n_buffers):
            self._free.put(np.empty(0, np.uint8))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="expredict-fasta-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            buf, n = item
            try:
                if self._error is None:
                    view = memoryview(buf[:n])
                    if self._bytes_only:
                        self._fh.write(view.tobytes())
                    else:
                        while view.nbytes:
                            k = self._fh.write(view)
                            view = view[k:]
            except BaseException as e:  # noqa: BLE001 - handed to the producer
                self._error = e
            finally:
                self._free.put(buf)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def buffer(self, n: int) -> NDArray[np.uint8]:
        """A buffer of at least ``n`` bytes (reused; grown when too small)."""
        self._check()
        buf = self._free.get()
        if buf.shape[0] < n:
            buf = np.empty(max(int(1.25 * n), int(1.25 * buf.shape[0])), np.uint8)
        return buf

    def write(self, buf: NDArray[np.uint8], n: int) -> None:
        """Queue ``buf[:n]`` for writing; ``buf`` must come from :meth:`buffer`."""
        self._check()
        self._q.put((buf, n))

    def close(self) -> None:
        """Write what is queued, stop the thread and close the file; re-raise a writer error."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        self._fh.close()
        self._check()


def _int_digits(x: NDArray[np.int64]) -> NDArray[np.int64]:
    d = np.ones(x.shape, np.int64)
    p = 10
    while True:
        more = x >= p
        if not more.any():
            return d
        d += more
        p *= 10


def _offsets(sizes: NDArray[np.int64]) -> NDArray[np.int64]:
    off = np.zeros(sizes.shape[0] + 1, np.int64)
    np.cumsum(sizes, out=off[1:])
    return off


def _flat(items: list[bytes]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    off = _offsets(np.fromiter((len(x) for x in items), np.int64, len(items)))
    return np.frombuffer(b"".join(items) or b"\0", np.uint8).copy(), off


def _write_grouped(
    gb: B._Grouped,
    prep: B._Prepared,
    sample_bytes: NDArray[np.uint8],
    sample_off: NDArray[np.int64],
    *,
    unique: bool,
    reverse_complement_minus: bool,
    threads: int,
    sink: _Sink,
    table: _Sink | None,
    run_stats: RunStats,
) -> None:
    """Format one kernel batch as FASTA records (and index rows) and queue them for writing."""
    n = prep.g.n_samples
    n_hap = 2 * n
    nw = len(gb.windows)
    src, src_off = gb.batch.source()
    name_bytes, name_off = _flat([(w.region.name or w.region.ucsc()).encode() for w in gb.windows])
    name_len = np.diff(name_off)
    sample_len = np.diff(sample_off)
    win_rc = np.array([reverse_complement_minus and w.region.strand == "-" for w in gb.windows], np.uint8)
    # every (window, sample, hap), window-major: the pair that built it
    all_win = np.repeat(np.arange(nw, dtype=np.int64), n_hap)
    all_pair = (
        np.concatenate([gb.win_p0[i] + gb.inverse[i] for i in range(nw)]) if nw and n_hap else np.zeros(0, np.int64)
    )
    all_sample = np.tile(np.repeat(np.arange(n, dtype=np.int64), 2), nw)
    all_hap = np.tile(np.array([1, 2], np.int64), n * nw)
    if unique:
        rec_pair = np.flatnonzero(gb.is_new).astype(np.int64)
        rec_win = np.searchsorted(gb.win_p0, rec_pair, side="right").astype(np.int64) - 1
        rec_tag = gb.uid[rec_pair].astype(np.int64)
        rec_sample = np.zeros(rec_pair.shape[0], np.int64)
        head = 1 + name_len[rec_win] + 2 + _int_digits(rec_tag) + 1
    else:
        rec_pair, rec_win, rec_sample, rec_tag = all_pair, all_win, all_sample, all_hap
        head = 1 + name_len[rec_win] + 1 + sample_len[rec_sample] + 3
    seq_len = src_off[rec_pair + 1] - src_off[rec_pair]
    rec_off = _offsets(head + seq_len + (seq_len + WIDTH - 1) // WIDTH)
    total = int(rec_off[-1])
    buf = sink.buffer(total)

    def fmt(lo: int, hi: int) -> None:
        K.fasta_records(buf, rec_off, rec_win, rec_sample, rec_tag, rec_pair, unique, name_bytes, name_off,
                        sample_bytes, sample_off, win_rc, src, src_off, _LUT, WIDTH, lo, hi)  # fmt: skip

    B._parallel(fmt, rec_off, threads)
    sink.write(buf, total)
    if table is not None and all_pair.shape[0]:
        row_uid = gb.uid[all_pair].astype(np.int64)
        row_off = _offsets(name_len[all_win] + 1 + sample_len[all_sample] + 3 + 1 + _int_digits(row_uid) + 1)
        tbuf = table.buffer(int(row_off[-1]))
        K.table_rows(tbuf, row_off, all_win, all_sample, all_hap, row_uid, name_bytes, name_off, sample_bytes,
                     sample_off)  # fmt: skip
        table.write(tbuf, int(row_off[-1]))
    for i, w in enumerate(gb.windows):
        p0, p1 = int(gb.win_p0[i]), int(gb.win_p0[i + 1])
        new = np.flatnonzero(gb.is_new[p0:p1]) + p0
        B._account(run_stats, n_hap, int(new.shape[0]), int((src_off[new + 1] - src_off[new]).sum()),
                   B._unphased_counts(prep, w))  # fmt: skip


_UNPHASED_USE = {
    "ignore": "alleles taken as written (first allele on haplotype 1)",
    "iupac": "unphased het SNVs written as IUPAC codes on both haplotypes",
    "error": "refused",
}


@dataclass
class FastaRunStats(RunStats):
    """:class:`RunStats` plus the unphased heterozygous calls among the het calls of the windows
    (each call counted once) and how they were treated."""

    n_het_calls: int = 0
    n_unphased_calls: int = 0
    unphased_policy: str = "ignore"

    def count_unphased(self, g: GenotypeArrays, windows: Sequence[B._Window]) -> None:
        """Add the calls of ``windows`` (``g`` as read, before the ``iupac`` rewrite)."""
        mask = np.zeros(g.n_variants, bool)
        for w in windows:
            mask[w.vlo : w.vhi] = True
        het, unphased = g.heterozygous_calls(np.flatnonzero(mask))
        self.n_het_calls += het
        self.n_unphased_calls += unphased

    def unphased_message(self) -> str:
        """One line: how many het calls were unphased and how they were used."""
        share = self.n_unphased_calls / self.n_het_calls if self.n_het_calls else 0.0
        line = f"unphased: {self.n_unphased_calls} of {self.n_het_calls} heterozygous calls ({share:.1%}) in the regions"
        if self.n_unphased_calls:
            line += f"; {_UNPHASED_USE.get(self.unphased_policy, self.unphased_policy)} (--unphased {self.unphased_policy})"
        return line


def write_haplotypes_fasta(
    vcf: str | os.PathLike[str],
    fasta: str | os.PathLike[str],
    regions: str | os.PathLike[str] | Sequence[Region],
    out: str | os.PathLike[str],
    *,
    samples: list[str] | None = None,
    mode: str = "ragged",
    length: int | None = None,
    unique: bool = False,
    aliases: dict[str, str] | None = None,
    unphased: str = "ignore",
    ref_mismatch: str = "error",
    reverse_complement_minus: bool = False,
    threads: int | None = None,
    max_bytes: int = 16 << 20,
) -> FastaRunStats:
    """Write haplotypes of every region to ``out`` (FASTA); return the run's :class:`RunStats`.

    Parameters
    ----------
    vcf, fasta : path
        Indexed VCF/BCF and reference FASTA.
    regions : path or sequence of Region
        BED file (see module docstring) or regions.
    out : path
        Output FASTA (``.gz``: BGZF-compressed); with ``unique`` also ``<out stem>.index.tsv``.
    samples : list of str, optional
        Samples to write, in this order (default: all in the VCF).
    mode, length, unphased, ref_mismatch, reverse_complement_minus
        As in :func:`expredict.haplotypes.iter_unique_haplotypes`.
    unique : bool, default False
        Write each distinct sequence once plus the mapping table.
    aliases : dict, optional
        VCF/BED contig name -> FASTA contig name.
    threads : int, optional
        Threads for the kernels and the formatting (default: all cores, ``os.cpu_count()``);
        the output is byte-identical for any value.
    max_bytes : int, default 16 MiB
        Approximate sequence bytes per batch (memory bound: about three batches are held).
    """
    from expredict.io.genotypes import read_genotypes
    from expredict.io.reference import Reference

    regs = read_bed_regions(regions) if isinstance(regions, str | os.PathLike) else list(regions)
    reference = Reference(fasta, aliases or {})
    out = Path(out)
    nthreads = B.resolve_threads(threads)
    stats = FastaRunStats(unphased_policy=unphased)
    by_contig: dict[str, list[Region]] = {}
    for r in regs:
        by_contig.setdefault(r.contig, []).append(r)
    with ExitStack() as commit:  # exits last-in first-out: the FASTA is renamed first, then the table
        table_tmp = commit.enter_context(atomic_path(index_table_path(out))) if unique else None
        out_tmp = commit.enter_context(atomic_path(out))
        with ExitStack() as files:
            sink = _Sink(out_tmp, out.name.endswith(".gz"))
            files.callback(sink.close)
            table = None
            if table_tmp is not None:
                table = _Sink(table_tmp, False)
                files.callback(table.close)
                header = np.frombuffer(b"region\tsample\thap\tsequence\n", np.uint8)
                tb = table.buffer(header.shape[0])
                tb[: header.shape[0]] = header
                table.write(tb, header.shape[0])
            for contig, cregs in by_contig.items():
                pad = (max((length or 0), max(r.length for r in cregs))) + 10_000
                lo = max(0, min(min(r.start, r.anchor if r.anchor is not None else r.start) for r in cregs) - pad)
                hi = max(r.end for r in cregs) + pad
                g = read_genotypes(vcf, contig, lo, hi, samples=samples)
                prep = B._prepare(g, unphased=unphased, ref_mismatch=ref_mismatch, snv_only=False, haploid="ref")
                windows = B._windows(prep, reference, cregs, mode, length)
                B._validate(prep, reference, windows, unphased)
                stats.count_unphased(g, windows)
                if stats.unphased_per_sample is None:
                    stats.unphased_per_sample = np.zeros(g.n_samples, np.int64)
                sample_bytes, sample_off = _flat([s_.encode() for s_ in g.samples])
                for gb in B._iter_grouped(prep, reference, windows, mode, 16384, max_bytes, nthreads, dedup=True):
                    _write_grouped(gb, prep, sample_bytes, sample_off, unique=unique,
                                   reverse_complement_minus=reverse_complement_minus, threads=nthreads, sink=sink,
                                   table=table, run_stats=stats)  # fmt: skip
    return stats
