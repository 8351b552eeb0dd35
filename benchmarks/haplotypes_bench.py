"""Haplotype engine benchmark: expredict vs bcftools consensus (1.24 in pysam, Debian CLI) vs GenVarLoader.

Workload: synthetic 4-Mb chr1, 400 phased samples, ~14 sites/kb (12 % indels
<= 10 bp, 60 % of sites at AF 0.1-1 %), normalised (bi-allelic, left-anchored).
Windows: 200 x 6 kb (160,000 haplotypes) and 10 x 196,608 bp (8,000 haplotypes).

bcftools is run the way a cohort pipeline must: one run per (sample, hap) over all windows (one
region FASTA stream), on BCF and on VCF.gz input. Only a subsample of the 800 runs is timed and
the total extrapolated (stated in the output). Each measured phase runs in its own subprocess
so peak RSS (``ru_maxrss``) is per phase. Single thread throughout ("per core").

    python benchmarks/haplotypes_bench.py [--work DIR] [--runs N] [--demo data/demo]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

N_SAMPLES = 400
CHR_LEN = 4_000_000
SITES_PER_KB = 14
SEED = 20261122


# ------------------------------------------------------------------------------------------
# workload
# ------------------------------------------------------------------------------------------


def make_workload(work: Path) -> dict[str, str]:
    """Write ref.fa, cohort.vcf.gz (+tbi), cohort.bcf (+csi), windows; reuse them if present."""
    import pysam
    import pysam.bcftools

    work.mkdir(parents=True, exist_ok=True)
    paths = {
        "fasta": work / "ref.fa",
        "vcf": work / "cohort.vcf.gz",
        "bcf": work / "cohort.bcf",
        "win6k": work / "win6k.bed",
        "win196k": work / "win196k.bed",
    }
    if all(p.exists() for p in paths.values()):
        return {k: str(v) for k, v in paths.items()}
    rng = np.random.default_rng(SEED)
    ref = rng.choice(np.frombuffer(b"ACGT", np.uint8), CHR_LEN)
    with paths["fasta"].open("w") as fh:
        fh.write(">chr1\n")
        b = ref.tobytes().decode()
        for i in range(0, CHR_LEN, 60):
            fh.write(b[i : i + 60] + "\n")
    pysam.faidx(str(paths["fasta"]))

    n_sites = CHR_LEN // 1000 * SITES_PER_KB
    pos = np.unique(rng.integers(100, CHR_LEN - 100, n_sites))
    n = pos.shape[0]
    kind = rng.random(n)  # < 0.88 SNV, < 0.94 insertion, else deletion
    ilen = rng.integers(1, 11, n)
    af = np.where(rng.random(n) < 0.6, rng.uniform(0.001, 0.01, n), rng.uniform(0.01, 0.5, n))
    haps = (rng.random((n, 2 * N_SAMPLES)) < af[:, None]).astype(np.uint8)
    samples = [f"S{i:04d}" for i in range(N_SAMPLES)]
    plain = work / "cohort.vcf"
    with plain.open("w") as fh:
        fh.write(f"##fileformat=VCFv4.2\n##contig=<ID=chr1,length={CHR_LEN}>\n")
        fh.write('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
        fh.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples) + "\n")
        gt = np.empty((n, N_SAMPLES, 4), np.uint8)
        gt[:, :, 0] = haps[:, 0::2] + 48
        gt[:, :, 1] = ord("|")
        gt[:, :, 2] = haps[:, 1::2] + 48
        gt[:, :, 3] = ord("\t")
        gt[:, -1, 3] = ord("\n")
        acgt = "ACGT"
        for i in range(n):
            p0 = int(pos[i]) - 1
            r0 = chr(ref[p0])
            if kind[i] < 0.88:
                refa, alt = r0, acgt[(acgt.index(r0) + 1 + int(ilen[i]) % 3) % 4]
            elif kind[i] < 0.94:
                refa, alt = r0, r0 + "".join(acgt[j] for j in rng.integers(0, 4, int(ilen[i])))
            else:
                refa, alt = ref[p0 : p0 + int(ilen[i]) + 1].tobytes().decode(), r0
            fh.write(f"chr1\t{pos[i]}\t.\t{refa}\t{alt}\t.\tPASS\t.\tGT\t")
            fh.write(gt[i].tobytes().decode())
    pysam.tabix_index(str(plain), preset="vcf", force=True)
    pysam.bcftools.view("-Ob", "-o", str(paths["bcf"]), str(paths["vcf"]), catch_stdout=False)
    pysam.bcftools.index(str(paths["bcf"]), catch_stdout=False)
    tss = np.sort(rng.integers(200_000, CHR_LEN - 200_000, 200))
    with paths["win6k"].open("w") as fh:
        for i, t in enumerate(tss):
            fh.write(f"chr1\t{t - 3000}\t{t + 3000}\tw{i}\t0\t+\n")
    tss2 = np.linspace(200_000, CHR_LEN - 200_000, 10).astype(int)
    with paths["win196k"].open("w") as fh:
        for i, t in enumerate(tss2):
            fh.write(f"chr1\t{t - 98_304}\t{t + 98_304}\tW{i}\t0\t+\n")
    return {k: str(v) for k, v in paths.items()}


def read_bed(path: str) -> list[tuple[str, int, int, str]]:
    out = []
    for line in Path(path).read_text().splitlines():
        f = line.split("\t")
        out.append((f[0], int(f[1]), int(f[2]), f[3]))
    return out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------
# phases (each in a subprocess)
# ------------------------------------------------------------------------------------------


def phase_expredict(paths: dict[str, str], windows: str, fmt: str) -> dict:
    """Parse + kernel (ragged, all pairs) + dedup end-to-end, single thread."""
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from expredict.coords import Region
    from expredict.haplotypes import RunStats, iter_unique_haplotypes
    from expredict.haplotypes import build as B
    from expredict.io.genotypes import read_genotypes
    from expredict.io.reference import Reference

    regions = [Region(c, s, e, n, (s + e) // 2) for c, s, e, n in read_bed(paths[windows])]
    ref = Reference(paths["fasta"])
    # warm the numba cache on a tiny input (compilation is not part of the measurement)
    t = time.perf_counter()
    c = time.process_time()
    g = read_genotypes(paths[fmt], "chr1")
    t_parse = time.perf_counter() - t
    c_parse = time.process_time() - c
    prep = B._prepare(g, unphased="ignore", ref_mismatch="error", snv_only=False, haploid="ref")
    ws = B._windows(prep, ref, regions[:1], "ragged", None)
    B._run_batch(prep, ref, ws, np.zeros(1, np.int64), np.zeros(1, np.int64), "ragged")
    n_hap = 2 * g.n_samples
    res: dict = {
        "format": fmt,
        "windows": windows,
        "n_records": g.n_variants,
        "parse_s": t_parse,
        "parse_cpu_s": c_parse,
    }
    t = time.perf_counter()
    wins = B._windows(prep, ref, regions, "ragged", None)
    B._validate(prep, ref, wins, "ignore")
    t_setup = time.perf_counter() - t
    # kernel: every (window, haplotype), no dedup, batches of <= 64k pairs
    t = time.perf_counter()
    c = time.process_time()
    n_bases = 0
    scratch: dict = {}
    for bw in B._batches(wins, n_hap, 8192, 64 << 20):
        nw = len(bw)
        pw = np.repeat(np.arange(nw, dtype=np.int64), n_hap)
        ph = np.tile(np.arange(n_hap, dtype=np.int64), nw)
        b = B._run_batch(prep, ref, bw, pw, ph, "ragged", scratch)
        n_bases += int(b.out_off[-1])
    t_kernel = time.perf_counter() - t
    c_kernel = time.process_time() - c
    n_pairs = len(wins) * n_hap
    res.update(
        setup_s=t_setup,
        kernel_s=t_kernel,
        kernel_cpu_s=c_kernel,
        n_haplotypes=n_pairs,
        kernel_haps_per_s=n_pairs / t_kernel,
        kernel_haps_per_cpu_s=n_pairs / c_kernel,
        kernel_gbp_per_s=n_bases / t_kernel / 1e9,
    )
    # end to end with dedup (center_tss, L = window length), parse included
    L = regions[0].length
    t = time.perf_counter()
    c = time.process_time()
    g2 = read_genotypes(paths[fmt], "chr1")
    stats = RunStats()
    for _ in iter_unique_haplotypes(g2, ref, regions, mode="center_tss", length=L, run_stats=stats):
        pass
    res.update(
        e2e_dedup_s=time.perf_counter() - t,
        e2e_dedup_cpu_s=time.process_time() - c,
        dedup_factor=stats.dedup_factor,
        n_unique=stats.n_unique,
    )
    res["peak_rss_mb"] = peak_mb()
    return res


def phase_bcftools_pysam(paths: dict[str, str], windows: str, fmt: str, runs: int) -> dict:
    import pysam
    import pysam.bcftools

    work = Path(paths["fasta"]).parent
    reg_fa = work / f"{windows}.regions.fa"
    if not reg_fa.exists():
        pysam.faidx(paths["fasta"], "-o", str(reg_fa), *[f"{c}:{s + 1}-{e}" for c, s, e, _ in read_bed(paths[windows])])
    rng = np.random.default_rng(1)
    picks = [(int(s), int(h)) for s, h in zip(rng.integers(0, N_SAMPLES, runs), rng.integers(1, 3, runs), strict=True)]
    times, cpu = [], []
    for s, h in picks:
        t = time.perf_counter()
        c = time.process_time()
        pysam.bcftools.consensus("-f", str(reg_fa), "-s", f"S{s:04d}", "-H", str(h), paths[fmt], catch_stdout=True)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    n_win = len(read_bed(paths[windows]))
    per_run = float(np.median(times))
    return {
        "tool": "bcftools 1.24 (pysam, in-process)",
        "format": fmt,
        "windows": windows,
        "runs_timed": runs,
        "s_per_run_median": per_run,
        "s_per_run_mean": float(np.mean(times)),
        "cpu_s_per_run_median": float(np.median(cpu)),
        "haps_per_s": n_win / per_run,
        "haps_per_cpu_s": n_win / float(np.median(cpu)),
        "extrapolated_total_s": per_run * 2 * N_SAMPLES,
        "peak_rss_mb": peak_mb(),
    }


def phase_bcftools_cli(paths: dict[str, str], windows: str, fmt: str, runs: int, exe: str) -> dict:
    work = Path(paths["fasta"]).parent
    reg_fa = work / f"{windows}.regions.fa"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    rng = np.random.default_rng(2)
    picks = [(int(s), int(h)) for s, h in zip(rng.integers(0, N_SAMPLES, runs), rng.integers(1, 3, runs), strict=True)]
    times, cpu = [], []
    for s, h in picks:
        t = time.perf_counter()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [exe, "consensus", "-f", str(reg_fa), "-s", f"S{s:04d}", "-H", str(h), paths[fmt]],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    n_win = len(read_bed(paths[windows]))
    per_run = float(np.median(times))
    return {
        "tool": f"{version} (CLI)",
        "cpu_s_per_run_median": float(np.median(cpu)),
        "haps_per_cpu_s": n_win / float(np.median(cpu)),
        "format": fmt,
        "windows": windows,
        "runs_timed": runs,
        "s_per_run_median": per_run,
        "haps_per_s": n_win / per_run,
        "extrapolated_total_s": per_run * 2 * N_SAMPLES,
    }


GVL_SCRIPT = r"""
import json, resource, sys, time, shutil
from pathlib import Path
import numpy as np
import genvarloader as gvl
import polars as pl
fasta, vcf, bed, out, L = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
rows = [l.split("\t") for l in Path(bed).read_text().splitlines()]
bed_df = pl.DataFrame({"chrom": [r[0] for r in rows], "chromStart": [int(r[1]) for r in rows],
                       "chromEnd": [int(r[2]) for r in rows]})
