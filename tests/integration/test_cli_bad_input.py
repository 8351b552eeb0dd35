"""Bad input through the real CLI: one clear line naming the file and record, non-zero exit."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pysam
import pytest


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "expredict.cli", *args], capture_output=True, text=True, cwd=cwd, check=False
    )


def assert_clean_error(res: subprocess.CompletedProcess, *fragments: str) -> None:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr
    assert sum(line.startswith("error: ") for line in res.stderr.splitlines()) == 1, res.stderr
    for f in fragments:
        assert f in res.stderr, (f, res.stderr)


def _vcf_lines(fixture_paths) -> list[str]:
    with gzip.open(fixture_paths["vcf"], "rt") as fh:
        return fh.read().splitlines()


def _write_indexed(path: Path, lines: list[str], index: bool = True) -> Path:
    plain = path.with_suffix("")
    plain.write_text("\n".join(lines) + "\n")
    if index:
        pysam.tabix_index(str(plain), preset="vcf", force=True)
    else:
        pysam.tabix_compress(str(plain), str(path), force=True)
    return path


def test_summary_works(write_config):
    res = run_cli("summarize", str(write_config()))
    assert res.returncode == 0, res.stderr
    assert "samples:  60" in res.stdout and "variants: 755" in res.stdout


def test_missing_file(write_config, tmp_path):
    assert_clean_error(
        run_cli("summarize", str(write_config(vcf=tmp_path / "absent.vcf.gz"))),
        "absent.vcf.gz: genotype file not found",
    )


def test_vcf_without_index(write_config, fixture_paths, tmp_path):
    p = tmp_path / "noindex.vcf.gz"
    shutil.copy(fixture_paths["vcf"], p)
    assert_clean_error(run_cli("summarize", str(write_config(vcf=p))), "noindex.vcf.gz: no index", "tabix -p vcf")


def test_unsorted_vcf(write_config, fixture_paths, tmp_path):
    lines = _vcf_lines(fixture_paths)
    head = [x for x in lines if x.startswith("#")]
    body = [x for x in lines if not x.startswith("#")]
    body[10], body[11] = body[11], body[10]
    p = _write_indexed(tmp_path / "unsorted.vcf.gz", head + body, index=False)
    with pytest.raises(OSError):  # tabix itself refuses: the user cannot index it
        pysam.tabix_index(str(p), preset="vcf", force=True, keep_original=True)
    assert_clean_error(run_cli("summarize", str(write_config(vcf=p))), "unsorted.vcf.gz: no index", "sorted")


def test_truncated_vcf(write_config, fixture_paths, tmp_path):
    p = tmp_path / "trunc.vcf.gz"
    data = fixture_paths["vcf"].read_bytes()
    p.write_bytes(data[: int(len(data) * 0.6)])
    shutil.copy(str(fixture_paths["vcf"]) + ".tbi", str(p) + ".tbi")
    assert_clean_error(run_cli("summarize", str(write_config(vcf=p))), "trunc.vcf.gz: the file is truncated")


def test_contig_absent_from_fasta(write_config):
    assert_clean_error(
        run_cli("summarize", str(write_config(contig_aliases={"chr22": "21"}))), "contig 'chr22' not in the reference", "alias"
    )


def test_ref_mismatch(write_config, fixture_paths, tmp_path):
    lines = _vcf_lines(fixture_paths)
    i = next(k for k, x in enumerate(lines) if not x.startswith("#")) + 3
    f = lines[i].split("\t")
    f[3] = {"A": "C", "C": "G", "G": "T", "T": "A"}[f[3]]
    if f[4] == f[3]:
        f[4] = "A" if f[3] != "A" else "C"
    lines[i] = "\t".join(f)
    p = _write_indexed(tmp_path / "badref.vcf.gz", lines)
    assert_clean_error(
        run_cli("summarize", str(write_config(vcf=p))), "badref.vcf.gz: 1 REF allele(s) differ", f"chr22:{f[1]} {f[3]}>"
    )


def test_duplicate_sample_ids(write_config, fixture_paths, tmp_path):
    lines = _vcf_lines(fixture_paths)
    k = next(i for i, x in enumerate(lines) if x.startswith("#CHROM"))
    f = lines[k].split("\t")
    f[10] = f[9]
    lines[k] = "\t".join(f)
    p = _write_indexed(tmp_path / "dups.vcf.gz", lines, index=False)
    shutil.copy(str(fixture_paths["vcf"]) + ".tbi", str(p) + ".tbi")
    assert_clean_error(run_cli("summarize", str(write_config(vcf=p))), "dups.vcf.gz: duplicate sample IDs", f[9])


def test_samples_in_expression_not_in_vcf(write_config, fixture_paths, tmp_path):
    lines = fixture_paths["bed"].read_text().splitlines()
    h = lines[0].split("\t")
    h[8] = "NA99999"
    p = tmp_path / "expr.bed"
    p.write_text("\n".join(["\t".join(h), *lines[1:]]) + "\n")
    assert_clean_error(
        run_cli("summarize", str(write_config(expression=p, covariates=None))),
        "expr.bed: 1 sample(s) not in",
        "NA99999",
    )


def test_non_numeric_expression(write_config, fixture_paths, tmp_path):
    lines = fixture_paths["bed"].read_text().splitlines()
    f = lines[2].split("\t")
    f[20] = "n/a?"
    p = tmp_path / "expr.bed"
    p.write_text("\n".join([lines[0], lines[1], "\t".join(f), *lines[3:]]) + "\n")
    assert_clean_error(run_cli("summarize", str(write_config(expression=p))), "expr.bed, line 3", "non-numeric", f[3])


def test_bad_config_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: {vcf: a, fasta: b, genes: c, expression: d}\nhead: {n_layers: 0}\n")
    assert_clean_error(run_cli("summarize", str(p)), "head.n_layers")
