"""`expredict haplotypes` (the command, process start included) vs `bcftools consensus` vs the write floor.

Side by side in one run, both tools reading the same BCF:

- ``expredict haplotypes`` (ragged, FASTA out) as a user runs it: a fresh process per run, default
  threads (all cores) and ``--threads 1``; also the previous writer (``git archive REV expredict``, the
  "before" column, run the same way) with a byte comparison of its output against the new one;
- ``bcftools consensus -f REGIONS.fa -s S -H h`` over every sample and haplotype, as a cohort
  pipeline must run it (one run per (sample, hap) over a region FASTA holding every window);
  ``--runs`` random runs are timed and the median extrapolated to all ``2 x n_samples`` runs;
- the write floor: the same number of bytes written to the same directory from memory
  (Python, 64 MiB blocks, no fsync, like both tools; and ``dd``);
- kernel level: length + fill passes over every (window, haplotype), after parsing, 1 and all threads.

Workloads: the synthetic cohort of ``haplotypes_bench.py`` (400 samples, indels and rare variants)
and the real demo cohort (358 GEUVADIS samples, SNPs, converted to BCF with ``bcftools view -Ob``;
its ``chr22`` maps to the FASTA's ``22`` by ``--alias``, and bcftools' region FASTA is renamed to ``chr22``). Windows: 200 x 6 kb and 10 x 196,608 bp.

    python benchmarks/haplotypes_export_bench.py [--work DIR] [--runs N] [--rev HEAD]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from expredict.demo import sha256  # noqa: E402


def sh(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=True, capture_output=True, text=True, **kw)


def timed(cmd: list[str], env: dict | None = None, stdout=subprocess.DEVNULL) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        msg = f"{cmd[:4]} failed: {p.stderr.read().decode()[-2000:] if p.stderr else ''}"
        raise RuntimeError(msg)
    return wall, ru.ru_maxrss / 1024


def prepare(work: Path, demo: Path) -> dict[str, dict[str, str]]:
    from haplotypes_bench import make_workload

    syn = make_workload(work / "synthetic")
    out = {"synthetic": {"bcf": syn["bcf"], "fasta": syn["fasta"], "win6k": syn["win6k"], "win196k": syn["win196k"]}}
    vcf = demo / "genotypes.chr22.vcf.gz"
    if vcf.exists():
        d = work / "demo"
        d.mkdir(parents=True, exist_ok=True)
        bcf = d / "demo.bcf"
        if not bcf.exists():
            sh("bcftools", "view", "-Ob", "-o", str(bcf), str(vcf))
            sh("bcftools", "index", "-f", str(bcf))
        # windows evenly spaced over the genotyped span of the 1-22 Mb reference (variants start at 16 Mb)
        with (d / "win6k.bed").open("w") as fh:
            for i, c in enumerate(np.linspace(16_100_000, 21_900_000, 200).astype(int)):
                fh.write(f"chr22\t{c - 3000}\t{c + 3000}\tw{i}\t0\t+\n")
        with (d / "win196k.bed").open("w") as fh:
            for i, c in enumerate(np.linspace(16_200_000, 21_800_000, 10).astype(int)):
                fh.write(f"chr22\t{c - 98_304}\t{c + 98_304}\tW{i}\t0\t+\n")
        out["demo"] = {"bcf": str(bcf), "fasta": str(demo / "reference.fa"), "win6k": str(d / "win6k.bed"),
                       "win196k": str(d / "win196k.bed"), "alias": "chr22=22"}  # fmt: skip
    return out


def old_source(work: Path, rev: str) -> Path:
    d = work / f"old_{rev}"
    if not (d / "expredict").exists():
        d.mkdir(parents=True, exist_ok=True)
        arch = subprocess.run(["git", "-C", str(REPO), "archive", rev, "expredict"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(d)], input=arch.stdout, check=True)
    return d


def n_samples(bcf: str) -> int:
    return len(sh("bcftools", "query", "-l", bcf).stdout.split())


def bench_cli(p: dict[str, str], win: str, out: Path, old: Path, reps: int) -> dict:
    py = sys.executable
    base = [py, "-m", "expredict.cli", "haplotypes", "--vcf", p["bcf"], "--fasta", p["fasta"]]
    base += ["--alias", p["alias"]] if "alias" in p else []
    base += ["--regions", p[win]]
    env_new = {**os.environ, "PYTHONPATH": str(REPO)}
    env_old = {**os.environ, "PYTHONPATH": str(old)}
    tiny = out.parent / "tiny.bed"
    first = Path(p[win]).read_text().splitlines()[0].split("\t")
    tiny.write_text("\t".join([first[0], first[1], str(int(first[1]) + 100), "t"]) + "\n")
    for env in (env_new, env_old):  # compile / load the numba caches outside the timing
        sh(*base[:-1], str(tiny), "--out", str(out.parent / "warm.fa"), env=env)
    res: dict = {}
    variants = {
        "new": (base + ["--out", str(out)], env_new),
        "new_1thread": (base + ["--out", str(out), "--threads", "1"], env_new),
        "old": (base + ["--out", str(out.with_name("old.fa"))], env_old),
    }
    for name, (cmd, env) in variants.items():
        times, rss = [], []
        for _ in range(reps):
            t, m = timed(cmd, env)
            times.append(t)
            rss.append(m)
        res[name] = {"wall_s": min(times), "wall_s_all": times, "peak_rss_mb": max(rss)}
    res["bytes"] = out.stat().st_size
    res["identical_to_old"] = sha256(out) == sha256(out.with_name("old.fa"))
    out.with_name("old.fa").unlink()
    # the same command, gzip'd output and --unique, for the record
    t, m = timed(base + ["--out", str(out) + ".gz"], env_new)
    res["new_gz"] = {"wall_s": t, "peak_rss_mb": m, "bytes": Path(str(out) + ".gz").stat().st_size}
    Path(str(out) + ".gz").unlink()
    t, m = timed(base + ["--out", str(out.with_name("u.fa")), "--unique"], env_new)
    res["new_unique"] = {"wall_s": t, "peak_rss_mb": m}
    return res


FLOOR = r"""
import os, sys, time
import numpy as np
path, n = sys.argv[1], int(sys.argv[2])
buf = np.frombuffer(os.urandom(1 << 26), np.uint8)  # 64 MiB, written repeatedly
t = time.perf_counter()
with open(path, "wb", buffering=0) as fh:
    left = n
    while left:
        k = min(left, buf.shape[0])
        fh.write(memoryview(buf[:k]))
        left -= k