shutil.rmtree(out, ignore_errors=True)
t = time.perf_counter()
gvl.write(out, bed_df, variants=vcf, overwrite=True)
t_write = time.perf_counter() - t
ds = gvl.Dataset.open(out, reference=fasta).with_seqs("haplotypes").with_len("ragged")
n_reg, n_s = ds.shape
t = time.perf_counter()
c = time.process_time()
n = 0
for r in range(n_reg):
    x = ds[r, :]
    n += 2 * n_s
t_read = time.perf_counter() - t
c_read = time.process_time() - c
print(json.dumps({"tool": "GenVarLoader " + gvl.__version__, "write_s": t_write, "read_s": t_read,
                  "n_haplotypes": n, "read_haps_per_s": n / t_read,
                  "read_cpu_s": c_read, "read_haps_per_cpu_s": n / c_read,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def phase_gvl(paths: dict[str, str], windows: str, fmt: str, python: str) -> dict:
    work = Path(paths["fasta"]).parent
    script = work / "gvl_bench.py"
    script.write_text(GVL_SCRIPT)
    r = subprocess.run(
        [python, str(script), paths["fasta"], paths[fmt], paths[windows], str(work / f"gvl_{windows}"), "0"],
        capture_output=True,
        text=True,
        env={**os.environ, "NUMBA_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1"},
    )
    if r.returncode != 0:
        return {"tool": "GenVarLoader", "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res.update(format=fmt, windows=windows)
    return res


def phase_demo(demo: str) -> dict:
    """Dedup factor on the GEUVADIS chr22 demo: 6-kb TSS windows (center_tss, L = 6000)."""
    import gzip

    from expredict.coords import Region
    from expredict.haplotypes import RunStats, iter_unique_haplotypes
    from expredict.io.genotypes import read_genotypes
    from expredict.io.reference import Reference

    d = Path(demo)
    ref = Reference(d / "grch37_chr22_1-22Mb.fa", {"chr22": "22"})
    _, hi = ref.contig_bounds("chr22")
    regions = []
    with gzip.open(d / "genes.50percent.chr22.bed.gz", "rt") as fh:
        next(fh)
        for line in fh:
            f = line.split("\t", 6)
            tss = int(f[1])  # QTLtools BED: start = 0-based TSS
            if 3000 <= tss < hi - 3000:
                regions.append(Region("chr22", tss - 3000, tss + 3000, f[3], tss, f[5]))
    t = time.perf_counter()
    g = read_genotypes(d / "genotypes.chr22.vcf.gz", "chr22")
    t_parse = time.perf_counter() - t
    stats = RunStats()
    t = time.perf_counter()
    for _ in iter_unique_haplotypes(g, ref, regions, mode="center_tss", length=6000, run_stats=stats):
        pass
    return {
        "n_samples": g.n_samples,
        "n_records": g.n_variants,
        "n_windows": stats.n_regions,
        "n_haplotypes": stats.n_haplotypes,
        "n_unique": stats.n_unique,
        "dedup_factor": stats.dedup_factor,
        "parse_s": t_parse,
        "build_s": time.perf_counter() - t,
        "peak_rss_mb": peak_mb(),
    }


# ------------------------------------------------------------------------------------------


def _sub(args: list[str]) -> dict:
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1], "args": args}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/expredict_hap_bench")
    ap.add_argument("--runs", type=int, default=12, help="bcftools runs timed per configuration")
    ap.add_argument("--demo", default=str(REPO / "data" / "demo"))
    ap.add_argument("--gvl-python", default="/tmp/gvl-venv/bin/python")
    ap.add_argument("--phase", default=None)
    ap.add_argument("--args", default="")
    a = ap.parse_args()
    if a.phase:
        paths = json.loads(Path(a.work, "paths.json").read_text())
        x = a.args.split(",")
        fn = {
            "expredict": lambda: phase_expredict(paths, x[0], x[1]),
            "pysam": lambda: phase_bcftools_pysam(paths, x[0], x[1], int(x[2])),
            "cli": lambda: phase_bcftools_cli(paths, x[0], x[1], int(x[2]), x[3]),
            "gvl": lambda: phase_gvl(paths, x[0], x[1], x[2]),
            "demo": lambda: phase_demo(x[0]),
        }[a.phase]
        print(json.dumps(fn()))
        return
    work = Path(a.work)
    t = time.perf_counter()
    paths = make_workload(work)
    Path(work, "paths.json").write_text(json.dumps(paths))
    print(f"# workload ready in {time.perf_counter() - t:.1f} s: {work}", flush=True)
    results = []
    for win in ("win6k", "win196k"):
        for fmt in ("bcf", "vcf"):
            results.append(_sub(["--work", a.work, "--phase", "expredict", "--args", f"{win},{fmt}"]))
            print(json.dumps(results[-1]), flush=True)
            results.append(_sub(["--work", a.work, "--phase", "pysam", "--args", f"{win},{fmt},{a.runs}"]))
            print(json.dumps(results[-1]), flush=True)
            exe = shutil.which("bcftools")
            if exe:
                results.append(_sub(["--work", a.work, "--phase", "cli", "--args", f"{win},{fmt},{a.runs},{exe}"]))
                print(json.dumps(results[-1]), flush=True)
        if Path(a.gvl_python).exists():
            results.append(_sub(["--work", a.work, "--phase", "gvl", "--args", f"{win},vcf,{a.gvl_python}"]))
            print(json.dumps(results[-1]), flush=True)
    if Path(a.demo, "genotypes.chr22.vcf.gz").exists():
        results.append(_sub(["--work", a.work, "--phase", "demo", "--args", a.demo]))
        print(json.dumps(results[-1]), flush=True)
    Path(work, "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
