"""The rendered report for a few methods and genes: contents, banner, embedded figures, tables."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from expredict.evaluate import PER_GENE_COLUMNS, per_gene_metrics
from expredict.report import check_per_gene_table, collect_versions, render_report

GENES = [f"ENSG{i:011d}.{i % 3 + 1}" for i in range(6)]
SAMPLES = [f"HG{i:05d}" for i in range(12)]
METHODS = ("nt_head", "enet", "enformer")
CONFIG = 'name: demo\nseed: 0\nhead:\n  n_layers: 2\ncomment: "<b>not html</b> & more"\n'


@pytest.fixture(scope="module")
def run_tables():
    rng = np.random.default_rng(7)
    obs = pl.DataFrame(
        [(g, s, float(rng.normal())) for g in GENES for s in SAMPLES],
        schema={"gene_id": pl.String, "sample": pl.String, "observed": pl.Float64},
        orient="row",
    )
    preds = {}
    for k, m in enumerate(METHODS):
        noise = rng.normal(size=obs.height) * (k + 0.5)
        p = obs.select("gene_id", "sample", (pl.col("observed") + pl.Series(noise)).alias("prediction"))
        if m == "enformer":  # one gene with a constant prediction: NaN r must not break the report
            p = p.with_columns(
                pl.when(pl.col("gene_id") == GENES[0]).then(0.0).otherwise(pl.col("prediction")).alias("prediction")
            )
        preds[m] = p
    ann = pl.DataFrame({"gene_id": GENES, "gene_class": ["seen"] * 4 + ["unseen"] * 2, "cis_h2": [0.1] * 6})
    per_gene = pl.concat([per_gene_metrics(preds[m], obs, m, annotations=ann) for m in METHODS])
    return per_gene, preds, obs


def _render(run_tables, **kw) -> tuple[str, str]:
    per_gene, preds, obs = run_tables
    kw.setdefault("versions", {"python": "3.x", "numpy": "2.x"})
    return render_report(
        per_gene,
        preds,
        obs,
        config_yaml=CONFIG,
        provenance={"vcf": "/data/chr22.vcf.gz", "n_test_individuals": 12, "split": {"seed": 0}},
        **kw,
    )


@pytest.fixture(scope="module")
def report(run_tables):
    """One report with a random-weights method, shared by the content tests (figures are slow)."""
    return _render(run_tables, random_weight_methods=["nt_head"], notes=["window is TSS +- 1 Mb"])


def test_report_html_contents(report):
    text = report[0]
    for m in METHODS:
        assert m in text
    for g in GENES:
        assert g in text
    assert 'id="random-weights-banner"' in text
    assert "RANDOM WEIGHTS" in text and "plumbing checks, not scientific" in text
    assert text.count("data:image/png;base64,") >= 2 + len(METHODS)  # distribution, pairs, best genes
    # self-contained: no external assets
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "<script" not in text and "<link" not in text
    # config shown verbatim, escaped
    assert "n_layers: 2" in text
    assert "&lt;b&gt;not html&lt;/b&gt; &amp; more" in text and "<b>not html</b>" not in text
    assert "/data/chr22.vcf.gz" in text and "window is TSS +- 1 Mb" in text
    assert "0.283" in text and "0.055" in text  # published context
    assert "seen_genes_new_individuals" in text and "unseen_genes" in text


def test_report_markdown_tables(report):
    md = report[1]
    assert md.startswith("# ")
    assert "> **WARNING: nt_head ran with RANDOM WEIGHTS" in md
    header = next(line for line in md.splitlines() if line.startswith("| method | weights | n_genes"))
    assert "mean_r" in header and "frac_r_negative" in header
    summary_rows = [line for line in md.splitlines() if line.startswith(("| nt_head |", "| enet |", "| enformer |"))]
    assert len(summary_rows) >= 3
    assert "| nt_head | enet |" in md and "| enet | enformer |" in md  # head-to-head pairs
    for g in GENES:
        assert f"| {g} |" in md
    assert "```yaml\n" + CONFIG.rstrip("\n") + "\n```" in md
    assert "| python | 3.x |" in md


def test_no_banner_without_random_weights(run_tables):
    text, md = _render(run_tables)
    assert "random-weights-banner" not in text and "RANDOM WEIGHTS" not in text
    assert "WARNING" not in md


def test_per_gene_table_columns(run_tables):
    per_gene, _, _ = run_tables
    shuffled = per_gene.select(list(reversed(per_gene.columns)))  # any input order
    pg = check_per_gene_table(shuffled)
    assert pg.columns[:7] == list(PER_GENE_COLUMNS)
    assert set(pg.columns[7:]) == {"gene_class", "cis_h2", "r_ceiling"}
    assert pg.height == len(GENES) * len(METHODS)
    with pytest.raises(ValueError, match="lacks columns"):
        check_per_gene_table(per_gene.drop("spearman_r"))


def test_collect_versions_tolerates_missing_packages():
    v = collect_versions(["numpy", "polars", "surely-not-a-package-xyz"])
    assert v["python"].count(".") == 2
    assert v["numpy"] == np.__version__
    assert v["surely-not-a-package-xyz"] == "not installed"


def test_by_class_table_lists_only_methods_with_gene_classes(run_tables):
    from expredict.evaluate import summarize_methods
    from expredict.report import _by_class_table

    per_gene, preds, obs = run_tables
    # enet scored without gene classes (as the pipeline's baselines are): no per-class rows for it
    plain = per_gene_metrics(preds["enet"], obs, "enet")
    mixed = pl.concat([per_gene.filter(pl.col("method") != "enet"), plain], how="diagonal_relaxed")
    summary = summarize_methods(mixed)
    table = _by_class_table(summary, [c for c in summary.columns if c.startswith(("mean_r[", "n_scored["))])
    assert set(table["method"]) == {"nt_head", "enformer"}
    assert table["mean_r"].is_nan().sum() == 0 and (table["n_scored"] > 0).all()


def test_pretraining_line_states_the_gain_or_that_both_arms_are_random(run_tables):
    from expredict.report import pretraining_lines

    per_gene, _, _ = run_tables
    controls = {"enformer": "nt_head"}  # any pair: enformer stands in for a random-weight control of nt_head
    (line,) = pretraining_lines(per_gene, controls, random_weight_methods=["enformer"])
    assert line.startswith("What pretraining adds (nt_head minus its random-weight twin enformer")
    assert "paired Wilcoxon p" in line
    (both,) = pretraining_lines(per_gene, controls, random_weight_methods=["enformer", "nt_head"])
    assert "not measurable in this run" in both and "Wilcoxon" not in both
    assert pretraining_lines(per_gene, {"absent": "nt_head"}, []) == []
