"""Per-gene cross-individual metrics on held-out individuals, method summaries, head-to-head tests.

The unit of evaluation is one gene: the correlation between predicted and observed expression
**across the held-out individuals**: how well a method ranks people for that gene, which is what
personal prediction is for. Correlations across genes (which mostly reflect how highly each gene is
expressed) are never computed here. Every method is scored on the same test individuals and genes; rows are joined on
``(gene_id, sample)`` so a method that skipped an individual is scored on fewer (``n_test`` says so).

Input tables are long: ``gene_id, sample, prediction`` and ``gene_id, sample, observed``. A wide
table (``gene_id`` then one column per sample, as written by ``expredict predict``) is also
accepted and melted first.

Conventions
-----------
- ``pearson_r``/``spearman_r`` are NaN (never an error) when fewer than :data:`MIN_N` individuals
  remain or when either side is constant across individuals (a method that predicts the same value
  for everyone has no cross-individual signal); ``n_test`` is still reported.
- ``p_value`` is the two-sided p-value of the Pearson r (t test with ``n - 2`` df, as
  :func:`scipy.stats.pearsonr`), NaN when r is NaN.
- ``r2 = 1 - SSE / SST`` of the predictions against the observed values **as given** (no
  rescaling), so a method predicting on a different scale has a negative R² while its r may be
  high; NaN when the observed values are constant.
- Null or non-finite predictions/observations are dropped before scoring (they lower ``n_test``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import polars as pl
from scipy import stats

__all__ = [
    "GENE_CLASSES",
    "MIN_N",
    "PER_GENE_COLUMNS",
    "HeadToHead",
    "canonical_gene_class",
    "head_to_head",
    "head_to_head_table",
    "per_gene_metrics",
    "per_gene_wide",
    "summarize_methods",
    "to_long",
]

PER_GENE_COLUMNS = ("gene_id", "method", "pearson_r", "spearman_r", "r2", "p_value", "n_test")
"""Columns of :func:`per_gene_metrics`, in order (``OUT/metrics/per_gene.parquet`` starts with these)."""

GENE_CLASSES = ("seen_genes_new_individuals", "new_population", "unseen_genes")
"""Gene classes, in report order: genes trained on and scored on new individuals (the main number),
genes scored on a population not trained on, and genes never trained on (held out by position block)."""

_CLASS_ALIASES = {
    "seen": "seen_genes_new_individuals",
    "a": "seen_genes_new_individuals",
    "new_individuals": "seen_genes_new_individuals",
    "b": "new_population",
    "population": "new_population",
    "unseen": "unseen_genes",
    "c": "unseen_genes",
}

MIN_N = 3
"""Fewest scored individuals for which a correlation is computed (below it: NaN)."""


def canonical_gene_class(name: str | None) -> str | None:
    """Map a gene-class label to its canonical name in :data:`GENE_CLASSES`.

    ``seen`` -> ``seen_genes_new_individuals`` and ``unseen`` -> ``unseen_genes`` (the labels of
    ``OUT/splits/genes.tsv``); the canonical names map to themselves; any other label (for example
    ``buffer``) is returned unchanged.
    """
    if name is None:
        return None
    return _CLASS_ALIASES.get(str(name), str(name))


def to_long(df: pl.DataFrame, value_name: str) -> pl.DataFrame:
    """Return ``df`` as a long table ``gene_id, sample, <value_name>`` (Float64, sample as String).

    Parameters
    ----------
    df : pl.DataFrame
        Either long (has ``gene_id``, ``sample`` and ``value_name`` columns) or wide (``gene_id``
        then one numeric column per sample).
    value_name : str
        Name of the value column (``prediction`` or ``observed``).
    """
    if "gene_id" not in df.columns:
        msg = f"expected a table with a 'gene_id' column; got columns {df.columns[:8]}"
        raise ValueError(msg)
    if "sample" in df.columns:
        if value_name not in df.columns:
            msg = f"long table needs columns gene_id, sample, {value_name}; got {df.columns}"
            raise ValueError(msg)
        out = df.select("gene_id", "sample", value_name)
    else:
        value_cols = [c for c in df.columns if c not in ("gene_id", "method", "gene_class")]
        out = df.unpivot(index="gene_id", on=value_cols, variable_name="sample", value_name=value_name)
    return out.with_columns(
        pl.col("gene_id").cast(pl.String), pl.col("sample").cast(pl.String), pl.col(value_name).cast(pl.Float64)
    )


def _check_unique(df: pl.DataFrame, what: str) -> None:
    dup = df.group_by("gene_id", "sample").len().filter(pl.col("len") > 1)
    if dup.height:
        first = dup.head(3).select("gene_id", "sample").rows()
        msg = f"{what}: {dup.height} duplicated (gene_id, sample) pairs, e.g. {first}; give one value per pair"
        raise ValueError(msg)


def _p_from_r(r: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Two-sided p-value of a correlation r over n points (t test, n - 2 df); NaN where r is NaN."""
    p = np.full(r.shape, np.nan)
    ok = np.isfinite(r) & (n >= MIN_N)
    if ok.any():
        rr = np.clip(np.abs(r[ok]), 0.0, 1.0)
        df = n[ok] - 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            t = rr * np.sqrt(df / np.maximum(1.0 - rr * rr, 0.0))
        p[ok] = np.where(rr >= 1.0, 0.0, 2.0 * stats.t.sf(t, df))
    return p


