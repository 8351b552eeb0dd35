"""End-to-end pipeline on the real fixture with tiny models: outputs, caching, resume, Dask, predict, ensemble."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from expredict.config import load_config
from expredict.errors import ConfigError
from expredict.run import run_pipeline
from expredict.run.registry import METHODS, stage_names

REPO = Path(__file__).parents[2]
FIXTURE_CONFIG = REPO / "configs" / "fixture.yaml"
STAGES = stage_names()


def _config(out: Path, **overrides):
    return load_config(FIXTURE_CONFIG, {"out_dir": str(out), "executor.n_workers": 1, **overrides})


def _run(config, **kw) -> list[str]:
    """Run the pipeline; return the lines it added to OUT/logs/run.log."""
    log = Path(config.out_dir) / "logs" / "run.log"
    before = log.stat().st_size if log.exists() else 0
    run_pipeline(config, **kw)
    with log.open() as fh:
        fh.seek(before)
        return fh.read().splitlines()


def _ran(lines: list[str]) -> set[str]:
    return {line.split("[")[1].split("]")[0] for line in lines if line.endswith("] running")}


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
    cfg = _config(out)
    log = Path(cfg.out_dir) / "logs" / "run.log"
    report = run_pipeline(cfg)
    return out, report, log.read_text().splitlines()


def test_all_stages_produce_their_outputs(full_run):
    out, report, logs = full_run
    assert report == out / "report.html"
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(manifest["stages"][s]["complete"] for s in STAGES)
    per_gene = pl.read_parquet(out / "metrics" / "per_gene.parquet")
    assert per_gene.columns[:7] == ["gene_id", "method", "pearson_r", "spearman_r", "r2", "p_value", "n_test"]
    methods = set(per_gene["method"].unique())
    assert methods == set(METHODS)
    genes = pl.read_parquet(out / "genes.parquet")["gene_id"].to_list()
    assert set(per_gene.filter(pl.col("method") == "nt_head")["gene_id"]) == set(genes)
    splits = pl.read_csv(out / "splits" / "individuals.tsv", separator="\t")
    test = splits.filter(pl.col("split") == "test")
    assert per_gene["n_test"].max() == test.height
    for m in methods:
        frame = pl.read_parquet(out / "predictions" / f"{m}.parquet")
        assert frame.columns == ["gene_id", "sample", "split", "prediction"]
        assert set(frame.filter(pl.col("split") == "test")["sample"]) == set(test["sample"])
        assert frame.join(splits, on="sample").filter(pl.col("split") != pl.col("split_right")).height == 0
    html = report.read_text()
    for m in methods:
        assert m in html
    for g in genes:
        assert g in html
    assert "random weights" in html.lower() and "data:image/png;base64" in html
    assert (out / "report.md").exists()
    assert (out / "trained" / "enet" / "model.db").exists() and (out / "trained" / "enet" / "covariances.txt.gz").exists()
    assert any(f"[enet] enet: genes fitted: {len(genes)}/{len(genes)} in " in line for line in logs), logs


def test_library_warnings_reach_the_run_log(full_run):
    _, _, logs = full_run
    # warnings of library modules (not of the run engine) land in OUT/logs/run.log
    assert any("WARNING expredict.embed.model:" in line and "random weights" in line for line in logs), logs
    assert any("WARNING expredict.baselines.enformer:" in line for line in logs), logs


def test_test_individuals_never_fitted(full_run):
    out, _, _ = full_run
    records = pl.read_parquet(out / "trained" / "nt_head" / "records.parquet")
    n = pl.read_csv(out / "splits" / "individuals.tsv", separator="\t")["split"].value_counts()
    n_train = n.filter(pl.col("split") == "train")["count"][0]
    assert (records["n_train"] <= n_train).all()


def test_ensemble_is_a_nonnegative_stack_fitted_on_validation(full_run):
    from expredict.run.stages.ensemble import MIN_VAL, fit_stack

    out, _, _ = full_run
    weights = pl.read_parquet(out / "trained" / "ensemble" / "weights.parquet")
    assert weights.height and (weights["weight"] >= 0).all()
    assert set(weights["member"]) <= {"enet", "nt_head"}
    targets = pl.read_parquet(out / "targets.parquet")
    stacked = pl.read_parquet(out / "predictions" / "ensemble.parquet")
    for gene_id in weights["gene_id"].unique().to_list()[:4]:
        w = weights.filter(pl.col("gene_id") == gene_id)
        members = w["member"].to_list()
        frames = [pl.read_parquet(out / "predictions" / f"{m}.parquet").filter(pl.col("gene_id") == gene_id)
                  .select("sample", pl.col("prediction").alias(m)) for m in members]
        wide = frames[0]
        for f in frames[1:]:
            wide = wide.join(f, on="sample")
        wide = wide.join(targets.select("sample", "split", pl.col(gene_id).alias("y")), on="sample").drop_nulls().drop_nans()
        val = wide.filter(pl.col("split") == "val")
        assert val.height >= MIN_VAL
        # refitting on the validation rows alone reproduces the stored weights: test targets are never used
        w_val, b0 = fit_stack(val.select(members).to_numpy(), val["y"].to_numpy())
        np.testing.assert_allclose(w_val, w["weight"].to_numpy(), atol=1e-12)
        test = wide.filter(pl.col("split") == "test").sort("sample")
        expect = b0 + test.select(members).to_numpy() @ w_val
        got = stacked.filter((pl.col("gene_id") == gene_id) & (pl.col("split") == "test")).sort("sample")
        np.testing.assert_allclose(got["prediction"].to_numpy(), expect, atol=1e-12)
    per_gene = pl.read_parquet(out / "metrics" / "per_gene.parquet")
    assert per_gene.filter(pl.col("method") == "ensemble").height > 0
    assert "ensemble" in (out / "report.md").read_text()


def test_pretraining_control_uses_other_weights_on_the_same_haplotypes(full_run):
    from expredict.cache import ArrayCache

    out, _, _ = full_run
    real = json.loads((out / "embedding.json").read_text())
    control = json.loads((out / "embedding.random.json").read_text())
    assert real["spec"]["weights_hash"] != control["spec"]["weights_hash"]
    assert real["spec"]["item_shape"] == control["spec"]["item_shape"] and control["random_weights"]
    gene = pl.read_parquet(out / "genes.parquet")["gene_id"][0]
    with np.load(out / "haplotypes" / f"{gene}.npz") as z:
        hashes = z["hashes"].tolist()
    a = ArrayCache(real["cache_dir"], real["spec"]).get(hashes)
    b = ArrayCache(control["cache_dir"], control["spec"]).get(hashes)  # the same distinct haplotypes, both arms
    assert a.shape == b.shape and not np.allclose(a, b)
    labels = json.loads((out / "predictions" / "nt_random.json").read_text())
    assert labels["control_of"] == "nt_head" and labels["random_weights"]
    md = (out / "report.md").read_text()
    assert "## What pretraining adds" in md and "not measurable in this run" in md


def test_rerun_skips_every_stage(full_run):
    out, _, _ = full_run
    before = _outputs(out)
    lines = _run(_config(out))
    skipped = [line for line in lines if "up to date" in line]
    assert len(skipped) == len(STAGES), lines
    _assert_same(before, _outputs(out))


def test_changed_setting_reruns_only_downstream(full_run, tmp_path):
    out, _, _ = full_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    lines = _run(_config(copy, **{"head.max_epochs": 3}))
    assert _ran(lines) == {"train", "control", "ensemble", "evaluate", "report"}, lines


def test_changed_ensemble_reruns_evaluation_and_report(full_run, tmp_path):
    """A method stage that scores other methods (the ensemble) still moves the evaluation's key."""
    out, _, _ = full_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    lines = _run(_config(copy, **{"ensemble.members": ["enet"]}))
    assert _ran(lines) == {"ensemble", "evaluate", "report"}, lines
    weights = pl.read_parquet(copy / "trained" / "ensemble" / "weights.parquet")
    assert set(weights["member"]) == {"enet"}


