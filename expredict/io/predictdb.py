"""PredictDB model files: the SQLite ``.db`` and the gzip covariance file, as PredictDB writes them.

Written tables (exact names; MetaXcan reads ``weights`` and ``extra``)::

    weights(rsid TEXT, gene TEXT, weight DOUBLE, ref_allele CHARACTER, eff_allele CHARACTER, varID TEXT)
    extra(gene TEXT, genename TEXT, `n.snps.in.model` INTEGER, `pred.perf.R2` DOUBLE,
          `pred.perf.pval` DOUBLE, `pred.perf.qval` DOUBLE)
    construction(chromosome TEXT, cv_seed INTEGER)
    sample_info(n_samples INTEGER, population TEXT)
    model_summary(<the 24 PredictDB model-summary columns>)
    indexes weights_rsid, weights_gene, weights_rsid_gene, gene_model_summary

Predicted expression of gene ``g`` = ``sum(weight * dosage(eff_allele))`` with dosages in 0..2
(no intercept). Writes go to a temporary sibling then ``os.replace``.
"""

from __future__ import annotations

import gzip
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from numpy.typing import NDArray

from expredict.atomic import atomic_path
from expredict.errors import InputFileError
from expredict.io.genotypes import MISSING_ALLELE, NO_ALLELE, GenotypeArrays

__all__ = [
    "EXTRA_COLUMNS",
    "WEIGHT_COLUMNS",
    "PredictDBModel",
    "VariantMatch",
    "match_variants",
    "predict_from_predictdb",
    "read_covariances",
    "read_predictdb",
    "write_covariances",
    "write_predictdb",
]

WEIGHT_COLUMNS = ("rsid", "gene", "weight", "ref_allele", "eff_allele", "varID")
EXTRA_COLUMNS = ("gene", "genename", "n.snps.in.model", "pred.perf.R2", "pred.perf.pval", "pred.perf.qval")
_COMPLEMENT = {"A": "T", "T": "A", "C": "G", "G": "C"}

_DDL = """
CREATE TABLE weights (rsid TEXT, gene TEXT, weight DOUBLE, ref_allele CHARACTER, eff_allele CHARACTER, varID TEXT);
CREATE TABLE extra (gene TEXT, genename TEXT, `n.snps.in.model` INTEGER, `pred.perf.R2` DOUBLE,
                    `pred.perf.pval` DOUBLE, `pred.perf.qval` DOUBLE);
CREATE TABLE construction (chromosome TEXT, cv_seed INTEGER);
CREATE TABLE sample_info (n_samples INTEGER, population TEXT);
"""
_INDEXES = """
CREATE INDEX weights_rsid ON weights (rsid);
CREATE INDEX weights_gene ON weights (gene);
CREATE INDEX weights_rsid_gene ON weights (rsid, gene);
CREATE INDEX gene_model_summary ON extra (gene);
"""


