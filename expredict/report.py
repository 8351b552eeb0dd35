"""The comparison report, rendered as two strings: a self-contained HTML page and GitHub Markdown.

:func:`render_report` returns ``(html, markdown)``; the run engine writes them to
``OUT/report.html`` and ``OUT/report.md``. The HTML has its CSS inline and its figures as
``data:image/png;base64``; the Markdown has the same tables (figures only in the HTML).

Figures are drawn with matplotlib's object-oriented API on an Agg canvas (no pyplot, no global
backend switch), so writing a report is safe in worker processes and threads and needs no display.
A method listed in ``random_weight_methods`` gets a banner at the top of both files: its numbers
check the plumbing only and are not scientific results.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import itertools
import json
import math
import platform
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from expredict.evaluate import (
    PER_GENE_COLUMNS,
    head_to_head,
    head_to_head_table,
    per_gene_wide,
    summarize_methods,
    to_long,
)

__all__ = [
    "DEFAULT_VERSION_PACKAGES",
    "PUBLISHED_CONTEXT",
    "check_per_gene_table",
    "collect_versions",
    "pretraining_lines",
    "render_report",
]

DEFAULT_VERSION_PACKAGES = (
    "expredict",
    "numpy",
    "scipy",
    "polars",
    "pyarrow",
    "torch",
    "transformers",
    "enformer-pytorch",
    "scikit-learn",
    "numba",
    "cyvcf2",
    "pyfaidx",
    "dask",
    "distributed",
    "matplotlib",
    "safetensors",
    "pydantic",
)
"""Distributions whose versions :func:`collect_versions` records (absent ones as ``not installed``)."""

PUBLISHED_CONTEXT: tuple[tuple[str, str, str, str, str], ...] = (
    # setting, Enformer (no training), elastic net / PrediXcan, best DL trained on personal genomes, source
    (
        "Geuvadis LCL, random individual split, 49 kb",
        "0.055",
        "0.283 (BSLMM 0.288)",
        "0.282-0.286 (fine-tuned Enformer)",
        "[4]",
    ),
    ("Geuvadis, train EUR -> test YRI (new population)", "0.036", "0.160", "0.170", "[4]"),
    (
        "Unseen genes, held-out chromosomes",
        "0.056",
        "n/a",
        "~0.05 [4]; 0.006 / 0.038 / 0.023 per fold, GTEx blood [5]",
        "[4][5]",
    ),
    (
        "ROSMAP DLPFC, Enformer track 4980 vs out-of-cohort GTEx v8 EN",
        "0.011 (45.3 % of genes r < 0)",
        "0.261 (1,568 genes)",
        "-",
        "[3]",
    ),
    ("DGN whole blood, in-cohort 10-fold CV", "-", "R2 0.137 (r ~ 0.37; h2 0.153)", "-", "[6]"),
)
"""Published mean Pearson r over genes on held-out individuals, with the sources in :data:`_CITATIONS`."""

_CITATIONS = (
    ("[3]", "Sasse et al., Nat Genet 55:2060-2064 (2023), doi:10.1038/s41588-023-01524-6"),
    (
        "[4]",
        "Rastogi et al., Genome Biology (2026), doi:10.1186/s13059-026-04091-1 (perf_summary.csv, mean of 3 seeds)",
    ),
    ("[5]", "Drusinsky et al. (Variformer), Genome Biology (2026), doi:10.1186/s13059-025-03926-7"),
    ("[6]", "Gamazon et al. (PrediXcan), Nat Genet 47:1091-1098 (2015)"),
)

_CONTEXT_TEXT = (
    "Reference points from the literature: mean over genes of the cross-individual Pearson r on "
    "held-out individuals. An elastic net on cis variants reaches about 0.28 on Geuvadis LCLs; "
    "Enformer without training on personal genomes about 0.05, with close to half of the genes "
    "negative; no published model generalises to unseen genes (r about 0.00-0.06). The cis-heritability "
    "ceiling on Geuvadis (49 kb window) is about r = 0.37. Numbers are from other cohorts, gene sets "
    "and splits: they frame this report, they are not directly comparable to it."
)

_MAX_PAIR_PLOTS = 10
_N_BEST = 4


def check_per_gene_table(per_gene: pl.DataFrame) -> pl.DataFrame:
    """The per-gene table with :data:`PER_GENE_COLUMNS` first and extras after (ValueError when one is missing)."""
    missing = [c for c in PER_GENE_COLUMNS if c not in per_gene.columns]
    if missing:
        msg = f"per-gene table lacks columns {missing}; build it with expredict.evaluate.per_gene_metrics"
        raise ValueError(msg)
    extras = [c for c in per_gene.columns if c not in PER_GENE_COLUMNS]
    return per_gene.select(*PER_GENE_COLUMNS, *extras)


# ---------------------------------------------------------------------------- versions
def collect_versions(packages: Iterable[str] = DEFAULT_VERSION_PACKAGES) -> dict[str, str]:
    """Versions of Python, the platform and ``packages`` (``not installed`` for absent ones)."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
        except Exception as exc:  # a broken distribution must not stop a report
            versions[name] = f"unknown ({type(exc).__name__})"
    return versions


