"""Expression matrices (genes x individuals), covariates, and sample reconciliation.

Readers accept a tensorQTL/QTLtools phenotype BED (``#chr start end gene_id [meta...] samples``),
a TSV or a parquet table (``gene_id`` then one column per sample). Whole-matrix transforms that
need no fitted state live here (``log1p``, ``log2p1``, per-gene inverse-normal). Anything fitted
on individuals (z-scores, covariate regression) is fitted on training individuals only, in
:mod:`expredict.targets`.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from numpy.typing import NDArray
from scipy.stats import norm, rankdata

from expredict.errors import InputFileError, SampleMismatchError

# Non-sample columns QTLtools/tensorQTL BEDs may carry after the 4 leading ones.
_BED_META = {"length", "strand", "gid", "pid", "info", "gene_name", "name"}


@dataclass(frozen=True)
class Expression:
    """An expression matrix ``values[gene, sample]`` (float64) with its labels."""

    path: str
    gene_ids: list[str]
    samples: list[str]
    values: NDArray[np.float64]

    def subset(self, genes: list[str] | None = None, samples: list[str] | None = None) -> Expression:
        """Rows/columns by label, in the order given."""
        gi = np.arange(len(self.gene_ids)) if genes is None else _positions(self.gene_ids, genes, "gene", self.path)
        si = np.arange(len(self.samples)) if samples is None else _positions(self.samples, samples, "sample", self.path)
        return Expression(
            self.path,
            [self.gene_ids[i] for i in gi],
            [self.samples[i] for i in si],
            np.ascontiguousarray(self.values[np.ix_(gi, si)]),
        )

    def to_polars(self) -> pl.DataFrame:
        """Wide table: ``gene_id`` then one column per sample."""
        return pl.DataFrame({"gene_id": self.gene_ids, **{s: self.values[:, i] for i, s in enumerate(self.samples)}})


def _positions(have: list[str], want: list[str], what: str, path: str) -> NDArray[np.int64]:
    pos = {x: i for i, x in enumerate(have)}
    missing = [w for w in want if w not in pos]
    if missing:
        msg = f"{path}: {len(missing)} {what}(s) not in the expression matrix, e.g. {missing[:5]}"
        raise SampleMismatchError(msg)
    return np.array([pos[w] for w in want], np.int64)


def _open_text(path: Path):
    with path.open("rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rt") if magic == b"\x1f\x8b" else path.open()


def read_expression(path: str | os.PathLike[str], fmt: str = "auto") -> Expression:
    """Read an expression matrix; ``fmt`` is ``auto``, ``bed``, ``tsv`` or ``parquet``.

    Non-numeric values are an error naming the line and column; ``NA``/``nan`` are kept as NaN.
    Duplicate sample or gene IDs are an error.
    """
    p = Path(path)
    if not p.exists():
        msg = f"{p}: expression file not found"
        raise InputFileError(msg)
    name = p.name.lower().removesuffix(".gz")
    if fmt == "auto":
        fmt = "bed" if name.endswith(".bed") else "parquet" if name.endswith(".parquet") else "tsv"
    if fmt == "parquet":
        df = pl.read_parquet(p)
        if df.columns[0] != "gene_id":
            msg = f"{p}: first column must be gene_id; got {df.columns[0]}"
            raise InputFileError(msg)
        samples = df.columns[1:]
        try:
            values = df.select(samples).cast(pl.Float64).to_numpy()
        except Exception as e:
            msg = f"{p}: non-numeric expression values ({e})"
            raise InputFileError(msg) from e
        expr = Expression(str(p), df["gene_id"].cast(pl.String).to_list(), list(samples), values)
    elif fmt in ("bed", "tsv"):
        expr = _read_text(p, bed=fmt == "bed")
    else:
        msg = f"{p}: unknown expression format '{fmt}' (bed, tsv or parquet)"
        raise InputFileError(msg)
    _check_unique(expr.samples, "sample", p)
    _check_unique(expr.gene_ids, "gene", p)
    return expr


def _check_unique(items: list[str], what: str, p: Path) -> None:
    seen: set[str] = set()
    dups = [x for x in items if x in seen or seen.add(x)]
    if dups:
        msg = f"{p}: duplicate {what} IDs {dups[:5]}; each must appear once"
        raise SampleMismatchError(msg) if what == "sample" else InputFileError(msg)


def _read_text(p: Path, *, bed: bool) -> Expression:
    genes: list[str] = []
    rows: list[NDArray[np.float64]] = []
    with _open_text(p) as fh:
        header_line = fh.readline()
        if not header_line:
            msg = f"{p}: empty file"
            raise InputFileError(msg)
        header = header_line.rstrip("\n").split("\t")
        if bed:
            first = 4 + sum(1 for c in header[4:] if c.lower() in _BED_META)
            gene_col = 3
        else:
            first, gene_col = 1, 0
        samples = header[first:]
        if not samples:
            msg = f"{p}, line 1: no sample columns in the header"
            raise InputFileError(msg)
        for lineno, line in enumerate(fh, 2):
            if not line.strip():
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) != len(header):
                msg = f"{p}, line {lineno}: {len(f)} columns, header has {len(header)}; the file may be truncated"
                raise InputFileError(msg)
            try:
                rows.append(np.array([np.nan if x in ("NA", "nan", "") else float(x) for x in f[first:]]))
            except ValueError:
                bad = next(i for i, x in enumerate(f[first:]) if not _is_number(x))
                msg = (
                    f"{p}, line {lineno}, column '{samples[bad]}': non-numeric expression value "
                    f"'{f[first + bad]}' for gene {f[gene_col]}"
                )
                raise InputFileError(msg) from None
            genes.append(f[gene_col])
    if not rows:
        msg = f"{p}: no genes found"
        raise InputFileError(msg)
    return Expression(str(p), genes, samples, np.vstack(rows))


def _is_number(x: str) -> bool:
    if x in ("NA", "nan", ""):
        return True
    try:
        float(x)
    except ValueError:
        return False
    return True


def transform(values: NDArray[np.float64], method: str) -> NDArray[np.float64]:
    """Whole-matrix transform needing no fitted state, applied per gene (row).

    ``none``; ``log1p`` (natural log of x + 1); ``log2p1`` (log2(x + 1), for RPKM/TPM);
    ``inverse_normal`` (per-gene rank-based inverse-normal, ties averaged, (r - 0.5) / n).
    Negative inputs to the log transforms are an error.
    """
    if method == "none":
        return values.copy()
    if method in ("log1p", "log2p1"):
        if np.nanmin(values) < 0:
            msg = f"expression.transform={method}: negative values present; use 'none' or 'inverse_normal'"
            raise ValueError(msg)
        return np.log1p(values) if method == "log1p" else np.log2(values + 1.0)
    if method == "inverse_normal":
        out = np.full_like(values, np.nan)
        for i, row in enumerate(values):
            ok = ~np.isnan(row)
            n = ok.sum()
            if n:
                out[i, ok] = norm.ppf((rankdata(row[ok]) - 0.5) / n)
        return out
    msg = f"expression.transform: unknown method '{method}' (none, log1p, log2p1, inverse_normal)"
    raise ValueError(msg)


def read_covariates(path: str | os.PathLike[str]) -> tuple[list[str], list[str], NDArray[np.float64]]:
    """Covariates in QTLtools/tensorQTL orientation: a header ``id <samples>``, one row per covariate.

    Whitespace-separated. Returns ``(samples, covariate_names, values[sample, covariate])``.
    """
    p = Path(path)
    if not p.exists():
        msg = f"{p}: covariate file not found"
        raise InputFileError(msg)
    names: list[str] = []
    rows: list[list[float]] = []
    with _open_text(p) as fh:
        header = fh.readline().split()
        samples = header[1:]
        for lineno, line in enumerate(fh, 2):
            f = line.split()
            if not f:
                continue
            if len(f) != len(header):
                msg = f"{p}, line {lineno}: {len(f)} fields, header has {len(header)}"
                raise InputFileError(msg)
            try:
                rows.append([float(x) for x in f[1:]])
            except ValueError:
                msg = f"{p}, line {lineno}: non-numeric covariate value in row {f[0]}"
                raise InputFileError(msg) from None
            names.append(f[0].rsplit("/", 1)[-1])
    _check_unique(samples, "sample", p)
    return samples, names, np.array(rows, np.float64).T.copy()


@dataclass(frozen=True)
class SampleReport:
    """Outcome of matching samples across inputs."""

    kept: list[str]
    only_in_vcf: list[str]
    only_in_expression: list[str]
    only_in_covariates: list[str]

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"{len(self.kept)} samples kept; dropped {len(self.only_in_vcf)} only in the VCF, "
            f"{len(self.only_in_expression)} only in the expression, {len(self.only_in_covariates)} without covariates"
        )


def reconcile_samples(
    vcf_samples: list[str],
    expression_samples: list[str],
    covariate_samples: list[str] | None = None,
    *,
    expression_path: str = "expression",
    vcf_path: str = "VCF",
    drop_unmatched: bool = False,
) -> SampleReport:
    """Samples present in every input, in VCF order, and what was dropped.

    Individuals in the expression matrix but absent from the VCF cannot be predicted: that is an
    error unless ``drop_unmatched`` (config ``data.drop_unmatched_samples``). Individuals only in
    the VCF are fine (new individuals to predict) and simply not used for training.
    """
    e_set = set(expression_samples)
    v_set = set(vcf_samples)
    only_expr = [s for s in expression_samples if s not in v_set]
    if only_expr and not drop_unmatched:
        msg = (
            f"{expression_path}: {len(only_expr)} sample(s) not in {vcf_path}, e.g. {only_expr[:5]}; "
            f"fix the IDs or set data.drop_unmatched_samples: true"
        )
        raise SampleMismatchError(msg)
    c_set = set(covariate_samples) if covariate_samples is not None else None
    kept = [s for s in vcf_samples if s in e_set and (c_set is None or s in c_set)]
    if not kept:
        msg = (
            f"{expression_path} and {vcf_path} share no sample IDs (e.g. {expression_samples[:3]} vs {vcf_samples[:3]})"
        )
        raise SampleMismatchError(msg)
    return SampleReport(
        kept,
        [s for s in vcf_samples if s not in e_set],
        only_expr,
        [s for s in vcf_samples if s in e_set and c_set is not None and s not in c_set],
    )