def _sql_type(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "INTEGER"
    if dtype.is_float():
        return "DOUBLE"
    return "TEXT"


def _py(v: object) -> object:
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def write_predictdb(
    path: str | os.PathLike[str],
    weights: pl.DataFrame,
    extra: pl.DataFrame,
    *,
    model_summary: pl.DataFrame | None = None,
    construction: dict | None = None,
    sample_info: dict | None = None,
) -> Path:
    """Write a PredictDB ``.db`` atomically (temporary sibling, then ``os.replace``).

    Parameters
    ----------
    weights : polars.DataFrame
        Columns ``rsid, gene, weight, ref_allele, eff_allele`` and optionally ``varID``.
    extra : polars.DataFrame
        Columns :data:`EXTRA_COLUMNS` (``pred.perf.qval`` may be null).
    model_summary : polars.DataFrame, optional
        Stored as table ``model_summary`` (PredictDB's 24 columns; any columns accepted).
    construction : dict, optional
        ``chromosome``, ``cv_seed``.
    sample_info : dict, optional
        ``n_samples``, ``population``.
    """
    path = Path(path)
    missing = [c for c in WEIGHT_COLUMNS[:5] if c not in weights.columns]
    missing += [c for c in EXTRA_COLUMNS if c not in extra.columns]
    if missing:
        msg = f"write_predictdb({path}): missing columns {missing}"
        raise ValueError(msg)
    if "varID" not in weights.columns:
        weights = weights.with_columns(pl.col("rsid").alias("varID"))
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        try:
            con.executescript(_DDL)
            con.executemany("INSERT INTO weights VALUES (?, ?, ?, ?, ?, ?)", weights.select(WEIGHT_COLUMNS).iter_rows())
            con.executemany(
                "INSERT INTO extra VALUES (?, ?, ?, ?, ?, ?)",
                ([_py(v) for v in row] for row in extra.select(EXTRA_COLUMNS).iter_rows()),
            )
            c = construction or {}
            con.execute("INSERT INTO construction VALUES (?, ?)", (c.get("chromosome"), c.get("cv_seed")))
            s = sample_info or {}
            con.execute("INSERT INTO sample_info VALUES (?, ?)", (s.get("n_samples"), s.get("population")))
            if model_summary is not None:
                cols = ", ".join(f"`{n}` {_sql_type(t)}" for n, t in model_summary.schema.items())
                con.execute(f"CREATE TABLE model_summary ({cols})")
                marks = ", ".join("?" * model_summary.width)
                con.executemany(
                    f"INSERT INTO model_summary VALUES ({marks})",
                    ([_py(v) for v in row] for row in model_summary.iter_rows()),
                )
            con.executescript(_INDEXES)
            con.commit()
        finally:
            con.close()
    return path


def write_covariances(path: str | os.PathLike[str], covariances: pl.DataFrame) -> Path:
    """Write ``GENE RSID1 RSID2 VALUE`` (space-separated, header, gzip) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, gzip.open(tmp, "wt") as fh:
        fh.write("GENE RSID1 RSID2 VALUE\n")
        for g, a, b, v in covariances.select("GENE", "RSID1", "RSID2", "VALUE").iter_rows():
            fh.write(f"{g} {a} {b} {v:.10g}\n")
    return path


def read_covariances(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read a PredictDB covariance file (gzip or plain, space-separated, header)."""
    return pl.read_csv(path, separator=" ", schema_overrides={"VALUE": pl.Float64})


@dataclass(frozen=True)
class PredictDBModel:
    """A PredictDB model read back.

    ``weights`` has :data:`WEIGHT_COLUMNS` (``varID`` null when the file has none); ``extra``
    has :data:`EXTRA_COLUMNS` (older ``extra(gene, genename, R2, n.snps)`` files are mapped:
    ``R2`` -> ``pred.perf.R2``, ``n.snps`` -> ``n.snps.in.model``; absent columns are null).
    ``tables`` lists every table in the file; ``model_summary``, ``construction`` and
    ``sample_info`` are present when the file has them.
    """

    path: str
    weights: pl.DataFrame
    extra: pl.DataFrame
    tables: tuple[str, ...]
    model_summary: pl.DataFrame | None = None
    construction: pl.DataFrame | None = None
    sample_info: pl.DataFrame | None = None


def _table(con: sqlite3.Connection, name: str) -> pl.DataFrame:
    cur = con.execute(f"SELECT * FROM `{name}`")
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall()
    return pl.DataFrame(rows, schema=cols, orient="row", infer_schema_length=None)


def read_predictdb(path: str | os.PathLike[str]) -> PredictDBModel:
    """Read a PredictDB ``.db`` (ours, GTEx v7/v8 elastic-net or MASHR, older forms)."""
    p = Path(path)
    if not p.exists():
        msg = f"{p}: PredictDB model file not found"
        raise InputFileError(msg)
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        tables = tuple(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    except sqlite3.DatabaseError as e:
        msg = f"{p}: not an SQLite PredictDB file ({e})"
        raise InputFileError(msg) from e
    try:
        if "weights" not in tables or "extra" not in tables:
            msg = f"{p}: PredictDB file needs tables 'weights' and 'extra'; found {list(tables)}"
            raise InputFileError(msg)
        w = _table(con, "weights")
        e = _table(con, "extra")
        extras = {n: _table(con, n) for n in ("model_summary", "construction", "sample_info") if n in tables}
    finally:
        con.close()
    need = [c for c in WEIGHT_COLUMNS[:5] if c not in w.columns]
    if need:
        msg = f"{p}: table 'weights' lacks columns {need} (has {w.columns})"
        raise InputFileError(msg)
    w = w.select(
        pl.col("rsid").cast(pl.Utf8), pl.col("gene").cast(pl.Utf8), pl.col("weight").cast(pl.Float64),
        pl.col("ref_allele").cast(pl.Utf8), pl.col("eff_allele").cast(pl.Utf8),
        (pl.col("varID").cast(pl.Utf8) if "varID" in w.columns else pl.lit(None, dtype=pl.Utf8)).alias("varID"),
    )  # fmt: skip
    rename = {"R2": "pred.perf.R2", "n.snps": "n.snps.in.model"}
    e = e.rename({k: v for k, v in rename.items() if k in e.columns and v not in e.columns})
    if "gene" not in e.columns:
        msg = f"{p}: table 'extra' lacks column 'gene' (has {e.columns})"
        raise InputFileError(msg)
    types = {"gene": pl.Utf8, "genename": pl.Utf8, "n.snps.in.model": pl.Int64, "pred.perf.R2": pl.Float64,
             "pred.perf.pval": pl.Float64, "pred.perf.qval": pl.Float64}  # fmt: skip
    e = e.select([(pl.col(c) if c in e.columns else pl.lit(None)).cast(t).alias(c) for c, t in types.items()])
    return PredictDBModel(
        str(p), w, e, tables, extras.get("model_summary"), extras.get("construction"), extras.get("sample_info")
    )


# --------------------------------------------------------------------------------------------
# prediction


@dataclass(frozen=True)
class VariantMatch:
    """How the model's weight rows matched the genotypes.

    ``variant[i]``/``allele[i]``: variant index in the genotypes and the allele index whose dosage
    the weight multiplies (-1 = unmatched). ``status[i]`` is ``"direct"`` (eff = an ALT, ref = REF),
    ``"swapped"`` (eff = REF: dosage ``2 - d``), ``"flipped"``/``"flipped_swapped"`` (after strand
    complement) or ``"unmatched"``.
    """

    variant: NDArray[np.int64]
    allele: NDArray[np.int64]
    status: list[str]

    def counts(self) -> dict[str, int]:
        """Number of weight rows per status."""
        out: dict[str, int] = {}
        for s in self.status:
            out[s] = out.get(s, 0) + 1
        return out


def _parse_varid(key: str) -> tuple[str, int, str, str] | None:
    """``chr22_16051249_T_C_b37`` / ``22_16051249_T_C`` / ``chr22:16051249:T:C`` -> (contig, POS, a1, a2)."""
    parts = key.replace(":", "_").split("_")
    if len(parts) < 4 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2], parts[3]


def _norm_contig(c: str) -> str:
    return c[3:] if c.lower().startswith("chr") else c


def match_variants(
    weights: pl.DataFrame,
    genotypes: GenotypeArrays,
    *,
    snp_key: str = "auto",
    strand_flip: bool = False,
) -> VariantMatch:
    """Match weight rows to genotype records by id, then alleles.

    A row is looked up by its ``rsid`` (against the VCF ID and against ``contig_POS_REF_ALT``
    keys) or, with ``snp_key="varID"`` or when that fails under ``"auto"``, by the position in its
    ``varID``/``rsid`` key (``chr_pos_ref_alt_build``). Alleles decide the dosage: ``eff_allele``
    equal to an ALT with ``ref_allele`` equal to REF counts that ALT; ``eff_allele == REF`` counts
    REF, i.e. ``2 - d`` for a bi-allelic site. ``strand_flip`` also tries complemented alleles,
    never for strand-ambiguous A/T, C/G pairs.
    """
    if snp_key not in ("auto", "rsid", "varID"):
        msg = f"snp_key must be 'auto', 'rsid' or 'varID'; got {snp_key!r}"
        raise ValueError(msg)
    by_id: dict[str, list[int]] = {}
    for v, vid in enumerate(genotypes.ids):
        s = str(vid)
        if s and s != ".":
            for part in s.split(";"):
                by_id.setdefault(part, []).append(v)
    by_pos: dict[int, list[int]] = {}
    for v, st in enumerate(genotypes.starts):
        by_pos.setdefault(int(st) + 1, []).append(v)
    contig = _norm_contig(genotypes.contig)
    alleles_cache: dict[int, list[str]] = {}

    def alleles(v: int) -> list[str]:
        if v not in alleles_cache:
            alleles_cache[v] = genotypes.alleles(v)
        return alleles_cache[v]

    rsids = weights["rsid"].to_list()
    varids = weights["varID"].to_list() if "varID" in weights.columns else [None] * len(rsids)
    refs = weights["ref_allele"].to_list()
    effs = weights["eff_allele"].to_list()
    out_v = np.full(len(rsids), -1, np.int64)
    out_a = np.full(len(rsids), -1, np.int64)
    status = ["unmatched"] * len(rsids)
    for i, (rs, vid, ref, eff) in enumerate(zip(rsids, varids, refs, effs, strict=True)):
        ref = (ref or "").upper()
        eff = (eff or "").upper()
        cands: list[int] = []
        keys = [k for k in ((rs,) if snp_key == "rsid" else (vid,) if snp_key == "varID" else (rs, vid)) if k]
        for k in keys:
            cands.extend(by_id.get(k, []))
        if not cands:
            for k in keys:
                parsed = _parse_varid(k)
                if parsed is not None and _norm_contig(parsed[0]) == contig:
                    cands.extend(by_pos.get(parsed[1], []))
        for v in cands:
            al = alleles(v)
            hit = _allele_match(al, ref, eff)
            if hit is None and strand_flip and _COMPLEMENT.get(ref) != eff:
                cref = "".join(_COMPLEMENT.get(b, b) for b in ref)
                ceff = "".join(_COMPLEMENT.get(b, b) for b in eff)
                hit = _allele_match(al, cref, ceff)
                if hit is not None:
                    hit = (hit[0], "flipped" if hit[1] == "direct" else "flipped_swapped")
            if hit is not None:
                out_v[i], out_a[i], status[i] = v, hit[0], hit[1]
                break
    return VariantMatch(out_v, out_a, status)


def _allele_match(al: list[str], ref: str, eff: str) -> tuple[int, str] | None:
    if eff not in al or ref not in al or eff == ref:
        return None
    k = al.index(eff)
    if k > 0 and al.index(ref) == 0:
        return k, "direct"
    if k == 0:
        return 0, "swapped"
    return k, "direct"  # both alleles ALT of a multi-allelic site: count eff


def allele_dosages(
    genotypes: GenotypeArrays, variants: NDArray[np.int64], alleles: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Dosage (0..2) of allele ``alleles[j]`` of variant ``variants[j]``, ``float64[n_sample, m]``.

    Missing calls get the allele's mean frequency among called haplotypes (PrediXcan's mean
    imputation). For a bi-allelic site the REF dosage is exactly ``2 - ALT dosage``.
    """
    G = genotypes.genotypes[:, variants]
    hit = (G == alleles[None, :]).astype(np.float64)
    miss = G == MISSING_ALLELE
    if miss.any():
        called = (~miss) & (G != NO_ALLELE)
        freq = hit.sum(axis=0) / np.maximum(called.sum(axis=0), 1)
        hit = np.where(miss, freq[None, :], hit)
    return hit.reshape(genotypes.n_samples, 2, len(variants)).sum(axis=1)


def predict_from_predictdb(
    model: PredictDBModel | str | os.PathLike[str],
    genotypes: GenotypeArrays,
    *,
    genes: list[str] | None = None,
    snp_key: str = "auto",
    strand_flip: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Predict every gene of a PredictDB model for the samples of ``genotypes``.

    Returns ``(predictions, report)``: ``predictions`` has ``gene`` + one column per sample
    (``sum(weight * dosage(eff_allele))``, unmatched variants contribute 0, as MetaXcan);
    ``report`` has ``gene, n_weights, n_matched, n_swapped, n_flipped``. Weights on other contigs
    simply do not match; call once per contig and add.
    """
    m = model if isinstance(model, PredictDBModel) else read_predictdb(model)
    w = m.weights if genes is None else m.weights.filter(pl.col("gene").is_in(genes))
    match = match_variants(w, genotypes, snp_key=snp_key, strand_flip=strand_flip)
    ok = match.variant >= 0
    D = allele_dosages(genotypes, match.variant[ok], match.allele[ok])
    gene_list = w["gene"].unique(maintain_order=True).to_list() if genes is None else list(genes)
    gidx = {g: i for i, g in enumerate(gene_list)}
    W = np.zeros((int(ok.sum()), len(gene_list)))
    rows = np.flatnonzero(ok)
    gcol = w["gene"].to_list()
    wcol = w["weight"].to_numpy()
    for j, r in enumerate(rows):
        W[j, gidx[gcol[r]]] = wcol[r]
    P = D @ W  # (n_sample, n_gene)
    pred = pl.DataFrame({"gene": gene_list}).hstack(pl.DataFrame(P.T, schema=list(genotypes.samples), orient="row"))
    st = pl.Series(match.status)
    report = (
        pl.DataFrame({"gene": gcol, "ok": ok, "st": st})
        .group_by("gene", maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("n_weights"),
            pl.col("ok").sum().cast(pl.Int64).alias("n_matched"),
            pl.col("st").is_in(["swapped", "flipped_swapped"]).sum().cast(pl.Int64).alias("n_swapped"),
            pl.col("st").str.starts_with("flipped").sum().cast(pl.Int64).alias("n_flipped"),
        )
    )
    return pred, report
