"""Stage ``enet``: the PrediXcan elastic net per gene; methods ``enet`` (cis window) and ``enet_matched``.

``enet`` uses the configured cis window around the gene (PredictDB's +/-1 Mb by default) and is
exported as a PredictDB ``.db`` with its covariances; ``enet_matched`` (when
``enet.matched_window`` is set) uses the sequence model's window around the TSS, so the two
arms see the same variants. Both are fitted on the training individuals and predict the
validation and test individuals.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import polars as pl

from expredict.config import Config
from expredict.errors import InputFileError
from expredict.logs import Progress
from expredict.run.engine import RunContext, Stage
from expredict.run.layout import MethodLabels, RunDir, safe_name
from expredict.run.method import Method, NewCohort

_log = logging.getLogger(__name__)
MAIN, MATCHED = "enet", "enet_matched"


def _window(config: Config, variant: str) -> int:
    return config.enet.window if variant == MAIN else int(config.enet.matched_window or 0)


def model_prediction(genotypes, weights: pl.DataFrame, intercept: float, build: str = "b37") -> tuple[np.ndarray, int]:
    """``intercept + sum_j weight_j * ALT dosage_j`` for every sample of ``genotypes``, model variants
    matched by ``varID`` (keys of ``build``, ``b37`` or ``b38``); a variant the genotypes lack contributes
    nothing. Returns the predictions and how many of the model's variants were found."""
    from expredict.baselines.cis import variant_key

    keys = {}
    for v in range(genotypes.n_variants):
        alleles = genotypes.alleles(v)
        if len(alleles) == 2:
            keys[variant_key(genotypes.contig, int(genotypes.starts[v]), alleles[0], alleles[1], build)] = v
    found = [(keys[k], w) for k, w in zip(weights["varID"].to_list(), weights["weight"].to_list(), strict=True) if k in keys]
    pred = np.full(genotypes.n_samples, float(intercept))
    if found:
        dosages = genotypes.alt_dosages()[:, [v for v, _ in found]].astype(np.float64)
        pred = pred + dosages @ np.array([w for _, w in found])
    return pred, len(found)


def _build(config: Config) -> str:
    """PredictDB key build (``b37`` / ``b38``) of the run's VCF: ``data.genome_build`` or its header."""
    from expredict.io.contigs import predictdb_build, resolve_genome_build

    return predictdb_build(resolve_genome_build(config.data.vcf, config.data.genome_build))


def _gene_window(config: Config, variant: str, row: dict) -> tuple[int, int]:
    from expredict.baselines.cis import cis_window

    return cis_window(row["tss"], start=row["start"], end=row["end"], window=_window(config, variant),
                      anchor="gene" if variant == MAIN else "tss")


def enet_gene_task(out_dir: str, variant: str, build: str, gene_id: str) -> dict:
    """Worker: fit one gene's elastic net (its cis window read from the VCF here) and store the fit.

    ``build`` is the PredictDB key build (``b37``/``b38``), resolved once by the stage.

    Writes ``trained/<variant>/genes/<gene>.{weights,cov,predictions}.parquet`` and, last, the
    ``.summary.json`` that marks the gene done. The test individuals' predictions come from the
    fit itself; the validation individuals' from the same weights (:func:`model_prediction`).
    """
    from threadpoolctl import threadpool_limits

    from expredict.baselines.enet import fit_enet_gene
    from expredict.io.genotypes import read_genotypes

    out = RunDir(out_dir)
    cfg = out.read_config()
    row = out.read_genes().filter(pl.col("gene_id") == gene_id).row(0, named=True)
    samples, split, targets = out.read_targets()
    labels = np.array(split)
    train_idx, val_idx, test_idx = (np.flatnonzero(labels == k) for k in ("train", "val", "test"))
    y = targets[gene_id].to_numpy()
    lo, hi = _gene_window(cfg, variant, row)
    geno = read_genotypes(cfg.data.vcf, row["contig"], lo, hi, samples=samples)
    ok = np.isfinite(y[train_idx])
    with threadpool_limits(1):
        fit = fit_enet_gene(gene_id, geno, y[train_idx][ok], train_idx[ok], test_idx, config=cfg.enet, seed=cfg.seed,
                            y_test=y[test_idx], gene_name=row.get("gene_name") or gene_id, build=build)
        val_pred = model_prediction(geno, fit.weights, fit.intercept, build)[0][val_idx] if not fit.reason else np.full(len(val_idx), np.nan)
    d = out.trained(variant, "genes")
    name = safe_name(gene_id)
    rows = np.concatenate([test_idx, val_idx])
    pred = np.concatenate([np.asarray(fit.test_pred, np.float64), val_pred])
    frame = pl.DataFrame({"gene_id": gene_id, "sample": [samples[i] for i in rows], "split": [split[i] for i in rows],
                          "prediction": pred})
    out.write_parquet(d / f"{name}.weights.parquet", fit.weights)
    out.write_parquet(d / f"{name}.cov.parquet", fit.covariance)
    out.write_parquet(d / f"{name}.predictions.parquet", frame)
    out.write_json(d / f"{name}.summary.json", {**fit.summary, "intercept": fit.intercept})
    return {"gene_id": gene_id, "reason": fit.reason}