print(time.perf_counter() - t)
"""


def bench_floor(out: Path, n: int) -> dict:
    r = sh(sys.executable, "-c", FLOOR, str(out), str(n))
    py_s = float(r.stdout.strip())
    out.unlink()
    t = time.perf_counter()
    sh("dd", "if=/dev/zero", f"of={out}", "bs=64M", f"count={-(-n // (64 << 20))}", "iflag=fullblock")
    dd_s = time.perf_counter() - t
    out.unlink()
    return {"python_write_s": py_s, "dd_s": dd_s}


def bench_bcftools(p: dict[str, str], win: str, work: Path, runs: int) -> dict:
    import pysam

    reg = work / f"{Path(p['bcf']).parent.name}_{Path(p[win]).stem}.regions.fa"
    rows = [line.split("\t") for line in Path(p[win]).read_text().splitlines()]
    if not reg.exists():
        # FASTA contig names (alias), then the record names renamed to the VCF's contig
        vcf2fa = dict([p["alias"].split("=")]) if "alias" in p else {}
        pysam.faidx(p["fasta"], "-o", str(reg), *[f"{vcf2fa.get(r[0], r[0])}:{int(r[1]) + 1}-{r[2]}" for r in rows])
        if vcf2fa:
            text = reg.read_text()
            for v, f in vcf2fa.items():
                text = text.replace(f">{f}:", f">{v}:")
            reg.write_text(text)
    samples = sh("bcftools", "query", "-l", p["bcf"]).stdout.split()
    version = sh("bcftools", "--version").stdout.splitlines()[0]
    rng = np.random.default_rng(3)
    times = []
    out = work / "bcftools_out.fa"
    for s, h in zip(rng.integers(0, len(samples), runs), rng.integers(1, 3, runs), strict=True):
        with out.open("wb") as fh:
            t, _ = timed(["bcftools", "consensus", "-f", str(reg), "-s", samples[s], "-H", str(h), p["bcf"]],
                         stdout=fh)  # fmt: skip
        times.append(t)
    out.unlink()
    per_run = float(np.median(times))
    n_runs = 2 * len(samples)
    return {"tool": version, "runs_timed": runs, "s_per_run_median": per_run, "n_runs": n_runs,
            "extrapolated_total_s": per_run * n_runs, "haps_per_s": len(rows) / per_run}  # fmt: skip


KERNEL = r"""
import json, sys, time
import numpy as np
from expredict.demo import sha256
from expredict.coords import Region
from expredict.haplotypes import build as B
from expredict.haplotypes.fasta import read_bed_regions
from expredict.io.genotypes import read_genotypes
from expredict.io.reference import Reference
bcf, fasta, bed, alias = sys.argv[1:5]
regions = read_bed_regions(bed)
ref = Reference(fasta, dict([alias.split("=")]) if alias else {})
g = read_genotypes(bcf, regions[0].contig)
prep = B._prepare(g, unphased="ignore", ref_mismatch="error", snv_only=False, haploid="ref")
wins = B._windows(prep, ref, regions, "ragged", None)
B._validate(prep, ref, wins, "ignore")
n_hap = 2 * g.n_samples
res = {}
for threads in (1, B.resolve_threads(None)):
    B._run_batch(prep, ref, wins[:1], np.zeros(1, np.int64), np.zeros(1, np.int64), "ragged", None, threads)
    best = 1e9
    for _ in range(2):
        t = time.perf_counter()
        scratch = {}
        for bw in B._batches(wins, n_hap, 16384, 64 << 20):
            nw = len(bw)
            pw = np.repeat(np.arange(nw, dtype=np.int64), n_hap)
            ph = np.tile(np.arange(n_hap, dtype=np.int64), nw)
            B._run_batch(prep, ref, bw, pw, ph, "ragged", scratch, threads)
        best = min(best, time.perf_counter() - t)
    res[f"threads_{threads}"] = {"kernel_s": best, "haps_per_s": len(wins) * n_hap / best}