def per_gene_metrics(
    predictions: pl.DataFrame,
    observed: pl.DataFrame,
    method: str,
    *,
    annotations: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Score one method per gene across held-out individuals.

    Parameters
    ----------
    predictions : pl.DataFrame
        ``gene_id, sample, prediction`` (long) or wide (``gene_id`` + one column per sample), for
        the test individuals only.
    observed : pl.DataFrame
        ``gene_id, sample, observed`` (long) or wide, the normalised targets of the same
        individuals.
    method : str
        Method name written to the ``method`` column (``nt_head``, ``enet``, ``enformer``, ...).
    annotations : pl.DataFrame, optional
        Per-gene extras keyed by ``gene_id``, left-joined after the metric columns: e.g.
        ``gene_class`` (mapped through :func:`canonical_gene_class`), ``cis_h2`` (adds
        ``r_ceiling = sqrt(cis_h2)``, NaN for a negative h²), ``n_variants``. Default is None.

    Returns
    -------
    pl.DataFrame
        One row per gene present in ``predictions`` (sorted by ``gene_id``), columns
        :data:`PER_GENE_COLUMNS` then the annotation columns. A gene with no scored individual has
        ``n_test = 0`` and NaN metrics.

    Raises
    ------
    ValueError
        Missing columns or duplicated ``(gene_id, sample)`` pairs.
    """
    pred = to_long(predictions, "prediction")
    obs = to_long(observed, "observed")
    _check_unique(pred, f"predictions of {method!r}")
    _check_unique(obs, "observed")
    genes = pred.select("gene_id").unique().sort("gene_id")

    joined = pred.join(obs, on=["gene_id", "sample"], how="inner").filter(
        pl.col("prediction").is_finite() & pl.col("observed").is_finite()
    )
    g = pl.col("gene_id")
    x, y = pl.col("prediction"), pl.col("observed")
    joined = joined.with_columns(
        (x - x.mean().over(g)).alias("_dx"),
        (y - y.mean().over(g)).alias("_dy"),
        x.rank("average").over(g).alias("_rx"),
        y.rank("average").over(g).alias("_ry"),
    ).with_columns(
        (pl.col("_rx") - pl.col("_rx").mean().over(g)).alias("_drx"),
        (pl.col("_ry") - pl.col("_ry").mean().over(g)).alias("_dry"),
    )
    agg = joined.group_by("gene_id").agg(
        pl.len().alias("n_test"),
        ((x.max() - x.min()) > 0).alias("_x_varies"),
        ((y.max() - y.min()) > 0).alias("_y_varies"),
        (pl.col("_dx") * pl.col("_dy")).sum().alias("_sxy"),
        (pl.col("_dx") ** 2).sum().alias("_sxx"),
        (pl.col("_dy") ** 2).sum().alias("_syy"),
        (pl.col("_drx") * pl.col("_dry")).sum().alias("_rxy"),
        (pl.col("_drx") ** 2).sum().alias("_rxx"),
        (pl.col("_dry") ** 2).sum().alias("_ryy"),
        ((y - x) ** 2).sum().alias("_sse"),
    )
    df = genes.join(agg, on="gene_id", how="left").sort("gene_id")
    n = df["n_test"].fill_null(0).to_numpy().astype(np.int64)
    varies = (df["_x_varies"].fill_null(False) & df["_y_varies"].fill_null(False)).to_numpy()
    y_varies = df["_y_varies"].fill_null(False).to_numpy()

    def col(name: str) -> np.ndarray:
        return df[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    ok = varies & (n >= MIN_N)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(ok, col("_sxy") / np.sqrt(col("_sxx") * col("_syy")), np.nan)
        rho = np.where(ok, col("_rxy") / np.sqrt(col("_rxx") * col("_ryy")), np.nan)
        r2 = np.where(y_varies & (n >= 1), 1.0 - col("_sse") / col("_syy"), np.nan)
    r = np.clip(r, -1.0, 1.0)
    rho = np.clip(rho, -1.0, 1.0)
    out = pl.DataFrame(
        {
            "gene_id": df["gene_id"],
            "method": [str(method)] * df.height,
            "pearson_r": r,
            "spearman_r": rho,
            "r2": r2,
            "p_value": _p_from_r(r, n.astype(float)),
            "n_test": n,
        },
        schema={
            "gene_id": pl.String,
            "method": pl.String,
            "pearson_r": pl.Float64,
            "spearman_r": pl.Float64,
            "r2": pl.Float64,
            "p_value": pl.Float64,
            "n_test": pl.Int64,
        },
    )
    if annotations is not None:
        out = _annotate(out, annotations)
    return out


def _annotate(per_gene: pl.DataFrame, annotations: pl.DataFrame) -> pl.DataFrame:
    if "gene_id" not in annotations.columns:
        msg = f"annotations need a 'gene_id' column; got {annotations.columns}"
        raise ValueError(msg)
    ann = annotations.with_columns(pl.col("gene_id").cast(pl.String)).unique("gene_id", keep="first")
    ann = ann.drop([c for c in ann.columns if c in PER_GENE_COLUMNS and c != "gene_id"])
    if "gene_class" in ann.columns:
        ann = ann.with_columns(pl.col("gene_class").cast(pl.String).replace(_CLASS_ALIASES).alias("gene_class"))
    if "cis_h2" in ann.columns and "r_ceiling" not in ann.columns:
        h2 = pl.col("cis_h2").cast(pl.Float64)
        ann = ann.with_columns(
            pl.when(h2 >= 0).then(h2.sqrt()).otherwise(None).fill_null(float("nan")).alias("r_ceiling")
        )
    return per_gene.join(ann, on="gene_id", how="left")


def _finite_r() -> pl.Expr:
    return pl.col("pearson_r").filter(pl.col("pearson_r").is_not_nan() & pl.col("pearson_r").is_not_null())


def _class_order(classes: Iterable[str]) -> list[str]:
    present = [c for c in set(classes) if c is not None]
    return [c for c in GENE_CLASSES if c in present] + sorted(c for c in present if c not in GENE_CLASSES)


def summarize_methods(per_gene: pl.DataFrame) -> pl.DataFrame:
    """Summarise per-gene metrics per method (statistics over genes of the per-gene r).

    Parameters
    ----------
    per_gene : pl.DataFrame
        Rows of :func:`per_gene_metrics` for one or more methods (concatenated).

    Returns
    -------
    pl.DataFrame
        One row per method (in order of first appearance): ``method, n_genes`` (rows), ``n_scored``
        (genes with a finite r), ``mean_r, median_r, sd_r, mean_abs_r, frac_r_negative`` (over
        genes with a finite r), ``mean_spearman_r, median_r2, frac_p_lt_0.05``; with an
        ``r_ceiling`` column also ``mean_r_ceiling`` and ``mean_r_over_ceiling`` (mean r / mean
        ceiling on the genes that have both); with a ``gene_class`` column, ``mean_r[<class>]`` and
        ``n_scored[<class>]`` for every class present (:data:`GENE_CLASSES` order first). Statistics of a
        method without any finite r are NaN.
    """
    methods = per_gene["method"].unique(maintain_order=True).to_list()
    fr = _finite_r()
    exprs = [
        pl.len().alias("n_genes"),
        fr.count().alias("n_scored"),
        fr.mean().alias("mean_r"),
        fr.median().alias("median_r"),
        fr.std().alias("sd_r"),
        fr.abs().mean().alias("mean_abs_r"),
        (fr < 0).mean().alias("frac_r_negative"),
        pl.col("spearman_r").filter(pl.col("spearman_r").is_not_nan()).mean().alias("mean_spearman_r"),
        pl.col("r2").filter(pl.col("r2").is_not_nan()).median().alias("median_r2"),
        (pl.col("p_value").filter(pl.col("p_value").is_not_nan()) < 0.05).mean().alias("frac_p_lt_0.05"),
    ]
    if "r_ceiling" in per_gene.columns:
        both = pl.col("pearson_r").is_not_nan() & pl.col("r_ceiling").is_not_nan() & pl.col("r_ceiling").is_not_null()
        exprs += [
            pl.col("r_ceiling").filter(pl.col("r_ceiling").is_not_nan()).mean().alias("mean_r_ceiling"),
            (pl.col("pearson_r").filter(both).mean() / pl.col("r_ceiling").filter(both).mean()).alias(
                "mean_r_over_ceiling"
            ),
        ]
    if "gene_class" in per_gene.columns:
        cls = pl.col("gene_class").cast(pl.String).replace(_CLASS_ALIASES)
        for c in _class_order(per_gene.select(cls)["gene_class"].to_list()):
            in_c = pl.col("pearson_r").is_not_nan() & pl.col("pearson_r").is_not_null() & (cls == c)
            exprs += [
                pl.col("pearson_r").filter(in_c).mean().alias(f"mean_r[{c}]"),
                pl.col("pearson_r").filter(in_c).count().alias(f"n_scored[{c}]"),
            ]
    out = per_gene.group_by("method").agg(exprs)
    order = pl.DataFrame({"method": methods, "_o": range(len(methods))}, schema={"method": pl.String, "_o": pl.Int64})
    out = order.join(out, on="method", how="left").sort("_o").drop("_o")
    ints = [c for c in out.columns if c in ("n_genes", "n_scored") or c.startswith("n_scored[")]
    floats = [c for c in out.columns if c != "method" and c not in ints]
    return out.with_columns(
        [pl.col(c).cast(pl.Int64).fill_null(0) for c in ints]
        + [pl.col(c).cast(pl.Float64).fill_null(float("nan")) for c in floats]
    )


class HeadToHead(NamedTuple):
    """Paired comparison of two methods on the genes both scored (finite r for both)."""

    method_a: str
    method_b: str
    n_shared: int
    wins_a: int
    wins_b: int
    ties: int
    mean_r_a: float
    mean_r_b: float
    mean_diff: float
    """mean of (r_a - r_b) over shared genes."""
    wilcoxon_stat: float
    p_value: float
    """Two-sided paired Wilcoxon signed-rank p (scipy, ``zero_method="wilcox"``); NaN when fewer than
    two shared genes or all differences are zero."""


def head_to_head(per_gene: pl.DataFrame, a: str, b: str, *, metric: str = "pearson_r") -> HeadToHead:
    """Compare methods ``a`` and ``b`` gene by gene.

    Parameters
    ----------
    per_gene : pl.DataFrame
        Concatenated :func:`per_gene_metrics` rows (needs ``gene_id, method`` and ``metric``).
    a, b : str
        Method names.
    metric : str
        Per-gene column compared. Default is ``"pearson_r"``.

    Returns
    -------
    HeadToHead
        Win counts (a gene where ``r_a > r_b`` is a win for ``a``; equal values are ties) and a
        paired Wilcoxon signed-rank test on the shared genes.
    """
    for m in (a, b):
        if m not in per_gene["method"].unique().to_list():
            msg = f"head_to_head: no rows for method {m!r}; methods present: {per_gene['method'].unique().to_list()}"
            raise ValueError(msg)

    def side(m: str, name: str) -> pl.DataFrame:
        return (
            per_gene.filter(pl.col("method") == m)
            .select("gene_id", pl.col(metric).cast(pl.Float64).alias(name))
            .unique("gene_id", keep="first")
        )

    j = side(a, "_a").join(side(b, "_b"), on="gene_id", how="inner")
    ra = j["_a"].fill_null(np.nan).to_numpy()
    rb = j["_b"].fill_null(np.nan).to_numpy()
    keep = np.isfinite(ra) & np.isfinite(rb)
    ra, rb = ra[keep], rb[keep]
    d = ra - rb
    stat, p = math.nan, math.nan
    if d.size >= 2 and np.any(d != 0):
        try:
            res = stats.wilcoxon(ra, rb, zero_method="wilcox", alternative="two-sided")
            stat, p = float(res.statistic), float(res.pvalue)
        except ValueError:
            pass
    return HeadToHead(
        method_a=a,
        method_b=b,
        n_shared=int(d.size),
        wins_a=int(np.sum(d > 0)),
        wins_b=int(np.sum(d < 0)),
        ties=int(np.sum(d == 0)),
        mean_r_a=float(ra.mean()) if ra.size else math.nan,
        mean_r_b=float(rb.mean()) if rb.size else math.nan,
        mean_diff=float(d.mean()) if d.size else math.nan,
        wilcoxon_stat=stat,
        p_value=p,
    )


def head_to_head_table(per_gene: pl.DataFrame, methods: Sequence[str] | None = None) -> pl.DataFrame:
    """:func:`head_to_head` for every unordered pair of ``methods`` (default: all, in order of appearance)."""
    if methods is None:
        methods = per_gene["method"].unique(maintain_order=True).to_list()
    rows = [head_to_head(per_gene, a, b)._asdict() for a, b in itertools.combinations(methods, 2)]
    schema = {
        "method_a": pl.String,
        "method_b": pl.String,
        "n_shared": pl.Int64,
        "wins_a": pl.Int64,
        "wins_b": pl.Int64,
        "ties": pl.Int64,
        "mean_r_a": pl.Float64,
        "mean_r_b": pl.Float64,
        "mean_diff": pl.Float64,
        "wilcoxon_stat": pl.Float64,
        "p_value": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def per_gene_wide(per_gene: pl.DataFrame, metric: str = "pearson_r") -> pl.DataFrame:
    """One row per gene, one ``<metric>[<method>]`` column per method, plus ``n_test`` (max over
    methods) and ``gene_class`` / ``cis_h2`` / ``r_ceiling`` / ``n_variants`` when present."""
    methods = per_gene["method"].unique(maintain_order=True).to_list()
    wide = per_gene.pivot(on="method", index="gene_id", values=metric, aggregate_function="first")
    wide = wide.rename({m: f"{metric}[{m}]" for m in methods}).select("gene_id", *[f"{metric}[{m}]" for m in methods])
    extras = [c for c in ("gene_class", "cis_h2", "r_ceiling", "n_variants") if c in per_gene.columns]
    info = per_gene.group_by("gene_id").agg(pl.col("n_test").max(), *[pl.col(c).drop_nulls().first() for c in extras])
    return info.join(wide, on="gene_id", how="left").sort("gene_id")
