"""Regenerate the small real fixtures in this folder from the full demo data.

Run after ``expredict data fetch-demo`` (or ``make demo-data``):
    python tests/data/make_fixtures.py data/demo
Cuts: the first 60 samples, SNPs in chr22:19,990,001-20,250,000 (1-based, closed), the matching
GRCh37 reference slice as an offset record ``>22:19990001-20250000``, and the genes whose TSS
lies in chr22:19,995,001-20,245,000 with their raw RPKM and the 53 covariates of those samples.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import pysam

HERE = Path(__file__).parent
N_SAMPLES = 60
REF_START, REF_END = 19_990_000, 20_250_000  # 0-based half-open
TSS_LO, TSS_HI = 19_995_000, 20_245_000


def main(demo: Path) -> None:
    vcf_in = pysam.VariantFile(str(demo / "genotypes.chr22.vcf.gz"))
    samples = list(vcf_in.header.samples)[:N_SAMPLES]
    vcf_in.subset_samples(samples)
    out_plain = HERE / "geuvadis_slice.vcf"
    header = vcf_in.header
    with pysam.VariantFile(str(out_plain), "w", header=header) as out:
        for rec in vcf_in.fetch("chr22", REF_START, REF_END):
            if rec.pos - 1 >= REF_START and rec.stop <= REF_END:
                out.write(rec)
    pysam.tabix_index(str(out_plain), preset="vcf", force=True)  # bgzips to .vcf.gz + .tbi

    fa = pysam.FastaFile(str(demo / "reference.fa"))
    seq = fa.fetch("22", REF_START, REF_END)
    with (HERE / "grch37_chr22_slice.fa").open("w") as fh:
        fh.write(f">22:{REF_START + 1}-{REF_END}\n")
        for i in range(0, len(seq), 60):
            fh.write(seq[i : i + 60] + "\n")

    with gzip.open(demo / "genes.50percent.chr22.bed.gz", "rt") as fh, (HERE / "geuvadis_slice.bed").open("w") as out:
        header_cols = fh.readline().rstrip("\n").split("\t")
        keep = list(range(6)) + [header_cols.index(s) for s in samples]
        out.write("\t".join(header_cols[i] for i in keep) + "\n")
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if TSS_LO < int(f[2]) <= TSS_HI:
                out.write("\t".join(f[i] for i in keep) + "\n")

    with gzip.open(demo / "genes.covariates.pc50.txt.gz", "rt") as fh, (HERE / "covariates_slice.txt").open("w") as out:
        header_cols = fh.readline().split()
        keep = [0] + [header_cols.index(s) for s in samples]
        out.write(" ".join(header_cols[i] for i in keep) + "\n")
        for line in fh:
            f = line.split()
            out.write(" ".join(f[i] for i in keep) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data/demo"))
