"""Two versions of the elastic-net kernel timed against each other, alternately, on the same problems.

Why: on this project's shared 2-core VMs the same gene's fit varies by 1.5-2x from one run to the
next, so two whole-chromosome runs cannot resolve a 10 % change. This script captures the exact
``cv_enet_many`` problems of a seeded random subset of demo genes (as ``enet_vs_r.py``: PredictDB's
nested CV plus the final 10-fold CV, six ``cv.glmnet`` problems per gene), then solves every gene
with the reference kernel and the candidate kernel back to back, swapping their order on every
repetition, and reports each kernel's mean time per gene, their ratio and how far their results
agree (lambda.min index, non-zero count, CV curve).

A kernel is a copy of ``expredict/baselines/enet_cd.py`` whose ``lockstep_paths`` takes the same
arguments, or the leading ones of them (an older kernel: later parameters are dropped for it).
The reference is that file at a git revision, the candidate the working tree's (or ``--candidate``)::

    python benchmarks/enet_kernel_ab.py --ref HEAD --n-genes 8 --reps 2
    python benchmarks/enet_kernel_ab.py --ref HEAD --candidate /tmp/enet_cd_float32.py
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from enet_bench import DATA, load, split_and_subset
from enet_vs_r import capture_problems

import expredict.baselines.enet_cd as enet_cd
from expredict.baselines.enet_cv import cv_enet_many

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "expredict/baselines/enet_cd.py"


def load_kernel(source: str, name: str, into: Path) -> Callable:
    """``lockstep_paths`` of a kernel's source, imported from a copy under ``into`` as module ``name``
    (compiled afresh: numba's cache of ``cache=True`` functions lands next to the copy and is keyed
    to that module). A kernel from before a trailing parameter was added (``gram_dtype``) is
    called with the leading arguments it knows."""
    copy = into / f"{name}.py"
    copy.write_text(source)
    spec = importlib.util.spec_from_file_location(name, copy)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fn = mod.lockstep_paths
    n_params = len(inspect.signature(fn.py_func).parameters)
    return lambda *args: fn(*args[:n_params])


def kernel_source_at(rev: str) -> str:
    """The kernel file's text at git revision ``rev``."""
    res = subprocess.run(["git", "show", f"{rev}:{KERNEL}"], cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        msg = f"--ref {rev}: git has no {KERNEL} there ({res.stderr.strip()}); give a commit, branch or tag"
        raise SystemExit(msg)
    return res.stdout


def solve(kernel: Callable, X, y, problems):
    """``cv_enet_many`` (numba backend) with ``kernel`` in place of the installed ``lockstep_paths``."""
    enet_cd.lockstep_paths = kernel
    t0 = time.perf_counter()
    out = cv_enet_many(X, y, problems, backend="numba")
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--ref", default="HEAD", help="git revision of the reference kernel")
    ap.add_argument("--candidate", type=Path, default=ROOT / KERNEL, help="candidate kernel file")
    ap.add_argument("--n-genes", type=int, default=8)
    ap.add_argument("--reps", type=int, default=2, help="repetitions; the order of the two flips on each")
    ap.add_argument("--seed", type=int, default=20261122)
    args = ap.parse_args(argv)
    if not args.candidate.is_file():
        msg = f"--candidate {args.candidate}: no such file; give a copy of {KERNEL}"
        raise SystemExit(msg)
    ref_source = kernel_source_at(args.ref)  # both checked before minutes of loading

    geno, genes, expr, cov, samples, _ = load(args.data)
    train, test, genes = split_and_subset(samples, genes, args.seed, args.n_genes)
    captured = capture_problems(geno, genes, expr, cov, train, test, args.seed)
    installed = enet_cd.lockstep_paths
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        kernels = [load_kernel(ref_source, "kernel_ref", tmp), load_kernel(args.candidate.read_text(), "kernel_cand", tmp)]
        X, y, problems = next(iter(captured.values()))
        for k in kernels:  # compile both before timing
            solve(k, X[:, :300], y, problems[:1])
        seconds = np.zeros(2)
        results: list[dict] = [{}, {}]
        try:
            for rep in range(args.reps):
                order = (0, 1) if rep % 2 == 0 else (1, 0)
                for gene, (X, y, problems) in captured.items():
                    for i in order:
                        dt, out = solve(kernels[i], X, y, problems)
                        seconds[i] += dt
                        results[i][gene] = out
        finally:
            enet_cd.lockstep_paths = installed
    same_min = same_nnz = total = 0
    curve = 0.0
    for gene in captured:
        for a, b in zip(results[0][gene], results[1][gene], strict=True):
            total += 1
            same_min += a.best_index == b.best_index
            same_nnz += a.n_nonzero == b.n_nonzero
            k = min(len(a.cv_mse), len(b.cv_mse))
            curve = max(curve, float(np.max(np.abs(a.cv_mse[:k] - b.cv_mse[:k]) / a.cv_mse[:k])))
    per_gene = seconds / (args.reps * len(captured))
    summary = {
        "ref": args.ref, "candidate": str(args.candidate), "genes": len(captured), "reps": args.reps,
        "ref_s_per_gene": float(per_gene[0]), "candidate_s_per_gene": float(per_gene[1]),
        "speedup_ref_over_candidate": float(seconds[0] / seconds[1]), "problems": total,
        "same_lambda_min": same_min, "same_n_nonzero": same_nnz, "max_rel_cv_mse_diff": curve,
        "machine": platform.processor() or platform.machine(), "argv": sys.argv,
    }  # fmt: skip
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
