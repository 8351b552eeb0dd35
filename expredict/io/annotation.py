"""Gene / TSS tables from a phenotype BED, a GTF or a TSV, as one polars schema.

Output columns (0-based coordinates): ``gene_id`` (str), ``gene_name`` (str), ``contig`` (str),
``tss`` (int64, the 0-based TSS base), ``start``/``end`` (int64, 0-based half-open gene body when
known, else ``tss``/``tss + 1``) and ``strand`` (``+``/``-``).

- QTLtools/tensorQTL phenotype BED (``#chr start end gene_id [length strand] samples...``): the
  ``end`` column is the 1-based TSS, so ``tss = end - 1`` (== ``start`` for 1-bp rows).
- GTF (1-based closed): rows with feature ``gene``; ``tss = start - 1`` on ``+``, ``end - 1`` on ``-``.
- TSV with columns ``gene_id, contig, tss[, strand, gene_name]``: ``tss`` is 0-based.
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import polars as pl

from expredict.errors import InputFileError

GENE_COLUMNS = ["gene_id", "gene_name", "contig", "tss", "start", "end", "strand"]


def _open_text(path: Path):
    with path.open("rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rt") if magic == b"\x1f\x8b" else path.open()


def _require(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        msg = f"{p}: gene annotation file not found"
        raise InputFileError(msg)
    return p


def read_genes(path: str | os.PathLike[str], fmt: str = "auto") -> pl.DataFrame:
    """Read a gene/TSS table; ``fmt`` is ``auto``, ``bed``, ``gtf`` or ``tsv``."""
    p = _require(path)
    name = p.name.lower().removesuffix(".gz")
    if fmt == "auto":
        fmt = "bed" if name.endswith(".bed") else "gtf" if name.endswith((".gtf", ".gff")) else "tsv"
    reader = {"bed": _read_bed, "gtf": _read_gtf, "tsv": _read_tsv}.get(fmt)
    if reader is None:
        msg = f"{p}: unknown annotation format '{fmt}' (use bed, gtf or tsv)"
        raise InputFileError(msg)
    genes = reader(p)
    dups = genes.filter(pl.col("gene_id").is_duplicated())["gene_id"].unique().to_list()
    if dups:
        msg = f"{p}: duplicate gene IDs {dups[:5]}; each gene must appear once"
        raise InputFileError(msg)
    return genes.select(GENE_COLUMNS).sort(["contig", "tss"])


def _read_bed(p: Path) -> pl.DataFrame:
    rows = []
    with _open_text(p) as fh:
        header = None
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            f = line.rstrip("\n").split("\t")
            if line.startswith("#"):
                header = [c.lstrip("#") for c in f]
                continue
            if len(f) < 4:
                msg = f"{p}, line {lineno}: BED needs at least 4 columns (chr, start, end, gene_id); got {len(f)}"
                raise InputFileError(msg)
            try:
                start, end = int(f[1]), int(f[2])
            except ValueError:
                msg = f"{p}, line {lineno}: start/end must be integers; got '{f[1]}', '{f[2]}'"
                raise InputFileError(msg) from None
            strand = "+"
            if header and "strand" in header:
                strand = f[header.index("strand")]
            elif len(f) >= 6 and f[5] in "+-":
                strand = f[5]
            if strand not in ("+", "-"):
                msg = f"{p}, line {lineno}: strand must be + or -; got '{strand}'"
                raise InputFileError(msg)
            if end - start == 1:  # phenotype BED: end is the 1-based TSS
                tss = end - 1
                gs, ge = tss, tss + 1
            else:  # a gene-body BED: TSS at the strand-aware start
                tss = start if strand == "+" else end - 1
                gs, ge = start, end
            rows.append((f[3], f[3], f[0], tss, gs, ge, strand))
    if not rows:
        msg = f"{p}: no genes found"
        raise InputFileError(msg)
    return pl.DataFrame(
        rows, schema=dict(zip(GENE_COLUMNS, [pl.String] * 3 + [pl.Int64] * 3 + [pl.String], strict=True)), orient="row"
    )


_ATTR_RE = re.compile(r'(\w+) "([^"]*)"')


def _read_gtf(p: Path) -> pl.DataFrame:
    rows = []
    with _open_text(p) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.startswith("#") or not line.strip():
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) != 9:
                msg = f"{p}, line {lineno}: GTF rows have 9 tab-separated columns; got {len(f)}"
                raise InputFileError(msg)
            if f[2] != "gene":
                continue
            attrs = dict(_ATTR_RE.findall(f[8]))
            gid = attrs.get("gene_id")
            if gid is None:
                msg = f"{p}, line {lineno}: gene row without gene_id attribute"
                raise InputFileError(msg)
            start, end = int(f[3]) - 1, int(f[4])
            tss = start if f[6] == "+" else end - 1
            rows.append((gid, attrs.get("gene_name", gid), f[0], tss, start, end, f[6]))
    if not rows:
        msg = f"{p}: no 'gene' rows found in the GTF"
        raise InputFileError(msg)
    return pl.DataFrame(
        rows, schema=dict(zip(GENE_COLUMNS, [pl.String] * 3 + [pl.Int64] * 3 + [pl.String], strict=True)), orient="row"
    )


def _read_tsv(p: Path) -> pl.DataFrame:
    try:
        df = pl.read_csv(p, separator="\t", infer_schema_length=10000)
    except Exception as e:
        msg = f"{p}: cannot parse as TSV ({e})"
        raise InputFileError(msg) from e
    missing = {"gene_id", "contig", "tss"} - set(df.columns)
    if missing:
        msg = f"{p}: TSV gene table lacks columns {sorted(missing)} (need gene_id, contig, tss [0-based], strand)"
        raise InputFileError(msg)
    if "strand" not in df.columns:
        df = df.with_columns(pl.lit("+").alias("strand"))
    if "gene_name" not in df.columns:
        df = df.with_columns(pl.col("gene_id").alias("gene_name"))
    df = df.with_columns(pl.col("tss").cast(pl.Int64), pl.col("contig").cast(pl.String))
    if "start" not in df.columns:
        df = df.with_columns(pl.col("tss").alias("start"))
    if "end" not in df.columns:
        df = df.with_columns((pl.col("tss") + 1).alias("end"))
    return df
