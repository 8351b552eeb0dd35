"""Elastic-net baseline benchmark on the demo cohort (GEUVADIS chr22, 358 individuals, 608 genes).

Fits every gene (or a seeded random subset) with TSS +/- 1 Mb cis windows, PredictDB-style nested
CV (5 outer x 10 inner) plus the final 10-fold model, once per backend with identical lambda paths
and fold ids, and reports per-gene fit time, whole-run time, the backend time ratio and the
agreement of held-out r on a random 80/20 individual split (fixed seed).

Expression: raw RPKM -> log2(x + 1) -> covariates (3 genotype PCs + 50 expression PCs shipped
with the data, computed on all 358) regressed out and z-scored with training individuals only
(``expredict.targets.TargetNormalizer``, as the pipeline). Strand-ambiguous SNPs are kept
(``drop_ambiguous=False``), as in the figures of RESULTS.md.

    python benchmarks/enet_bench.py --backends glmnet numba sklearn --n-genes 40 --n-jobs 2

The first backend is the reference the others are compared with (time ratio, lambda.min, held-out r).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from enet_cohort import fit_enet_genes

from expredict.config import EnetConfig
from expredict.io.genotypes import read_genotypes

DATA = Path(__file__).resolve().parents[1] / "data" / "demo"


def load(data: Path):
    t0 = time.perf_counter()
    geno = read_genotypes(data / "genotypes.chr22.vcf.gz", "chr22")
    t_read = time.perf_counter() - t0
    bed = pl.read_csv(data / "genes.50percent.chr22.bed.gz", separator="\t")
    samples = bed.columns[6:]
    expr = bed.select(pl.col("gene").alias("gene_id"), *[(pl.col(s) + 1).log(2).alias(s) for s in samples])
    genes = bed.select(
        pl.col("gene").alias("gene_id"), pl.col("#chr").alias("contig"), pl.col("start").alias("tss"), "strand"
    )
    cov = pl.read_csv(data / "genes.covariates.pc50.txt.gz", separator=" ")
    return geno, genes, expr, cov, samples, t_read


def split_and_subset(samples: list[str], genes: pl.DataFrame, seed: int, n_genes: int) -> tuple[list, list, pl.DataFrame]:
    """The benchmarks' random 80/20 individual split and seeded gene subset (``n_genes`` 0: all genes)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(samples))
    n_train = int(round(0.8 * len(samples)))
    train = [samples[i] for i in sorted(perm[:n_train])]
    test = [samples[i] for i in sorted(perm[n_train:])]
    order = rng.permutation(genes.height)
    if n_genes:
        genes = genes[sorted(order[:n_genes].tolist())]
    return train, test, genes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--backends", nargs="+", default=["glmnet", "numba", "sklearn"])
    ap.add_argument("--n-genes", type=int, default=0, help="seeded random subset (0 = all 608)")
    ap.add_argument("--sklearn-genes", type=int, default=0, help="subset size for sklearn (0 = same as --n-genes)")
    ap.add_argument("--glmnet-genes", type=int, default=0, help="subset size for glmnet (0 = same as --n-genes)")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--no-nested", action="store_true")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--out", type=Path, default=Path("/tmp/enet_bench"))
    args = ap.parse_args(argv)

    geno, genes, expr, cov, samples, t_read = load(args.data)
    train, test, genes = split_and_subset(samples, genes, args.seed, args.n_genes)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"read VCF {t_read:.1f}s, {geno.n_variants} variants, {len(samples)} samples; "
          f"{genes.height} genes; train {len(train)} / test {len(test)}", flush=True)  # fmt: skip

    results = {}
    for backend in args.backends:
        g = genes
        if backend == "sklearn" and args.sklearn_genes:
            g = genes.head(args.sklearn_genes)
        if backend == "glmnet" and args.glmnet_genes:
            g = genes.head(args.glmnet_genes)
        cfg = EnetConfig(backend=backend, nested_cv=not args.no_nested, drop_ambiguous=False)
        t0 = time.perf_counter()
        res = fit_enet_genes(geno, g, expr, train, test, covariates=cov, config=cfg, seed=args.seed, n_jobs=args.n_jobs)
        wall = time.perf_counter() - t0
        res.summary.write_csv(args.out / f"summary_{backend}.csv")
        t1 = time.perf_counter()
        res.to_predictdb(str(args.out / f"model_{backend}.db"), str(args.out / f"covariances_{backend}.txt.gz"))
        t_db = time.perf_counter() - t1
        s = res.summary
        ok = s.filter(pl.col("status") == "ok")
        results[backend] = {
            "genes": g.height, "wall_s": wall, "fit_s_mean": float(ok["fit_seconds"].mean()),
            "fit_s_median": float(ok["fit_seconds"].median()), "fit_s_sum": float(ok["fit_seconds"].sum()),
            "n_ok": ok.height, "n_skipped": s.height - ok.height,
            "mean_test_r": float(ok["test_r"].mean()), "median_test_r": float(ok["test_r"].median()),
            "mean_n_snps_window": float(ok["n_snps_in_window"].mean()),
            "mean_n_snps_model": float(ok["n_snps_in_model"].mean()),
            "mean_rho_avg": float(ok["rho_avg"].mean()) if not args.no_nested else None,
            "n_weights": res.weights.height, "write_db_s": t_db,
        }  # fmt: skip
        print(backend, json.dumps(results[backend]), flush=True)

    ref = args.backends[0]
    for other in args.backends[1:]:
        a = pl.read_csv(args.out / f"summary_{ref}.csv")
        b = pl.read_csv(args.out / f"summary_{other}.csv")
        j = a.join(b, on="gene_id", suffix="_o").filter((pl.col("status") == "ok") & (pl.col("status_o") == "ok"))
        ra, rb = j["test_r"].to_numpy(), j["test_r_o"].to_numpy()
        per_gene_ratio = (j["fit_seconds"] / j["fit_seconds_o"]).to_numpy()
        cmp = {
            "genes_compared": j.height,
            f"fit_time_ratio_{ref}_over_{other}_median": float(np.median(per_gene_ratio)),
            "fit_time_ratio_sum": float(j["fit_seconds"].sum() / j["fit_seconds_o"].sum()),
            "same_lambda_min": int((np.isclose(j["lambda_min_mse"], j["lambda_min_mse_o"], rtol=1e-9)).sum()),
            "same_n_snps_in_model": int((j["n_snps_in_model"] == j["n_snps_in_model_o"]).sum()),
            "test_r_pearson_between_backends": float(np.corrcoef(ra, rb)[0, 1]) if len(ra) > 2 else None,
            "test_r_max_abs_diff": float(np.abs(ra - rb).max()),
            "test_r_mean_abs_diff": float(np.abs(ra - rb).mean()),
        }  # fmt: skip
        if "rho_avg" in j.columns and j["rho_avg"].null_count() == 0:
            cmp["rho_avg_max_abs_diff"] = float((j["rho_avg"] - j["rho_avg_o"]).abs().max())
        results[f"comparison_{ref}_vs_{other}"] = cmp
        print(f"comparison {ref} vs {other}", json.dumps(cmp), flush=True)
    results["meta"] = {"python": sys.version.split()[0], "machine": platform.processor() or platform.machine(),
                       "argv": sys.argv, "n_train": len(train), "n_test": len(test), "read_vcf_s": t_read}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
