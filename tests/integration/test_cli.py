"""The CLI's own commands on the real fixture (haplotypes, tiny models, gene windows off the reference)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "expredict.cli", *args], capture_output=True, text=True, check=False)


def test_haplotypes_command_writes_every_record(tmp_path, fixture_paths):
    bed = tmp_path / "r.bed"
    bed.write_text("chr22\t20000000\t20000500\tw1\nchr22\t20100000\t20100300\tw2\n")
    out = tmp_path / "h.fa"
    res = run_cli("haplotypes", "--vcf", str(fixture_paths["vcf"]), "--fasta", str(fixture_paths["fasta"]),
                  "--regions", str(bed), "--out", str(out), "--alias", "chr22=22", "--samples", "HG00096,HG00097")
    assert res.returncode == 0, res.stderr
    headers = [line for line in out.read_text().splitlines() if line.startswith(">")]
    assert headers == [">w1 HG00096 1", ">w1 HG00096 2", ">w1 HG00097 1", ">w1 HG00097 2",
                       ">w2 HG00096 1", ">w2 HG00096 2", ">w2 HG00097 1", ">w2 HG00097 2"]


def test_tiny_models(tmp_path):
    for version in ("v1", "v2"):
        res = run_cli("model", "tiny-nt", str(tmp_path / version), "--version", version)
        assert res.returncode == 0, res.stderr
        assert (tmp_path / version / "config.json").exists() and (tmp_path / version / "vocab.txt").exists()
    res = run_cli("model", "tiny-enformer", str(tmp_path / "enf"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "enf" / "config.json").exists()


def _config(tmp_path: Path, length: int) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "fixture.yaml").read_text())
    for k in ("vcf", "fasta", "genes", "expression", "covariates"):
        cfg["data"][k] = str((REPO / "configs" / cfg["data"][k]).resolve())
    cfg["out_dir"] = str(tmp_path / "out")
    cfg["haplotypes"]["length"] = length
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_gene_window_off_the_reference(tmp_path):
    """The fixture reference spans 260 kb: a 200 kb window fits for some genes, not for others."""
    cfg = _config(tmp_path, 200_000)
    res = run_cli("run", str(cfg), "--stages", "prepare", "--genes", "ENSG00000236499.2")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "requested gene ENSG00000236499.2: window chr22:" in res.stderr and "runs off the reference" in res.stderr
    assert not (tmp_path / "out" / "genes.parquet").exists()  # nothing half-written
    cfg = _config(tmp_path, 400_000)
    res = run_cli("run", str(cfg), "--stages", "prepare")
    assert res.returncode == 1 and "no gene's +/-200000 bp window fits inside the reference" in res.stderr


def test_unknown_gene_is_a_clear_error(tmp_path):
    res = run_cli("run", str(_config(tmp_path, 600)), "--genes", "ENSG_NOPE", "--stages", "haplotypes")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "--genes: 1 gene(s) cannot be run, e.g. ENSG_NOPE" in res.stderr
