"""Write ``unphased_slice.vcf.gz`` (+ ``.tbi``): the GEUVADIS slice as an unphased, 1000 Genomes phase-1
style VCF (``0/1`` genotypes with ``GL`` fields), for the unphased-call checks.

Run from the repository root: ``python tests/data/make_unphased.py`` (needs pysam).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pysam

DATA = Path(__file__).parent
GL = {"0/0": "-0.02,-1.50,-4.00", "0/1": "-2.10,-0.03,-2.20", "1/1": "-4.00,-1.60,-0.01"}


def main() -> None:
    src, dst = DATA / "geuvadis_slice.vcf.gz", DATA / "unphased_slice.vcf"
    with gzip.open(src, "rt") as fin, dst.open("w") as fout:
        for line in fin:
            if line.startswith("##FORMAT=<ID=GT"):
                fout.write(line)
                fout.write('##FORMAT=<ID=GL,Number=G,Type=Float,Description="Genotype likelihoods (log10)">\n')
                continue
            if line.startswith("#"):
                fout.write(line)
                continue
            f = line.rstrip("\n").split("\t")
            calls = []
            for c in f[9:]:
                gt = c.split(":")[0].replace("|", "/")
                a = sorted(gt.split("/"))
                gt = "/".join(a)
                calls.append(f"{gt}:{GL.get(gt, '.')}")
            f[8] = "GT:GL"
            fout.write("\t".join(f[:9] + calls) + "\n")
    pysam.tabix_index(str(dst), preset="vcf", force=True)


if __name__ == "__main__":
    main()
