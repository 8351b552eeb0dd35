"""Compare two run folders of the same config and seed: per-gene metrics and the PredictDB export.

Proof for a change that must not move results::

    python benchmarks/compare_runs.py RUN_BEFORE RUN_AFTER [--tol 1e-9]

Prints, per method, the genes scored in each run and the largest |difference| in Pearson r (NaN
patterns must match), then whether every table of the PredictDB ``.db`` and the covariance file
are identical. Reads both run layouts (``enet/model.db`` before layout 2, ``trained/enet/model.db``
after). Exit status 1 when anything differs beyond ``--tol``.
"""

from __future__ import annotations

import argparse
import gzip
import sqlite3
import sys
from pathlib import Path

import numpy as np
import polars as pl


def _export(run: Path, name: str) -> Path | None:
    for p in (run / "trained" / "enet" / name, run / "enet" / name):
        if p.exists():
            return p
    return None


def compare_metrics(a: Path, b: Path, tol: float) -> bool:
    """Per-method max |diff r| between two runs' ``metrics/per_gene.parquet``; True when all within ``tol``."""
    x_all = pl.read_parquet(a / "metrics" / "per_gene.parquet")
    y_all = pl.read_parquet(b / "metrics" / "per_gene.parquet")
    ok = True
    for m in sorted(set(x_all["method"]) | set(y_all["method"])):
        x, y = x_all.filter(pl.col("method") == m), y_all.filter(pl.col("method") == m)
        if x.height == 0 or y.height == 0:
            print(f"{m:20s} only in {'after' if x.height == 0 else 'before'} ({max(x.height, y.height)} genes)")
            continue
        j = x.join(y, on="gene_id", how="full", suffix="_after")
        r0, r1 = j["pearson_r"].to_numpy(), j["pearson_r_after"].to_numpy()
        same_nan = bool(np.array_equal(np.isnan(r0), np.isnan(r1)))
        diff = float(np.nanmax(np.abs(r0 - r1))) if np.isfinite(r0).any() else 0.0
        same_n = j["n_test"].to_list() == j["n_test_after"].to_list()
        good = same_nan and same_n and diff <= tol and x.height == y.height
        ok &= good
        print(f"{m:20s} genes {x.height} / {y.height}, max |diff r| {diff:.3g}, NaN pattern equal {same_nan}, "
              f"n_test equal {same_n}: {'same' if good else 'DIFFERENT'}")
    return ok


def compare_predictdb(a: Path, b: Path) -> bool:
    """Every table of the two ``model.db`` files row for row, and the covariance files byte for byte."""
    da, db = _export(a, "model.db"), _export(b, "model.db")
    if da is None or db is None:
        print("PredictDB export: missing in one run")
        return da is None and db is None
    ok = True
    with sqlite3.connect(da) as ca, sqlite3.connect(db) as cb:
        tables = sorted(r[0] for r in ca.execute("select name from sqlite_master where type='table'"))
        for t in tables:
            rows_a = sorted(ca.execute(f"select * from {t}").fetchall(), key=repr)  # noqa: S608
            rows_b = sorted(cb.execute(f"select * from {t}").fetchall(), key=repr)  # noqa: S608
            same = rows_a == rows_b
            ok &= same
            print(f"model.db table {t}: {len(rows_a)} / {len(rows_b)} rows, {'identical' if same else 'DIFFERENT'}")
    ca_, cb_ = _export(a, "covariances.txt.gz"), _export(b, "covariances.txt.gz")
    same = gzip.decompress(ca_.read_bytes()) == gzip.decompress(cb_.read_bytes())
    print(f"covariances.txt.gz: {'identical' if same else 'DIFFERENT'}")
    return ok and same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--tol", type=float, default=1e-9)
    args = ap.parse_args()
    ok = compare_metrics(args.before, args.after, args.tol)
    ok &= compare_predictdb(args.before, args.after)
    print("RESULT:", "same" if ok else "DIFFERENT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
