"""Seeded builders for haplotype tests: toy FASTA/VCF writers and a ``bcftools consensus`` oracle.

Everything here writes small files into a caller-given directory. VCFs are bgzipped and
tabix-indexed through pysam, so no external binaries are needed. The oracle is pysam's bundled
bcftools 1.24 (``pysam.bcftools.consensus``), run as ``-s S -H h`` on a region FASTA: the
semantics expredict reproduces (``bcftools consensus`` >= 1.20, default ``--regions-overlap 1``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BASES = "ACGT"


@dataclass
class Rec:
    """One VCF record: 1-based ``pos``, REF, ALT list and one GT string per sample."""

    pos: int
    ref: str
    alts: list[str]
    gts: list[str]
    info: str = "."
    chrom: str = "chr1"


@dataclass
class ToyCase:
    """Paths of a built toy case."""

    fasta: Path
    vcf: Path
    samples: list[str] = field(default_factory=list)


def write_fasta(path: Path, records: dict[str, str], width: int = 60) -> Path:
    """Write a FASTA (``{name: sequence}``) wrapped at ``width`` and index it with pysam."""
    import pysam

    with path.open("w") as fh:
        for name, seq in records.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i : i + width] + "\n")
    pysam.faidx(str(path))
    return path


def write_vcf(
    path: Path,
    records: Sequence[Rec],
    samples: Sequence[str],
    contigs: dict[str, int],
    *,
    bcf: bool = False,
) -> Path:
    """Write records to ``path`` (``.vcf.gz``; bgzip + tabix) or, with ``bcf``, also a ``.bcf`` + csi.

    Returns the ``.vcf.gz`` path (or the ``.bcf`` path when ``bcf``).
    """
    import pysam
    import pysam.bcftools

    plain = path.with_suffix("") if path.suffix == ".gz" else path
    lines = ["##fileformat=VCFv4.2"]
    lines += [f"##contig=<ID={c},length={n}>" for c, n in contigs.items()]
    lines.append('##INFO=<ID=END,Number=1,Type=Integer,Description="End position">')
    lines.append('##INFO=<ID=SVTYPE,Number=1,Type=String,Description="SV type">')
    lines.append('##ALT=<ID=DEL,Description="Deletion">')
    lines.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    lines.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples]))
    for r in records:
        lines.append(
            "\t".join([r.chrom, str(r.pos), ".", r.ref, ",".join(r.alts) or ".", ".", ".", r.info, "GT", *r.gts])
        )
    plain.write_text("\n".join(lines) + "\n")
    gz = Path(pysam.tabix_index(str(plain), preset="vcf", force=True))
    if bcf:
        out = gz.with_name(gz.name.replace(".vcf.gz", ".bcf"))
        pysam.bcftools.view("-Ob", "-o", str(out), str(gz), catch_stdout=False)
        pysam.bcftools.index(str(out), catch_stdout=False)
        return out
    return gz


def random_reference(rng: random.Random, length: int) -> str:
    """A uniform random ACGT sequence."""
    return "".join(rng.choice(BASES) for _ in range(length))


def random_records(
    rng: random.Random,
    ref: str,
    n_samples: int,
    *,
    n_records: int,
    chrom: str = "chr1",
    max_indel: int = 20,
    p_multi: float = 0.2,
    p_missing: float = 0.05,
    p_unphased: float = 0.1,
    p_haploid: float = 0.0,
    p_same_pos: float = 0.1,
    margin: int = 2,
) -> list[Rec]:
    """Random sorted records on ``ref``: SNVs, MNPs, insertions, deletions (<= ``max_indel``).

    Records may overlap (nested deletions, SNVs inside deletions, several records at one POS);
    ALT alleles are left-anchored (REF[0] == ALT[0] for indels). Genotypes mix phased,
    unphased, missing and (optionally) haploid calls.
    """

    def allele(pos0: int) -> tuple[str, str]:
        kind = rng.random()
        if kind < 0.5:  # SNV
            r = ref[pos0]
            return r, rng.choice([b for b in BASES if b != r])
        if kind < 0.6:  # MNP
            n = rng.randint(2, 4)
            r = ref[pos0 : pos0 + n]
            return r, "".join(rng.choice(BASES) for _ in range(len(r)))
        if kind < 0.8:  # insertion
            n = rng.randint(1, max_indel)
            return ref[pos0], ref[pos0] + "".join(rng.choice(BASES) for _ in range(n))
        n = rng.randint(1, max_indel)  # deletion
        r = ref[pos0 : pos0 + n + 1]
        return r, r[0]

    positions = sorted(rng.randint(margin, len(ref) - max_indel - 6) for _ in range(n_records))
    recs: list[Rec] = []
    for p0 in positions:
        if recs and rng.random() < p_same_pos:
            p0 = recs[-1].pos - 1
        r, a = allele(p0)
        alts = [a]
        if rng.random() < p_multi:
            r2, a2 = allele(p0)
            if len(r2) == len(r) and r2 == r and a2 not in alts and a2 != r:
                alts.append(a2)
            elif len(r) == 1 and len(r2) == 1 and a2 not in alts:
                alts.append(a2)
        gts = []
        for _ in range(n_samples):
            if rng.random() < p_haploid:
                gts.append(str(rng.randint(0, len(alts))) if rng.random() > p_missing else ".")
                continue
            al = [str(rng.choice([0, 0, 0] + list(range(1, len(alts) + 1)))) for _ in range(2)]
            al = ["." if rng.random() < p_missing else x for x in al]
            sep = "/" if rng.random() < p_unphased else "|"
            gts.append(sep.join(al))
        recs.append(Rec(p0 + 1, r, alts, gts, chrom=chrom))
    recs.sort(key=lambda x: x.pos)
    return recs


def region_fasta(path: Path, ref_path: Path, regions: Sequence[tuple[str, int, int]]) -> Path:
    """``samtools faidx ref.fa chr:a-b ...`` for 0-based half-open ``regions`` into ``path``."""
    import pysam

    specs = [f"{c}:{s + 1}-{e}" for c, s, e in regions]
    pysam.faidx(str(ref_path), "-o", str(path), *specs)
    return path


def parse_fasta(text: str) -> list[tuple[str, str]]:
    """``[(header, sequence)]`` from FASTA text (header without ``>``)."""
    out: list[tuple[str, str]] = []
    name, chunks = None, []
    for line in text.splitlines():
        if line.startswith(">"):
            if name is not None:
                out.append((name, "".join(chunks)))
            name, chunks = line[1:], []
        elif line and not line.startswith(("Applied", "The site", "Warning")):
            chunks.append(line.strip())
    if name is not None:
        out.append((name, "".join(chunks)))
    return out


def bcftools_consensus(
    region_fa: Path,
    vcf: Path,
    sample: str,
    hap: int | str,
    *,
    chain: Path | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """Run pysam's bcftools 1.24 ``consensus -f region_fa -s sample -H hap vcf``; one sequence per record."""
    import pysam.bcftools

    args = ["-f", str(region_fa), "-s", sample, "-H", str(hap), *extra]
    if chain is not None:
        args += ["-c", str(chain)]
    text = pysam.bcftools.consensus(*args, str(vcf), catch_stdout=True)
    return [s for _, s in parse_fasta(text)]