# ---------------------------------------------------------------------------- formatting
def _fmt(v: Any, col: str = "") -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        if col.startswith(("p_value", "p[")) or col == "wilcoxon_p":
            return f"{f:.2g}" if f >= 1e-3 else f"{f:.1e}"
        if col.startswith("frac"):
            return f"{100 * f:.1f} %"
        if col == "wilcoxon_stat":
            return f"{f:.1f}"
        return f"{f:.3f}"
    return str(v)


class _Table(NamedTuple):
    headers: list[str]
    rows: list[list[str]]


def _table(df: pl.DataFrame, rename: Mapping[str, str] | None = None) -> _Table:
    rename = rename or {}
    headers = [rename.get(c, c) for c in df.columns]
    rows = [[_fmt(v, c) for v, c in zip(row, df.columns, strict=True)] for row in df.iter_rows()]
    return _Table(headers, rows)


def _html_table(t: _Table, cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.headers)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in t.rows)
    klass = f' class="{html.escape(cls)}"' if cls else ""
    return f"<table{klass}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _md_cell(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(t: _Table) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in t.headers) + " |", "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in t.rows]
    return "\n".join(lines)


def _kv_table(d: Mapping[str, Any]) -> _Table:
    rows = []
    for k, v in d.items():
        if isinstance(v, (dict, list, tuple)):
            v = json.dumps(v, default=str, sort_keys=isinstance(v, dict))
        rows.append([str(k), "" if v is None else str(v)])
    return _Table(["item", "value"], rows)


# ---------------------------------------------------------------------------- figures
def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _finite_r(per_gene: pl.DataFrame, method: str) -> np.ndarray:
    r = per_gene.filter(pl.col("method") == method)["pearson_r"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    return r[np.isfinite(r)]


def _fig_r_distribution(per_gene: pl.DataFrame, methods: Sequence[str]) -> str:
    fig = _new_figure(1.6 + 1.3 * len(methods), 4.0)
    ax = fig.add_subplot()
    data = [_finite_r(per_gene, m) for m in methods]
    pos = np.arange(1, len(methods) + 1)
    non_empty = [i for i, d in enumerate(data) if d.size]
    if non_empty:
        ax.boxplot([data[i] for i in non_empty], positions=pos[non_empty], widths=0.5, showfliers=False)
    if any(d.size >= 3 for d in data):
        vi = [i for i, d in enumerate(data) if d.size >= 3]
        parts = ax.violinplot([data[i] for i in vi], positions=pos[vi], widths=0.8, showextrema=False)
        for body in parts["bodies"]:
            body.set_alpha(0.2)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data):
        ax.scatter(pos[i] + rng.uniform(-0.15, 0.15, d.size), d, s=8, alpha=0.5, color="C0", linewidths=0)
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(pos, [f"{m}\n(n={d.size})" for m, d in zip(methods, data, strict=True)])
    ax.set_ylabel("per-gene Pearson r (held-out individuals)")
    ax.set_title("Distribution of per-gene r")
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.16, top=0.92)
    return _png(fig)


