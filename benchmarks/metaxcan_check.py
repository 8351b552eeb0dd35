"""Interoperability check: MetaXcan's ``Predict.py`` on a PredictDB ``.db`` written by expredict.

Fits the elastic net (numba backend, PredictDB recipe) on a seeded subset of demo genes, exports
``model.db``, runs MetaXcan's ``Predict.py`` against the same VCF and compares its predicted
expression, gene by gene and individual by individual, with expredict's own
:func:`expredict.io.predictdb.predict_from_predictdb`. Exits non-zero when a gene's SNP count or
a prediction differs (tolerance 1e-9).

MetaXcan is not a dependency of expredict (not on PyPI): point ``--metaxcan`` at a checkout's
``software/`` folder and ``--metaxcan-python`` at an interpreter with its requirements (it uses
``numpy.float``: numpy < 1.24). The demo VCF's IDs are not rsIDs, so the model is keyed by
``varID`` = ``CONTIG_POS_REF_ALT_b37`` and Predict.py is run with MetaXcan's on-the-fly mapping::

    python benchmarks/metaxcan_check.py --metaxcan ~/MetaXcan/software --metaxcan-python ~/mx/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
from enet_bench import DATA, load
from enet_cohort import fit_enet_genes

from expredict.config import EnetConfig
from expredict.io.predictdb import predict_from_predictdb

TOLERANCE = 1e-9


def predict_py_command(metaxcan: Path, python: str, db: Path, vcf: Path, out: Path) -> list[str]:
    """The Predict.py call of the README: VCF dosages, ``varID`` keys built on the fly."""
    return [
        python, str(metaxcan / "Predict.py"), "--model_db_path", str(db), "--model_db_snp_key", "varID",
        "--vcf_genotypes", str(vcf), "--vcf_mode", "genotyped",
        "--on_the_fly_mapping", "METADATA", "{}_{}_{}_{}_b37",
        "--prediction_output", str(out / "predicted.txt"), "--prediction_summary_output", str(out / "summary.txt"),
        "--throw",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metaxcan", type=Path, required=True, help="MetaXcan's software/ folder (holds Predict.py)")
    ap.add_argument("--metaxcan-python", default=sys.executable, help="interpreter with MetaXcan's requirements")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n-genes", type=int, default=24, help="seeded random subset of the demo genes")
    ap.add_argument("--seed", type=int, default=20261201)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/metaxcan_check_run"))
    args = ap.parse_args(argv)

    if not (args.metaxcan / "Predict.py").is_file():
        ap.error(f"--metaxcan {args.metaxcan}: no Predict.py there (give MetaXcan's software/ folder)")
    out = args.out
    if (out / "predicted.txt").exists() or (out / "summary.txt").exists():
        ap.error(f"--out {out}: holds a previous run's predicted.txt/summary.txt (Predict.py will not overwrite)")
    out.mkdir(parents=True, exist_ok=True)

    geno, genes, expr, cov, samples, _ = load(args.data)
    rng = np.random.default_rng(args.seed)
    genes = genes[sorted(rng.permutation(genes.height)[: args.n_genes].tolist())]
    cfg = EnetConfig(backend="numba", nested_cv=True, drop_ambiguous=False)  # as enet_bench.py
    res = fit_enet_genes(geno, genes, expr, list(samples), [], covariates=cov, config=cfg, seed=args.seed,
                         n_jobs=args.n_jobs)  # fmt: skip
    db = out / "model.db"
    res.to_predictdb(str(db), str(out / "covariances.txt.gz"))

    vcf = args.data / "genotypes.chr22.vcf.gz"
    cmd = predict_py_command(args.metaxcan, args.metaxcan_python, db, vcf, out)
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=args.metaxcan, check=True)

    theirs = pl.read_csv(out / "predicted.txt", separator="\t")
    summary = pl.read_csv(out / "summary.txt", separator="\t", null_values="NA")
    ours, report = predict_from_predictdb(db, geno)
    if theirs["IID"].to_list() != list(geno.samples):
        print("FAIL: Predict.py's individuals are not the VCF's samples in order")
        return 1
    per_gene = {}
    failed = False
    for row in report.iter_rows(named=True):
        gene = row["gene"]
        mine = np.array(ours.filter(pl.col("gene") == gene).row(0)[1:], dtype=np.float64)
        used = summary.filter(pl.col("gene") == gene)["n_snps_used"].fill_null(0)  # NA: none found
        n_used = int(used[0]) if used.len() == 1 else -1
        d = float(np.abs(theirs[gene].to_numpy() - mine).max()) if gene in theirs.columns else float("inf")
        ok = d <= TOLERANCE and n_used == row["n_matched"] == row["n_weights"]
        failed |= not ok
        per_gene[gene] = {"n_weights": row["n_weights"], "n_snps_used_metaxcan": n_used, "max_abs_diff": d, "ok": ok}
    result = {
        "genes_fitted": genes.height, "genes_with_weights": len(per_gene), "weights": res.weights.height,
        "max_abs_diff": max((g["max_abs_diff"] for g in per_gene.values()), default=0.0),
        "all_snps_used": all(g["n_snps_used_metaxcan"] == g["n_weights"] for g in per_gene.values()),
        "perf_columns_filled": int(summary["pred_perf_r2"].is_not_null().sum()), "per_gene": per_gene,
    }  # fmt: skip
    (out / "metaxcan_check.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "per_gene"}))
    print("FAIL" if failed or not per_gene else "OK: MetaXcan's predictions equal expredict's")
    return 1 if failed or not per_gene else 0


if __name__ == "__main__":
    raise SystemExit(main())
