"""``expredict haplotypes`` end to end: --threads, .gz output, --unique table, no heavy imports."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "expredict.cli", *args], capture_output=True, text=True, check=False)


def test_threads_gz_and_unique_identical(tmp_path: Path, fixture_paths) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text("chr22\t20000000\t20000500\tw1\t0\t+\nchr22\t20100000\t20100300\tw2\t0\t-\n")
    common = ["--vcf", str(fixture_paths["vcf"]), "--fasta", str(fixture_paths["fasta"]), "--regions", str(bed),
              "--alias", "chr22=22"]  # fmt: skip
    one, two = tmp_path / "one.fa", tmp_path / "two.fa.gz"
    r1 = run_cli("haplotypes", *common, "--out", str(one), "--threads", "1")
    r2 = run_cli("haplotypes", *common, "--out", str(two), "--threads", "2")
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert r1.stdout == r2.stdout and "240 haplotypes" in r1.stdout
    assert gzip.decompress(two.read_bytes()) == one.read_bytes()
    u = tmp_path / "u.fa"
    r3 = run_cli("haplotypes", *common, "--out", str(u), "--unique", "--threads", "2")
    assert r3.returncode == 0, r3.stderr
    rows = (tmp_path / "u.index.tsv").read_text().splitlines()
    assert rows[0] == "region\tsample\thap\tsequence" and len(rows) == 1 + 240
    seqs: dict[str, str] = {}
    name = None
    for line in u.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:]
            seqs[name] = ""
        else:
            seqs[name] += line
    full: dict[tuple[str, str, str], str] = {}
    for line in one.read_text().splitlines():
        if line.startswith(">"):
            key = tuple(line[1:].split(" "))
            full[key] = ""
        else:
            full[key] += line
    for row in rows[1:]:
        region, sample, hap, uid = row.split("\t")
        assert seqs[f"{region} {uid}"] == full[(region, sample, hap)]
    assert run_cli("haplotypes", *common, "--out", str(tmp_path / "x.fa"), "--threads", "0").returncode != 0


def test_command_imports_nothing_heavy() -> None:
    code = (
        "import sys, expredict.cli\n"
        "from expredict.haplotypes.fasta import write_haplotypes_fasta\n"
        "from expredict.io.genotypes import read_genotypes\n"
        "from expredict.io.reference import Reference\n"
        "print(sorted(m for m in ('torch', 'transformers', 'polars', 'pandas', 'sklearn') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
