"""Elastic net side by side with R's glmnet, PredictDB's own tool, on the demo cohort.

For a seeded random subset of the demo genes (the same subset, split and inputs as
``enet_bench.py``), captures the exact design, targets and fold ids that expredict's
``fit_enet_gene`` hands to its solver (PredictDB's nested CV, 5 outer x 10 inner, plus the final
10-fold CV: six ``cv.glmnet`` problems per gene), then solves them with

* expredict's ``cv_enet_many`` (numba backend, all 66 fits of a gene in lockstep), and
* R: ``cv.glmnet(x, y, nfolds, alpha = 0.5, type.measure = "mse", foldid, keep = TRUE)`` per
  problem, PredictDB's call, through the tests' oracle runner ``tests/r_glmnet.py`` (one ``Rscript``
  per problem; the time is measured inside R, start-up excluded),

and reports the per-gene time of each, their ratio, and the agreement of what PredictDB keeps:
lambda.min, the SNPs in the model and its predictions. Both single-threaded.

    python benchmarks/enet_vs_r.py --n-genes 24
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import enet_cohort
import numpy as np
from enet_bench import DATA, load, split_and_subset

import expredict.baselines.enet as enet
from expredict.baselines.enet_cv import cv_enet_many
from expredict.config import EnetConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from r_glmnet import r_cv_glmnet  # noqa: E402


def capture_problems(geno, genes, expr, cov, train, test, seed: int) -> dict[str, tuple]:
    """``(X, y, problems)`` that ``fit_enet_gene`` passes to ``cv_enet_many``, per gene."""
    captured: dict[str, tuple] = {}
    real = enet.cv_enet_many  # the name fit_enet_gene calls
    current: list[str] = []
    real_gene = enet_cohort.fit_enet_gene

    def gene_hook(gene_id, *a, **k):
        current[:] = [gene_id]
        return real_gene(gene_id, *a, **k)

    def solver_hook(X, y, problems, **k):
        captured[current[0]] = (np.array(X), np.array(y), [(np.array(r), np.array(f)) for r, f in problems])
        return real(X, y, problems, **k)

    enet_cohort.fit_enet_gene, enet.cv_enet_many = gene_hook, solver_hook
    try:
        cfg = EnetConfig(backend="numba", nested_cv=True, drop_ambiguous=False)  # as enet_bench.py
        enet_cohort.fit_enet_genes(geno, genes, expr, train, test, covariates=cov, config=cfg, seed=seed, n_jobs=1)
    finally:
        enet_cohort.fit_enet_gene, enet.cv_enet_many = real_gene, real
    return captured


def run_r(X: np.ndarray, y: np.ndarray, problems: list[tuple]) -> tuple[float, list]:
    """R's cv.glmnet on each problem (the tests' oracle runner); returns (seconds inside R, results)."""
    theirs = [r_cv_glmnet(X[rows], y[rows], fids) for rows, fids in problems]
    return sum(t.seconds for t in theirs), theirs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n-genes", type=int, default=24)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--out", type=Path, default=Path("/tmp/enet_vs_r"))
    args = ap.parse_args(argv)

    geno, genes, expr, cov, samples, _ = load(args.data)
    train, test, genes = split_and_subset(samples, genes, args.seed, args.n_genes)
    captured = capture_problems(geno, genes, expr, cov, train, test, args.seed)
    print(f"{len(captured)} genes with a fit ({genes.height} drawn)", flush=True)

    rows = []
    for gene, (X, y, problems) in captured.items():
        t0 = time.perf_counter()
        ours = cv_enet_many(X, y, problems, backend="numba")
        t_ours = time.perf_counter() - t0
        t_r, theirs = run_r(X, y, problems)
        same_min = sum(o.best_index == t.best_index for o, t in zip(ours, theirs, strict=True))
        same_snps = sum(np.array_equal(o.coef != 0, t.coef != 0) for o, t in zip(ours, theirs, strict=True))
        pred_diff = max(float(np.abs(X[r] @ o.coef + o.intercept - X[r] @ t.coef - t.intercept).max() / y.std())
                        for (r, _), o, t in zip(problems, ours, theirs, strict=True))  # fmt: skip
        len_diff = max(abs(len(o.lambdas) - len(t.lambdas)) for o, t in zip(ours, theirs, strict=True))
        row = {"gene": gene, "n": X.shape[0], "p": X.shape[1], "ours_s": t_ours, "r_s": t_r, "problems": len(problems),
               "same_lambda_min": same_min, "same_snps": same_snps, "max_pred_diff_sd": pred_diff,
               "max_path_length_diff": len_diff}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    ours_s = np.array([r["ours_s"] for r in rows])
    r_s = np.array([r["r_s"] for r in rows])
    summary = {
        "genes": len(rows), "problems": int(sum(r["problems"] for r in rows)),
        "ours_s_per_gene_mean": float(ours_s.mean()), "r_s_per_gene_mean": float(r_s.mean()),
        "ratio_r_over_ours_sum": float(r_s.sum() / ours_s.sum()), "ratio_median": float(np.median(r_s / ours_s)),
        "same_lambda_min": int(sum(r["same_lambda_min"] for r in rows)),
        "same_snps": int(sum(r["same_snps"] for r in rows)),
        "max_pred_diff_sd": float(max(r["max_pred_diff_sd"] for r in rows)),
        "max_path_length_diff": int(max(r["max_path_length_diff"] for r in rows)),
        "r_glmnet": subprocess.run(["Rscript", "-e", 'cat(as.character(packageVersion("glmnet")))'],
                                   capture_output=True, text=True, check=True).stdout,
        "machine": platform.processor() or platform.machine(), "argv": sys.argv,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"summary": summary, "genes": rows}, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