def run(ctx: RunContext) -> dict:
    """Fit every gene of each window variant through the executor; gather, export PredictDB."""
    from expredict.baselines.enet import EnetCohortResult

    out, cfg = ctx.out, ctx.config
    variants = [MAIN] + ([MATCHED] if cfg.enet.matched_window else [])
    genes = ctx.genes()["gene_id"].to_list()
    build = _build(cfg)
    info: dict = {}
    for variant in variants:
        d = out.trained(variant, "genes")
        todo = [g for g in genes if not (d / f"{safe_name(g)}.summary.json").exists()]
        _log.info(f"[enet] {variant}: {len(genes)} genes, {len(genes) - len(todo)} already fitted")
        with ctx.executor() as ex, Progress(_log, f"[enet] {variant}: genes fitted", len(todo)) as progress:
            for rec in ex.map_unordered(functools.partial(enet_gene_task, str(out.root), variant, build), todo):
                if rec["reason"]:
                    _log.info(f"[enet] {variant} {rec['gene_id']}: no model ({rec['reason']})")
                progress.step()
        done = [g for g in genes if (d / f"{safe_name(g)}.summary.json").exists()]
        summary = pl.DataFrame([out.read_json(d / f"{safe_name(g)}.summary.json") for g in done], infer_schema_length=None)
        out.write_parquet(out.trained(variant, "summary.parquet"), summary)
        preds = pl.concat([pl.read_parquet(d / f"{safe_name(g)}.predictions.parquet") for g in done])
        window = _window(cfg, variant)
        note = (f"Elastic net ({variant}): +/-{window:,} bp around the gene (the phenotype BED gives only the TSS)" if variant == MAIN
                else f"Elastic net ({variant}): +/-{window:,} bp around the TSS, the sequence model's window")
        out.write_predictions(variant, preds.filter(pl.col("prediction").is_not_nan()), MethodLabels(notes=(note + ".",)))
        n_model = int((summary["n_snps_in_model"] > 0).sum()) if "n_snps_in_model" in summary.columns else 0
        info[variant] = {"n_genes": len(done), "n_with_model": n_model}
        _log.info(f"[enet] {variant}: {n_model} of {len(done)} genes have a model")
        if variant == MAIN and cfg.enet.export:
            weights = pl.concat([pl.read_parquet(d / f"{safe_name(g)}.weights.parquet") for g in done], how="diagonal_relaxed")
            cov = pl.concat([pl.read_parquet(d / f"{safe_name(g)}.cov.parquet") for g in done], how="diagonal_relaxed")
            cohort = EnetCohortResult(summary=summary.drop("intercept"), weights=weights, covariances=cov,
                                      test_predictions=pl.DataFrame(), config=cfg.enet, seed=cfg.seed,
                                      contig=",".join(sorted(ctx.genes()["contig"].unique().to_list())),
                                      n_train=int(summary["n_train"].max()) if "n_train" in summary.columns else 0)
            db, cov_file = out.trained(MAIN, "model.db"), out.trained(MAIN, "covariances.txt.gz")
            cohort.to_predictdb(str(db), str(cov_file))
            _log.info(f"[enet] PredictDB export: {db}, {cov_file}")
    return info


def predict_new(out: RunDir, cohort: NewCohort) -> pl.DataFrame:
    """PrediXcan prediction of new individuals from each gene's weights and intercept
    (:func:`model_prediction`; as in MetaXcan's ``Predict.py`` a model variant absent from the new
    genotypes contributes nothing, and the share found is logged)."""
    from expredict.io.genotypes import read_genotypes

    cfg = out.read_config()
    genes = out.read_genes()
    if cohort.genes:
        genes = genes.filter(pl.col("gene_id").is_in(cohort.genes))
    d = out.trained(MAIN, "genes")
    rows, names, n_model, n_found = [], [], 0, 0
    samples: list[str] | None = None
    for row in genes.iter_rows(named=True):
        summary_file = d / f"{safe_name(row['gene_id'])}.summary.json"
        if not summary_file.exists():
            continue
        weights = pl.read_parquet(d / f"{safe_name(row['gene_id'])}.weights.parquet")
        if weights.height == 0:
            continue
        lo, hi = _gene_window(cfg, MAIN, row)
        geno = read_genotypes(cohort.vcf, row["contig"], lo, hi, samples=cohort.samples)
        samples = geno.samples
        build = str(weights["varID"][0]).rsplit("_", 1)[-1]  # the keys the model was exported with: b37 / b38
        pred, found = model_prediction(geno, weights, out.read_json(summary_file)["intercept"], build)
        n_model += weights.height
        n_found += found
        rows.append(pred)
        names.append(row["gene_id"])
    if not rows or samples is None:
        msg = f"{d}: no fitted elastic-net model for the requested genes; run the enet stage first"
        raise InputFileError(msg)
    _log.info(f"[enet] {n_found} of {n_model} model variants found in {cohort.vcf}")
    return pl.DataFrame({"gene_id": names}).hstack(pl.DataFrame(np.vstack(rows), schema=samples, orient="row"))


def _key(config: Config) -> list:
    from expredict.baselines.enet_path import resolve_backend

    # the resolved solver is part of the key: "auto" changing meaning refits instead of reusing old fits
    return [config.enet.model_dump(mode="json"), resolve_backend(config.enet.backend), config.seed]


STAGE = Stage(
    name="enet", run=run, version=6, key_parts=_key, needs=("prepare",), outputs=(f"trained/{MAIN}", f"trained/{MATCHED}"),
    methods=(
        Method(MAIN, "PrediXcan elastic net on cis dosages (PredictDB's cv.glmnet recipe)", predict_new),
        Method(MATCHED, "the same elastic net on the sequence model's window"),
    ),
    per_gene=True,
)