def test_unknown_ensemble_member_is_refused_before_any_stage(tmp_path):
    with pytest.raises(ConfigError, match=r"ensemble.members: unknown method\(s\) \['nt_haed'\]; choose from nt_head"):
        run_pipeline(_config(tmp_path / "bad", **{"ensemble.members": ["enet", "nt_haed"]}))
    assert not (tmp_path / "bad" / "manifest.json").exists() and not (tmp_path / "bad" / "genes.parquet").exists()


def test_folder_of_an_older_layout_is_refused(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"prepare": {"key": "abc", "complete": True}}))
    with pytest.raises(ConfigError, match="older expredict .*Run into a new --out folder"):
        run_pipeline(_config(old))


def test_interrupted_run_resumes_to_identical_outputs(full_run, tmp_path, monkeypatch):
    out, _, _ = full_run
    import expredict.run.stages.head as head_stage

    real = head_stage.train_gene_task
    calls = {"n": 0}

    def crash_after_three(out_dir, method, arm, gene_id):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of the stage
        return real(out_dir, method, arm, gene_id)

    run_dir = tmp_path / "resumed"
    monkeypatch.setattr(head_stage, "train_gene_task", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(_config(run_dir))
    assert len(list((run_dir / "trained" / "nt_head").glob("*.json"))) == 3
    assert not (run_dir / "predictions" / "nt_head.parquet").exists()
    monkeypatch.setattr(head_stage, "train_gene_task", real)
    lines = _run(_config(run_dir))
    assert any("3 already trained" in line for line in lines)
    _assert_same(_outputs(out), _outputs(run_dir))


def test_dask_backend_matches_process_pool(full_run, tmp_path):
    out, _, _ = full_run
    results = {}
    for backend in ("local", "dask"):
        d = tmp_path / backend
        shutil.copytree(out, d)
        shutil.rmtree(d / "trained" / "nt_head")
        (d / "predictions" / "nt_head.parquet").unlink()
        manifest = json.loads((d / "manifest.json").read_text())
        del manifest["stages"]["train"]  # the stage must run again, not be skipped as up to date
        (d / "manifest.json").write_text(json.dumps(manifest))
        cfg = load_config(FIXTURE_CONFIG, {"out_dir": str(d), "executor.backend": backend, "executor.n_workers": 2})
        assert "train" in _ran(_run(cfg, stages=["train"]))
        results[backend] = pl.read_parquet(d / "predictions" / "nt_head.parquet").sort("gene_id", "sample")
    assert results["local"].equals(results["dask"])
    ref = pl.read_parquet(out / "predictions" / "nt_head.parquet").sort("gene_id", "sample")
    assert results["local"].equals(ref)


def test_predict_new_vcf_equals_evaluation(full_run, tmp_path):
    out, _, _ = full_run
    from expredict.predict import predict_cohort

    fixture_vcf = REPO / "tests" / "data" / "geuvadis_slice.vcf.gz"
    test = pl.read_csv(out / "splits" / "individuals.tsv", separator="\t").filter(pl.col("split") == "test")["sample"].to_list()
    path = predict_cohort(out, fixture_vcf, tmp_path / "pred", samples=test)
    new = pl.read_parquet(path).unpivot(index="gene_id", variable_name="sample", value_name="new")
    evaluated = pl.read_parquet(out / "predictions" / "nt_head.parquet").filter(pl.col("split") == "test")
    joined = new.join(evaluated, on=["gene_id", "sample"])
    assert joined.height == evaluated.height
    np.testing.assert_allclose(joined["new"].to_numpy(), joined["prediction"].to_numpy(), rtol=1e-6, atol=1e-6)
    assert (tmp_path / "pred.tsv").exists()
    with pytest.raises(Exception, match="cannot predict new individuals"):
        predict_cohort(out, fixture_vcf, tmp_path / "pred2", method="enformer")


def test_predict_new_vcf_with_the_elastic_net(full_run, tmp_path):
    """The same command with another method: PrediXcan weights applied to the new genotypes."""
    out, _, _ = full_run
    from expredict.predict import predict_cohort

    fixture_vcf = REPO / "tests" / "data" / "geuvadis_slice.vcf.gz"
    path = predict_cohort(out, fixture_vcf, tmp_path / "enet", method="enet")
    new = pl.read_parquet(path).unpivot(index="gene_id", variable_name="sample", value_name="new")
    evaluated = pl.read_parquet(out / "predictions" / "enet.parquet")
    assert set(evaluated["split"]) == {"val", "test"}
    modelled = pl.read_parquet(out / "trained" / "enet" / "summary.parquet").filter(pl.col("n_snps_in_model") > 0)
    assert set(new["gene_id"]) == set(modelled["gene_id"])  # genes with a model, as in the PredictDB export
    joined = new.join(evaluated, on=["gene_id", "sample"])
    assert joined.height == evaluated.filter(pl.col("gene_id").is_in(modelled["gene_id"].to_list())).height > 0
    np.testing.assert_allclose(joined["new"].to_numpy(), joined["prediction"].to_numpy(), rtol=1e-9, atol=1e-9)


def test_chunks_cover_all_genes(full_run, tmp_path):
    out, _, _ = full_run
    d = tmp_path / "chunks"
    shutil.copytree(out, d)
    shutil.rmtree(d / "trained" / "nt_head")
    for i in (1, 2):
        run_pipeline(_config(d), stages=["train"], chunk=f"{i}/2")
    n_genes = pl.read_parquet(d / "genes.parquet").height
    assert len(list((d / "trained" / "nt_head").glob("ENSG*.pt"))) == n_genes


def test_evaluate_report_and_predict_name_no_method():
    """A method is one stage module plus its registration: the generic code never names one."""
    generic = ["expredict/evaluate.py", "expredict/report.py", "expredict/predict.py",
               "expredict/run/stages/evaluate.py", "expredict/run/stages/report.py", "expredict/run/engine.py",
               "expredict/run/layout.py"]
    for path in generic:
        text = (REPO / path).read_text()
        named = [m for m in METHODS if f'"{m}"' in text or f"'{m}'" in text]
        assert named in ([], ["nt_head"] if path.endswith("expredict/predict.py") else []), (path, named)
