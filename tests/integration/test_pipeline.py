"""End-to-end pipeline on the real fixture with tiny models: outputs, caching, resume, Dask, predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from expredict.config import load_config
from expredict.pipeline import STAGES, run_pipeline

REPO = Path(__file__).parents[2]
FIXTURE_CONFIG = REPO / "configs" / "fixture.yaml"


def _config(out: Path, **overrides):
    return load_config(FIXTURE_CONFIG, {"out_dir": str(out), "executor.n_workers": 1, **overrides})


def _outputs(out: Path) -> dict[str, pl.DataFrame]:
    """Every table a run produces that must be reproducible."""
    tables = {"per_gene": pl.read_parquet(out / "metrics" / "per_gene.parquet")}
    for p in sorted((out / "predictions").glob("*.parquet")):
        tables[p.stem] = pl.read_parquet(p)
    tables["targets"] = pl.read_parquet(out / "targets.parquet")
    return tables


def _assert_same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].equals(b[k], null_equal=True), k


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    logs: list[str] = []
    report = run_pipeline(_config(out), log=logs.append)
    return out, report, logs


def test_all_stages_produce_their_outputs(full_run):
    out, report, logs = full_run
    assert report == out / "report.html"
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(manifest[s]["complete"] for s in STAGES)
    per_gene = pl.read_parquet(out / "metrics" / "per_gene.parquet")
    assert per_gene.columns[:7] == ["gene_id", "method", "pearson_r", "spearman_r", "r2", "p_value", "n_test"]
    methods = set(per_gene["method"].unique())
    assert {"nt_head", "enet", "enformer"} <= methods
    genes = pl.read_parquet(out / "genes.parquet")["gene_id"].to_list()
    assert set(per_gene.filter(pl.col("method") == "nt_head")["gene_id"]) == set(genes)
    test = pl.read_csv(out / "splits" / "individuals.tsv", separator="\t").filter(pl.col("split") == "test")
    assert per_gene["n_test"].max() == test.height
    for m in methods:
        wide = pl.read_parquet(out / "predictions" / f"{m}.parquet")
        assert set(wide.columns[1:]) == set(test["sample"])
    html = report.read_text()
    for m in methods:
        assert m in html
    for g in genes:
        assert g in html
    assert "random weights" in html.lower() and "data:image/png;base64" in html
    assert (out / "report.md").exists()
    assert (out / "enet" / "model.db").exists() and (out / "enet" / "covariances.txt.gz").exists()
    assert any(line.startswith(f"[enet] enet: genes fitted: {len(genes)}/{len(genes)} in ") for line in logs), logs


def test_test_individuals_never_fitted(full_run):
    out, _, _ = full_run
    records = pl.read_parquet(out / "heads" / "records.parquet")
    n = pl.read_csv(out / "splits" / "individuals.tsv", separator="\t")["split"].value_counts()
    n_train = n.filter(pl.col("split") == "train")["count"][0]
    assert (records["n_train"] <= n_train).all()


def test_rerun_skips_every_stage(full_run):
    out, _, _ = full_run
    before = _outputs(out)
    logs: list[str] = []
    run_pipeline(_config(out), log=logs.append)
    skipped = [line for line in logs if "up to date" in line]
    assert len(skipped) == len(STAGES), logs
    _assert_same(before, _outputs(out))


def test_changed_setting_reruns_only_downstream(full_run, tmp_path):
    out, _, _ = full_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    logs: list[str] = []
    run_pipeline(_config(copy, **{"head.max_epochs": 3}), log=logs.append)
    ran = {line.split("]")[0][1:] for line in logs if line.endswith("] running")}
    assert ran == {"train", "evaluate", "report"}, logs


def test_interrupted_run_resumes_to_identical_outputs(full_run, tmp_path, monkeypatch):
    out, _, _ = full_run
    import expredict.pipeline as pipeline

    real = pipeline.train_gene_task
    calls = {"n": 0}

    def crash_after_three(out_dir, gene_id):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of the stage
        return real(out_dir, gene_id)

    run_dir = tmp_path / "resumed"
    monkeypatch.setattr(pipeline, "train_gene_task", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(_config(run_dir), log=lambda m: None)
    assert len(list((run_dir / "heads").glob("*.json"))) == 3
    monkeypatch.setattr(pipeline, "train_gene_task", real)
    logs: list[str] = []
    run_pipeline(_config(run_dir), log=logs.append)
    assert any("3 already trained" in line for line in logs)
    _assert_same(_outputs(out), _outputs(run_dir))


def test_dask_backend_matches_process_pool(full_run, tmp_path):
    out, _, _ = full_run
    results = {}
    for backend in ("local", "dask"):
        d = tmp_path / backend
        shutil.copytree(out, d)
        shutil.rmtree(d / "heads")
        cfg = load_config(FIXTURE_CONFIG, {"out_dir": str(d), "executor.backend": backend, "executor.n_workers": 2})
        run_pipeline(cfg, stages=["train"], log=lambda m: None)
        results[backend] = pl.read_parquet(d / "stage_predictions" / "nt_head.parquet").sort("gene_id", "sample")
    assert results["local"].equals(results["dask"])
    ref = pl.read_parquet(out / "stage_predictions" / "nt_head.parquet").sort("gene_id", "sample")
    assert results["local"].equals(ref)


def test_predict_new_vcf_equals_evaluation(full_run, tmp_path):
    out, _, _ = full_run
    from expredict.predict import predict_cohort

    fixture_vcf = REPO / "tests" / "data" / "geuvadis_slice.vcf.gz"
    test = pl.read_csv(out / "splits" / "individuals.tsv", separator="\t").filter(pl.col("split") == "test")["sample"].to_list()
    path = predict_cohort(out, fixture_vcf, tmp_path / "pred", samples=test, log=lambda m: None)
    new = pl.read_parquet(path)
    evaluated = pl.read_parquet(out / "predictions" / "nt_head.parquet")
    joined = new.join(evaluated, on="gene_id", suffix="_eval")
    for s in test:
        np.testing.assert_allclose(joined[s].to_numpy(), joined[f"{s}_eval"].to_numpy(), rtol=1e-6, atol=1e-6)
    assert (tmp_path / "pred.tsv").exists()


def test_chunks_cover_all_genes(full_run, tmp_path):
    out, _, _ = full_run
    d = tmp_path / "chunks"
    shutil.copytree(out, d)
    shutil.rmtree(d / "heads")
    for i in (1, 2):
        run_pipeline(_config(d), stages=["train"], chunk=f"{i}/2", log=lambda m: None)
    n_genes = pl.read_parquet(d / "genes.parquet").height
    assert len(list((d / "heads").glob("ENSG*.pt"))) == n_genes
    assert not (d / "heads" / "multigene.pt").exists()