def fit_enet_cohort(
    genotypes,
    genes_table,
    expression,
    train_samples: Sequence[str],
    test_samples: Sequence[str],
    *,
    config,
    seed: int,
    anchor: str = "gene",
    covariates=None,
):
    """Elastic net of several genes of an in-memory contig, fitted one after the other.

    ``genotypes``: one contig (``GenotypeArrays``) whose samples are ``train_samples + test_samples``;
    ``genes_table``: ``gene_id, tss`` (0-based) rows; ``expression``: ``gene_id`` + one column per
    sample; ``covariates``: optional array ``(n_samples, k)`` in sample order. Targets are prepared
    with ``TargetNormalizer`` on the training individuals; windows are ``config.window`` around the
    ``anchor``. Returns ``EnetCohortResult.from_fits(...)`` of the library's ``fit_enet_gene`` fits.
    """
    import numpy as np

    from expredict.baselines.cis import cis_window, slice_genotypes
    from expredict.baselines.enet import EnetCohortResult, fit_enet_gene
    from expredict.targets import TargetNormalizer

    train_samples, test_samples = list(train_samples), list(test_samples)
    assert genotypes.samples == train_samples + test_samples
    train_idx = np.arange(len(train_samples))
    test_idx = np.arange(len(train_samples), genotypes.n_samples)
    gene_ids = genes_table["gene_id"].to_list()
    rows = {g: i for i, g in enumerate(expression["gene_id"].to_list())}
    Y = expression.select(genotypes.samples).to_numpy().astype(np.float64)[[rows[g] for g in gene_ids]].T
    C = None if covariates is None else np.asarray(covariates, dtype=np.float64)
    Y = TargetNormalizer().fit(Y[train_idx], None if C is None else C[train_idx]).transform(Y, C)
    fits = []
    for j, (gid, tss) in enumerate(zip(gene_ids, genes_table["tss"].to_list(), strict=True)):
        sl = slice_genotypes(genotypes, *cis_window(int(tss), window=config.window, anchor=anchor))
        fits.append(fit_enet_gene(gid, sl, Y[train_idx, j], train_idx, test_idx, config=config, seed=seed,
                                  y_test=Y[test_idx, j]))  # fmt: skip
    return EnetCohortResult.from_fits(fits, config=config, seed=seed, contig=genotypes.contig,
                                      n_train=len(train_idx), test_samples=test_samples)  # fmt: skip