def _fig_pairs(per_gene: pl.DataFrame, pairs: Sequence[tuple[str, str]]) -> str:
    n = len(pairs)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    fig = _new_figure(3.6 * ncol, 3.5 * nrow)
    wide = per_gene.pivot(on="method", index="gene_id", values="pearson_r", aggregate_function="first")
    for k, (a, b) in enumerate(pairs):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        xa = wide[a].cast(pl.Float64).fill_null(np.nan).to_numpy()
        xb = wide[b].cast(pl.Float64).fill_null(np.nan).to_numpy()
        ok = np.isfinite(xa) & np.isfinite(xb)
        ax.scatter(xa[ok], xb[ok], s=10, alpha=0.6, linewidths=0)
        lo = min(-0.2, float(np.min(np.r_[xa[ok], xb[ok]])) - 0.05) if ok.any() else -1.0
        hi = max(0.5, float(np.max(np.r_[xa[ok], xb[ok]])) + 0.05) if ok.any() else 1.0
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
        ax.axhline(0, color="lightgrey", lw=0.6)
        ax.axvline(0, color="lightgrey", lw=0.6)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel(f"r, {a}")
        ax.set_ylabel(f"r, {b}")
        ax.set_title(f"{a} vs {b} ({int(ok.sum())} genes)", fontsize=9)
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.12 / nrow, top=1 - 0.08 / nrow, wspace=0.35, hspace=0.4)
    return _png(fig)


def _fig_best_genes(
    per_gene: pl.DataFrame, preds: Mapping[str, pl.DataFrame], observed: pl.DataFrame, method: str
) -> str | None:
    pg = per_gene.filter(
        (pl.col("method") == method) & pl.col("pearson_r").is_not_nan() & pl.col("pearson_r").is_not_null()
    )
    best = pg.sort("pearson_r", descending=True).head(_N_BEST)
    if best.height == 0 or method not in preds:
        return None
    joined = preds[method].join(observed, on=["gene_id", "sample"], how="inner")
    fig = _new_figure(3.0 * best.height, 3.0)
    for k, (gene, r) in enumerate(best.select("gene_id", "pearson_r").iter_rows()):
        ax = fig.add_subplot(1, best.height, k + 1)
        d = joined.filter(pl.col("gene_id") == gene)
        ax.scatter(d["prediction"].to_numpy(), d["observed"].to_numpy(), s=10, alpha=0.7, linewidths=0)
        ax.set_title(f"{gene}\nr = {r:.3f}, n = {d.height}", fontsize=8)
        ax.set_xlabel("predicted", fontsize=8)
        if k == 0:
            ax.set_ylabel(f"{method}: observed", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.84, wspace=0.3)
    return _png(fig)