print(json.dumps(res))
"""


def bench_kernel(p: dict[str, str], win: str) -> dict:
    r = sh(
        sys.executable,
        "-c",
        KERNEL,
        p["bcf"],
        p["fasta"],
        p[win],
        p.get("alias", ""),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/expredict_export_bench")
    ap.add_argument("--demo", default=str(REPO / "data" / "demo"))
    ap.add_argument("--runs", type=int, default=6, help="bcftools runs timed per configuration")
    ap.add_argument("--reps", type=int, default=2, help="runs of each expredict command (best kept)")
    ap.add_argument("--rev", default="HEAD", help="git revision of the previous writer")
    ap.add_argument("--only", default=None, help="comma-separated workload:windows, e.g. demo:win6k")
    a = ap.parse_args()
    if not shutil.which("bcftools"):
        sys.exit("bcftools not on PATH (Debian: apt-get install bcftools)")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    paths = prepare(work, Path(a.demo))
    old = old_source(work, a.rev)
    results = []
    for wl, p in paths.items():
        for win in ("win6k", "win196k"):
            if a.only and f"{wl}:{win}" not in a.only.split(","):
                continue
            out = work / f"{wl}_{win}.fa"
            r: dict = {"workload": wl, "windows": win, "n_samples": n_samples(p["bcf"])}
            r["expredict"] = bench_cli(p, win, out, old, a.reps)
            r["floor"] = bench_floor(out, r["expredict"]["bytes"])
            r["bcftools"] = bench_bcftools(p, win, work, a.runs)
            r["kernel"] = bench_kernel(p, win)
            for f in work.glob("u.*"):
                f.unlink()
            out.unlink(missing_ok=True)
            e, b, fl = r["expredict"], r["bcftools"], r["floor"]
            r["ratios"] = {
                "vs_bcftools": b["extrapolated_total_s"] / e["new"]["wall_s"],
                "vs_bcftools_1thread": b["extrapolated_total_s"] / e["new_1thread"]["wall_s"],
                "old_vs_bcftools": b["extrapolated_total_s"] / e["old"]["wall_s"],
                "new_over_floor": e["new"]["wall_s"] / fl["python_write_s"],
                "kernel_vs_bcftools_1thread": r["kernel"]["threads_1"]["haps_per_s"] / b["haps_per_s"],
                "kernel_vs_bcftools": max(v["haps_per_s"] for v in r["kernel"].values()) / b["haps_per_s"],
            }
            print(json.dumps(r), flush=True)
            results.append(r)
    (work / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
