"""Unphased calls: counted in the windows, `expredict run` stops over 1 % unless haplotypes.unphased is
set explicitly, `expredict haplotypes` says how many there were and how they were used, the report notes it.

Fixture: tests/data/unphased_slice.vcf.gz, the GEUVADIS slice written as 1000 Genomes phase-1 style
unphased calls (``0/1`` with ``GL``; tests/data/make_unphased.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from expredict.cohort import count_unphased, load_cohort
from expredict.config import load_config
from expredict.errors import GenotypeError
from expredict.haplotypes.fasta import write_haplotypes_fasta

DATA = Path(__file__).parents[1] / "data"
UNPHASED = DATA / "unphased_slice.vcf.gz"


def _config(path: Path, **haplotypes) -> Path:
    raw = yaml.safe_load(path.read_text())
    raw["haplotypes"] = {"length": 600, **haplotypes}
    path.write_text(yaml.safe_dump(raw))
    return path


def test_counts_in_windows(write_config) -> None:
    phased = load_cohort(load_config(write_config()))
    c0 = count_unphased(phased.genotypes, phased.genes, 300)
    assert c0.n_unphased == 0 and c0.n_het > 0 and c0.share == 0.0
    unph = load_cohort(load_config(write_config(vcf=UNPHASED)))
    c1 = count_unphased(unph.genotypes, unph.genes, 300)
    assert (c1.n_het, c1.n_calls, c1.n_variants) == (c0.n_het, c0.n_calls, c0.n_variants)
    assert c1.n_unphased == c1.n_het and c1.share == 1.0
    assert c1.n_calls == 60 * c1.n_variants
    assert "100.0%" in c1.summary()


def test_run_stops_unless_set_explicitly(write_config) -> None:
    from expredict.run import run_pipeline

    cfg = load_config(_config(write_config(vcf=UNPHASED)))
    assert "unphased" not in cfg.haplotypes.model_fields_set
    with pytest.raises(
        GenotypeError,
        match=r"unphased_slice\.vcf\.gz: \d[\d,]* of \d[\d,]* heterozygous calls \(100\.0%\) "
        r"in the \+/-300 bp windows of 12 genes are unphased.*Phase the VCF.*set haplotypes\.unphased",
    ):
        run_pipeline(cfg, stages=["prepare"])
    cfg = load_config(_config(write_config(vcf=UNPHASED), unphased="ignore"))  # explicit, even if the default value
    assert "unphased" in cfg.haplotypes.model_fields_set
    run_pipeline(cfg, stages=["prepare"])
    stats = json.loads((Path(cfg.out_dir) / "manifest.json").read_text())["stages"]["prepare"]["stats"]
    assert stats["unphased_het_calls"] == stats["het_calls"] > 0


def test_phased_fixture_passes(write_config) -> None:
    from expredict.run import run_pipeline

    cfg = load_config(_config(write_config()))
    run_pipeline(cfg, stages=["prepare"])
    stats = json.loads((Path(cfg.out_dir) / "manifest.json").read_text())["stages"]["prepare"]["stats"]
    assert stats["unphased_het_calls"] == 0 and stats["het_calls"] > 0


@pytest.mark.parametrize("policy", ["ignore", "iupac"])
def test_haplotypes_counts_unphased(tmp_path, fixture_paths, policy) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text("chr22\t20000000\t20000500\tw1\t0\t+\nchr22\t20100000\t20100300\tw2\t0\t-\n")
    out = tmp_path / "h.fa"
    phased = write_haplotypes_fasta(fixture_paths["vcf"], fixture_paths["fasta"], bed, out, aliases={"chr22": "22"})
    assert phased.n_unphased_calls == 0 and phased.n_het_calls > 0
    assert phased.unphased_message().startswith("unphased: 0 of ")
    s = write_haplotypes_fasta(UNPHASED, fixture_paths["fasta"], bed, out, aliases={"chr22": "22"}, unphased=policy)
    assert s.n_unphased_calls == s.n_het_calls == phased.n_het_calls
    msg = s.unphased_message()
    assert f"{s.n_het_calls} of {s.n_het_calls} heterozygous calls (100.0%)" in msg and f"--unphased {policy}" in msg
    with pytest.raises(GenotypeError, match="unphased heterozygous"):
        write_haplotypes_fasta(UNPHASED, fixture_paths["fasta"], bed, out, aliases={"chr22": "22"}, unphased="error")


def test_haplotypes_cli_prints_unphased(tmp_path, fixture_paths) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text("chr22\t20000000\t20000500\tw1\t0\t+\n")
    r = subprocess.run([sys.executable, "-m", "expredict.cli", "haplotypes", "--vcf", str(UNPHASED), "--fasta",
                        str(fixture_paths["fasta"]), "--regions", str(bed), "--out", str(tmp_path / "o.fa")],
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "heterozygous calls (100.0%) in the regions; alleles taken as written" in r.stdout