# ---------------------------------------------------------------------------- report
_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1150px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .1em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .86em; }
th, td { border: 1px solid #ccc; padding: .25em .55em; text-align: right; }
th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
table.kv td { text-align: left; font-family: monospace; }
.banner { background: #fde2e1; border: 3px solid #c0392b; color: #7b1d12; padding: .8em 1.2em; margin: 1em 0;
          font-size: 1.05em; }
.note { background: #fff8e1; border-left: 4px solid #e0a800; padding: .4em .9em; margin: .4em 0; }
pre { background: #f6f8fa; border: 1px solid #ddd; padding: .8em; overflow-x: auto; font-size: .85em; }
img { max-width: 100%; }
.scroll { max-height: 36em; overflow-y: auto; }
.muted { color: #666; font-size: .9em; }
"""


_CLASS_CAPTION = (
    "Gene classes: seen_genes_new_individuals = genes trained on, scored on new individuals "
    "(the main number); new_population = trained on one population, scored on another; unseen_genes = genes "
    "never trained on (held out by chromosome or by position block)."
)


def _by_class_table(summary: pl.DataFrame, class_cols: Sequence[str]) -> pl.DataFrame:
    """Long table method x gene class (n_scored, mean_r) from summarize_methods' class columns;
    only pairs with at least one scored gene."""
    classes = [c[len("mean_r[") : -1] for c in class_cols if c.startswith("mean_r[")]
    rows = [
        (m, c, int(rec[f"n_scored[{c}]"]), float(rec[f"mean_r[{c}]"]))
        for rec in summary.iter_rows(named=True)
        for m in [rec["method"]]
        for c in classes
    ]
    schema = {"method": pl.String, "gene_class": pl.String, "n_scored": pl.Int64, "mean_r": pl.Float64}
    # methods without gene classes (all but the multi-gene head) score nothing per class: no rows
    return pl.DataFrame(rows, schema=schema, orient="row").filter(pl.col("n_scored") > 0)


def _banner_text(random_weight_methods: Sequence[str]) -> str:
    names = ", ".join(random_weight_methods)
    return (
        f"WARNING: {names} ran with RANDOM WEIGHTS. Their numbers are plumbing checks, not scientific "
        "results: do not compare or cite them."
    )


def pretraining_lines(
    per_gene: pl.DataFrame, controls: Mapping[str, str], random_weight_methods: Sequence[str]
) -> list[str]:
    """One sentence per (method, random-weight control) pair scored in ``per_gene``: what pretraining adds.

    ``controls`` maps a control method to the method it controls. When the controlled method itself
    has random weights, both arms are random and the sentence says the comparison measures nothing.
    """
    lines = []
    scored = set(per_gene["method"].unique().to_list())
    for control, real in controls.items():
        if control not in scored or real not in scored:
            continue
        h = head_to_head(per_gene, real, control)
        if real in random_weight_methods:
            lines.append(
                f"What pretraining adds ({real} vs its random-weight twin {control}): not measurable in this run, "
                f"because {real} itself ran with random weights, so both arms are random (mean r {h.mean_r_a:.3f} vs "
                f"{h.mean_r_b:.3f} over {h.n_shared} genes is a difference between two random initialisations)."
            )
        else:
            lines.append(
                f"What pretraining adds ({real} minus its random-weight twin {control}, same architecture, haplotypes "
                f"and head): mean r {h.mean_diff:+.3f} per gene over {h.n_shared} genes ({h.mean_r_a:.3f} vs "
                f"{h.mean_r_b:.3f}); {real} better on {h.wins_a}, worse on {h.wins_b}; paired Wilcoxon p = {h.p_value:.2g}."
            )
    return lines


def render_report(
    per_gene: pl.DataFrame,
    predictions: Mapping[str, pl.DataFrame],
    observed: pl.DataFrame,
    *,
    config_yaml: str,
    provenance: Mapping[str, Any],
    versions: Mapping[str, str] | None = None,
    random_weight_methods: Sequence[str] = (),
    notes: Sequence[str] = (),
    controls: Mapping[str, str] | None = None,
    title: str = "expredict: personal gene-expression prediction report",
) -> tuple[str, str]:
    """The report as ``(html, markdown)`` (the HTML self-contained).

    Parameters
    ----------
    per_gene : pl.DataFrame
        Concatenated :func:`expredict.evaluate.per_gene_metrics` rows of every method (optional
        extra columns ``gene_class``, ``cis_h2``, ``r_ceiling``, ``n_variants`` are shown).
    predictions : mapping of str to pl.DataFrame
        Method -> test-individual predictions (long ``gene_id, sample, prediction`` or wide), for
        the predicted-vs-observed plots of each method's best genes.
    observed : pl.DataFrame
        Observed targets of the test individuals (long ``gene_id, sample, observed`` or wide).
    config_yaml : str
        The exact configuration of the run, shown verbatim.
    provenance : mapping
        Data provenance (input files, checksums, cohort, split seed, ...); values may be nested.
    versions : mapping, optional
        Software versions; default :func:`collect_versions`.
    random_weight_methods : sequence of str
        Methods that ran with randomly initialised weights: a banner says their numbers are
        plumbing checks, not scientific results. Default is none.
    notes : sequence of str
        Free-text caveats shown near the top (e.g. "the 1 Mb window is TSS +- 1 Mb"). Default none.
    controls : mapping of str to str, optional
        Random-weight control method -> the method it controls; each scored pair gets a line under
        "What pretraining adds" (:func:`pretraining_lines`).
    title : str
        Report title.

    Returns
    -------
    tuple of str
        The HTML page and the Markdown text.
    """
    per_gene = check_per_gene_table(per_gene)
    methods = per_gene["method"].unique(maintain_order=True).to_list()
    versions = dict(versions) if versions is not None else collect_versions()
    rw = list(random_weight_methods)
    obs_long = to_long(observed, "observed")
    preds_long = {m: to_long(df, "prediction") for m, df in predictions.items()}
    n_genes = per_gene["gene_id"].n_unique()
    n_test = int(per_gene["n_test"].max() or 0) if per_gene.height else 0
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    summary = summarize_methods(per_gene)
    if rw:
        summary = summary.with_columns(
            pl.when(pl.col("method").is_in(rw)).then(pl.lit("RANDOM WEIGHTS")).otherwise(pl.lit("")).alias("weights")
        ).select("method", "weights", pl.exclude("method", "weights"))
    class_cols = [c for c in summary.columns if c.startswith(("mean_r[", "n_scored["))]
    by_class = _by_class_table(summary, class_cols)
    summary = summary.drop(class_cols)
    h2h = head_to_head_table(per_gene, methods).rename({"p_value": "wilcoxon_p"})
    wide_r = per_gene_wide(per_gene, "pearson_r")
    wide_p = per_gene_wide(per_gene, "p_value").select("gene_id", *[f"p_value[{m}]" for m in methods])
    gene_table = wide_r.join(wide_p, on="gene_id", how="left").rename(
        {**{f"pearson_r[{m}]": f"r[{m}]" for m in methods}, **{f"p_value[{m}]": f"p[{m}]" for m in methods}}
    )
    context = _Table(
        [
            "setting",
            "Enformer, no training",
            "elastic net / PrediXcan",
            "best DL trained on personal genomes",
            "source",
        ],
        [list(r) for r in PUBLISHED_CONTEXT],
    )
    tables = {
        "summary": _table(summary),
        "by_class": _table(by_class),
        "h2h": _table(h2h),
        "genes": _table(gene_table),
        "context": context,
        "provenance": _kv_table(provenance),
        "versions": _kv_table(versions),
    }
    summary_caption = (
        "Per-gene Pearson r between predicted and observed expression across the held-out individuals, "
        "summarised over genes. frac_r_negative: share of genes with r < 0. mean_r[class]: mean r within a "
        "gene class (below). Genes with constant predictions or fewer than 3 individuals have r = NaN "
        "and are left out of the r statistics (n_scored)."
    )
    pretraining = pretraining_lines(per_gene, controls or {}, rw)
    h2h_caption = (
        "Gene-by-gene comparison on genes both methods scored: wins_a = genes where method_a has the higher r; "
        "wilcoxon_p = two-sided paired Wilcoxon signed-rank test over those genes."
    )

    # ---- figures
    figs: list[tuple[str, str]] = []
    if per_gene.height:
        figs.append(
            (
                "Distribution of per-gene r per method (box, violin and one point per gene)",
                _fig_r_distribution(per_gene, methods),
            )
        )
    pairs = list(itertools.combinations(methods, 2))
    if pairs:
        shown = pairs[:_MAX_PAIR_PLOTS]
        cap = "Per-gene r, method against method; dashed line: y = x"
        if len(pairs) > len(shown):
            cap += f" (first {len(shown)} of {len(pairs)} pairs)"
        figs.append((cap, _fig_pairs(per_gene, shown)))
    for m in methods:
        img = _fig_best_genes(per_gene, preds_long, obs_long, m)
        if img is not None:
            figs.append((f"{m}: predicted vs observed for its best {_N_BEST} genes (held-out individuals)", img))

    # ---- HTML
    h: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if rw:
        h.append(
            f'<div class="banner" id="random-weights-banner"><strong>{html.escape(_banner_text(rw))}</strong></div>'
        )
    h.append(
        f'<p class="muted">Generated {html.escape(generated)}. Methods: {html.escape(", ".join(methods))}. '
        f"Genes: {n_genes}. Held-out individuals per gene: up to {n_test}.</p>"
    )
    for note in notes:
        h.append(f'<div class="note">{html.escape(note)}</div>')
    h += ["<h2>Summary per method</h2>", f"<p>{html.escape(summary_caption)}</p>", _html_table(tables["summary"])]
    if by_class.height:
        h += ["<h3>By gene class</h3>", f"<p>{html.escape(_CLASS_CAPTION)}</p>", _html_table(tables["by_class"])]
    if pretraining:
        h += ["<h2>What pretraining adds</h2>", *[f'<p class="note">{html.escape(line)}</p>' for line in pretraining]]
    if pairs:
        h += ["<h2>Head to head</h2>", f"<p>{html.escape(h2h_caption)}</p>", _html_table(tables["h2h"])]
    h.append("<h2>Figures</h2>")
    for cap, img in figs:
        h.append(
            f'<figure><img alt="{html.escape(cap)}" src="data:image/png;base64,{img}">'
            f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        )
    h += [
        "<h2>Context: published numbers</h2>",
        f"<p>{html.escape(_CONTEXT_TEXT)}</p>",
        _html_table(tables["context"]),
        "<ul>" + "".join(f"<li>{html.escape(k)} {html.escape(v)}</li>" for k, v in _CITATIONS) + "</ul>",
        "<h2>Per-gene results</h2>",
        '<p class="muted">r[method]: Pearson r across held-out individuals; p[method]: its two-sided p-value.</p>',
        f'<div class="scroll">{_html_table(tables["genes"])}</div>',
        "<h2>Configuration</h2>",
        f"<pre>{html.escape(config_yaml)}</pre>",
        "<h2>Data provenance</h2>",
        _html_table(tables["provenance"], "kv"),
        "<h2>Software versions</h2>",
        _html_table(tables["versions"], "kv"),
        "</body></html>",
    ]

    # ---- Markdown
    md: list[str] = [f"# {title}", ""]
    if rw:
        md += [f"> **{_banner_text(rw)}**", ""]
    md += [
        f"Generated {generated}. Methods: {', '.join(methods)}. Genes: {n_genes}. "
        f"Held-out individuals per gene: up to {n_test}. Figures are in report.html.",
        "",
    ]
    md += [f"> Note: {n}" for n in notes] + ([""] if notes else [])
    md += ["## Summary per method", "", summary_caption, "", _md_table(tables["summary"]), ""]
    if by_class.height:
        md += ["### By gene class", "", _CLASS_CAPTION, "", _md_table(tables["by_class"]), ""]
    if pretraining:
        md += ["## What pretraining adds", "", *[f"{line}\n" for line in pretraining]]
    if pairs:
        md += ["## Head to head", "", h2h_caption, "", _md_table(tables["h2h"]), ""]
    md += ["## Context: published numbers", "", _CONTEXT_TEXT, "", _md_table(tables["context"]), ""]
    md += [f"- {k} {v}" for k, v in _CITATIONS] + [""]
    md += ["## Per-gene results", "", _md_table(tables["genes"]), ""]
    fence = "````" if "```" in config_yaml else "```"
    md += ["## Configuration", "", f"{fence}yaml", config_yaml.rstrip("\n"), fence, ""]
    md += ["## Data provenance", "", _md_table(tables["provenance"]), ""]
    md += ["## Software versions", "", _md_table(tables["versions"]), ""]

    return "\n".join(h), "\n".join(md)
